"""Data sources ``wine`` and ``breast_cancer``: real tables that scikit-learn ships (classification).

``wine``: 178 wines, 13 chemical measurements, 3 cultivars (UCI); ``breast_cancer``: 569 tumours, 30
cell-nucleus measurements, benign or malignant (Wisconsin). Rows are split by a seeded permutation; the schema is
fitted on the training split and ``tokenizer_config()`` returns it for the model's tokenizer entry.
``missing_rate`` injects NaNs. Samples: ``{"numeric": [F] float, "categorical": [0] long}``; targets: class
indices (0-d long tensors).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from polymodal.core.source import DataSource, DataSourceConfig, DemoSettings, SampleList
from polymodal.plugins.tabular.encoding import encode_table
from polymodal.plugins.tabular.schema import MODALITY, TabularTokenizerConfig

__all__ = [
    "BreastCancerDataSource",
    "BreastCancerDataSourceConfig",
    "TabularDataSourceConfig",
    "WineDataSource",
    "WineDataSourceConfig",
]


class TabularDataSourceConfig(DataSourceConfig):
    num_train: int = Field(120, gt=0, description="Training rows.")
    num_test: int = Field(58, gt=0, description="Test rows (disjoint from training).")
    missing_rate: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Fraction of feature values replaced by NaN (seeded), to exercise missing data.",
    )


class WineDataSourceConfig(TabularDataSourceConfig):
    type: str = "wine"


class _SklearnTableDataSource(DataSource):
    """A table scikit-learn ships; the schema is fitted on the training split."""

    modality: ClassVar[str] = MODALITY
    config_class: ClassVar[type[TabularDataSourceConfig]] = TabularDataSourceConfig
    loader: ClassVar[str] = ""
    num_rows: ClassVar[int] = 0

    def _load(self) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
        """``(features [N, F], names, labels [N], permutation)``, with injected NaNs."""
        import sklearn.datasets

        c = self.config
        if c.num_train + c.num_test > self.num_rows:
            raise ValueError(
                f"{self.name}: num_train + num_test must be at most {self.num_rows}, got {c.num_train + c.num_test}"
            )
        data = getattr(sklearn.datasets, self.loader)()
        x = np.asarray(data.data, dtype=np.float64).copy()
        rng = np.random.default_rng(c.seed)
        order = rng.permutation(len(x))
        if c.missing_rate:
            x[rng.random(x.shape) < c.missing_rate] = np.nan
        return x, [str(n) for n in data.feature_names], np.asarray(data.target), order

    def fitted_config(self) -> TabularTokenizerConfig:
        """The tokenizer config with the schema fitted on the training split."""
        x, names, _, order = self._load()
        return TabularTokenizerConfig.from_arrays(x[order[: self.config.num_train]], numeric_names=names)

    def tokenizer_config(self) -> dict[str, Any]:
        """The model's tokenizer entry for this data (the fitted schema, without ``embed_dim``)."""
        return self.fitted_config().model_dump(mode="json", exclude={"embed_dim"})

    def splits(self) -> dict[str, Dataset]:
        c = self.config
        x, _, y, order = self._load()
        config = self.fitted_config()
        parts = {"train": order[: c.num_train], "test": order[c.num_train : c.num_train + c.num_test]}
        out: dict[str, Dataset] = {}
        for k, idx in parts.items():
            batch, labels = encode_table(config, x[idx]), torch.from_numpy(y[idx]).long()
            out[k] = SampleList([({n: v[i] for n, v in batch.items()}, labels[i]) for i in range(len(idx))])
        return out

    def task(self) -> dict[str, Any]:
        _, _, y, _ = self._load()
        return {"type": "classification", "num_classes": int(y.max()) + 1}

    def baseline(self) -> float:
        """Accuracy of always predicting the training split's majority class, on the test split."""
        c = self.config
        _, _, y, order = self._load()
        majority = np.bincount(y[order[: c.num_train]]).argmax()
        return float((y[order[c.num_train : c.num_train + c.num_test]] == majority).mean())


class WineDataSource(_SklearnTableDataSource):
    """scikit-learn's wine data (UCI): 178 wines, 13 chemical measurements, 3 cultivars."""

    name: ClassVar[str] = "wine"
    config_class: ClassVar[type[TabularDataSourceConfig]] = WineDataSourceConfig
    loader: ClassVar[str] = "load_wine"
    num_rows: ClassVar[int] = 178
    demo: ClassVar[DemoSettings | None] = DemoSettings(
        source={"num_train": 120, "num_test": 58},  # 178 rows in all
        head={"pool": "mean"},
    )


class BreastCancerDataSourceConfig(TabularDataSourceConfig):
    type: str = "breast_cancer"
    num_train: int = Field(400, gt=0, description="Training rows.")
    num_test: int = Field(169, gt=0, description="Test rows (disjoint from training).")


class BreastCancerDataSource(_SklearnTableDataSource):
    """scikit-learn's breast cancer data (Wisconsin): 569 tumours, 30 measurements, malignant or benign."""

    name: ClassVar[str] = "breast_cancer"
    config_class: ClassVar[type[TabularDataSourceConfig]] = BreastCancerDataSourceConfig
    loader: ClassVar[str] = "load_breast_cancer"
    num_rows: ClassVar[int] = 569
