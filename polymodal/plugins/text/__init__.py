"""Text plugin: token embeddings + a learned 1-D positional embedding, as BERT (Devlin et al., arXiv 1810.04805)
and Meta-Transformer (arXiv 2307.10802), over byte-level UTF-8 (ByT5, Xue et al., arXiv 2105.13626) or a local
WordPiece / BPE vocabulary.

Input: a string, a list of strings, a list of id tensors from ``preprocess``, or a dict ``{"input_ids": [B, N]
long, "mask": [B, N] bool, "truncated": [B] long}`` (what ``collate`` makes).
Vocabularies (``vocabulary``): ``"bytes"`` (default; no file, any language): id 0 = padding, 1 = end of sequence,
2 = unknown (unused, kept for ByT5 compatibility), byte ``b`` of the UTF-8 encoding = ``b + 3``; 259 ids.
``"wordpiece"`` (a BERT ``vocab.txt``) and ``"bpe"`` (a ``vocab.json`` + ``merges.txt``, byte-level as GPT-2 and
RoBERTa) need Hugging Face ``tokenizers`` (the optional extra ``polymodal[text]``); the padding token gets an extra
row when the vocabulary has none. An empty text becomes one end-of-sequence token, so every text has a real token.
Tokens: ``[B, N, D]`` with ``N`` the longest text's length (at most ``max_length``): ``E[id] + P[position]``,
padding positions masked (``False``) and zero. Texts longer than ``max_length`` keep their first ``max_length``
tokens (with ``add_eos`` the last kept one is the end-of-sequence token); the number of tokens dropped per text is
``Tokens.meta["truncated"]`` and each truncating batch raises a :class:`TextTruncationWarning` with the count.
Default counts: one token per UTF-8 byte (``"hello world"`` -> 11, a Chinese character -> 3), at most 512.

Files: ``.txt``, one text a file (:attr:`TextTokenizer.file_extensions`, read by :func:`read_text`); tables: a
column of texts (:meth:`TextTokenizer.dataset_from_table`, default column ``"text"``).

Data source ``topic_sentences``: synthetic, documented in :class:`TopicSentencesDataSource`.

The package: :mod:`~polymodal.plugins.text.tokenizer` (the tokenizer), :mod:`~polymodal.plugins.text.vocabulary`
(vocabulary files), :mod:`~polymodal.plugins.text.files` (reading files), :mod:`~polymodal.plugins.text.data` (the
data source).
"""

from __future__ import annotations

from polymodal.plugins.text.data import (
    CONJUNCTIONS,
    DETERMINERS,
    PREPOSITIONS,
    SHARED,
    TOPICS,
    TopicSentencesDataSource,
    TopicSentencesDataSourceConfig,
)
from polymodal.plugins.text.files import TEXT_EXTENSIONS, read_text
from polymodal.plugins.text.tokenizer import (
    BYTE_EOS,
    BYTE_OFFSET,
    BYTE_PAD,
    BYTE_UNK,
    BYTE_VOCAB_SIZE,
    TextTokenizer,
    TextTokenizerConfig,
    TextTruncationWarning,
)
from polymodal.plugins.text.vocabulary import load_hf_tokenizer, word_vocabulary
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "BYTE_EOS",
    "BYTE_OFFSET",
    "BYTE_PAD",
    "BYTE_UNK",
    "BYTE_VOCAB_SIZE",
    "CONJUNCTIONS",
    "DETERMINERS",
    "PREPOSITIONS",
    "SHARED",
    "TEXT_EXTENSIONS",
    "TOPICS",
    "TextTokenizer",
    "TextTokenizerConfig",
    "TextTruncationWarning",
    "TopicSentencesDataSource",
    "TopicSentencesDataSourceConfig",
    "load_hf_tokenizer",
    "read_text",
    "word_vocabulary",
]


@hookimpl
def polymodal_components() -> list[type]:
    return [TextTokenizer, TopicSentencesDataSource]
