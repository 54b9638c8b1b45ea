"""Datasets from the files and tables users already have: ``from_folder``, ``from_table``, ``from_graphs``,
``from_smiles``.

::

    train = polymodal.data.from_folder("data/pets", "image")                 # data/pets/<class>/*.jpg
    table = polymodal.data.from_table("wines.csv", "tabular", target="cultivar")
    texts = polymodal.data.from_table("reviews.jsonl", "text", columns="review", target="stars")
    shots = polymodal.data.from_table("labels.csv", "xray", columns="file", target="finding")  # paths in a column

Files are read lazily (:class:`~polymodal.data.FileDataset`: the reader runs in ``__getitem__``, so in DataLoader
workers) by the reader of the modality (:func:`reader_for`, from :mod:`polymodal.data.readers`); tables, texts,
graphs and SMILES are small enough to hold in memory (:class:`~polymodal.data.ArrayDataset`, checked when made).
Unreadable files raise :class:`~polymodal.data.SampleReadError` naming the path (``on_error="raise"``), or are
skipped and counted (``on_error="skip"``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from polymodal.core.tokenizer import TokenizerConfig
from polymodal.data.dataset import (
    ArrayDataset,
    FileDataset,
    SampleDataset,
    Task,
    TaskKind,
    series_tokenizer,
    sets_field,
    tokenizer_config,
)
from polymodal.data.readers import (
    TIME_COLUMNS,
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

__all__ = [
    "FOLDER_EXTENSIONS",
    "file_tokenizer_config",
    "from_folder",
    "from_graphs",
    "from_smiles",
    "from_table",
    "reader_for",
]

_IMAGES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
FOLDER_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image": _IMAGES,
    "infrared": _IMAGES,
    "xray": _IMAGES,
    "hyperspectral": (".npy", ".npz", ".mat"),
    "audio": (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif"),
    "video": (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"),
    "point_cloud": (".ply", ".xyz", ".pts", ".txt", ".npy", ".obj", ".off", ".stl"),
    "text": (".txt",),
    "imu": (".csv", ".tsv", ".parquet"),
    "time_series": (".csv", ".tsv", ".parquet", ".npy"),
}
OnError = Literal["raise", "skip"]


def reader_for(modality: str | Mapping[str, Any] | Any, **options: Any) -> Callable[[Any], Any]:
    """The reader of one file of ``modality`` (a tokenizer name or config), set up for its tokenizer config:
    colour or greyscale at full depth for images, ``num_frames`` for video, features for point clouds with
    ``in_features``. ``options`` go to the reader (e.g. ``columns=[...]``, ``time_column="t"`` for IMU)."""
    config = tokenizer_config(modality)
    name = config.type
    if name == "image":
        mode = {3: "rgb", 1: "gray"}.get(config.in_chans)
        return functools.partial(read_image, **{"mode": mode, **options})
    if name in ("infrared", "xray"):
        return functools.partial(read_image, **{"mode": "gray" if config.in_chans == 1 else "rgb", **options})
    if name == "video":
        return functools.partial(read_video, **{"num_frames": config.num_frames, **options})
    if name == "point_cloud":
        return functools.partial(
            read_points, **{"features": "all" if config.in_features else None, **options}
        )
    simple: dict[str, Callable[..., Any]] = {
        "hyperspectral": read_cube,
        "audio": read_audio,
        "text": read_text,
        "imu": read_imu,
        "time_series": read_series,
    }
    if name not in simple:
        raise ValueError(
            f"{name}: no file reader for this modality (readers: {', '.join(sorted(FOLDER_EXTENSIONS))}); pass "
            "reader=<path -> raw sample>"
            + ("; tables go through from_table" if name == "tabular" else "")
            + ("; graphs through from_graphs or from_smiles" if name == "graph" else "")
        )
    return functools.partial(simple[name], **options) if options else simple[name]


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
    name = config.type
    if extensions is None:
        if name not in FOLDER_EXTENSIONS:
            raise ValueError(f"{name}: no default file extensions; pass extensions=[...] and reader=...")
        extensions = FOLDER_EXTENSIONS[name]
    read = reader if reader is not None else reader_for(config, **reader_options)
    paths, labels, classes = _folder_items(Path(root), extensions, name)
    if name == "time_series":
        config = tokenizer_config(config, series_tokenizer(read(paths[0]), tokenizer))
    names = list(class_names) if class_names is not None else classes
    return FileDataset(paths, labels, config, read, class_names=names, on_error=on_error)


# -- tables -------------------------------------------------------------------------------------------------------
def _column_list(columns: str | Sequence[str] | None) -> list[str] | None:
    return [columns] if isinstance(columns, str) else (list(columns) if columns is not None else None)


def _targets(frame: Any, target: str | Sequence[str], where: str) -> np.ndarray:
    names = _column_list(target) or []
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise KeyError(
            f"{where}: target column(s) {missing} not in the table; columns: {list(frame.columns)}"
        )
    return frame[names[0]].to_numpy() if isinstance(target, str) else frame[names].to_numpy()


def _series_table(
    frame: Any,
    config: Any,
    target: str | Sequence[str] | None,
    columns: list[str] | None,
    window: int | None,
    horizon: int | None,
    stride: int,
    id_column: str | None,
    tokenizer: Any,
    kwargs: dict[str, Any],
) -> ArrayDataset:
    """Time series from one table: forecasting windows, long format (``id_column``) or one series per row."""
    skip = set(TIME_COLUMNS) | ({id_column} if id_column else set())
    targets = _column_list(target)
    if horizon is not None and targets is not None:
        # the forecasting head predicts every channel it reads (PatchTST), so the channels are the forecast ones
        if columns is not None and columns != targets:
            raise ValueError(
                f"time_series: forecasting predicts every input channel; columns {columns} and target {targets} "
                "differ (give one of them, or the same list to both)"
            )
        _targets(frame, targets, "time_series")  # names a missing column
        columns = targets
    if horizon is None:  # a label column is no channel
        skip |= set(targets or [])
    if columns is None:
        columns = [c for c in frame.select_dtypes("number").columns if str(c).lower() not in skip]
    values = frame[columns].to_numpy(dtype=np.float32)
    if horizon is not None:  # forecasting: sliding windows (views) over the whole table
        if window is None:
            raise ValueError("time_series: forecasting windows need window= (context steps) and horizon=")
        span = len(values) - window - horizon + 1
        if span < 1:
            raise ValueError(
                f"time_series: {len(values)} rows are fewer than window + horizon = {window + horizon}"
            )
        starts = np.arange(0, span, stride)
        inputs = np.lib.stride_tricks.sliding_window_view(values.T, window, axis=1)[:, starts].transpose(
            1, 0, 2
        )
        future = np.lib.stride_tricks.sliding_window_view(values.T, horizon, axis=1)[:, starts + window]
        return ArrayDataset(
            config, inputs, future.transpose(1, 0, 2).copy(), **{"task": "forecasting", **kwargs}
        )
    if target is None:
        raise ValueError("time_series: pass target= (a column), or window= and horizon= to forecast")
    if id_column is not None:  # long format: the rows of one id make one series, its target is constant
        ids = frame[id_column].to_numpy()
        order, first = np.unique(ids, return_index=True)
        order = order[np.argsort(first)]
        y = _targets(frame, target, "time_series")
        inputs, targets = [], []
        for key in order:
            rows = np.flatnonzero(ids == key)
            inputs.append(values[rows].T.copy())
            if len({str(v) for v in np.asarray(y[rows]).reshape(len(rows), -1).tolist()}) != 1:
                raise ValueError(f"time_series: series {key!r} has several target values in {target!r}")
            targets.append(y[rows[0]])
        config = tokenizer_config(config, series_tokenizer(inputs[0], tokenizer))
        return ArrayDataset(config, inputs, np.asarray(targets), **kwargs)
    return ArrayDataset(config, values[:, None, :], _targets(frame, target, "time_series"), **kwargs)


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
    window: int | None = None,
    horizon: int | None = None,
    stride: int = 1,
    id_column: str | None = None,
    **reader_options: Any,
) -> SampleDataset:
    """A dataset from a table (a CSV/TSV/JSONL/Parquet path or a pandas DataFrame).

    ``target`` names the target column (a list of columns: multi-label 0/1 or several regression values); the task
    is inferred from its values unless ``task`` says. ``columns`` picks what a sample is made of:

    - ``tabular``: the feature columns (default all but the target); the tokenizer's schema (numeric and
      categorical columns, their statistics) is inferred from the table unless ``tokenizer`` gives one.
    - ``text``: the text column (default ``"text"``).
    - ``time_series``: the channels (default every numeric column but time-like ones, ``id_column`` and the
      target). With ``window`` and ``horizon``: forecasting, windows of ``window`` steps every ``stride`` rows,
      each predicting the next ``horizon`` rows of the same channels (the forecasting head predicts every channel
      it reads): ``target`` (or ``columns``) names them, default every numeric column but time-like ones. With ``id_column``: long
      format, the rows of one id form one series, labelled by its (constant) ``target``. Otherwise every row is
      one single-channel series over ``columns`` (UCR style).
    - ``graph``: the column of SMILES strings (default ``"smiles"``), see :func:`from_smiles`.
    - file modalities (image, audio, video, point_cloud, …): the column of file paths (default ``"path"``),
      relative to ``root`` (default: the table's folder), read lazily as in :func:`from_folder`.
    """
    import pandas as pd

    base = Path(table).parent if isinstance(table, (str, Path)) else Path(".")
    frame = read_table(table) if isinstance(table, (str, Path)) else table
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"from_table: expected a path or a pandas DataFrame, got {type(table).__name__}")
    if len(frame) == 0:
        raise ValueError("from_table: the table has no rows")
    name = tokenizer_config(modality).type
    cols = _column_list(columns)
    kwargs: dict[str, Any] = {"task": task, "class_names": class_names}
    if name == "tabular":  # the schema is fitted on the table (ArrayDataset) unless tokenizer gives one
        if target is None:
            raise ValueError(f"tabular: pass target=<column> (columns: {list(frame.columns)})")
        features = cols or [c for c in frame.columns if c not in (_column_list(target) or [])]
        y = _targets(frame, target, name)
        return ArrayDataset(
            modality, frame[features].reset_index(drop=True), y, tokenizer=tokenizer, **kwargs
        )
    config = tokenizer_config(modality, tokenizer)
    if name == "time_series":
        return _series_table(
            frame, config, target, cols, window, horizon, stride, id_column, tokenizer, kwargs
        )
    if target is None:
        raise ValueError(f"{name}: pass target=<column> (columns: {list(frame.columns)})")
    y = _targets(frame, target, name)
    single = cols or [{"text": "text", "graph": "smiles"}.get(name, "path")]
    if len(single) != 1 or single[0] not in frame.columns:
        raise KeyError(
            f"{name}: expected one column of samples, got {single}; columns: {list(frame.columns)}"
        )
    values = frame[single[0]].tolist()
    if name == "text":
        return ArrayDataset(config, [str(v) for v in values], y, **kwargs)
    if name == "graph":
        return from_smiles(values, y, tokenizer=tokenizer, on_error=on_error, **kwargs)
    config = file_tokenizer_config(modality, tokenizer)
    folder = Path(root) if root is not None else base
    paths = [Path(v) if Path(v).is_absolute() else folder / v for v in map(str, values)]
    read = reader if reader is not None else reader_for(config, **reader_options)
    return FileDataset(paths, y, config, read, on_error=on_error, **kwargs)


# -- graphs -------------------------------------------------------------------------------------------------------
def _graph_tokenizer(first: Any, tokenizer: Any) -> dict[str, Any]:
    """Graph tokenizer fields fitted on a graph (node and edge feature sizes), under ``tokenizer``'s."""
    fitted: dict[str, Any] = {
        "in_channels": int(first.x.shape[1]) if getattr(first, "x", None) is not None else 0,
        "edge_dim": int(first.edge_attr.shape[1]) if getattr(first, "edge_attr", None) is not None else 0,
    }
    if isinstance(tokenizer, Mapping):
        return {**fitted, **tokenizer}
    return fitted if tokenizer is None else tokenizer


def from_graphs(
    graphs: Sequence[Any],
    targets: Any = None,
    *,
    task: TaskKind | Task | None = None,
    class_names: Sequence[str] | None = None,
    tokenizer: Any = None,
) -> ArrayDataset:
    """A graph dataset from PyG graphs: a list of ``Data`` or a PyG dataset (e.g. ``TUDataset``), with
    ``targets`` or, by default, each graph's ``y`` (one value per graph). The tokenizer's ``in_channels`` and
    ``edge_dim`` are taken from the first graph's ``x`` and ``edge_attr`` unless ``tokenizer`` sets them."""
    graphs = [graphs[i] for i in range(len(graphs))]
    if not graphs:
        raise ValueError("graph: expected at least one graph, got none")
    if targets is None:
        ys = [getattr(g, "y", None) for g in graphs]
        if any(y is None for y in ys):
            raise ValueError("graph: pass targets=..., or give every graph a 'y'")
        flat = [torch.as_tensor(y).reshape(-1) for y in ys]
        targets = torch.stack(flat) if flat[0].numel() > 1 else torch.cat(flat)
    for (
        g
    ) in graphs:  # node features as float, what the tokenizer takes (PyG datasets often hold them as long)
        if getattr(g, "x", None) is not None and not g.x.is_floating_point():
            g.x = g.x.float()
        if getattr(g, "edge_attr", None) is not None and not g.edge_attr.is_floating_point():
            g.edge_attr = g.edge_attr.float()
    config = tokenizer_config("graph", _graph_tokenizer(graphs[0], tokenizer))
    return ArrayDataset(config, graphs, targets, task=task, class_names=class_names)


def from_smiles(
    smiles: Sequence[str],
    targets: Any,
    *,
    task: TaskKind | Task | None = None,
    class_names: Sequence[str] | None = None,
    tokenizer: Any = None,
    on_error: OnError = "raise",
) -> FileDataset:
    """A molecule dataset from SMILES strings (RDKit: ``pip install 'polymodal[chem]'``), each turned into a graph
    by PyG's ``from_smiles`` when read (9 atom and 3 bond features). An invalid SMILES raises, naming it, or with
    ``on_error="skip"`` is dropped and counted, like an unreadable file."""
    smiles = [str(s) for s in smiles]
    if not smiles:
        raise ValueError("graph: expected at least one SMILES string, got none")
    first = None
    for s in smiles:  # the first valid molecule gives the feature sizes
        try:
            first = smiles_to_graph(s)
            break
        except ValueError:
            continue
    config = tokenizer_config("graph", _graph_tokenizer(first, tokenizer) if first is not None else tokenizer)
    return FileDataset(
        smiles, targets, config, smiles_to_graph, task=task, class_names=class_names, on_error=on_error
    )
