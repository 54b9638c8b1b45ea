"""The encoder interface: the shared encoder ``g`` takes the tokens of every input of a step and encodes them.

Input: a list of :class:`~polymodal.core.tokens.Tokens` (one per input), each ``[B_m, N_m, D]`` with a mask;
output: the same list, encoded, with the same masks, ``meta`` and ``prefix``, and zeros at padded positions. The
encoder never learns a modality's name.

The base class packs (:mod:`polymodal.core.encoders.packing`): the real tokens of every sequence of every input
form one stream ``[T, D]``, which a subclass encodes in :meth:`Encoder.encode_packed` with attention restricted to
each sequence (``layout`` says where sequences start), so no FLOPs go to padding and padding never changes a
result. :class:`~polymodal.core.encoders.vit.TransformerEncoder` is the built-in one.

Under ``torch.compile`` and ``torch.export`` (or with ``encoder.padded = True``) the base class packs *padded*
instead (``pack(tokens, padded=True)``: every position of every input, attention masked per input), so the traced
graph depends on the inputs' shapes, not on their lengths; ``encode_packed`` gets that layout and must pass it on
to :func:`~polymodal.core.encoders.packing.varlen_attention` (or read ``layout.masks`` itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from polymodal.core.component import Component, ComponentConfig
from polymodal.core.encoders.packing import PackedLayout, pack, unpack
from polymodal.core.tokens import Tokens

__all__ = ["Encoder", "EncoderConfig"]


class EncoderConfig(ComponentConfig):
    """Fields every encoder has."""

    embed_dim: int = Field(768, gt=0, description="Token width D (every tokenizer and head uses it).")


class Encoder(Component, nn.Module):
    """Base class of shared encoders: ``forward(list[Tokens]) -> list[Tokens]`` (same order, same masks)."""

    kind: ClassVar[str] = "encoder"
    config_class: ClassVar[type[EncoderConfig]] = EncoderConfig
    #: ``None`` (default): pack the real tokens in eager mode and pack padded under ``torch.compile`` /
    #: ``torch.export`` tracing; ``True`` / ``False``: always padded / always packed (an instance may set it).
    padded: bool | None = None

    def __init__(self, config: EncoderConfig | dict[str, Any] | None = None) -> None:
        nn.Module.__init__(self)
        self.config = self.coerce_config(config)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def forward(self, tokens: Sequence[Tokens]) -> list[Tokens]:
        """Encode every sequence of every input in one packed pass; same order, masks, meta and prefix."""
        tokens = list(tokens)
        if not tokens:
            return []
        for t in tokens:
            if not isinstance(t, Tokens):
                raise TypeError(f"{self.name}: expected a list of Tokens, got a {type(t).__name__} in it")
            if t.dim != self.embed_dim:
                raise ValueError(
                    f"{self.name}: expected tokens of width {self.embed_dim}, got {t.dim} from {t.modality!r}"
                )
        padded = torch.compiler.is_compiling() if self.padded is None else self.padded
        x, layout = pack(tokens, padded=padded)
        encoded = unpack(self.encode_packed(x, layout).to(x.dtype), layout)
        return [t.replace(embeddings=e.to(t.embeddings.dtype)) for t, e in zip(tokens, encoded)]

    @classmethod
    def example_config(cls) -> dict[str, Any]:
        """Overrides that make a small instance for the conformance checks (``polymodal.testing.check_encoder``),
        e.g. fewer blocks."""
        return {}

    def encode_packed(self, x: Tensor, layout: PackedLayout) -> Tensor:  # pragma: no cover - abstract
        """Encode a packed stream ``[T, D]``: attention (or any mixing) only within each sequence of ``layout``."""
        raise NotImplementedError(f"{self.name}: implement encode_packed(stream, layout)")
