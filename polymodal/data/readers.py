"""Reading what several modalities share: tables (CSV, TSV, JSON lines, Parquet) as pandas DataFrames.

A modality's own files are read by its tokenizer (``Tokenizer.read_file``, declared by its plugin, with the
suffixes in ``Tokenizer.file_extensions``); ``polymodal.data.reader_for(modality)`` gives that reader for a
tokenizer config. Tables are read here because ``from_table`` and several plugins (IMU, time series) take them.
A missing optional package raises :class:`MissingExtraError` (an ``ImportError``) naming the extra to install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polymodal.core.extras import MissingExtraError, require

__all__ = ["TIME_COLUMNS", "MissingExtraError", "read_table"]

PathLike = str | Path
#: Column names taken as time stamps, not channels, when a table holds series.
TIME_COLUMNS = ("time", "timestamp", "t", "date", "datetime")


def read_table(path: PathLike, **kwargs: Any) -> Any:
    """A table as a pandas DataFrame: ``.csv``, ``.tsv``, ``.jsonl`` / ``.json`` (JSON lines), ``.parquet`` (needs
    pyarrow: ``pip install 'polymodal[parquet]'``). ``kwargs`` go to the pandas reader."""
    import pandas as pd

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        require("pyarrow", "parquet", "reading Parquet files")
        return pd.read_parquet(p, **kwargs)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return pd.read_json(p, lines=suffix != ".json", **{"dtype": False, **kwargs})  # values as written
    if suffix == ".tsv":
        return pd.read_csv(p, sep="\t", **kwargs)
    if suffix in (".csv", ".txt"):
        return pd.read_csv(p, **kwargs)
    raise ValueError(f"read_table: expected .csv, .tsv, .jsonl or .parquet, got {p.name}")
