"""Hyperspectral cube files: ``.npy``, ``.npz`` (numpy) and ``.mat`` (MATLAB, through scipy), the forms the
public scenes (Indian Pines, Pavia, Salinas) come in.

Shapes: one file -> ``(H, W, bands)`` numeric numpy array as stored, what the hyperspectral tokenizer's
``preprocess`` takes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polymodal.core.extras import require

__all__ = ["CUBE_EXTENSIONS", "read_cube"]

#: Suffixes of the cube files :func:`read_cube` reads.
CUBE_EXTENSIONS = (".npy", ".npz", ".mat")


def read_cube(path: str | Path, key: str | None = None) -> np.ndarray:
    """A hyperspectral cube ``(H, W, bands)`` from ``.npy``, ``.npz`` or ``.mat`` (MATLAB, through scipy).

    ``key``: the array's name in a ``.npz``/``.mat`` file; default its only 3-D array (an error if several)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
    elif suffix in (".npz", ".mat"):
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        else:
            io = require("scipy.io", None, "reading .mat cubes")
            arrays = {k: v for k, v in io.loadmat(p).items() if not k.startswith("__")}
        if key is not None:
            if key not in arrays:
                raise KeyError(f"{p.name}: no array {key!r}; it has {sorted(arrays)}")
            arr = arrays[key]
        else:
            cubes = [k for k, v in arrays.items() if np.ndim(v) == 3]
            if len(cubes) != 1:
                raise ValueError(
                    f"{p.name}: expected one 3-D array (or key=...), found {cubes or sorted(arrays)}"
                )
            arr = arrays[cubes[0]]
    else:
        raise ValueError(f"read_cube: expected a .npy, .npz or .mat file, got {p.name}")
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.size == 0 or arr.dtype.kind not in "biuf":
        raise ValueError(f"{p.name}: expected a numeric cube (H, W, bands), got {arr.dtype} {arr.shape}")
    return arr
