"""Loading mmengine checkpoints with ``torch.load(weights_only=True)`` by allow-listing exactly the safe types.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which refuses any global not on an allow-list.
mmengine 0.10.7 calls ``torch.load`` without the argument, and its checkpoints hold, besides tensors and plain
containers, the message hub's ``HistoryBuffer`` objects (two numpy arrays of logged values each, and their
statistics methods, pickled as ``getattr(HistoryBuffer, "mean")`` …) and numpy scalars, so ``Runner.resume``
fails. Turning ``weights_only`` off would let a checkpoint run arbitrary code; instead
:func:`safe_checkpoint_globals` allow-lists, for the duration of the load, exactly what such a checkpoint
contains (found with ``torch.serialization.get_unsafe_globals_in_checkpoint``):

- ``mmengine.logging.history_buffer.HistoryBuffer`` (a plain data holder);
- ``builtins.getattr`` replaced by :func:`history_buffer_method`, which returns only ``HistoryBuffer``'s four
  statistics methods (``min``, ``max``, ``current``, ``mean``) and refuses any other attribute of any object;
- numpy's array reconstruction (``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``)
  and scalar reconstruction (``numpy._core.multiarray.scalar``), also under their numpy 1 names
  (``numpy.core.multiarray.*``) for checkpoints written with numpy 1, and numpy 2's classes of numeric
  dtypes (``numpy.dtypes.Float64DType``, ``Int64DType``, … : bool, integers, floats; no object, string or void);

None of these executes anything beyond building numbers, arrays and that one class. The unpickler still calls
only allow-listed callables, so a checkpoint that names anything else is refused.

Every checkpoint mmengine reads in a process that imported :mod:`polymodal.model` (as building any model does)
goes through :func:`load_checkpoint_file`: ``Runner.load_checkpoint`` / ``resume``
(``polymodal eval --checkpoint``, ``polymodal train --resume``, ``load_from``) and ``init_cfg=dict(type="Pretrained",
...)`` all call mmengine's ``CheckpointLoader``, whose loaders call ``torch.load`` without ``weights_only`` (so
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in the environment would turn unpickling of arbitrary code back on).
:func:`install_safe_checkpoint_loaders` (run on import) replaces mmengine's own loaders: local files (and
``s3://`` / ``petrel://`` storage) load with ``weights_only=True`` passed explicitly, which the environment
variable does not override; the download schemes (``http(s)://``, ``torchvision://``, ``open-mmlab://``, …) are
refused, since polymodal reads weights from local files only. A refused file raises
:class:`UnsafeCheckpointError`, naming the file and the global it asked for; an unreadable one (truncated, not a
checkpoint) raises :class:`CheckpointReadError`.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

__all__ = [
    "SAFE_CHECKPOINT_GLOBALS",
    "CheckpointReadError",
    "UnsafeCheckpointError",
    "history_buffer_method",
    "install_safe_checkpoint_loaders",
    "load_checkpoint_file",
    "safe_checkpoint_globals",
]

HISTORY_BUFFER_METHODS = ("min", "max", "current", "mean")


def history_buffer_method(obj: Any, name: str) -> Any:
    """The restricted stand-in for ``getattr`` during checkpoint loads: ``HistoryBuffer``'s statistics only."""
    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"checkpoint asks for getattr({getattr(obj, '__qualname__', type(obj).__name__)}, {name!r}); only "
        f"HistoryBuffer's statistics methods {HISTORY_BUFFER_METHODS} are allowed"
    )


def _numpy_globals() -> list[Any]:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    # numpy 2 dtypes are instances of per-type classes; unpickling sets their state, so the numeric ones are listed
    dtypes = getattr(np, "dtypes", None)
    dtype_classes = [] if dtypes is None else [type(np.dtype(c)) for c in "?bhilqBHILQefdg"]
    return [
        *dict.fromkeys(dtype_classes),
        multiarray._reconstruct,
        multiarray.scalar,
        np.ndarray,
        np.dtype,
        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
        (multiarray.scalar, "numpy.core.multiarray.scalar"),
        (multiarray._reconstruct, "numpy._core.multiarray._reconstruct"),
        (multiarray.scalar, "numpy._core.multiarray.scalar"),
    ]


SAFE_CHECKPOINT_GLOBALS: tuple[Any, ...] = (
    HistoryBuffer,
    (history_buffer_method, "builtins.getattr"),
    *_numpy_globals(),
)


@contextlib.contextmanager
def safe_checkpoint_globals() -> Iterator[None]:
    """Within this block ``torch.load(weights_only=True)`` accepts mmengine checkpoints (and nothing riskier)."""
    with torch.serialization.safe_globals(list(SAFE_CHECKPOINT_GLOBALS)):
        yield


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint refused because it asks to run code or build objects outside the allow-list."""


class CheckpointReadError(ValueError):
    """A checkpoint that cannot be read (missing, truncated, not a checkpoint, or from a refused source)."""


_ALLOWED_KINDS = "tensors, numbers, strings, plain containers, numpy arrays and mmengine's HistoryBuffer"


def _refusal_reason(message: str) -> str | None:
    """What a checkpoint asked for, from torch's weights-only error (whose own advice is not repeated); ``None``
    when it asked for nothing outside the allow-list (the stream is simply not a pickle torch can read)."""
    ours = re.search(r"checkpoint asks for getattr\(.*", message)
    if ours:
        return f"it {ours.group(0)[len('checkpoint ') :].strip()}"
    names = list(dict.fromkeys(re.findall(r"GLOBAL ([\w.]+)", message)))
    if names:
        return f"it holds code or objects outside the allow-list: the global {', '.join(names)}"
    return None


def _unpickler_detail(message: str) -> str:
    inner = message.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation", 1)[0].strip()
    first = inner.splitlines()[0].strip() if inner else ""
    return first if first and "weights_only" not in first else "an unreadable pickle stream"


def _load(source: str | IO[bytes], name: str, map_location: Any) -> Any:
    try:
        with safe_checkpoint_globals():
            return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _refusal_reason(str(exc))
        if reason is None:
            raise CheckpointReadError(
                f"{name}: expected a checkpoint written by torch.save (e.g. by polymodal train), got a file that "
                f"cannot be read (no torch checkpoint inside: {_unpickler_detail(str(exc))})"
            ) from None
        raise UnsafeCheckpointError(
            f"{name}: refused to load: {reason}. polymodal loads checkpoints as weights only "
            f"({_ALLOWED_KINDS}), whatever the environment says; use checkpoints from sources you trust, or "
            "re-save just the weights (e.g. as .safetensors)"
        ) from None
    except (RuntimeError, EOFError, KeyError, OSError) as exc:
        if isinstance(exc, EOFError):
            detail = "it ends early"
        elif isinstance(exc, KeyError):
            detail = "no torch checkpoint inside"
        else:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        damaged = not isinstance(exc, RuntimeError) or "zip archive" in detail
        raise CheckpointReadError(
            f"{name}: expected a checkpoint written by torch.save (e.g. by polymodal train), got a file that "
            f"cannot be read ({detail}{'; it may be truncated or damaged' if damaged else ''})"
        ) from None


def load_checkpoint_file(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with the allow-list of :func:`safe_checkpoint_globals`.

    ``weights_only=True`` is passed explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` cannot turn it off. Raises
    :class:`UnsafeCheckpointError` (a ``pickle.UnpicklingError``) for a file that asks for anything outside the
    allow-list, :class:`CheckpointReadError` for one that cannot be read, ``FileNotFoundError`` for no file.
    """
    name = os.path.expanduser(os.fspath(path))
    if not os.path.isfile(name):
        raise FileNotFoundError(f"checkpoint {name} not found (expected a local file)")
    return _load(name, name, map_location)


def load_from_local_weights_only(filename: str, map_location: Any = None) -> Any:
    """mmengine ``CheckpointLoader`` scheme for local files: :func:`load_checkpoint_file`."""
    return load_checkpoint_file(filename, map_location)


def load_from_storage_weights_only(filename: str, map_location: Any = None, backend: str = "petrel") -> Any:
    """mmengine ``CheckpointLoader`` scheme for ``s3://`` / ``petrel://``: the bytes through mmengine's file
    backend, then ``torch.load(weights_only=True)`` with the allow-list."""
    from mmengine.fileio import get_file_backend

    data = get_file_backend(filename, backend_args={"backend": backend}).get(filename)
    with io.BytesIO(data) as buffer:
        return _load(buffer, filename, map_location)


def load_from_download_refused(filename: str, map_location: Any = None) -> Any:
    """mmengine ``CheckpointLoader`` scheme for the download schemes: refused (local files only)."""
    raise CheckpointReadError(
        f"{filename}: polymodal reads checkpoints from local files only and downloads nothing; expected a local "
        "path: download the file from a source you trust, then pass its path"
    )


_REPLACEMENTS = {
    "load_from_local": load_from_local_weights_only,
    "load_from_ceph": load_from_storage_weights_only,
}


def install_safe_checkpoint_loaders() -> None:
    """Replace mmengine's own ``CheckpointLoader`` schemes (each calls ``torch.load`` without ``weights_only``)
    by :func:`load_from_local_weights_only`, :func:`load_from_storage_weights_only` and, for the download schemes,
    :func:`load_from_download_refused`. Loaders registered by others are left alone. Idempotent."""
    from mmengine.runner.checkpoint import CheckpointLoader

    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if prefix == "" or getattr(loader, "__module__", "") == "mmengine.runner.checkpoint":
            name = "load_from_local" if prefix == "" else loader.__name__
            safe = _REPLACEMENTS.get(name, load_from_download_refused)
            if loader is not safe:
                CheckpointLoader.register_scheme(prefix, safe, force=True)


install_safe_checkpoint_loaders()
