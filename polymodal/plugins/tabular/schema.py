"""The tabular tokenizer's schema: numeric and categorical columns, fitted on training data, as plain JSON.

FT-Transformer (Gorishniy et al., arXiv 2106.11959) tokenizes a table by column: the schema says which columns
there are, in token order (numeric ones first), the training mean and std each numeric column is standardised
with, and each categorical column's vocabulary. :class:`TabularTokenizerConfig` holds it (it travels with the model
config); fit it with ``from_dataframe(df)`` (pandas, ``[N, F]``) or ``from_arrays(numeric [N, n_num],
categorical [N, n_cat])``. Categorical values are compared by :func:`category_key` (integral floats as integers:
``2.0`` is ``"2"``); index ``0`` = missing, ``1`` = unknown, ``2 + i`` = ``categories[i]``.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from polymodal.core.component import ModalityInputError
from polymodal.core.tokenizer import TokenizerConfig

__all__ = [
    "MISSING_INDEX",
    "MODALITY",
    "UNKNOWN_INDEX",
    "CategoricalColumn",
    "NumericColumn",
    "TabularTokenizerConfig",
    "category_key",
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
