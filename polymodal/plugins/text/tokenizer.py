"""The text tokenizer: token embeddings + a learned 1-D positional embedding, as BERT (Devlin et al., arXiv
1810.04805) and Meta-Transformer (arXiv 2307.10802), over byte-level UTF-8 (ByT5, Xue et al., arXiv 2105.13626) or a
local WordPiece / BPE vocabulary (:mod:`~polymodal.plugins.text.vocabulary`).

Input: a string, a list of strings, a list of id tensors from ``preprocess``, or a dict ``{"input_ids": [B, N]
long, "mask": [B, N] bool, "truncated": [B] long}`` (what ``collate`` makes). Output: tokens ``[B, N, D]`` with ``N``
the longest text's length (at most ``max_length``), padding masked; ``Tokens.meta["truncated"]`` ``[B]``.
Files: ``.txt`` (:func:`read_text`); tables: a column of texts (:meth:`TextTokenizer.dataset_from_table`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from timm.layers import trunc_normal_
from torch import Tensor, nn

from polymodal.core.component import LocalFile
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, check_values, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins.text.files import TEXT_EXTENSIONS, read_text
from polymodal.plugins.text.vocabulary import load_hf_tokenizer

__all__ = [
    "BYTE_EOS",
    "BYTE_OFFSET",
    "BYTE_PAD",
    "BYTE_UNK",
    "BYTE_VOCAB_SIZE",
    "TextTokenizer",
    "TextTokenizerConfig",
    "TextTruncationWarning",
]

BYTE_PAD, BYTE_EOS, BYTE_UNK = 0, 1, 2
BYTE_OFFSET = 3
BYTE_VOCAB_SIZE = 256 + BYTE_OFFSET


class TextTruncationWarning(UserWarning):
    """Texts longer than ``max_length`` were truncated (the message gives the counts)."""


class TextTokenizerConfig(TokenizerConfig):
    type: str = "text"
    vocabulary: Literal["bytes", "wordpiece", "bpe"] = Field(
        "bytes",
        description="'bytes': UTF-8 bytes, no file; 'wordpiece' / 'bpe': a local vocabulary (tokenizers).",
    )
    vocab_file: LocalFile = Field(
        None, description="wordpiece: vocab.txt (one token a line); bpe: vocab.json."
    )
    merges_file: LocalFile = Field(None, description="bpe: merges.txt.")
    lowercase: bool = Field(True, description="wordpiece: lower-case and strip accents (uncased BERT).")
    pad_token: str = Field("[PAD]", description="Padding token of a vocabulary file (added if missing).")
    unk_token: str = Field("[UNK]", description="Unknown-token of a vocabulary file.")
    eos_token: str = Field("[SEP]", description="End-of-sequence token of a vocabulary file.")
    add_eos: bool = Field(False, description="Append the end-of-sequence token to every text.")
    max_length: int = Field(
        512, gt=0, description="Longest token sequence; longer texts are truncated (reported)."
    )

    @model_validator(mode="after")
    def _check_files(self) -> TextTokenizerConfig:
        if self.vocabulary == "bytes" and (self.vocab_file or self.merges_file):
            raise ValueError(
                "vocab_file and merges_file apply to vocabulary='wordpiece' or 'bpe', not 'bytes'"
            )
        if self.vocabulary != "bytes" and not self.vocab_file:
            raise ValueError(f"vocabulary={self.vocabulary!r} needs vocab_file")
        if self.vocabulary == "bpe" and not self.merges_file:
            raise ValueError("vocabulary='bpe' needs merges_file (merges.txt)")
        if self.vocabulary == "wordpiece" and self.merges_file:
            raise ValueError("merges_file applies to vocabulary='bpe' only")
        if self.add_eos and self.max_length < 2:
            raise ValueError("add_eos needs max_length >= 2")
        return self


class TextTokenizer(Tokenizer):
    """Strings -> token ids (bytes or a vocabulary file) -> embeddings + learned positions, with a padding mask."""

    name: ClassVar[str] = "text"
    config_class: ClassVar[type[TextTokenizerConfig]] = TextTokenizerConfig
    input_form: ClassVar[str] = "strings (or `{input_ids, mask}` from `collate`)"
    file_extensions: ClassVar[tuple[str, ...]] = TEXT_EXTENSIONS

    def __init__(self, config: TextTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        self._hf: Any = None
        if c.vocabulary == "bytes":
            self.vocab_size, self.pad_id, self.eos_id = BYTE_VOCAB_SIZE, BYTE_PAD, BYTE_EOS
        else:
            self._hf = load_hf_tokenizer(c)
            vocab = self._hf.get_vocab()
            size = self._hf.get_vocab_size()
            self.pad_id = vocab.get(c.pad_token, size)
            self.vocab_size = size + (self.pad_id == size)
            if c.eos_token not in vocab:
                raise ValueError(f"text: eos_token {c.eos_token!r} is not in {c.vocab_file}")
            self.eos_id = vocab[c.eos_token]
        self.embed = nn.Embedding(self.vocab_size, c.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.max_length, c.embed_dim))
        trunc_normal_(self.embed.weight, std=0.02)
        trunc_normal_(self.pos_embed, std=0.02)

    # -- what the modality's data looks like -------------------------------------------------------------------
    @classmethod
    def read_file(cls, path: str | Path, config: TokenizerConfig, **options: Any) -> str:
        """One ``.txt`` file -> its text (:func:`read_text`; ``options``: its ``encoding``), what :meth:`preprocess`
        takes; the config does not change how it is read."""
        return read_text(path, **options)

    @classmethod
    def dataset_from_table(
        cls,
        frame: Any,
        *,
        modality: Any,
        target: str | Sequence[str] | None,
        columns: list[str] | None,
        tokenizer: Any,
        task: Any = None,
        class_names: Sequence[str] | None = None,
        **options: Any,
    ) -> Any:
        """The texts of one column (``columns``, default ``"text"``; values turned into ``str``) with the
        ``target`` column(s): an :class:`~polymodal.data.ArrayDataset`. ``options`` (``on_error``, reader options)
        do not apply."""
        from polymodal.data import ArrayDataset, table_targets
        from polymodal.data.dataset import tokenizer_config

        name = cls.modality
        config = tokenizer_config(modality, tokenizer)
        if target is None:
            raise ValueError(f"{name}: pass target=<column> (columns: {list(frame.columns)})")
        y = table_targets(frame, target, name)
        single = columns or ["text"]
        if len(single) != 1 or single[0] not in frame.columns:
            raise KeyError(
                f"{name}: expected one column of samples, got {single}; columns: {list(frame.columns)}"
            )
        texts = [str(v) for v in frame[single[0]].tolist()]
        return ArrayDataset(config, texts, y, task=task, class_names=class_names)

    # -- strings -> ids ---------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str]) -> list[Tensor]:
        """Untruncated ids of each text (``add_eos`` applied; an empty text gives one end-of-sequence token)."""
        bad = [t for t in texts if not isinstance(t, str)]
        if bad or len(texts) == 0:
            raise self.fail("a string or a non-empty list of strings", describe(bad[0] if bad else texts))
        for i, t in enumerate(texts):  # a lone surrogate (e.g. from a bad decode) has no UTF-8 form
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise self.fail(
                    "valid Unicode text (decode with errors='replace' to repair it)",
                    f"text {i}: an unpaired surrogate {t[exc.start]!r} at position {exc.start}",
                ) from None
        if self._hf is None:
            ids = [
                torch.frombuffer(bytearray(t.encode("utf-8")), dtype=torch.uint8).long() + BYTE_OFFSET
                if t
                else torch.empty(0, dtype=torch.long)
                for t in texts
            ]
        else:
            ids = [
                torch.tensor(e.ids, dtype=torch.long)
                for e in self._hf.encode_batch(list(texts), add_special_tokens=False)
            ]
        eos = torch.tensor([self.eos_id])
        return [torch.cat([x, eos]) if self.config.add_eos or x.numel() == 0 else x for x in ids]

    def decode(self, ids: Tensor) -> str:
        """Text of one id sequence (padding and end-of-sequence dropped; invalid UTF-8 replaced)."""
        ids = [int(i) for i in ids.reshape(-1) if int(i) not in (self.pad_id, self.eos_id)]
        if self._hf is None:
            return bytes(i - BYTE_OFFSET for i in ids if i >= BYTE_OFFSET).decode("utf-8", errors="replace")
        return self._hf.decode(ids)

    def preprocess(self, raw: Any) -> Tensor:
        """One text -> its ids ``[n]`` (long, untruncated; ``collate`` truncates and reports)."""
        if isinstance(raw, bytes):
            raise self.fail("a str (decode bytes first)", describe(raw))
        if not isinstance(raw, str):
            raise self.fail("a string", describe(raw))
        return self.encode([raw])[0]

    def collate(self, samples: Sequence[Any]) -> dict[str, Tensor]:
        """Strings or id tensors -> ``{"input_ids": [B, N], "mask": [B, N], "truncated": [B]}``.

        ``N`` is the longest sequence after truncation at ``max_length``; shorter ones are padded with the padding
        id (mask ``False``). Warns (:class:`TextTruncationWarning`) when a text was truncated.
        """
        if isinstance(samples, (str, bytes)) or len(samples) == 0:
            raise self.fail("a non-empty list of strings or id tensors", describe(samples))
        if any(isinstance(s, str) for s in samples):
            ids = self.encode(samples)
        else:
            bad = [s for s in samples if not isinstance(s, Tensor) or s.dim() != 1 or s.is_floating_point()]
            if bad:
                raise self.fail("strings or 1-D integer id tensors (from preprocess)", describe(bad[0]))
            ids = [s.long() for s in samples]
        c = self.config
        lengths = torch.tensor([x.numel() for x in ids])
        truncated = (lengths - c.max_length).clamp_min(0)
        if bool((truncated > 0).any()):
            keep = c.max_length - 1 if c.add_eos else c.max_length
            ids = [
                torch.cat([x[:keep], x[-1:]]) if c.add_eos and x.numel() > c.max_length else x[: c.max_length]
                for x in ids
            ]
            n = int((truncated > 0).sum())
            warnings.warn(
                f"text: truncated {n} of {len(ids)} texts to max_length={c.max_length} "
                f"({int(truncated.sum())} tokens dropped)",
                TextTruncationWarning,
                stacklevel=2,
            )
        input_ids = nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=self.pad_id)
        mask = torch.arange(input_ids.shape[1]).unsqueeze(0) < lengths.clamp(max=c.max_length).unsqueeze(1)
        return {"input_ids": input_ids, "mask": mask, "truncated": truncated}

    # -- forward ------------------------------------------------------------------------------------------------
    def validate(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """``(input_ids [B, N], mask [B, N], truncated [B])`` of a batch, or :class:`ModalityInputError`."""
        if isinstance(batch, str):
            batch = [batch]
        if isinstance(batch, (list, tuple)):
            batch = self.collate(batch)
        c = self.config
        expected = f"(B, N) token ids in [0, {self.vocab_size}) with N <= {c.max_length}"
        if isinstance(batch, Mapping):
            if "input_ids" not in batch:
                raise self.fail(
                    "a string, a list of strings, or a dict with 'input_ids' and 'mask'",
                    f"a dict with keys {sorted(batch)}",
                )
            ids, mask, truncated = batch["input_ids"], batch.get("mask"), batch.get("truncated")
        else:
            ids, mask, truncated = batch, None, None
        ids = check_tensor(ids, self.modality, expected, 2, floating=False)
        b, n = ids.shape
        if n == 0 or n > c.max_length:
            raise self.fail(expected, describe(ids))
        check_values(
            (ids >= 0) & (ids < self.vocab_size),
            self.modality,
            expected,
            got=lambda: f"ids from {int(ids.min())} to {int(ids.max())}",
        )
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=ids.device)
        elif not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != ids.shape:
            raise self.fail(f"a bool mask of shape {(b, n)}", describe(mask))
        else:
            check_values(
                mask.any(dim=1),
                self.modality,
                "at least one real token per text",
                "a row whose mask is all False",
            )
        if truncated is None:
            truncated = torch.zeros(b, dtype=torch.long)
        elif not isinstance(truncated, Tensor) or truncated.shape != (b,):
            raise self.fail(f"truncated counts of shape ({b},)", describe(truncated))
        return ids, mask.to(ids.device), truncated

    def forward(self, batch: Any) -> Tokens:
        ids, mask, truncated = self.validate(batch)
        x = self.embed(ids.to(self.embed.weight.device)) + self.pos_embed[:, : ids.shape[1]]
        mask = mask.to(x.device)
        x = x * mask.unsqueeze(-1).to(x.dtype)
        return Tokens(x, mask, self.modality, {"truncated": truncated.to(x.device)})

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> list[str]:
        words = ["polymodal", "tokens", "bytes", "héllo", "wörld", "日本語", "text", "🙂"]
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        out = []
        for i in range(batch_size):
            picks = torch.randint(0, len(words), (2 + i % 3,), generator=g).tolist()
            out.append(" ".join(words[j] for j in picks))
        return out

    def invalid_examples(self) -> list[Any]:
        c = self.config
        return [
            [],  # empty list
            ["fine", 3],  # not all strings
            [None],
            b"bytes",  # bytes, not str
            torch.zeros(0, 4, dtype=torch.long),  # empty batch
            torch.zeros(2, 0, dtype=torch.long),  # no tokens
            torch.zeros(2, 4),  # float ids
            torch.full((1, 4), self.vocab_size),  # id out of range
            torch.full((1, 4), -1),
            torch.zeros(1, c.max_length + 1, dtype=torch.long),  # longer than max_length
            {"input_ids": torch.zeros(2, 3, dtype=torch.long), "mask": torch.zeros(2, 3, dtype=torch.bool)},
            {"input_ids": torch.zeros(2, 3, dtype=torch.long), "mask": torch.ones(2, 4, dtype=torch.bool)},
            {"ids": torch.zeros(2, 3, dtype=torch.long)},  # wrong key
        ]
