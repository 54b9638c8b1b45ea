"""Non-learned encoding of table rows into the tabular tokenizer's batch form (CPU, DataLoader workers).

:func:`encode_table` turns rows (a pandas DataFrame, a dict of columns, or a 2-D array in schema order) into
``{"numeric": [N, n_num] float32, "categorical": [N, n_cat] long}``: numeric values standardised with the
schema's statistics (NaN marks a missing value), categories as indices (``0`` missing, ``1`` unknown, ``2 + i``
= ``categories[i]``), as FT-Transformer (Gorishniy et al., arXiv 2106.11959) takes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.core.component import ModalityInputError
from polymodal.core.tokenizer import describe
from polymodal.plugins.tabular.schema import (
    _RESERVED,
    MISSING_INDEX,
    MODALITY,
    UNKNOWN_INDEX,
    CategoricalColumn,
    TabularTokenizerConfig,
    _numeric_values,
    category_key,
)

__all__ = ["encode_table"]


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
