"""Time-series files: a CSV, TSV or Parquet table with one column per channel (time-like columns left out), or a
``.npy`` array.

Shapes: one file -> one series ``(C, L)`` float32 numpy array (a ``.npy`` ``(L,)`` becomes ``(1, L)``), the raw form
:meth:`TimeSeriesTokenizer.preprocess <polymodal.plugins.time_series.TimeSeriesTokenizer.preprocess>` takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polymodal.plugins._sequence import numeric_columns

__all__ = ["SERIES_EXTENSIONS", "read_series"]

#: Suffixes of the series files ``polymodal.data.from_folder`` takes by default.
SERIES_EXTENSIONS = (".csv", ".tsv", ".parquet", ".npy")


def read_series(path: str | Path, columns: Sequence[str] | None = None) -> np.ndarray:
    """One time series ``(C, L)`` float32: a CSV/TSV/Parquet with one column per channel (``columns``; default
    every numeric column except time-like ones: time, timestamp, t, date) or a ``.npy`` ``(C, L)`` / ``(L,)``."""
    from polymodal.data.readers import TIME_COLUMNS, read_table

    p = Path(path)
    if p.suffix.lower() == ".npy":
        arr = np.load(p, allow_pickle=False).astype(np.float32)
        if arr.ndim not in (1, 2) or arr.size == 0:
            raise ValueError(f"{p.name}: expected a series (C, L) or (L,), got shape {arr.shape}")
        return arr.reshape(-1, arr.shape[-1])
    return numeric_columns(read_table(p), columns, TIME_COLUMNS, p.name)
