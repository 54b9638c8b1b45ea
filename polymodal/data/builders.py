"""Datasets from the files and tables users already have: ``from_folder`` and ``from_table``.

::

    train = polymodal.data.from_folder("data/pets", "image")                 # data/pets/<class>/*.jpg
    table = polymodal.data.from_table("wines.csv", "tabular", target="cultivar")
    texts = polymodal.data.from_table("reviews.jsonl", "text", columns="review", target="stars")
    shots = polymodal.data.from_table("labels.csv", "xray", columns="file", target="finding")  # paths in a column

Nothing here knows a modality: each tokenizer class declares the files one sample comes in
(``Tokenizer.file_extensions`` and ``Tokenizer.read_file``, through :func:`reader_for`), how a table holds its
samples when a row is not a file path (``Tokenizer.dataset_from_table``) and the settings its data implies
(``Tokenizer.config_for_data``). Files are read lazily (:class:`~polymodal.data.FileDataset`: the reader runs in
``__getitem__``, so in DataLoader workers); unreadable files raise :class:`~polymodal.data.SampleReadError` naming
the path (``on_error="raise"``), or are skipped and counted (``on_error="skip"``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from polymodal.core.tokenizer import TokenizerConfig
from polymodal.data.dataset import (
    FileDataset,
    SampleDataset,
    Task,
    TaskKind,
    explicit_fields,
    sets_field,
    tokenizer_config,
)
from polymodal.data.readers import read_table
from polymodal.registry.lookup import get

__all__ = [
    "column_list",
    "file_tokenizer_config",
    "from_folder",
    "from_table",
    "reader_for",
    "table_targets",
]

OnError = Literal["raise", "skip"]


def reader_for(modality: str | Mapping[str, Any] | Any, **options: Any) -> Callable[[Any], Any]:
    """The reader of one file of ``modality`` (a tokenizer name or config), set up for its tokenizer config (e.g.
    colour or greyscale at full depth for images, ``num_frames`` for video): its tokenizer's ``read_file``, which
    pickles for DataLoader workers. ``options`` go to the reader (e.g. ``columns=[...]``)."""
    config = tokenizer_config(modality)
    cls = get("tokenizer", config.type)
    if not cls.file_extensions:
        # no file form: read_file raises the modality's own explanation without reading anything
        cls.read_file("", config, **options)
    return functools.partial(cls.read_file, config=config, **options)


def file_tokenizer_config(modality: Any, tokenizer: Any = None) -> TokenizerConfig:
    """The tokenizer config of files of ``modality``: :func:`tokenizer_config`, except that image-like files (image,
    infrared, xray, video frames), which come in many sizes, are resized to the tokenizer's ``img_size`` unless
    ``modality`` or ``tokenizer`` sets ``resize`` (``resize=None`` keeps every file's size)."""
    config = tokenizer_config(modality, tokenizer)
    fields = type(config).model_fields
    if "resize" in fields and "img_size" in fields and config.resize is None:
        if not (sets_field(modality, "resize") or sets_field(tokenizer, "resize")):
            config = tokenizer_config(config, {"resize": config.img_size})
    return config


def _folder_items(
    root: Path, extensions: Sequence[str], name: str
) -> tuple[list[Path], list[str], list[str]]:
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: folder {root} does not exist")
    exts = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    paths, labels, classes = [], [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            f
            for f in sub.rglob("*")
            if f.is_file()
            and f.suffix.lower() in exts
            # hidden files and folders (.ipynb_checkpoints copies, ._ resource forks) are not samples
            and not any(part.startswith(".") for part in f.relative_to(sub).parts)
        )
        if files:
            classes.append(sub.name)
            paths += files
            labels += [sub.name] * len(files)
    if not paths:
        loose = sum(1 for f in root.iterdir() if f.is_file() and f.suffix.lower() in exts)
        hint = f" ({loose} files lie directly in it: move them into class folders)" if loose else ""
        raise ValueError(
            f"{name}: expected one sub-folder per class in {root} holding {', '.join(sorted(exts))} files, "
            f"found none{hint}"
        )
    return paths, labels, classes


def from_folder(
    root: str | Path,
    modality: str | Mapping[str, Any],
    *,
    extensions: Sequence[str] | None = None,
    reader: Callable[[Any], Any] | None = None,
    tokenizer: Any = None,
    class_names: Sequence[str] | None = None,
    on_error: OnError = "raise",
    **reader_options: Any,
) -> FileDataset:
    """A classification dataset of files in class folders: ``root/<class>/**/<file>`` (classes in sorted order,
    unless ``class_names`` gives them).

    Args:
        root: the folder holding one sub-folder per class.
        modality: tokenizer name (``"image"``, ``"audio"``, …) or tokenizer config dict.
        extensions: file suffixes to take (default :data:`FOLDER_EXTENSIONS` of the modality).
        reader: ``path -> raw sample``; default :func:`reader_for` the modality, with ``reader_options``.
        tokenizer: tokenizer config or field overrides (e.g. ``{"img_size": 64}``); give the model the same
            (``tokenizers={modality: dataset.tokenizer_config}``). Images and video frames are resized to the
            tokenizer's ``img_size`` unless it sets ``resize`` (:func:`file_tokenizer_config`).
        on_error: ``"raise"`` (an unreadable file raises, naming it) or ``"skip"`` (every file is read once
            now; bad ones are dropped, listed in ``dataset.skipped`` and counted in a warning).
    """
    config = file_tokenizer_config(modality, tokenizer)
    cls = get("tokenizer", config.type)
    if extensions is None:
        if not cls.file_extensions:
            raise ValueError(f"{config.type}: no default file extensions; pass extensions=[...] and reader=...")
        extensions = cls.file_extensions
    read = reader if reader is not None else reader_for(config, **reader_options)
    paths, labels, classes = _folder_items(Path(root), extensions, config.type)
    implied = cls.config_for_data([read(paths[0])], "classification", explicit_fields(modality, tokenizer))
    if implied:
        config = tokenizer_config(config, implied)
    names = list(class_names) if class_names is not None else classes
    return FileDataset(paths, labels, config, read, class_names=names, on_error=on_error)


# -- tables -------------------------------------------------------------------------------------------------------
def column_list(columns: str | Sequence[str] | None) -> list[str] | None:
    """``columns`` as a list (one name -> ``[name]``), or ``None``."""
    return [columns] if isinstance(columns, str) else (list(columns) if columns is not None else None)


def table_targets(frame: Any, target: str | Sequence[str], where: str) -> np.ndarray:
    """The values of the target column (``[N]``) or columns (``[N, K]``); a missing column is an error naming
    ``where`` and the table's columns."""
    names = column_list(target) or []
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise KeyError(
            f"{where}: target column(s) {missing} not in the table; columns: {list(frame.columns)}"
        )
    return frame[names[0]].to_numpy() if isinstance(target, str) else frame[names].to_numpy()


def from_table(
    table: str | Path | Any,
    modality: str | Mapping[str, Any],
    *,
    target: str | Sequence[str] | None = None,
    columns: str | Sequence[str] | None = None,
    root: str | Path | None = None,
    task: TaskKind | Task | None = None,
    class_names: Sequence[str] | None = None,
    tokenizer: Any = None,
    reader: Callable[[Any], Any] | None = None,
    on_error: OnError = "raise",
    **options: Any,
) -> SampleDataset:
    """A dataset from a table (a CSV/TSV/JSONL/Parquet path or a pandas DataFrame).

    ``target`` names the target column (a list of columns: multi-label 0/1 or several regression values); the task
    is inferred from its values unless ``task`` says. How a row holds a sample is the modality's own
    (``Tokenizer.dataset_from_table``, see each modality's page): the row's feature columns (``tabular``, whose
    column schema is then fitted on the table), a text column (``text``), SMILES strings (``graph``), series with
    forecasting windows (``time_series``: ``window=``, ``horizon=``, ``stride=``, ``id_column=``). By default a
    row holds a file path: ``columns`` names that column (default ``"path"``), relative to ``root`` (default the
    table's folder), read lazily as in :func:`from_folder`.

    ``options`` are the modality's table options, or, for a column of file paths, the reader's options.
    """
    import pandas as pd

    base = Path(table).parent if isinstance(table, (str, Path)) else Path(".")
    frame = read_table(table) if isinstance(table, (str, Path)) else table
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"from_table: expected a path or a pandas DataFrame, got {type(table).__name__}")
    if len(frame) == 0:
        raise ValueError("from_table: the table has no rows")
    name = tokenizer_config(modality).type
    cols = column_list(columns)
    dataset = get("tokenizer", name).dataset_from_table(
        frame,
        modality=modality,
        target=target,
        columns=cols,
        tokenizer=tokenizer,
        task=task,
        class_names=class_names,
        on_error=on_error,
        **options,
    )
    if dataset is not None:
        return dataset
    # a column of file paths, read lazily by the modality's reader (options are the reader's)
    if target is None:
        raise ValueError(f"{name}: pass target=<column> (columns: {list(frame.columns)})")
    y = table_targets(frame, target, name)
    single = cols or ["path"]
    if len(single) != 1 or single[0] not in frame.columns:
        raise KeyError(
            f"{name}: expected one column of file paths, got {single}; columns: {list(frame.columns)}"
        )
    config = file_tokenizer_config(modality, tokenizer)
    folder = Path(root) if root is not None else base
    paths = [Path(v) if Path(v).is_absolute() else folder / v for v in map(str, frame[single[0]].tolist())]
    read = reader if reader is not None else reader_for(config, **options)
    return FileDataset(paths, y, config, read, on_error=on_error, task=task, class_names=class_names)
