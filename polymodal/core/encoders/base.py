"""The encoder interface: the shared encoder ``g`` takes the tokens of every input of a step and encodes them.

Input: a list of :class:`~polymodal.core.tokens.Tokens` (one per input), each ``[B_m, N_m, D]`` with a mask;
output: the same list, encoded, with the same masks, ``meta`` and ``prefix``. The encoder never learns a modality's
name. :class:`~polymodal.core.encoders.vit.TransformerEncoder` is the built-in one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field
from torch import nn

from polymodal.core.component import Component, ComponentConfig
from polymodal.core.tokens import Tokens

__all__ = ["Encoder", "EncoderConfig"]


class EncoderConfig(ComponentConfig):
    """Fields every encoder has."""

    embed_dim: int = Field(768, gt=0, description="Token width D (every tokenizer and head uses it).")


class Encoder(Component, nn.Module):
    """Base class of shared encoders: ``forward(list[Tokens]) -> list[Tokens]`` (same order, same masks)."""

    kind: ClassVar[str] = "encoder"
    config_class: ClassVar[type[EncoderConfig]] = EncoderConfig

    def __init__(self, config: EncoderConfig | dict[str, Any] | None = None) -> None:
        nn.Module.__init__(self)
        self.config = self.coerce_config(config)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    def forward(self, tokens: Sequence[Tokens]) -> list[Tokens]:  # pragma: no cover - abstract
        raise NotImplementedError
