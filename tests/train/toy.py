"""Small synthetic components for the training tests (registered by a fixture, unregistered after).

- ``toy_seq``: variable-length 1-D sequences ``[L_i]`` -> one token per value (``value * w + pos``); collate pads
  and returns ``{"values": [B, N], "mask": [B, N]}``.
- ``toy_vec``: fixed-width vectors ``[F]`` -> one token per feature (``x_f * w_f + b_f``), as a tabular tokenizer.
- Data sources (synthetic, seeded): ``toy_seq_tokens`` (per-value label ``value > 0``: token classification),
  ``toy_seq_classes`` (10 classes: the level of the values), ``toy_vec_linear`` (regression of ``x @ w``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from polymodal.core.source import DataSource, DataSourceConfig
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor
from polymodal.core.tokens import Tokens

__all__ = ["TOY_CLASSES"]


class ToySeqTokenizerConfig(TokenizerConfig):
    type: str = "toy_seq"
    max_len: int = Field(16, gt=0, description="Longest sequence.")


class ToySeqTokenizer(Tokenizer):
    name: ClassVar[str] = "toy_seq"
    config_class: ClassVar[type[ToySeqTokenizerConfig]] = ToySeqTokenizerConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        d = self.config.embed_dim
        self.proj = nn.Linear(1, d)
        self.pos = nn.Parameter(torch.randn(1, self.config.max_len, d) * 0.02)

    def forward(self, batch: Any) -> Tokens:
        if not isinstance(batch, dict):
            raise self.fail("a dict with 'values' and 'mask'", batch)
        values = check_tensor(batch.get("values"), self.modality, "(B, N)", 2)
        mask = batch["mask"]
        x = self.proj(values.unsqueeze(-1)) + self.pos[:, : values.shape[1]]
        return Tokens(x, mask.bool(), self.modality)

    def collate(self, samples: Sequence[Tensor]) -> dict[str, Tensor]:
        lengths = torch.tensor([len(s) for s in samples])
        values = nn.utils.rnn.pad_sequence(list(samples), batch_first=True)
        mask = torch.arange(values.shape[1])[None] < lengths[:, None]
        return {"values": values, "mask": mask}

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Any:
        return self.collate([torch.randn(3 + i, generator=generator) for i in range(batch_size)])


class ToyVecTokenizerConfig(TokenizerConfig):
    type: str = "toy_vec"
    num_features: int = Field(6, gt=0, description="Features per sample.")


class ToyVecTokenizer(Tokenizer):
    name: ClassVar[str] = "toy_vec"
    config_class: ClassVar[type[ToyVecTokenizerConfig]] = ToyVecTokenizerConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        f, d = self.config.num_features, self.config.embed_dim
        self.weight = nn.Parameter(torch.randn(f, d) * 0.5)
        self.bias = nn.Parameter(torch.randn(f, d) * 0.02)

    def forward(self, batch: Any) -> Tokens:
        x = check_tensor(batch, self.modality, f"(B, {self.config.num_features})", 2)
        return Tokens.full(x.unsqueeze(-1) * self.weight + self.bias, self.modality)

    def example_input(self, batch_size: int = 2, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(batch_size, self.config.num_features, generator=generator)


class ToySourceConfig(DataSourceConfig):
    num_train: int = Field(160, gt=0)
    num_test: int = Field(80, gt=0)


class _Ragged(Dataset):
    def __init__(self, samples: list[Tensor], targets: list[Any]) -> None:
        self.samples, self.targets = samples, targets

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[Tensor, Any]:
        return self.samples[i], self.targets[i]


class ToySeqTokensConfig(ToySourceConfig):
    type: str = "toy_seq_tokens"


class ToySeqTokens(DataSource):
    """Token classification: each value's label is ``value > 0`` (lengths 4..12)."""

    name: ClassVar[str] = "toy_seq_tokens"
    modality: ClassVar[str] = "toy_seq"
    config_class: ClassVar[type[ToySeqTokensConfig]] = ToySeqTokensConfig

    def _make(self, n: int, seed: int) -> Dataset:
        g = torch.Generator().manual_seed(seed)
        lengths = torch.randint(4, 13, (n,), generator=g).tolist()
        samples = [torch.randn(k, generator=g) for k in lengths]
        return _Ragged(samples, [(s > 0).long() for s in samples])

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        return {"train": self._make(c.num_train, 2 * c.seed), "test": self._make(c.num_test, 2 * c.seed + 1)}

    def collate_targets(self, targets: Sequence[Any]) -> Tensor:
        return nn.utils.rnn.pad_sequence(list(targets), batch_first=True, padding_value=-100)

    def task(self) -> dict[str, Any]:
        return {"type": "token_classification", "num_classes": 2}

    def baseline(self) -> float:
        return 0.5


class ToySeqClassesConfig(ToySourceConfig):
    type: str = "toy_seq_classes"


class ToySeqClasses(DataSource):
    """10 classes: 8 values around the level ``(label - 4.5) / 2`` (noise 0.1)."""

    name: ClassVar[str] = "toy_seq_classes"
    modality: ClassVar[str] = "toy_seq"
    config_class: ClassVar[type[ToySeqClassesConfig]] = ToySeqClassesConfig

    def _make(self, n: int, seed: int) -> Dataset:
        g = torch.Generator().manual_seed(seed)
        labels = torch.arange(n) % 10
        x = (labels[:, None] - 4.5) / 2 + 0.1 * torch.randn(n, 8, generator=g)
        return TensorDataset(x, labels)

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        return {"train": self._make(c.num_train, 2 * c.seed), "test": self._make(c.num_test, 2 * c.seed + 1)}

    def task(self) -> dict[str, Any]:
        return {"type": "classification", "num_classes": 10}

    def baseline(self) -> float:
        return 0.1


class ToyVecLinearConfig(ToySourceConfig):
    type: str = "toy_vec_linear"


class ToyVecLinear(DataSource):
    """Regression: ``y = x @ w`` for a fixed ``w`` (6 features)."""

    name: ClassVar[str] = "toy_vec_linear"
    modality: ClassVar[str] = "toy_vec"
    config_class: ClassVar[type[ToyVecLinearConfig]] = ToyVecLinearConfig

    def _make(self, n: int, seed: int) -> Dataset:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 6, generator=g)
        w = torch.tensor([1.0, -0.5, 0.25, 0.0, 0.5, -1.0])
        return TensorDataset(x, (x @ w)[:, None])

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        return {"train": self._make(c.num_train, 2 * c.seed), "test": self._make(c.num_test, 2 * c.seed + 1)}

    def task(self) -> dict[str, Any]:
        return {"type": "regression", "out_dim": 1}

    def baseline(self) -> float:
        return 2.3125  # variance of x @ w


TOY_CLASSES = (ToySeqTokenizer, ToyVecTokenizer, ToySeqTokens, ToySeqClasses, ToyVecLinear)
