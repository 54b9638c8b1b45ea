"""The tabular tokenizer: one token per column, as FT-Transformer (Gorishniy et al., arXiv 2106.11959).

Input: ``{"numeric": [B, n_num] float (NaN = missing), "categorical": [B, n_cat] long}`` (from
:func:`~polymodal.plugins.tabular.encoding.encode_table` or ``preprocess`` + ``collate``); tokens: ``[B, n_num +
n_cat, D]``, all real. Numeric column ``j`` gives ``x * w_j + b_j`` (a learned per-column missing-value embedding
where ``x`` is NaN); categorical column ``j`` looks its index up in its own embedding table; every token adds a
learned column-identity embedding. The class also says how a table of the user's becomes a dataset
(:meth:`TabularTokenizer.dataset_from_table`) and fits the schema on data (:meth:`TabularTokenizer.config_for_data`).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, check_tensor, check_values, describe
from polymodal.core.tokens import Tokens
from polymodal.plugins.tabular.encoding import encode_table
from polymodal.plugins.tabular.schema import MODALITY, TabularTokenizerConfig

__all__ = ["TabularTokenizer"]


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
        check_values(
            ~torch.isinf(numeric),
            self.modality,
            "finite numeric values or NaN (missing)",
            got=lambda: f"{int(torch.isinf(numeric).sum())} infinite values",
        )
        if self.num_categorical:
            sizes_txt = ", ".join(str(s) for s in self.category_sizes.tolist())
            outside = (categorical < 0) | (categorical >= self.category_sizes)
            check_values(
                ~outside,
                self.modality,
                f"category indices in [0, size) per column (sizes {sizes_txt}; 0 = missing, 1 = unknown)",
                got=lambda: f"index {int(categorical[outside][0])}",
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
            unknown = sorted(str(k) for k in set(raw) - set(c.column_names))
            if unknown:  # dropped (a target or id column in a row is common), but never silently
                warnings.warn(
                    f"tabular: the schema has no column {', '.join(map(repr, unknown))}; its values are dropped "
                    f"(schema columns: {', '.join(c.column_names)})",
                    UserWarning,
                    stacklevel=2,
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

    # -- the user's tables and arrays (class-level) -------------------------------------------------------
    @classmethod
    def read_file(cls, path: str | Path, config: TokenizerConfig, **options: Any) -> Any:
        """Tables have no one-file-per-sample form: the rows of one table are the samples (``from_table``)."""
        raise ValueError(
            f"{cls.modality}: no file reader for this modality; pass reader=<path -> raw sample>; "
            "tables go through from_table"
        )

    @classmethod
    def dataset_from_table(
        cls,
        frame: Any,
        *,
        modality: Any,
        target: str | Sequence[str] | None,
        columns: list[str] | None,
        tokenizer: Any,
        **options: Any,
    ) -> Any:
        """An ``ArrayDataset`` of the rows of ``frame``: the feature columns ``columns`` (default every column but
        the target) of each row, labelled by ``target`` (required); the schema is fitted on those columns unless
        ``tokenizer`` gives fields (:meth:`config_for_data`). ``options``: ``task`` and ``class_names``."""
        from polymodal.data import ArrayDataset, column_list, table_targets

        if target is None:
            raise ValueError(f"{cls.name}: pass target=<column> (columns: {list(frame.columns)})")
        features = columns or [c for c in frame.columns if c not in (column_list(target) or [])]
        y = table_targets(frame, target, cls.name)
        return ArrayDataset(
            modality,
            frame[features].reset_index(drop=True),
            y,
            tokenizer=tokenizer,
            task=options.get("task"),
            class_names=options.get("class_names"),
        )

    @classmethod
    def config_for_data(cls, data: Any, task: str, explicit: Collection[str]) -> dict[str, Any]:
        """The column schema fitted on the samples, when the user set no tokenizer field (``explicit`` empty):
        ``from_dataframe`` for a pandas DataFrame of rows, ``from_arrays(numeric=...)`` for a 2-D numeric array or
        tensor ``[N, F]``; nothing for other data. The fields other than ``type`` and ``embed_dim``."""
        if explicit:
            return {}
        fitted = None
        if hasattr(data, "columns"):
            fitted = cls.config_class.from_dataframe(data)
        else:
            arr = data.detach().cpu().numpy() if isinstance(data, Tensor) else data
            if isinstance(arr, np.ndarray) and arr.ndim == 2 and arr.dtype.kind in "biuf":
                fitted = cls.config_class.from_arrays(numeric=arr)
        return {} if fitted is None else fitted.model_dump(exclude=set(TokenizerConfig.model_fields))
