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
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

__all__ = [
    "SAFE_CHECKPOINT_GLOBALS",
    "history_buffer_method",
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


def load_checkpoint_file(path: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with the allow-list of :func:`safe_checkpoint_globals`."""
    with safe_checkpoint_globals():
        return torch.load(path, map_location=map_location, weights_only=True)
