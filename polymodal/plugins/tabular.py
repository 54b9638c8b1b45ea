"""Tabular plugin: one token per column, as FT-Transformer (Gorishniy et al., arXiv 2106.11959).

Input: a table's rows with a schema held in the tokenizer config (column names; numeric columns with their
training mean and std; categorical columns with their vocabularies). Fit the schema on training data with
``TabularTokenizerConfig.from_dataframe(df)`` (pandas) or ``from_arrays(numeric, categorical)`` (numpy); it is
plain JSON and travels with the model config. ``preprocess`` turns one row (dict, pandas Series, or 1-D array in
schema order) into ``{"numeric": [n_num] float, "categorical": [n_cat] long}``; ``encode_table`` does a whole
DataFrame / dict of columns / 2-D array at once; ``collate`` stacks rows into ``[B, n_num]`` and ``[B, n_cat]``.
Numeric values are standardised ``(x - mean) / std`` and NaN marks a missing value. Categorical values become
indices: ``0`` = missing, ``1`` = unknown (not in the vocabulary: never silently a real category),
``2 + i`` = ``categories[i]``. Categories are compared by their string form (integral floats as integers:
``2.0`` is ``"2"``).
Tokens: ``[B, n_num + n_cat, D]``, all real, numeric columns first, each in schema order: numeric column ``j``
gives ``x * w_j + b_j`` (a learned per-column missing-value embedding where ``x`` is NaN); categorical column
``j`` looks its index up in its own embedding table; every token adds a learned column-identity embedding.
With no schema (the default config) the tokenizer takes up to ``max_columns`` unnamed numeric columns,
identified by position and fed as they come (no standardisation).

Data sources ``wine`` (178 wines, 13 chemical measurements, 3 cultivars) and ``breast_cancer`` (569 tumours, 30
cell-nucleus measurements, benign or malignant): real data that scikit-learn ships. The schema is fitted on the
training split; ``tokenizer_config()`` returns it for the model's tokenizer entry. ``missing_rate`` injects NaNs.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from polymodal.core.component import ModalityInputError
from polymodal.core.source import DataSource, DataSourceConfig
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, describe
from polymodal.core.tokens import Tokens
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "MISSING_INDEX",
    "UNKNOWN_INDEX",
    "BreastCancerDataSource",
    "CategoricalColumn",
    "NumericColumn",
    "TabularDataSourceConfig",
    "TabularTokenizer",
    "TabularTokenizerConfig",
    "WineDataSource",
    "WineDataSourceConfig",
    "category_key",
    "encode_table",
]

MODALITY = "tabular"
MISSING_INDEX = 0
UNKNOWN_INDEX = 1
_RESERVED = 2


# -- schema --------------------------------------------------------------------------------------------------------
class NumericColumn(BaseModel):
    """A numeric column and the statistics it is standardised with (fitted on training data)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    mean: float = Field(0.0, description="Training mean (subtracted in preprocess).")
    std: float = Field(1.0, gt=0, description="Training standard deviation (divided by in preprocess).")

    @field_validator("mean", "std")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"must be finite, got {v}")
        return v


class CategoricalColumn(BaseModel):
    """A categorical column and its vocabulary: value ``categories[i]`` has index ``2 + i``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    categories: list[str] = Field(default_factory=list, description="Known values, by their string form.")

    @field_validator("categories")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            dup = sorted({c for c in v if v.count(c) > 1})
            raise ValueError(f"categories must be unique, got duplicates {dup}")
        return v

    @property
    def size(self) -> int:
        """Rows of this column's embedding table (missing + unknown + categories)."""
        return len(self.categories) + _RESERVED


def category_key(value: Any) -> str | None:
    """The string a category value is compared by; ``None`` for a missing value (None, NaN, pd.NA, NaT)."""
    if _is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    pd = sys.modules.get("pandas")  # pandas is optional: it is only loaded if the caller uses it
    if pd is not None:
        try:
            return bool(pd.isna(value))
        except (TypeError, ValueError):
            return False
    return isinstance(value, (float, np.floating)) and math.isnan(value)


class TabularTokenizerConfig(TokenizerConfig):
    type: str = MODALITY
    numeric: list[NumericColumn] = Field(default_factory=list, description="Numeric columns, in token order.")
    categorical: list[CategoricalColumn] = Field(
        default_factory=list, description="Categorical columns, in token order (after the numeric ones)."
    )
    max_columns: int = Field(
        64, gt=0, description="Without a schema: the most unnamed numeric columns a batch may have."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> TabularTokenizerConfig:
        names = self.column_names
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"tabular: column names must be unique, got duplicates {dup}")
        return self

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.numeric] + [c.name for c in self.categorical]

    @property
    def has_schema(self) -> bool:
        return bool(self.numeric or self.categorical)

    @classmethod
    def from_dataframe(
        cls,
        df: Any,
        *,
        categorical: Sequence[str] | None = None,
        numeric: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        min_frequency: int = 1,
        **fields: Any,
    ) -> TabularTokenizerConfig:
        """Fit a schema on a training DataFrame.

        Columns named in ``categorical``/``numeric`` get that kind; the others are numeric if their dtype is a
        number (not bool) and categorical otherwise; ``exclude`` (e.g. the target) is left out. Numeric columns
        store the mean and std of their non-missing values; categorical columns store the values seen at least
        ``min_frequency`` times (rarer ones map to "unknown"), sorted. ``fields`` are other config fields.
        """
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        forced_cat, forced_num = set(categorical or ()), set(numeric or ())
        missing = sorted((forced_cat | forced_num | set(exclude)) - {str(c) for c in df.columns})
        if missing:
            raise KeyError(f"tabular: columns {missing} are not in the DataFrame; it has {list(df.columns)}")
        num_cols, cat_cols, columns = [], [], {}
        for label in df.columns:
            name = str(label)
            if name in exclude:
                continue
            dtype = df[label].dtype
            is_cat = name in forced_cat or (
                name not in forced_num and (is_bool_dtype(dtype) or not is_numeric_dtype(dtype))
            )
            (cat_cols if is_cat else num_cols).append(name)
            columns[name] = df[label].to_numpy()
        return cls._fit(columns, num_cols, cat_cols, min_frequency, fields)

    @classmethod
    def from_arrays(
        cls,
        numeric: Any = None,
        categorical: Any = None,
        *,
        numeric_names: Sequence[str] | None = None,
        categorical_names: Sequence[str] | None = None,
        min_frequency: int = 1,
        **fields: Any,
    ) -> TabularTokenizerConfig:
        """Fit a schema on training arrays ``numeric [N, n_num]`` and ``categorical [N, n_cat]`` (any values).

        Columns are named ``num_0, …`` and ``cat_0, …`` unless names are given.
        """
        num = np.zeros((0, 0)) if numeric is None else np.asarray(numeric)
        cat = np.zeros((0, 0), dtype=object) if categorical is None else np.asarray(categorical, dtype=object)
        if num.ndim != 2 or cat.ndim != 2:
            raise ValueError(
                f"tabular: expected 2-D arrays (N, columns), got shapes {num.shape} and {cat.shape}"
            )
        num_names = list(numeric_names or [f"num_{j}" for j in range(num.shape[1])])
        cat_names = list(categorical_names or [f"cat_{j}" for j in range(cat.shape[1])])
        if len(num_names) != num.shape[1] or len(cat_names) != cat.shape[1]:
            raise ValueError(
                f"tabular: {len(num_names)} numeric and {len(cat_names)} categorical names for arrays of "
                f"{num.shape[1]} and {cat.shape[1]} columns"
            )
        columns = {n: num[:, j] for j, n in enumerate(num_names)} | {
            n: cat[:, j] for j, n in enumerate(cat_names)
        }
        return cls._fit(columns, num_names, cat_names, min_frequency, fields)

    @classmethod
    def _fit(
        cls,
        columns: Mapping[str, np.ndarray],
        num_cols: list[str],
        cat_cols: list[str],
        min_frequency: int,
        fields: dict[str, Any],
    ) -> TabularTokenizerConfig:
        numeric = []
        for name in num_cols:
            x = _numeric_values(columns[name], name)
            x = x[~np.isnan(x)]
            mean = float(x.mean()) if x.size else 0.0
            std = float(x.std()) if x.size else 1.0
            numeric.append(NumericColumn(name=name, mean=mean, std=std if std > 0 else 1.0))
        categorical = []
        for name in cat_cols:
            counts: dict[str, int] = {}
            for v in columns[name]:
                key = category_key(v)
                if key is not None:
                    counts[key] = counts.get(key, 0) + 1
            kept = sorted(k for k, n in counts.items() if n >= min_frequency)
            categorical.append(CategoricalColumn(name=name, categories=kept))
        return cls.model_validate(
            {"type": MODALITY, **fields, "numeric": numeric, "categorical": categorical}
        )


# -- non-learned encoding ------------------------------------------------------------------------------------------
def _numeric_values(values: Any, name: str) -> np.ndarray:
    """Column values -> float64 array with NaN for missing; non-numbers and infinities raise."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        x = arr.astype(np.float64)
    else:
        x = np.empty(arr.shape, dtype=np.float64)
        for i, v in enumerate(arr.ravel()):
            if _is_missing(v):
                x.flat[i] = np.nan
            elif isinstance(v, (numbers.Real, np.bool_)):
                x.flat[i] = float(v)
            else:
                raise ModalityInputError(
                    MODALITY, f"numbers or missing values in numeric column {name!r}", repr(v)
                )
    if np.isinf(x).any():
        raise ModalityInputError(
            MODALITY,
            f"finite numbers or NaN in numeric column {name!r}",
            f"{int(np.isinf(x).sum())} infinite values",
        )
    return x


def _category_indices(values: Any, column: CategoricalColumn) -> np.ndarray:
    lookup = {c: i + _RESERVED for i, c in enumerate(column.categories)}
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        key = category_key(v)
        out[i] = MISSING_INDEX if key is None else lookup.get(key, UNKNOWN_INDEX)
    return out


def encode_table(config: TabularTokenizerConfig, table: Any) -> dict[str, Tensor]:
    """Rows of a table -> ``{"numeric": [N, n_num] float32 (standardised, NaN = missing), "categorical": [N, n_cat]
    long}`` (the batch form).

    ``table``: a pandas DataFrame or a dict of columns (by name; extra columns are ignored), or a 2-D array whose
    columns are in schema order (numeric, then categorical). Without a schema, a 2-D numeric array is taken as
    it is.
    """
    if not config.has_schema:
        x = _numeric_values(table, "unnamed") if np.ndim(table) == 2 else None
        if x is None or x.shape[1] == 0 or x.shape[1] > config.max_columns:
            raise ModalityInputError(
                MODALITY,
                f"a 2-D numeric array (N, 1..{config.max_columns}) (the config has no schema)",
                describe(table),
            )
        return {
            "numeric": torch.from_numpy(x).float(),
            "categorical": torch.zeros(x.shape[0], 0, dtype=torch.long),
        }
    get = _column_getter(config, table)
    num = [(_numeric_values(get(c.name), c.name) - c.mean) / c.std for c in config.numeric]
    cat = [_category_indices(get(c.name), c) for c in config.categorical]
    n = len(get(config.column_names[0]))
    numeric = torch.from_numpy(np.stack(num, 1)).float() if num else torch.zeros(n, 0)
    categorical = torch.from_numpy(np.stack(cat, 1)) if cat else torch.zeros(n, 0, dtype=torch.long)
    return {"numeric": numeric, "categorical": categorical}


def _column_getter(config: TabularTokenizerConfig, table: Any) -> Callable[[str], np.ndarray]:
    names = config.column_names
    if hasattr(table, "columns") and hasattr(table, "__getitem__") and not isinstance(table, np.ndarray):
        labels = {str(c): c for c in table.columns}
        return _named(names, set(labels), lambda n: table[labels[n]].to_numpy())
    if isinstance(table, Mapping):
        cols = {str(k): np.atleast_1d(np.asarray(v, dtype=object)) for k, v in table.items()}
        return _named(names, set(cols), cols.__getitem__)
    arr = np.asarray(table, dtype=object) if not isinstance(table, np.ndarray) else table
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ModalityInputError(
            MODALITY,
            f"a table with columns {names} (a DataFrame, a dict of columns or an (N, {len(names)}) array)",
            describe(table),
        )
    return lambda n: arr[:, names.index(n)]


def _named(
    names: list[str], available: set[str], get: Callable[[str], np.ndarray]
) -> Callable[[str], np.ndarray]:
    missing = [n for n in names if n not in available]
    if missing:
        raise ModalityInputError(MODALITY, f"columns {names}", f"a table without {missing}")
    return get


# -- tokenizer -----------------------------------------------------------------------------------------------------
class TabularTokenizer(Tokenizer):
    """FT-Transformer feature tokenizer: per-column numeric and categorical embeddings + column identity."""

    name: ClassVar[str] = MODALITY
    config_class: ClassVar[type[TabularTokenizerConfig]] = TabularTokenizerConfig
    input_form: ClassVar[str] = "rows `{numeric: [B, n], categorical: [B, k]}`"

    def __init__(self, config: TabularTokenizerConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        c = self.config
        d = c.embed_dim
        self.num_numeric = len(c.numeric) if c.has_schema else c.max_columns
        self.num_categorical = len(c.categorical)
        bound = d**-0.5  # FT-Transformer's init
        self.numeric_weight = nn.Parameter(torch.empty(self.num_numeric, d).uniform_(-bound, bound))
        self.numeric_bias = nn.Parameter(torch.empty(self.num_numeric, d).uniform_(-bound, bound))
        self.missing_embedding = nn.Parameter(torch.empty(self.num_numeric, d).uniform_(-bound, bound))
        sizes = [col.size for col in c.categorical]
        self.category_embedding = nn.Embedding(max(1, sum(sizes)), d)
        nn.init.uniform_(self.category_embedding.weight, -bound, bound)
        offsets = torch.tensor([0, *sizes[:-1]], dtype=torch.long).cumsum(0)[: len(sizes)]
        self.register_buffer("category_offsets", offsets, persistent=False)
        self.register_buffer("category_sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)
        self.column_embedding = nn.Parameter(torch.empty(self.num_numeric + self.num_categorical, d))
        nn.init.trunc_normal_(self.column_embedding, std=0.02)

    def _expected(self) -> str:
        c = self.config
        if not c.has_schema:
            return f"a dict {{'numeric': (B, 1..{c.max_columns}) float}} (no schema: unnamed numeric columns)"
        return f"a dict {{'numeric': (B, {self.num_numeric}) float, 'categorical': (B, {self.num_categorical}) long}}"

    def validate(self, batch: Any) -> tuple[Tensor, Tensor]:
        """Check a batch; return ``(numeric [B, n_num], categorical [B, n_cat])``."""
        c = self.config
        expected = self._expected()
        if not isinstance(batch, Mapping):
            hint = (
                " (turn a DataFrame into one with tokenizer.encode(df))" if hasattr(batch, "columns") else ""
            )
            raise self.fail(expected + hint, describe(batch))
        unknown = sorted(set(batch) - {"numeric", "categorical"})
        if unknown:
            raise self.fail(expected, f"a dict with keys {sorted(batch)}")
        numeric, categorical = batch.get("numeric"), batch.get("categorical")
        if (
            numeric is None
            and self.num_numeric == 0
            and isinstance(categorical, Tensor)
            and categorical.dim()
        ):
            numeric = torch.zeros(categorical.shape[0], 0, device=categorical.device)
        if numeric is None:
            raise self.fail(expected, f"a dict with keys {sorted(batch)}")
        numeric = check_tensor(numeric, self.modality, "numeric (B, n_num)", 2, finite=False)
        if categorical is None and self.num_categorical == 0:
            categorical = torch.zeros(numeric.shape[0], 0, dtype=torch.long, device=numeric.device)
        if categorical is None:
            raise self.fail(expected, f"a dict with keys {sorted(batch)}")
        categorical = check_tensor(categorical, self.modality, "categorical (B, n_cat)", 2, floating=False)
        if categorical.shape[0] != numeric.shape[0]:
            raise self.fail(
                "numeric and categorical of one batch size",
                f"{numeric.shape[0]} and {categorical.shape[0]} rows",
            )
        width = numeric.shape[1]
        if (c.has_schema and width != self.num_numeric) or (
            not c.has_schema and not 1 <= width <= c.max_columns
        ):
            raise self.fail(expected, f"numeric {describe(numeric)}")
        if categorical.shape[1] != self.num_categorical:
            raise self.fail(expected, f"categorical {describe(categorical)}")
        if bool(torch.isinf(numeric).any()):
            raise self.fail(
                "finite numeric values or NaN (missing)", f"{int(torch.isinf(numeric).sum())} infinite values"
            )
        if self.num_categorical and bool(((categorical < 0) | (categorical >= self.category_sizes)).any()):
            bad = categorical[(categorical < 0) | (categorical >= self.category_sizes)][0]
            sizes_txt = ", ".join(str(s) for s in self.category_sizes.tolist())
            raise self.fail(
                f"category indices in [0, size) per column (sizes {sizes_txt}; 0 = missing, 1 = unknown)",
                f"index {int(bad)}",
            )
        return numeric, categorical

    def forward(self, batch: Mapping[str, Tensor]) -> Tokens:
        numeric, categorical = self.validate(batch)
        n = numeric.shape[1]
        x = numeric.to(self.numeric_weight.dtype)
        missing = torch.isnan(x).unsqueeze(-1)
        x = torch.where(
            missing, torch.zeros_like(x.unsqueeze(-1)), x.unsqueeze(-1)
        )  # no NaN reaches the grads
        num_tokens = x * self.numeric_weight[:n] + self.numeric_bias[:n]
        num_tokens = torch.where(missing, self.missing_embedding[:n].expand_as(num_tokens), num_tokens)
        cat_tokens = self.category_embedding(categorical + self.category_offsets)
        columns = torch.cat([self.column_embedding[:n], self.column_embedding[self.num_numeric :]], dim=0)
        tokens = torch.cat([num_tokens, cat_tokens], dim=1) + columns
        return Tokens.full(tokens, self.modality)

    # -- preprocessing -------------------------------------------------------------------------------------
    def encode(self, table: Any) -> dict[str, Tensor]:
        """A whole table (DataFrame, dict of columns, 2-D array) -> the batch form (see :func:`encode_table`)."""
        return encode_table(self.config, table)

    def preprocess(self, raw: Any) -> dict[str, Tensor]:
        """One row (dict ``{column: value}``, pandas Series, or 1-D array in schema order) ->
        ``{"numeric": [n_num] float, "categorical": [n_cat] long}``."""
        c = self.config
        if hasattr(raw, "index") and hasattr(raw, "to_dict"):  # pandas Series, without importing pandas
            raw = raw.to_dict()
        if isinstance(raw, Mapping):
            if not c.has_schema:
                raise self.fail(
                    "a 1-D array of numbers (the config has no schema, so no column names)", "a dict"
                )
            table: Any = {k: [v] for k, v in raw.items()}
        elif isinstance(raw, (np.ndarray, Tensor, list, tuple)):
            row = raw.detach().cpu().numpy() if isinstance(raw, Tensor) else np.asarray(raw, dtype=object)
            if row.ndim != 1:
                raise self.fail("one row (a dict, a pandas Series or a 1-D array)", describe(raw))
            table = row[None]
        else:
            raise self.fail("one row (a dict, a pandas Series or a 1-D array)", describe(raw))
        out = encode_table(c, table)
        return {k: v[0] for k, v in out.items()}

    def collate(self, samples: Sequence[Any]) -> dict[str, Tensor]:
        """Rows ``{"numeric": [n_num], "categorical": [n_cat]}`` -> ``{"numeric": [B, n_num], …}``."""
        if len(samples) == 0:
            raise self.fail("at least one row to collate", "an empty list")
        if not all(isinstance(s, Mapping) and set(s) == {"numeric", "categorical"} for s in samples):
            raise self.fail(
                "rows {'numeric': (n_num,), 'categorical': (n_cat,)} from preprocess", describe(samples[0])
            )
        try:
            return {k: torch.stack([s[k] for s in samples]) for k in ("numeric", "categorical")}
        except (RuntimeError, TypeError) as exc:
            raise self.fail("rows of one schema", str(exc).splitlines()[0]) from None

    def example_input(
        self, batch_size: int = 2, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        n = self.num_numeric if self.config.has_schema else min(8, self.config.max_columns)
        numeric = torch.randn(batch_size, n, generator=generator)
        if n:
            numeric[0, 0] = float("nan")  # a missing value
        cat = [torch.randint(0, int(s), (batch_size,), generator=generator) for s in self.category_sizes]
        categorical = torch.stack(cat, 1) if cat else torch.zeros(batch_size, 0, dtype=torch.long)
        return {"numeric": numeric, "categorical": categorical}

    def invalid_examples(self) -> list[Any]:
        good = self.example_input(2)
        n = good["numeric"].shape[1]
        bad = [
            {
                "numeric": torch.randn(2, n + 1 if self.config.has_schema else self.config.max_columns + 1),
                "categorical": good["categorical"],
            },
            {"numeric": good["numeric"].long(), "categorical": good["categorical"]},  # dtype
            {"numeric": torch.full((2, n), float("inf")), "categorical": good["categorical"]},
            {"numeric": torch.randn(0, n), "categorical": good["categorical"][:0]},  # empty batch
            {"numeric": torch.randn(2, 3, n), "categorical": good["categorical"]},  # rank
            {"values": good["numeric"]},  # wrong key
            {"numeric": good["numeric"], "categorical": good["categorical"][:1]},  # batch sizes differ
            good["numeric"],  # a bare tensor
        ]
        if self.num_categorical:
            too_big = good["categorical"].clone()
            too_big[0, 0] = int(self.category_sizes[0])
            bad += [
                {"numeric": good["numeric"], "categorical": too_big},
                {"numeric": good["numeric"], "categorical": good["categorical"] - 5},
                {"numeric": good["numeric"], "categorical": good["categorical"].float()},
            ]
        return bad


# -- data sources: scikit-learn's bundled tables ----------------------------------------------------------------------
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


class _Rows(Dataset):
    def __init__(self, batch: dict[str, Tensor], labels: Tensor) -> None:
        self.batch, self.labels = batch, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[dict[str, Tensor], Tensor]:
        return {k: v[i] for k, v in self.batch.items()}, self.labels[i]


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
        return {
            k: _Rows(encode_table(config, x[idx]), torch.from_numpy(y[idx]).long())
            for k, idx in parts.items()
        }

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


@hookimpl
def polymodal_components() -> list[type]:
    return [TabularTokenizer, WineDataSource, BreastCancerDataSource]
