"""Sharded streams: datasets read from tar shards one sample after another, split exactly across processes and
DataLoader workers, and resumable mid-epoch.

The shards are webdataset's layout (github.com/webdataset/webdataset): plain, uncompressed POSIX tar files whose
members ``<key>.<field>`` are grouped into samples by key (the name up to the first dot of its base name), e.g.
``000000017.sample.npy`` and ``000000017.target.cls``. Any tar tool lists them, ``webdataset.WebDataset`` reads the
ones we write, and we read ones webdataset (or any other tool) wrote. Writing uses the standard library's
:mod:`tarfile`, reading a small reader of tar headers; webdataset itself is not needed (see ``docs/data.md`` for why this format and not Hugging
Face ``datasets`` streaming, litdata or mosaicml-streaming).

- :func:`write_shards` turns a dataset (``ArrayDataset``, ``FileDataset``, a split of one, or any dataset of
  ``(sample, target)`` items with a ``tokenizer_config``) into shards of ``samples_per_shard`` samples, plus
  ``index.json`` (modality, tokenizer config, task, samples per shard) and ``targets.npy`` (the targets, read
  memory-mapped). Samples are stored as the tokenizer's ``preprocess`` takes them (raw) when the dataset has that
  form, else in the per-sample form it gives.
- :class:`StreamingDataset` reads them (or shards without an index, given their modality: they are scanned once):
  an :class:`~torch.utils.data.IterableDataset` of ``(sample, target)`` whose epoch is one fixed sequence of the
  shards (shuffled per epoch with ``shuffle=True``: shard order and the samples within each shard, from
  ``seed + epoch``). Each process takes a contiguous range of that sequence and each of its DataLoader workers a
  contiguous part of that range, so no sample is lost or repeated, whatever the number of processes and workers;
  ``drop_last=True`` gives every process the same number of samples (at most ``world - 1`` are left out, different
  ones each shuffled epoch). Every sample is preprocessed by the modality's tokenizer as it is read; a sample that
  does not fit raises :class:`~polymodal.data.SampleInputError` naming its shard and key.
- A position: ``state_dict()`` / ``load_state_dict()`` of the stream (iterated in the main process) or of the
  :class:`StreamLoader` that iterates it with workers (it knows how far each worker got) resume an interrupted
  epoch at the next unseen sample.

:class:`ResumableStream` is the contract (an epoch is a fixed sequence per process and worker) that
:class:`StreamingDataset`, :class:`MapStream` (a map-style dataset read as a stream) and the mixing stream of
:mod:`polymodal.train.multitask` share.
"""

from __future__ import annotations

import contextlib
import glob
import io
import json
import math
import os
import re
import struct
import tarfile
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info
from torch.utils.data._utils.collate import default_collate

from polymodal.core.component import ModalityInputError
from polymodal.core.tokenizer import TokenizerConfig, describe
from polymodal.data.dataset import (
    ArrayDataset,
    FileDataset,
    SampleDataset,
    SampleInputError,
    SampleReadError,
    SampleSubset,
    Task,
    check_batch,
    explicit_fields,
    infer_task,
    tokenizer_config,
)
from polymodal.registry.lookup import get

__all__ = [
    "INDEX_FILE",
    "TARGETS_FILE",
    "MapStream",
    "Placement",
    "ResumableStream",
    "ShardReadError",
    "StreamLoader",
    "StreamingDataset",
    "partition",
    "write_shards",
]

INDEX_FILE = "index.json"
TARGETS_FILE = "targets.npy"
FORMAT = "polymodal.shards"
VERSION = 1
_KEY = re.compile(r"^((?:.*/|)[^./]+)[.]([^/]*)$")  # webdataset's base_plus_ext: key up to the first dot


# -- placement: which process and worker reads what ----------------------------------------------------------------
class Placement(NamedTuple):
    """Where a stream is read: process ``rank`` of ``world``, DataLoader worker ``worker`` of ``workers``."""

    rank: int
    world: int
    worker: int
    workers: int


def partition(n: int, parts: int, index: int) -> tuple[int, int]:
    """``[start, stop)`` of part ``index`` of ``n`` items cut into ``parts`` contiguous parts of sizes that differ
    by at most one."""
    return index * n // parts, (index + 1) * n // parts


def _dist_info() -> tuple[int, int]:
    """``(rank, world)``: the default process group's, else torchrun's ``RANK`` / ``WORLD_SIZE``, else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


class _Tagged(NamedTuple):
    """An item and how many items its worker has yielded this epoch with it (for :class:`StreamLoader`)."""

    item: Any
    worker: int
    position: int


class ResumableStream(IterableDataset):
    """An iterable dataset whose epoch is one fixed sequence per process and DataLoader worker.

    A subclass says how many items a worker yields in an epoch (:meth:`worker_length`) and yields them from any
    position (:meth:`_items`); this class finds the process (the default process group, or torchrun's ``RANK`` /
    ``WORLD_SIZE``) and the worker, and resumes where :meth:`load_state_dict` says. Iterated in the main process,
    it counts what it yielded itself (:meth:`state_dict`); with DataLoader workers, :class:`StreamLoader` counts.

    Args:
        seed: seed of the epoch's order (with the epoch: ``set_epoch``).
        drop_last: give every process the same number of items (training on several processes needs it: each
            takes the same number of steps); ``False`` splits every item among the processes (evaluation).
    """

    def __init__(self, *, seed: int = 0, drop_last: bool = False) -> None:
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self._bound: tuple[int, int] | None = None
        self._tagged = False
        # a position to resume from: epoch, world, workers, positions
        self._state: dict[str, Any] | None = None
        self._yielded = 0  # items yielded in this process in the current epoch (iterated without workers)

    # what a subclass gives
    def worker_length(self, place: Placement) -> int:  # pragma: no cover - abstract
        """Items the worker at ``place`` yields in an epoch."""
        raise NotImplementedError

    def _items(self, place: Placement, start: int) -> Iterator[Any]:  # pragma: no cover - abstract
        """The items of the worker at ``place`` in this epoch, from its ``start``-th on."""
        raise NotImplementedError

    # where it runs
    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (the next iteration starts it; a position saved in another epoch is dropped).
        Call it in the main process: it also records the process's rank, for workers that cannot see it."""
        epoch = int(epoch)
        if self._state is not None and self._state["epoch"] != epoch:
            self._state = None
        if epoch != self.epoch:
            self._yielded = 0
        self.epoch = epoch
        self._bound = _dist_info()

    def rank_world(self) -> tuple[int, int]:
        """``(rank, world)`` of the process reading: found in the main process; in a DataLoader worker, what
        ``set_epoch`` recorded in the main process (a spawned worker sees no process group), else found."""
        if get_worker_info() is None or self._bound is None:
            return _dist_info()
        return self._bound

    def placement(self) -> Placement:
        """Where this iteration runs: the process and the DataLoader worker."""
        rank, world = self.rank_world()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return Placement(rank, world, worker, workers)

    def rank_length(self, rank: int | None = None, world: int | None = None, workers: int = 1) -> int:
        """Items process ``rank`` of ``world`` (default: this one) yields in an epoch over ``workers`` workers."""
        r, w = self.rank_world()
        rank, world = (r if rank is None else rank), (w if world is None else world)
        return sum(self.worker_length(Placement(rank, world, k, workers)) for k in range(max(1, workers)))

    # a position
    def state_dict(self) -> dict[str, Any]:
        """Where this process is in the epoch: ``{"epoch", "world", "workers", "positions"}`` (items yielded per
        worker). Valid for a stream iterated in the main process; with workers, use :meth:`StreamLoader.state_dict`."""
        if self._state is not None and self._yielded == 0:
            return dict(self._state)
        _, world = self.rank_world()
        return {"epoch": self.epoch, "world": world, "workers": 1, "positions": [self._yielded]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at ``state`` (from :meth:`state_dict`): the next iteration starts its epoch's order after the items
        already yielded. It must come from a run of as many processes and workers."""
        need = {"epoch", "world", "workers", "positions"}
        if not need <= set(state):
            raise KeyError(
                f"{type(self).__name__}.load_state_dict: expected keys {sorted(need)}, got {sorted(state)}"
            )
        positions = [int(p) for p in state["positions"]]
        if len(positions) != max(1, int(state["workers"])) or min(positions) < 0:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: expected {state['workers']} positions >= 0, got {positions}"
            )
        self.epoch = int(state["epoch"])
        self._state = {
            "epoch": self.epoch,
            "world": int(state["world"]),
            "workers": int(state["workers"]),
            "positions": positions,
        }
        self._yielded = 0

    def _start(self, place: Placement) -> int:
        state = self._state
        if state is None or state["epoch"] != self.epoch:
            return 0
        if (state["world"], state["workers"]) != (place.world, place.workers):
            raise ValueError(
                f"{type(self).__name__}: the saved position is of {state['world']} process(es) x {state['workers']} "
                f"DataLoader worker(s) each, this run has {place.world} x {place.workers}; resume with the same "
                "numbers (each worker's share of the epoch depends on them)"
            )
        return state["positions"][place.worker]

    def __iter__(self) -> Iterator[Any]:
        place = self.placement()
        start = self._start(place)
        in_process = get_worker_info() is None and not self._tagged
        if in_process:
            self._yielded, self._state = start, None  # the position is consumed; state_dict counts from here
        for k, item in enumerate(self._items(place, start), start + 1):
            if self._tagged:
                yield _Tagged(item, place.worker, k)
            else:
                if in_process:
                    self._yielded = k
                yield item


def _epoch_range(n: int, place: Placement, drop_last: bool) -> tuple[int, int]:
    """``[start, stop)`` of the worker at ``place`` in an epoch sequence of ``n`` items: its process's contiguous
    range (equal ranges with ``drop_last``), then its worker's contiguous part of that."""
    if drop_last:
        m = n // place.world
        lo, hi = place.rank * m, (place.rank + 1) * m
    else:
        lo, hi = partition(n, place.world, place.rank)
    a, b = partition(hi - lo, place.workers, place.worker)
    return lo + a, lo + b


# -- a map-style dataset as a stream -------------------------------------------------------------------------------
class MapStream(ResumableStream):
    """A map-style dataset read as a :class:`ResumableStream`: its epoch is a permutation of its indices (seeded by
    ``seed + epoch``) with ``shuffle``, else its order, split like a :class:`StreamingDataset`'s."""

    def __init__(
        self, dataset: Dataset, *, shuffle: bool = False, seed: int = 0, drop_last: bool = False
    ) -> None:
        super().__init__(seed=seed, drop_last=drop_last)
        self.dataset = dataset
        self.shuffle = bool(shuffle)
        self._order: tuple[int, Tensor] | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def worker_length(self, place: Placement) -> int:
        a, b = _epoch_range(len(self), place, self.drop_last)
        return b - a

    def order(self) -> Tensor:
        """The epoch's order of indices (``int64``)."""
        if self._order is None or self._order[0] != self.epoch:
            n = len(self)
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            self._order = (self.epoch, torch.randperm(n, generator=g) if self.shuffle else torch.arange(n))
        return self._order[1]

    def _items(self, place: Placement, start: int) -> Iterator[Any]:
        a, b = _epoch_range(len(self), place, self.drop_last)
        order = self.order()
        for p in range(a + start, b):
            yield self.dataset[int(order[p])]


# -- encoding samples and targets as tar members -------------------------------------------------------------------
def _torch_bytes(value: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _safe_value(value: Any) -> Any:
    """``value`` with numpy arrays and scalars made tensors and numbers, and tensors compact (a view saved by
    ``torch.save`` would carry its whole storage), so that ``torch.load(weights_only=True)`` reads it back."""
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: _safe_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_safe_value(v) for v in value)
    return value


def _encode(value: Any, where: str) -> tuple[str, bytes]:
    """``(extension, bytes)`` of one sample: ``txt`` (a str), ``npy`` (a numpy array), ``pth`` (a tensor, or
    numbers, lists, tuples and dicts of them), ``pyg`` (a PyG ``Data``, as the dict of its attributes), ``json`` (a
    pandas Series, as a dict ``{column: value}``)."""
    if isinstance(value, str):
        return "txt", value.encode("utf-8")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OV":
            raise TypeError(
                f"write_shards: {where}: an array of Python objects cannot be stored safely; got {describe(value)}"
            )
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(value), allow_pickle=False)
        return "npy", buffer.getvalue()
    if type(value).__name__ in ("Data", "HeteroData") and hasattr(value, "to_dict"):
        if type(value).__name__ == "HeteroData":
            raise TypeError(f"write_shards: {where}: HeteroData is not supported, got {describe(value)}")
        return "pyg", _torch_bytes(_safe_value(value.to_dict()))
    if hasattr(value, "index") and hasattr(value, "to_dict") and hasattr(value, "iloc"):  # a pandas Series
        return "json", json.dumps(_safe_value(value.to_dict()), default=str).encode("utf-8")
    safe = _safe_value(value)
    data = _torch_bytes(safe)
    try:
        torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:
        raise TypeError(
            f"write_shards: {where}: expected a sample of tensors, arrays, numbers, strings, lists, tuples and dicts "
            f"of them, a PyG Data or a pandas Series, got {describe(value)} ({type(exc).__name__})"
        ) from None
    return "pth", data


def _encode_target(target: Any, task: Task) -> tuple[str, bytes]:
    t = torch.as_tensor(target)
    if task.kind == "classification" and t.numel() == 1:
        return "cls", str(int(t.item())).encode()
    buffer = io.BytesIO()
    np.save(buffer, t.detach().cpu().numpy(), allow_pickle=False)
    return "npy", buffer.getvalue()


_UNSAFE = ("pyd", "pickle", "pkl", "pt.pickle")
_NPY_HEADERS: dict[bytes, tuple[tuple[int, ...], bool, np.dtype]] = {}


def _load_npy(data: bytes) -> np.ndarray:
    """``np.load`` of a ``.npy`` member without pickles, its header parsed once per distinct header (a shard's
    samples of one shape share it; numpy parses each with ``ast.literal_eval``)."""
    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        raise ValueError("not a .npy array (no NUMPY magic)")
    size, width = (2, "<H") if data[6] == 1 else (4, "<I")
    (length,) = struct.unpack(width, data[8 : 8 + size])
    start = 8 + size + length
    header = data[8 + size : start]
    parsed = _NPY_HEADERS.get(header)
    if parsed is None:
        stream = io.BytesIO(data)
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
        if dtype.hasobject:
            raise ValueError("the .npy array holds Python objects (pickles), which are not read")
        parsed = (tuple(shape), bool(fortran), dtype)
        if len(_NPY_HEADERS) < 1024:
            _NPY_HEADERS[header] = parsed
    shape, fortran, dtype = parsed
    count = math.prod(shape)
    array = np.frombuffer(data, dtype=dtype, count=count, offset=start).reshape(
        shape, order="F" if fortran else "C"
    )
    return array.copy()  # writable, and not a view of the member's bytes


def _decode(ext: str, data: bytes, modality: str, config: TokenizerConfig) -> Any:
    """One member's bytes -> a value (by its last extension; a file extension of the modality is read by its
    tokenizer's ``read_file``)."""
    last = ext.rsplit(".", 1)[-1].lower()
    if last in ("txt", "text"):
        return data.decode("utf-8")
    if last in ("cls", "cls2", "index"):
        return int(data.decode("ascii").strip())
    if last == "json":
        return json.loads(data.decode("utf-8"))
    if last == "npy":
        return _load_npy(data)
    if last in ("pth", "pt"):
        return torch.load(io.BytesIO(data), weights_only=True)
    if last == "pyg":
        from torch_geometric.data import Data

        return Data.from_dict(torch.load(io.BytesIO(data), weights_only=True))
    if last in _UNSAFE or ext.lower() in _UNSAFE:
        raise ValueError(
            f"pickled members ('.{ext}') are not read: unpickling runs code; store .npy, .pth or .json"
        )
    cls = get("tokenizer", modality)
    if f".{last}" in tuple(e.lower() for e in cls.file_extensions):
        with tempfile.TemporaryDirectory(prefix="polymodal_shard_") as folder:
            path = Path(folder) / f"member.{last}"
            path.write_bytes(data)
            return cls.read_file(path, config)
    known = "txt, cls, json, npy, pth, pyg" + "".join(f", {e.lstrip('.')}" for e in cls.file_extensions)
    raise ValueError(f"no decoder for '.{ext}' members; {modality} shards hold {known}")


# -- writing -------------------------------------------------------------------------------------------------------
def _raw_reader(dataset: Any) -> Callable[[int], Any] | None:
    """``index -> raw sample`` (the form the tokenizer's ``preprocess`` takes) when the dataset has that form."""
    if isinstance(dataset, SampleSubset):
        parent = _raw_reader(dataset.parent)
        if parent is None:
            return None
        idx = dataset.indices
        return lambda i: parent(int(idx[i]))
    if isinstance(dataset, ArrayDataset):
        return dataset.raw
    if isinstance(dataset, FileDataset):

        def read(i: int) -> Any:
            item = dataset.items[i]
            try:
                return dataset.reader(item)
            except (ImportError, KeyboardInterrupt):
                raise
            except Exception as exc:
                raise SampleReadError(item, i, exc) from exc

        return read
    return None


def _atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_shards(
    dataset: Dataset,
    folder: str | Path,
    samples_per_shard: int = 1000,
    *,
    tokenizer: Any = None,
    task: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write ``dataset`` as tar shards of ``samples_per_shard`` samples into ``folder``; return its ``index.json``.

    Each sample ``i`` is the members ``{i:09d}.sample.<ext>`` and ``{i:09d}.target.<cls|npy>`` of shard
    ``shard-{k:06d}.tar``. An ``ArrayDataset`` or ``FileDataset`` (or a split of one) stores its samples raw, as the
    tokenizer's ``preprocess`` takes them (a ``FileDataset``'s files read by its reader), so reading runs the same
    preprocessing and checks; any other dataset of ``(sample, target)`` items stores the samples as it gives them
    (its tokenizer's per-sample form; ``index.json`` says ``"form": "sample"``). The dataset's tokenizer config
    (``dataset.tokenizer_config``, or ``tokenizer``: a name or config) and task (``dataset.task``, or ``task``;
    else inferred from the targets) go into ``index.json``; the targets into ``targets.npy``. Shards and the index
    are written atomically (the index last), so a folder with an index is complete.

    Raises:
        FileExistsError: ``folder`` holds an index already and ``overwrite`` is false.
        TypeError: a sample of a type that cannot be stored without pickling (named with its index).
    """
    if isinstance(samples_per_shard, bool) or not isinstance(samples_per_shard, int) or samples_per_shard < 1:
        raise ValueError(
            f"write_shards: samples_per_shard must be an integer >= 1, got {samples_per_shard!r}"
        )
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise TypeError(
            f"write_shards: expected a map-style dataset of (sample, target) items, got {type(dataset).__name__}"
        )
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("write_shards: the dataset is empty")
    spec = tokenizer if tokenizer is not None else getattr(dataset, "tokenizer_config", None)
    if spec is None:
        raise ValueError(
            f"write_shards: a {type(dataset).__name__} has no tokenizer_config; pass tokenizer= (the modality's "
            "tokenizer name or config its samples are for)"
        )
    config = tokenizer_config(spec)
    root = Path(folder)
    index_path = root / INDEX_FILE
    if index_path.exists() and not overwrite:
        raise FileExistsError(
            f"write_shards: {root} holds shards already ({INDEX_FILE}); pass overwrite=True"
        )
    root.mkdir(parents=True, exist_ok=True)
    raw = _raw_reader(dataset)
    targets_of = getattr(dataset, "targets", None)
    own_task = getattr(dataset, "task", None)
    if isinstance(targets_of, Tensor) and isinstance(own_task, Task) and task is None:
        task_, y = own_task, targets_of  # a SampleDataset's targets are checked and in their final form
    else:
        ys = (
            targets_of
            if isinstance(targets_of, Tensor)
            else torch.stack([torch.as_tensor(dataset[i][1]) for i in range(n)])
        )
        task_, y = infer_task(ys.numpy(), config.type, task=task if task is not None else own_task)
    if index_path.exists():
        index_path.unlink()  # the folder is incomplete until the new index is written
    for old in root.glob("shard-*.tar"):
        old.unlink()
    shards = []
    for k, lo in enumerate(range(0, n, samples_per_shard)):
        hi = min(n, lo + samples_per_shard)
        name = f"shard-{k:06d}.tar"
        tmp = root / f".{name}.tmp"
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for i in range(lo, hi):
                sample = raw(i) if raw is not None else dataset[i][0]
                key = f"{i:09d}"
                members = [
                    ("sample", *_encode(sample, f"sample {i}")),
                    ("target", *_encode_target(y[i], task_)),
                ]
                for field, ext, data in members:
                    info = tarfile.TarInfo(f"{key}.{field}.{ext}")
                    info.size, info.mtime, info.mode = len(data), 0, 0o644
                    tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, root / name)
        shards.append({"name": name, "samples": hi - lo})
    buffer = io.BytesIO()
    np.save(buffer, y.numpy(), allow_pickle=False)
    _atomic_bytes(root / TARGETS_FILE, buffer.getvalue())
    index = {
        "format": FORMAT,
        "version": VERSION,
        "modality": config.type,
        "tokenizer_config": config.model_dump(mode="json", exclude={"embed_dim"}),
        "task": task_.model_dump(mode="json", exclude_none=True),
        "form": "raw" if raw is not None else "sample",
        "sample": "sample",
        "target": "target",
        "num_samples": n,
        "shards": shards,
    }
    _atomic_bytes(index_path, json.dumps(index, indent=1).encode("utf-8"))
    return index_path


# -- reading -------------------------------------------------------------------------------------------------------
def _expand_braces(pattern: str) -> list[str]:
    """``shard-{000..009}.tar`` and ``{a,b}`` expanded (webdataset's and bash's brace notation)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    head, body, tail = pattern[: m.start()], m.group(1), pattern[m.end() :]
    r = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if r:
        a, b = r.groups()
        width = len(a) if a.startswith("0") or len(a) == len(b) else 0
        options = [str(v).zfill(width) for v in range(int(a), int(b) + 1)]
    else:
        options = body.split(",")
    return [s for o in options for s in _expand_braces(head + o + tail)]


@dataclass(frozen=True)
class _Shard:
    path: Path
    samples: int


def _resolve_sources(source: str | Path | Sequence[str | Path]) -> tuple[Path | None, list[Path]]:
    """``(index file or None, shard paths)`` of a folder, an index file, a tar, a glob or brace pattern, or a list."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            index = path / INDEX_FILE
            if index.exists():
                return index, []
            found = sorted(path.glob("*.tar"))
            if not found:
                raise FileNotFoundError(f"StreamingDataset: {path} holds no {INDEX_FILE} and no .tar shards")
            return None, found
        if path.name.endswith(".json"):
            if not path.exists():
                raise FileNotFoundError(f"StreamingDataset: no index file {path}")
            return path, []
        names = [
            n
            for p in _expand_braces(str(source))
            for n in (sorted(glob.glob(p)) if glob.has_magic(p) else [p])
        ]
        if not names:
            raise FileNotFoundError(f"StreamingDataset: no shard matches {source!r}")
        missing = [n for n in names if not Path(n).is_file()]
        if missing:
            raise FileNotFoundError(
                f"StreamingDataset: no shard {missing[0]} ({len(missing)} of {len(names)} missing)"
            )
        return None, [Path(n) for n in names]
    paths = [Path(p) for p in source]
    if not paths:
        raise ValueError("StreamingDataset: expected at least one shard, got an empty list")
    return None, paths


_BLOCK = 512
_ZEROS = bytes(_BLOCK)


class ShardReadError(SampleReadError):
    """A shard cannot be opened, or its tar structure is damaged or cut short (the message names the shard)."""

    def __init__(self, path: Any, cause: BaseException) -> None:
        self.path, self.index, self.cause = str(path), -1, cause
        OSError.__init__(self, f"cannot read shard {path}: {type(cause).__name__}: {cause}")


class _TarError(ValueError):
    """A tar file's header or member is damaged or cut short."""


class _Member(NamedTuple):
    """A file in a tar shard: its name, where its data starts and its size."""

    name: str
    offset: int
    size: int


def _number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # base-256 (GNU), for sizes of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    while data:
        length = int(data.split(b" ", 1)[0])
        key, _, value = data[: length - 1].split(b" ", 1)[1].partition(b"=")
        records[key.decode("utf-8")] = value.decode("utf-8")
        data = data[length:]
    return records


def _tar_members(f: Any) -> Iterator[_Member]:
    """The regular files of an uncompressed tar file (ustar, pax and GNU long names), in order, reading only their
    512-byte headers (``tarfile`` parses each field in Python, several times slower). The data of member ``m`` is
    ``f.seek(m.offset); f.read(m.size)``; the caller may read it before asking for the next member."""
    pos = 0
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        f.seek(pos)
        header = f.read(_BLOCK)
        if header == _ZEROS:
            return
        if not header:  # the end of the file without the end-of-archive blocks
            if f.seek(0, 2) < pos:
                raise _TarError(
                    f"truncated: the last member's data runs past the end of the file (byte {pos})"
                )
            return
        if len(header) < _BLOCK:
            raise _TarError(f"truncated tar header at byte {pos}")
        if _number(header[148:156]) != sum(header[:148]) + 256 + sum(header[156:]):
            raise _TarError(f"damaged tar header at byte {pos} (not a tar file, or a damaged one)")
        size = int(pax["size"]) if "size" in pax else _number(header[124:136])
        kind = header[156:157]
        data = pos + _BLOCK
        pos = data + (size + _BLOCK - 1) // _BLOCK * _BLOCK
        if kind in (b"x", b"L"):
            f.seek(data)
            content = f.read(size)
            if kind == b"x":
                pax = _pax(content)
            else:
                long_name = content.rstrip(b"\0").decode("utf-8")
            continue
        if kind not in (b"0", b"\0", b"7"):  # directories, links, global headers
            long_name, pax = None, {}
            continue
        name = header[:100].split(b"\0", 1)[0].decode("utf-8")
        if header[257:262] == b"ustar":
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix:
                name = f"{prefix.decode('utf-8')}/{name}"
        name = pax.get("path", long_name or name)
        long_name, pax = None, {}
        yield _Member(name, data, size)


def _samples(f: Any) -> Iterator[tuple[str, list[_Member]]]:
    """``(key, members)`` of consecutive members sharing a key (webdataset's grouping), without reading data."""
    key, group = None, []
    for member in _tar_members(f):
        m = _KEY.match(member.name)
        if m is None:
            continue
        k = m.group(1)
        if k != key and group:
            yield key, group  # type: ignore[misc]
            group = []
        key = k
        group.append(member)
    if group:
        yield key, group  # type: ignore[misc]


def _read(f: Any, member: _Member) -> bytes:
    f.seek(member.offset)
    data = f.read(member.size)
    if len(data) != member.size:
        raise _TarError(f"member {member.name} is truncated ({len(data)} of {member.size} bytes)")
    return data


def _field(member: _Member) -> str:
    m = _KEY.match(member.name)
    return m.group(2) if m else ""


def _pick(members: list[_Member], names: Sequence[str]) -> _Member | None:
    """The member whose field is one of ``names`` (``"sample"`` matches ``sample.npy``; ``"jpg"`` matches
    ``jpg``), the first name that matches winning."""
    for name in names:
        for member in members:
            f = _field(member)
            if f == name or f.rsplit(".", 1)[0] == name:
                return member
    return None


def _names(spec: str | Sequence[str]) -> tuple[str, ...]:
    return tuple(spec.split(";")) if isinstance(spec, str) else tuple(spec)


class StreamingDataset(ResumableStream, SampleDataset):
    """Samples read from tar shards as a stream (see the module docstring): items ``(sample, target)`` like an
    :class:`~polymodal.data.ArrayDataset`'s, with its ``modality``, ``tokenizer_config``, ``task``, ``targets``
    and ``head_config()``.

    Args:
        source: a folder written by :func:`write_shards` (or its ``index.json``); or shards without an index: a
            folder of ``.tar`` files, a path, a glob (``"data/*.tar"``), a brace pattern
            (``"data/shard-{000000..000099}.tar"``) or a list of paths, scanned once here (headers and targets).
        modality: the tokenizer name or config of shards without an index (with one: its config, which must then be
            the same modality).
        tokenizer: tokenizer field overrides, as for ``ArrayDataset``.
        task, class_names: of shards without an index (default: inferred from their targets).
        sample, target: the fields holding the sample and the target (``"jpg;png"``: the first present).
        shuffle: shuffle, per epoch, the order of the shards and of the samples within each shard (a shard is read
            whole, its wanted samples decoded one by one).
        seed: seed of the shuffle (with the epoch).
        drop_last: every process gets the same number of samples (see :class:`ResumableStream`).
        check: samples (the first ones) read, preprocessed, collated and tokenized together when made.

    Raises:
        SampleInputError: a sample does not fit the modality (message: the shard, the key, expected, got).
        SampleReadError: a member cannot be read or decoded (message: the shard and key).
    """

    def __init__(
        self,
        source: str | Path | Sequence[str | Path],
        *,
        modality: str | Mapping[str, Any] | TokenizerConfig | None = None,
        tokenizer: Any = None,
        task: Any = None,
        class_names: Sequence[str] | None = None,
        sample: str | Sequence[str] = "sample",
        target: str | Sequence[str] = "target",
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        check: int = 2,
    ) -> None:
        ResumableStream.__init__(self, seed=seed, drop_last=drop_last)
        index_path, paths = _resolve_sources(source)
        self.shuffle = bool(shuffle)
        self.sample_fields, self.target_fields = _names(sample), _names(target)
        self.index_path = index_path
        self._targets_path: Path | None = None
        if index_path is not None:
            index = json.loads(index_path.read_text())
            if index.get("format") != FORMAT:
                raise ValueError(
                    f"StreamingDataset: {index_path} is not a {FORMAT} index (format {index.get('format')!r})"
                )
            own = tokenizer_config(index["tokenizer_config"])
            if modality is not None:
                asked = tokenizer_config(modality)
                if asked.type != own.type:
                    raise ValueError(
                        f"StreamingDataset: {index_path} holds {own.type!r} samples, not {asked.type!r}"
                    )
                if not isinstance(modality, str) and explicit_fields(modality, None):
                    raise ValueError(
                        f"StreamingDataset: {index_path} says the tokenizer config of its samples; give changes to it as "
                        f"tokenizer= (field overrides), not in modality= ({sorted(explicit_fields(modality, None))})"
                    )
            config = tokenizer_config(index["tokenizer_config"], tokenizer)
            task_ = Task.model_validate(task if isinstance(task, Mapping) else index["task"])
            root = index_path.parent
            self.shards = [_Shard(root / s["name"], int(s["samples"])) for s in index["shards"]]
            self.form = index.get("form", "raw")
            if sample == "sample":
                self.sample_fields = _names(index.get("sample", "sample"))
            if target == "target":
                self.target_fields = _names(index.get("target", "target"))
            self._targets_path = root / index.get("targets", TARGETS_FILE)
            targets = self._load_targets()
            if len(targets) != sum(s.samples for s in self.shards):
                raise ValueError(
                    f"StreamingDataset: {self._targets_path} holds {len(targets)} targets for "
                    f"{sum(s.samples for s in self.shards)} samples of {index_path}"
                )
        else:
            if modality is None:
                raise ValueError(
                    "StreamingDataset: shards without an index need modality= (the tokenizer name or config of "
                    f"their samples); found {len(paths)} shard(s), e.g. {paths[0]}"
                )
            config = tokenizer_config(modality, tokenizer)
            self.form = "raw"
            self.shards, found = self._scan(paths, config)
            task_, targets = infer_task(found, config.type, task=task, class_names=class_names)
        SampleDataset.__init__(self, config, task_, targets)
        self._starts = np.concatenate([[0], np.cumsum([s.samples for s in self.shards])]).astype(np.int64)
        if self._starts[-1] == 0:
            raise ValueError(f"StreamingDataset: the shards hold no samples ({self.shards[0].path}, …)")
        check_batch(self, list(range(min(int(check), len(self)))))

    # targets: memory-mapped from the index's file, not copied into workers
    @property  # type: ignore[override]
    def targets(self) -> Tensor:
        if self._targets is None:
            self._targets = self._load_targets()
        return self._targets

    @targets.setter
    def targets(self, value: Tensor) -> None:
        self._targets = value

    def _load_targets(self) -> Tensor:
        assert self._targets_path is not None
        array = np.load(self._targets_path, mmap_mode="r", allow_pickle=False)
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", UserWarning
            )  # read-only memory map: torch never writes to it here
            return torch.from_numpy(array)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._targets_path is not None:
            state["_targets"] = None  # workers map the file themselves
        return state

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __repr__(self) -> str:
        return (
            f"StreamingDataset({self.modality!r}, {len(self)} samples in {len(self.shards)} shards, "
            f"{self.task.describe()})"
        )

    # the epoch
    def worker_length(self, place: Placement) -> int:
        a, b = _epoch_range(len(self), place, self.drop_last)
        return b - a

    def shard_order(self) -> np.ndarray:
        """The epoch's order of shards."""
        if not self.shuffle:
            return np.arange(len(self.shards))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.shards))

    def _within(self, shard: int) -> np.ndarray | None:
        """The epoch's order of the samples of a shard (``None``: as stored)."""
        if not self.shuffle:
            return None
        return np.random.default_rng([self.seed, self.epoch, shard]).permutation(self.shards[shard].samples)

    def _items(self, place: Placement, start: int) -> Iterator[tuple[Any, Tensor]]:
        a, b = _epoch_range(len(self), place, self.drop_last)
        a += start
        pos = 0
        for s in self.shard_order().tolist():
            n = self.shards[s].samples
            lo, hi = max(a - pos, 0), min(b - pos, n)
            pos += n
            if lo < hi:
                yield from self._read_shard(s, lo, hi)
            if pos >= b:
                break

    def _read_shard(self, s: int, lo: int, hi: int) -> Iterator[tuple[Any, Tensor]]:
        """Samples ``lo .. hi - 1`` of shard ``s`` in the epoch's order within it."""
        order = self._within(s)
        wanted = range(lo, hi) if order is None else order[lo:hi]
        last = hi - 1 if order is None else int(order[lo:hi].max())
        keep = None if order is None else set(int(j) for j in wanted)
        held: dict[int, tuple[str, dict[str, bytes]]] = {}
        shard = self.shards[s]
        with self._open(shard) as tar:
            reached = -1
            for j, (key, members) in enumerate(_samples(tar)):
                if j > last:
                    break
                reached = j
                if (order is None and j < lo) or (keep is not None and j not in keep):
                    continue
                data = self._member_bytes(tar, s, j, key, members)
                if order is None:
                    yield self._item(s, j, key, data)
                else:
                    held[j] = (key, data)
            if reached < last:
                raise ValueError(
                    f"StreamingDataset: {shard.path} holds {reached + 1} samples, the index says {shard.samples}"
                )
        if order is not None:
            for j in wanted:
                key, data = held.pop(int(j))
                yield self._item(s, int(j), key, data)

    @contextlib.contextmanager
    def _open(self, shard: _Shard) -> Iterator[Any]:
        try:
            f = open(shard.path, "rb")  # closed below, once the caller is done
        except OSError as exc:
            raise ShardReadError(shard.path, exc) from exc
        try:
            yield f
        except _TarError as exc:  # a damaged or truncated shard
            raise ShardReadError(shard.path, exc) from exc
        finally:
            f.close()

    def _member_bytes(self, tar: Any, s: int, j: int, key: str, members: list[_Member]) -> dict[str, bytes]:
        info = _pick(members, self.sample_fields)
        if info is None:
            fields = ", ".join(_field(m) for m in members)
            raise SampleReadError(
                f"{self.shards[s].path} (key {key})",
                int(self._starts[s]) + j,
                KeyError(f"no member for the sample ({' or '.join(self.sample_fields)}); members: {fields}"),
            )
        return {_field(info): _read(tar, info)}

    def _item(self, s: int, j: int, key: str, data: dict[str, bytes]) -> tuple[Any, Tensor]:
        shard = self.shards[s]
        ((field, payload),) = data.items()
        ext = field.split(".", 1)[1] if "." in field else field
        try:
            value = _decode(ext, payload, self.modality, self._config)
        except (ImportError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise SampleReadError(
                f"{shard.path} (key {key}, member {key}.{field})", int(self._starts[s]) + j, exc
            ) from exc
        return self._prepare(value, shard, key), self.targets[int(self._starts[s]) + j]

    def _prepare(self, value: Any, shard: _Shard, key: str) -> Any:
        if self.form != "raw":
            return value
        try:
            return self.tokenizer.preprocess(value)
        except ModalityInputError as exc:
            raise SampleInputError(
                self.modality, f"shard {shard.path.name}, key {key}", exc.expected, exc.got
            ) from None

    # random access (summaries, checks): slow, a scan of one shard
    def sample(self, index: int) -> Any:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"StreamingDataset: index {index} out of range for {len(self)} samples")
        s = int(np.searchsorted(self._starts, index, side="right")) - 1
        j = index - int(self._starts[s])
        shard = self.shards[s]
        with self._open(shard) as tar:
            for k, (key, members) in enumerate(_samples(tar)):
                if k == j:
                    return self._item(s, j, key, self._member_bytes(tar, s, j, key, members))[0]
        raise ValueError(
            f"StreamingDataset: {shard.path} holds fewer than {j + 1} samples, the index says {shard.samples}"
        )

    def source(self, index: int) -> str:
        s = int(np.searchsorted(self._starts, int(index), side="right")) - 1
        return f"{self.shards[s].path}[{int(index) - int(self._starts[s])}]"

    # shards without an index
    def _scan(self, paths: list[Path], config: TokenizerConfig) -> tuple[list[_Shard], list[Any]]:
        shards, targets = [], []
        for path in paths:
            count = 0
            with self._open(_Shard(path, 0)) as tar:
                for key, members in _samples(tar):
                    info = _pick(members, self.target_fields)
                    if info is None:
                        fields = ", ".join(_field(m) for m in members)
                        raise ValueError(
                            f"StreamingDataset: {path} key {key}: no target member ({' or '.join(self.target_fields)}); "
                            f"members: {fields}; pass target= naming it"
                        )
                    try:
                        value = _decode(_field(info).split(".")[-1], _read(tar, info), config.type, config)
                    except Exception as exc:
                        raise SampleReadError(
                            f"{path} (key {key}, member {info.name})", len(targets), exc
                        ) from exc
                    targets.append(np.asarray(value))
                    count += 1
            shards.append(_Shard(path, count))
        if not targets:
            raise ValueError(f"StreamingDataset: the shards hold no samples ({paths[0]}, …)")
        return shards, np.stack(targets)  # type: ignore[return-value]

    def save_index(self, folder: str | Path | None = None) -> Path:
        """Write ``index.json`` and ``targets.npy`` for these shards (into ``folder``, default the first shard's),
        so that the next ``StreamingDataset`` of them scans nothing. Returns the index path."""
        root = Path(folder) if folder is not None else self.shards[0].path.parent
        root.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, self.targets.numpy(), allow_pickle=False)
        _atomic_bytes(root / TARGETS_FILE, buffer.getvalue())
        shards = []
        for s in self.shards:
            name = (
                os.path.relpath(s.path, root) if s.path.is_absolute() == root.is_absolute() else str(s.path)
            )
            shards.append({"name": name, "samples": s.samples})
        index = {
            "format": FORMAT,
            "version": VERSION,
            "modality": self.modality,
            "tokenizer_config": self.tokenizer_config,
            "task": self.task.model_dump(mode="json", exclude_none=True),
            "form": self.form,
            "sample": ";".join(self.sample_fields),
            "target": ";".join(self.target_fields),
            "num_samples": len(self),
            "shards": shards,
        }
        path = root / INDEX_FILE
        _atomic_bytes(path, json.dumps(index, indent=1).encode("utf-8"))
        return path


# -- a DataLoader that knows the position ---------------------------------------------------------------------------
class _Progress(NamedTuple):
    batch: Any
    worker: int
    position: int


class _TaggedCollate:
    """Collates tagged items (:class:`_Tagged`) with ``collate_fn`` and passes their worker's position along."""

    def __init__(self, collate_fn: Callable[[Any], Any] | None) -> None:
        self.collate_fn = collate_fn

    def __call__(self, items: Any) -> _Progress:
        if isinstance(items, _Tagged):  # batch_size=None: one item at a time
            out = self.collate_fn(items.item) if self.collate_fn is not None else items.item
            return _Progress(out, items.worker, items.position)
        collate = self.collate_fn if self.collate_fn is not None else default_collate
        return _Progress(collate([t.item for t in items]), items[-1].worker, max(t.position for t in items))


class _EpochSampler:
    """What :class:`StreamLoader` shows as its ``sampler``: the DataLoader's own, plus ``set_epoch`` (which
    mmengine's ``DistSamplerSeedHook`` calls) reaching the loader."""

    def __init__(self, sampler: Any, loader: StreamLoader) -> None:
        self.sampler, self.loader = sampler, loader

    def __iter__(self) -> Iterator[Any]:
        return iter(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)


class StreamLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableStream` that knows how far each worker got: ``state_dict()`` /
    ``load_state_dict()`` resume an interrupted epoch at the next unseen sample (with the same numbers of processes
    and workers), ``len()`` is this process's exact number of batches, and ``set_epoch`` (also reached through
    ``loader.sampler.set_epoch``, as mmengine's ``DistSamplerSeedHook`` calls it) reseeds; without it, each full
    pass starts the next epoch.

    Batches are made in each worker from its consecutive items (``batch_size``; ``None``: the stream yields
    batches itself) and collated with ``collate_fn`` (default: torch's ``default_collate``)."""

    def __init__(
        self,
        dataset: ResumableStream,
        batch_size: int | None = 1,
        *,
        collate_fn: Callable[[Any], Any] | None = None,
        num_workers: int = 0,
        drop_last: bool = False,
        **kwargs: Any,
    ) -> None:
        if not isinstance(dataset, ResumableStream):
            raise TypeError(
                f"StreamLoader: expected a ResumableStream (StreamingDataset, MapStream, MultiTaskStream), got "
                f"{type(dataset).__name__}"
            )
        if kwargs.get("persistent_workers"):
            raise ValueError(
                "StreamLoader: persistent_workers would keep each worker's first epoch and position; leave it off"
            )
        for key in ("sampler", "batch_sampler", "shuffle"):
            if kwargs.get(key) not in (None, False):
                raise ValueError(
                    f"StreamLoader: {key} does not apply to a stream (its order is the stream's own)"
                )
        self._epoch = dataset.epoch
        self._positions: list[int] | None = None
        super().__init__(
            dataset,
            batch_size=batch_size,
            collate_fn=_TaggedCollate(collate_fn),
            num_workers=num_workers,
            drop_last=drop_last,
            **kwargs,
        )

    @property  # type: ignore[override]
    def sampler(self) -> _EpochSampler:
        return self._epoch_sampler

    @sampler.setter
    def sampler(self, value: Any) -> None:
        self._epoch_sampler = _EpochSampler(value, self)

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` at the next iteration (a position of another epoch is dropped)."""
        if int(epoch) != self._epoch:
            self._positions = None
        self._epoch = int(epoch)

    def _workers(self) -> int:
        return max(1, self.num_workers)

    def __len__(self) -> int:
        stream: ResumableStream = self.dataset  # type: ignore[assignment]
        rank, world = stream.rank_world()
        total = 0
        for w in range(self._workers()):
            n = stream.worker_length(Placement(rank, world, w, self._workers()))
            if self.batch_size is None:
                total += n
            else:
                total += n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)
        return total

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "world", "workers", "positions"}``: items each worker had yielded when the last batch handed
        out was made. On several processes each saves its own (they are equal when each takes the same steps)."""
        _, world = self.dataset.rank_world()  # type: ignore[attr-defined]
        positions = list(self._positions) if self._positions is not None else [0] * self._workers()
        return {"epoch": self._epoch, "world": world, "workers": self._workers(), "positions": positions}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at ``state`` (from :meth:`state_dict`) at the next iteration."""
        if int(state.get("workers", -1)) != self._workers():
            raise ValueError(
                f"StreamLoader: the saved position is of {state.get('workers')} DataLoader worker(s), this loader "
                f"has {self._workers()}; resume with the same num_workers"
            )
        self.dataset.load_state_dict(state)  # type: ignore[attr-defined]  (checks it)
        self._epoch = int(state["epoch"])
        self._positions = [int(p) for p in state["positions"]]

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        stream: ResumableStream = self.dataset  # type: ignore[assignment]
        if self._positions is None:
            self._positions = [0] * self._workers()
        stream.set_epoch(self._epoch)
        _, world = stream.rank_world()
        stream.load_state_dict(
            {"epoch": self._epoch, "world": world, "workers": self._workers(), "positions": self._positions}
        )
        stream._tagged = (
            True  # workers copy the stream as it is now; without workers it is read at each next()
        )
        try:
            for out in super().__iter__():
                self._positions[out.worker] = out.position
                yield out.batch
        finally:
            stream._tagged = False
        self._epoch += 1
        self._positions = None
