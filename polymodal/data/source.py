"""The ``files`` data source: the user's own files or table as a data source of a config file.

A config file trains on a folder of class sub-folders or on a table with a stream such as::

    tokenizers = dict(image=dict(type="image", img_size=64, patch_size=16, resize=64))
    streams = dict(image=dict(source=dict(type="files", modality="image", root="data/pets",
                                          tokenizer=tokenizers["image"])))
    model = dict(type="MultimodalModel", encoder=..., tokenizers=tokenizers,
                 heads=dict(image=dict(type="classification", num_classes=37)))

``splits()`` gives ``{"train": …, "test": …}``: the files of ``root`` (:func:`~polymodal.data.from_folder`) or
the rows of ``table`` (:func:`~polymodal.data.from_table`), and for ``"test"`` those of ``val_root`` /
``val_table`` when given, else a stratified ``val_fraction`` of them (:func:`~polymodal.data.stratified_split`).
The data source's tokenizer config (``tokenizer``, default the modality's defaults) must be the model's tokenizer
of that input (apart from ``embed_dim``); :class:`~polymodal.train.multitask.MultiTaskDataset` checks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor
from torch.utils.data import Dataset

from polymodal.core.source import DataSource, DataSourceConfig
from polymodal.data.builders import from_folder, from_table
from polymodal.data.dataset import SampleDataset
from polymodal.data.split import stratified_split

__all__ = ["FilesDataSource", "FilesDataSourceConfig"]


class FilesDataSourceConfig(DataSourceConfig):
    type: str = "files"
    modality: str = Field(..., description="Tokenizer name of the files (image, audio, tabular, …).")
    root: str | None = Field(None, description="Folder with one sub-folder of files per class (from_folder).")
    table: str | None = Field(
        None, description="CSV/TSV/JSONL/Parquet table (from_table); or root, not both."
    )
    target: str | list[str] | None = Field(None, description="Target column(s) of the table.")
    columns: str | list[str] | None = Field(
        None, description="Table columns a sample is made of (features, text, channels or file paths)."
    )
    val_root: str | None = Field(
        None, description="Validation folder (same classes); default: a split of root."
    )
    val_table: str | None = Field(None, description="Validation table; default: a split of table.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share held out for validation without val_*.")
    tokenizer: dict[str, Any] | None = Field(
        None, description="Tokenizer config (or field overrides) that preprocesses the samples; the model's."
    )
    extensions: list[str] | None = Field(None, description="File suffixes of root (default: the modality's).")
    on_error: Literal["raise", "skip"] = Field(
        "raise", description="Unreadable files: raise, or skip and count."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="More from_folder / from_table arguments (reader options such as columns for IMU; window, "
        "horizon, id_column for time series).",
    )
    num_train: int = Field(512, gt=0, description="Not used: the files decide the size.")
    num_test: int = Field(256, gt=0, description="Not used: the files decide the size.")
    seed: int = Field(0, description="Seed of the validation split.")

    @model_validator(mode="after")
    def _one_place(self) -> FilesDataSourceConfig:
        if (self.root is None) == (self.table is None):
            raise ValueError(
                "files: give exactly one of root (a folder of class folders) or table (a CSV, …)"
            )
        if (self.val_root is not None and self.root is None) or (
            self.val_table is not None and self.table is None
        ):
            raise ValueError("files: val_root goes with root, val_table with table")
        return self


class FilesDataSource(DataSource):
    """The user's own files (a folder of class folders) or table, with a validation split."""

    name: ClassVar[str] = "files"
    modality: ClassVar[str] = ""  # per instance: the config's modality
    config_class: ClassVar[type[FilesDataSourceConfig]] = FilesDataSourceConfig

    def __init__(self, config: FilesDataSourceConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.modality = self.config.modality  # type: ignore[misc]
        self._splits: dict[str, SampleDataset] | None = None

    def _build(self, place: str, class_names: Sequence[str] | None = None) -> SampleDataset:
        c = self.config
        common: dict[str, Any] = {"tokenizer": c.tokenizer, "on_error": c.on_error, **c.options}
        if class_names is not None:
            common["class_names"] = class_names
        if c.root is not None:
            return from_folder(place, c.modality, extensions=c.extensions, **common)
        return from_table(place, c.modality, target=c.target, columns=c.columns, **common)

    def splits(self) -> dict[str, Dataset]:
        if self._splits is None:
            c = self.config
            data = self._build(c.root or c.table)  # type: ignore[arg-type]
            val_place = c.val_root or c.val_table
            if val_place is not None:
                val = self._build(val_place, data.class_names)
            else:
                data, val = stratified_split(data, c.val_fraction, c.seed)
            self._splits = {"train": data, "test": val}
        return dict(self._splits)

    def tokenizer_config(self) -> dict[str, Any]:
        """The model's tokenizer entry for these files: the config the samples are preprocessed with (without
        ``embed_dim``; e.g. with ``resize`` set for images, see :func:`~polymodal.data.builders.file_tokenizer_config`)."""
        return self.splits()["train"].tokenizer_config  # type: ignore[attr-defined]

    def collate_targets(self, targets: Sequence[Any]) -> Tensor:
        return self.splits()["train"].collate_targets(targets)  # type: ignore[attr-defined]

    def task(self) -> dict[str, Any]:
        return self.splits()["train"].head_config()  # type: ignore[attr-defined]

    def baseline(self) -> float:
        """Chance level of the main metric on the test split: accuracy of the training majority class, micro-F1
        of predicting every label (multi-label), or MSE of predicting the training mean (regression, forecasting)."""
        train, test = self.splits()["train"], self.splits()["test"]
        kind = train.task.kind  # type: ignore[attr-defined]
        y_train, y_test = train.targets, test.targets  # type: ignore[attr-defined]
        if kind == "classification":
            majority = torch.bincount(y_train).argmax()
            return float((y_test == majority).float().mean())
        if kind == "multilabel":
            p = float(y_test.float().mean())
            return 2 * p / (1 + p)
        return float(((y_test.float() - y_train.float().mean(0)) ** 2).mean())
