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

A table of the user's (``polymodal.data.from_table(..., "tabular", target=...)``) gives one sample per row
(:meth:`TabularTokenizer.dataset_from_table`), the schema fitted on it (:meth:`TabularTokenizer.config_for_data`).

Data sources ``wine`` (178 wines, 13 chemical measurements, 3 cultivars) and ``breast_cancer`` (569 tumours, 30
cell-nucleus measurements, benign or malignant): real data that scikit-learn ships. The schema is fitted on the
training split; ``tokenizer_config()`` returns it for the model's tokenizer entry. ``missing_rate`` injects NaNs.

Modules: :mod:`.schema` (columns and the config), :mod:`.encoding` (rows -> batch), :mod:`.tokenizer`,
:mod:`.data`.
"""

from __future__ import annotations

from polymodal.plugins.tabular.data import (
    BreastCancerDataSource,
    BreastCancerDataSourceConfig,
    TabularDataSourceConfig,
    WineDataSource,
    WineDataSourceConfig,
)
from polymodal.plugins.tabular.encoding import encode_table
from polymodal.plugins.tabular.schema import (
    MISSING_INDEX,
    MODALITY,
    UNKNOWN_INDEX,
    CategoricalColumn,
    NumericColumn,
    TabularTokenizerConfig,
    category_key,
)
from polymodal.plugins.tabular.tokenizer import TabularTokenizer
from polymodal.registry.hookspecs import hookimpl

__all__ = [
    "MISSING_INDEX",
    "MODALITY",
    "UNKNOWN_INDEX",
    "BreastCancerDataSource",
    "BreastCancerDataSourceConfig",
    "CategoricalColumn",
    "NumericColumn",
    "TabularDataSourceConfig",
    "TabularTokenizer",
    "TabularTokenizerConfig",
    "WineDataSource",
    "WineDataSourceConfig",
    "category_key",
    "encode_table",
    "polymodal_components",
]


@hookimpl
def polymodal_components() -> list[type]:
    return [TabularTokenizer, WineDataSource, BreastCancerDataSource]
