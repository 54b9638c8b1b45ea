"""The user's own data: arrays and files of any modality as datasets, splits and a summary.

- In memory: ``ArrayDataset(modality, inputs, targets)`` (arrays, tensors, lists, a DataFrame), checked when made.
- Files: ``from_folder(root, modality)`` (one sub-folder per class), ``from_table(path, modality, target=...)``
  (CSV/TSV/JSONL/Parquet: file paths, or rows in the modality's own form: table rows, texts, series, SMILES);
  each gives a :class:`FileDataset` or :class:`ArrayDataset`. ``reader_for(modality)`` is the modality's reader of
  one file (its tokenizer's ``read_file``); a missing optional package raises :class:`MissingExtraError` naming
  the ``polymodal[extra]`` to install. Modality-specific builders live in their plugins (e.g.
  ``polymodal.plugins.graph.from_smiles``).
- Data too large for memory or one disk listing: ``write_shards(dataset, folder)`` writes tar shards (webdataset's
  layout), ``StreamingDataset(folder)`` reads them as a stream split across processes and DataLoader workers, and
  ``StreamLoader`` iterates it resumably (:mod:`polymodal.data.streaming`).
- ``stratified_split`` splits a dataset into train and validation; ``summarize`` describes one (printed by
  :func:`polymodal.fit` before training).

Items are ``(sample, target)`` for a tokenizer's ``collate``.
"""

from __future__ import annotations

from polymodal.data.builders import column_list, from_folder, from_table, reader_for, table_targets
from polymodal.data.dataset import (
    ArrayDataset,
    FileDataset,
    SampleDataset,
    SampleInputError,
    SampleReadError,
    Task,
    infer_task,
)
from polymodal.data.readers import MissingExtraError, read_table
from polymodal.data.split import stratified_split
from polymodal.data.streaming import (
    MapStream,
    ResumableStream,
    ShardReadError,
    StreamingDataset,
    StreamLoader,
    write_shards,
)
from polymodal.data.summary import DatasetSummary, summarize

__all__ = [
    "ArrayDataset",
    "DatasetSummary",
    "FileDataset",
    "MapStream",
    "MissingExtraError",
    "ResumableStream",
    "SampleDataset",
    "SampleInputError",
    "SampleReadError",
    "ShardReadError",
    "StreamLoader",
    "StreamingDataset",
    "Task",
    "column_list",
    "from_folder",
    "from_table",
    "infer_task",
    "read_table",
    "reader_for",
    "stratified_split",
    "summarize",
    "table_targets",
    "write_shards",
]
