"""Test tokenizers shared by the model tests, registered for the session: ``test_lookup`` (ids scaled by a table
file, a ``LocalFile`` field that saved folders copy) and ``test_seq`` (a masked sequence of values whose checks
go through ``check_values``, so it traces for compile and export)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from pydantic import Field
from torch import nn

import polymodal
from polymodal.core.component import LocalFile
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, check_values
from polymodal.core.tokens import Tokens
from polymodal.registry.tables import unregister


class TableConfig(TokenizerConfig):
    type: str = "test_lookup"
    table_file: LocalFile = Field(None, description="one number a line: the embedding scale of each id")
    notes: str | None = Field(None, description="a plain string field (not a file)")


class LookupTokenizer(Tokenizer):
    """``[B, N]`` ids -> one token each, scaled by the number on line ``id`` of ``table_file``."""

    name: ClassVar[str] = "test_lookup"
    config_class: ClassVar[type[TableConfig]] = TableConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.scale = torch.tensor([float(x) for x in Path(self.config.table_file).read_text().split()])
        self.embed = nn.Embedding(len(self.scale), self.config.embed_dim)

    def forward(self, ids: torch.Tensor) -> Tokens:
        x = self.embed(ids) * self.scale[ids, None]
        return Tokens(x, torch.ones(ids.shape, dtype=torch.bool), self.modality)


class SeqTokenizer(Tokenizer):
    """``{"values": [B, N] float, "mask": [B, N] bool}`` -> one token per value; checks through check_values."""

    name: ClassVar[str] = "test_seq"
    config_class: ClassVar[type[TokenizerConfig]] = TokenizerConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.proj = nn.Linear(1, self.config.embed_dim)
        self.pos = nn.Parameter(0.02 * torch.randn(1, 64, self.config.embed_dim))

    def forward(self, batch: dict[str, torch.Tensor]) -> Tokens:
        values = check_tensor(batch["values"], self.modality, "(B, N)", 2)
        mask = batch["mask"]
        check_values(mask.any(dim=1), self.modality, "at least one real value per row")
        x = self.proj(values.unsqueeze(-1)) + self.pos[:, : values.shape[1]]
        return Tokens(x * mask.unsqueeze(-1), mask, self.modality)


@pytest.fixture(scope="session", autouse=True)
def _model_test_tokenizers() -> Iterator[None]:
    polymodal.register(LookupTokenizer)
    polymodal.register(SeqTokenizer)
    yield
    unregister("tokenizer", "test_lookup")
    unregister("tokenizer", "test_seq")
