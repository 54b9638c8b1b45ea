"""The user's own data: arrays and files of any modality as datasets, splits and a summary.

- In memory: ``ArrayDataset(modality, inputs, targets)`` (arrays, tensors, lists, a DataFrame), checked when made.
- Files: ``from_folder(root, modality)`` (one sub-folder per class), ``from_table(path, modality, target=...)``
  (CSV/TSV/JSONL/Parquet: tabular rows, texts, time series, SMILES or file paths), ``from_graphs`` (PyG graphs),
  ``from_smiles``; each gives a :class:`FileDataset` or :class:`ArrayDataset`. The readers (``read_image``,
  ``read_audio`` …, ``reader_for(modality)``) turn one file into the raw sample a tokenizer takes; a missing
  optional package raises :class:`MissingExtraError` naming the ``polymodal[extra]`` to install.
- ``stratified_split`` splits a dataset into train and validation; ``summarize`` describes one (printed by
  :func:`polymodal.fit` before training).

Items are ``(sample, target)`` for a tokenizer's ``collate``.
"""

from __future__ import annotations

from polymodal.data.builders import from_folder, from_graphs, from_smiles, from_table, reader_for
from polymodal.data.dataset import (
    ArrayDataset,
    FileDataset,
    SampleDataset,
    SampleInputError,
    SampleReadError,
    Task,
    infer_task,
)
from polymodal.data.readers import (
    MissingExtraError,
    read_audio,
    read_cube,
    read_image,
    read_imu,
    read_points,
    read_series,
    read_table,
    read_text,
    read_video,
    smiles_to_graph,
)
from polymodal.data.split import stratified_split
from polymodal.data.summary import DatasetSummary, summarize

__all__ = [
    "ArrayDataset",
    "DatasetSummary",
    "FileDataset",
    "MissingExtraError",
    "SampleDataset",
    "SampleInputError",
    "SampleReadError",
    "Task",
    "from_folder",
    "from_graphs",
    "from_smiles",
    "from_table",
    "infer_task",
    "read_audio",
    "read_cube",
    "read_image",
    "read_imu",
    "read_points",
    "read_series",
    "read_table",
    "read_text",
    "read_video",
    "reader_for",
    "smiles_to_graph",
    "stratified_split",
    "summarize",
]
