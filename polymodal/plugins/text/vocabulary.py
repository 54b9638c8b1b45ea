"""Vocabulary files for the text tokenizer: a local WordPiece (BERT, Devlin et al., arXiv 1810.04805) or byte-level
BPE (GPT-2 / RoBERTa) vocabulary loaded through Hugging Face ``tokenizers`` (the optional extra ``polymodal[text]``),
and a word-level vocabulary fitted on a data source's training split (:func:`word_vocabulary`, what
``polymodal demo`` trains the text tokenizer with).

Shapes: strings -> token ids ``[n]`` per text (through the loaded tokenizer); a fitted vocabulary is a
``vocab.txt`` file of one token a line (``[PAD]``, ``[UNK]``, ``[SEP]``, then every word and punctuation mark seen).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from polymodal.plugins.text.tokenizer import TextTokenizerConfig

__all__ = ["load_hf_tokenizer", "word_vocabulary"]

_EXTRA = "install the optional extra: pip install 'polymodal[text]' (or: pip install tokenizers)"


def load_hf_tokenizer(config: TextTokenizerConfig) -> Any:
    """A Hugging Face ``tokenizers.Tokenizer`` for a ``wordpiece`` or ``bpe`` config, from local files only.

    WordPiece: BERT's normaliser (lower-casing if ``lowercase``) and pre-tokeniser, ``##`` continuation prefix.
    BPE: byte-level (GPT-2 / RoBERTa) pre-tokeniser and decoder.
    """
    try:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, normalizers, pre_tokenizers
    except ImportError as exc:
        raise ImportError(
            f"text: vocabulary={config.vocabulary!r} needs Hugging Face tokenizers, which is not installed; {_EXTRA}"
        ) from exc
    files = [config.vocab_file] + ([config.merges_file] if config.vocabulary == "bpe" else [])
    missing = [f for f in files if not Path(str(f)).is_file()]
    if missing:
        raise FileNotFoundError(f"text: vocabulary file(s) not found: {', '.join(map(str, missing))}")
    if config.vocabulary == "wordpiece":
        vocab = models.WordPiece.read_file(config.vocab_file)
        tok = HFTokenizer(models.WordPiece(vocab, unk_token=config.unk_token))
        tok.normalizer = normalizers.BertNormalizer(lowercase=config.lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
    else:
        vocab, merges = models.BPE.read_file(config.vocab_file, config.merges_file)
        tok = HFTokenizer(
            models.BPE(vocab, merges, unk_token=config.unk_token if config.unk_token in vocab else None)
        )
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    return tok


def word_vocabulary(source: Any, folder: Path) -> dict[str, Any]:
    """Text tokenizer settings with a word-level WordPiece vocabulary of ``source``'s training split: every word
    and punctuation mark seen there is one token (``folder/text_vocab.txt``), unseen ones are ``[UNK]``.

    A sentence is then about a dozen tokens instead of one per byte, and a mean over word embeddings is already a
    bag of words: the topic task is learned in the demo's few steps, which UTF-8 bytes are not (words must first
    be assembled from their spelling). Needs Hugging Face ``tokenizers`` (``polymodal[text]``); without it the
    demo keeps bytes and warns.
    """
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        warnings.warn(
            "demo: text keeps UTF-8 byte tokens (install polymodal[text] for a word vocabulary); "
            "bytes learn too slowly to beat chance in the demo's budget",
            stacklevel=2,
        )
        return {}
    train = source.splits()["train"]
    words = sorted(
        {w for i in range(len(train)) for w in re.findall(r"\w+|[^\w\s]", str(train[i][0]).lower())}
    )
    path = Path(folder).resolve() / "text_vocab.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["[PAD]", "[UNK]", "[SEP]", *words]) + "\n")
    return {"vocabulary": "wordpiece", "vocab_file": str(path)}
