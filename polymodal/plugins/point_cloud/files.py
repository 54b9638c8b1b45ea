"""Point clouds and meshes from files: PLY (ascii and binary), XYZ/text, ``.npy``, and meshes sampled on their
surface (PLY faces directly; ``.obj``/``.off``/``.stl`` loaded by trimesh, ``polymodal[mesh]``).

:func:`read_points` gives ``(P, 3 + C)`` float32, the raw form the point-cloud tokenizer's ``preprocess`` takes
(:meth:`PointCloudTokenizer.read_file <polymodal.plugins.point_cloud.PointCloudTokenizer.read_file>` calls it);
:func:`read_ply` gives a PLY file's vertex properties and triangles; :func:`sample_surface` draws points uniformly
on a triangle mesh (area-weighted triangles, uniform barycentric coordinates), the way trimesh's
``sample_surface`` and PointNet's ModelNet sampling (Qi et al., arXiv 1612.00593) do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.core.extras import require

__all__ = ["read_ply", "read_points", "sample_surface"]

MESH_SUFFIXES = {".obj", ".off", ".stl", ".glb", ".gltf"}


# -- point clouds and meshes --------------------------------------------------------------------------------------
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def _ply_header(raw: bytes) -> tuple[str, list[tuple[str, int, list[tuple[Any, ...]]]], int]:
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError("not a PLY file (no 'ply' magic or no 'end_header')")
    body = raw.index(b"\n", end) + 1
    fmt, elements = None, []
    for line in raw[:end].decode("ascii", "replace").splitlines()[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            if words[1] == "list":
                elements[-1][2].append((words[4], _PLY_TYPES[words[2]], _PLY_TYPES[words[3]]))
            else:
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"unsupported PLY format {fmt!r}")
    return fmt, elements, body


def read_ply(path: str | Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """A PLY file -> ``({vertex property: values}, faces)``; ``faces`` are triangles ``(F, 3)`` (polygons
    fan-triangulated) or ``None``. ASCII and binary (little/big endian)."""
    raw = Path(path).read_bytes()
    fmt, elements, offset = _ply_header(raw)
    end = "<" if fmt == "binary_little_endian" else ">"
    tokens = raw[offset:].split() if fmt == "ascii" else None
    pos = 0
    vertex: dict[str, np.ndarray] = {}
    faces = None
    for name, count, props in elements:
        scalar = all(len(p) == 2 for p in props)
        rows: list[Any] = []
        if scalar and fmt == "ascii":
            values = np.array(tokens[pos : pos + count * len(props)], dtype=np.float64)  # type: ignore[index]
            if values.size != count * len(props):
                raise ValueError(f"PLY element {name!r}: expected {count} rows, the file ends early")
            table = values.reshape(count, len(props))
            pos += count * len(props)
            data = {p[0]: table[:, j] for j, p in enumerate(props)}
        elif scalar:
            dtype = np.dtype([(p[0], end + p[1]) for p in props])
            if offset + count * dtype.itemsize > len(raw):
                raise ValueError(f"PLY element {name!r}: expected {count} rows, the file ends early")
            table = np.frombuffer(raw, dtype, count, offset)
            offset += count * dtype.itemsize
            data = {p[0]: table[p[0]].astype(np.float64) for p in props}
        else:  # rows with lists (faces): read row by row
            data = {}
            for _ in range(count):
                row = []
                for p in props:
                    if fmt == "ascii":
                        k = int(tokens[pos]) if len(p) == 3 else 1  # type: ignore[index]
                        pos += len(p) == 3
                        row.append(np.array(tokens[pos : pos + k], dtype=np.float64))  # type: ignore[index]
                        pos += k
                    else:
                        if len(p) == 3:
                            k = int(np.frombuffer(raw, end + p[1], 1, offset)[0])
                            offset += np.dtype(p[1]).itemsize
                            item = p[2]
                        else:
                            k, item = 1, p[1]
                        row.append(np.frombuffer(raw, end + item, k, offset).astype(np.float64))
                        offset += k * np.dtype(item).itemsize
                rows.append(row)
        if name == "vertex":
            vertex = data
        elif name == "face" and rows:
            j = next(i for i, p in enumerate(props) if len(p) == 3)
            tris = [
                (poly[0], poly[i], poly[i + 1])
                for poly in (r[j] for r in rows)
                for i in range(1, len(poly) - 1)
            ]
            faces = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
    if not {"x", "y", "z"} <= set(vertex):
        raise ValueError(f"PLY file has no vertex x, y, z (vertex properties: {sorted(vertex)})")
    return vertex, faces


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` points ``(count, 3)`` uniformly on a triangle mesh's surface: a triangle is drawn with probability
    proportional to its area, then a uniform point in it (barycentric ``(1 - √r1, √r1 (1 - r2), √r1 r2)``)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError(f"sample_surface: expected triangles (F, 3), got {f.shape}")
    if int(f.min()) < 0 or int(f.max()) >= len(v):
        raise ValueError(f"sample_surface: face indices must be in [0, {len(v)})")
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    if not area.sum() > 0:
        raise ValueError("sample_surface: the mesh has no area")
    rng = np.random.default_rng(seed)
    tri = rng.choice(len(f), size=count, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random((count, 1))), rng.random((count, 1))
    return (1 - r1) * a[tri] + r1 * (1 - r2) * b[tri] + r1 * r2 * c[tri]


def _pick_features(
    columns: dict[str, np.ndarray], features: Sequence[str] | str | None, where: str
) -> np.ndarray:
    xyz = [columns[k] for k in ("x", "y", "z")]
    if features is None:
        extra: list[np.ndarray] = []
    elif features == "all":
        extra = [v for k, v in columns.items() if k not in ("x", "y", "z")]
    else:
        missing = [k for k in features if k not in columns]
        if missing:
            raise KeyError(f"{where}: no vertex properties {missing}; it has {list(columns)}")
        extra = [columns[k] for k in features]
    return np.stack(xyz + extra, axis=1)


def _read_numbers(path: Path) -> np.ndarray:
    """Rows of numbers separated by commas or whitespace, after an optional header line."""
    with open(path) as fh:
        first = next((ln for ln in fh if ln.strip() and not ln.startswith("#")), "")
    delimiter = "," if "," in first else None
    try:
        return np.loadtxt(path, delimiter=delimiter, ndmin=2, comments="#")
    except ValueError:  # a header line (column names)
        return np.loadtxt(path, delimiter=delimiter, ndmin=2, comments="#", skiprows=1)


def _require_trimesh(suffix: str) -> Any:
    return require("trimesh", "mesh", f"reading {suffix} meshes")


def read_points(
    path: str | Path, features: Sequence[str] | str | None = None, num_points: int = 2048, seed: int = 0
) -> np.ndarray:
    """A point cloud ``(P, 3 + C)`` float32 from ``.ply`` / ``.xyz`` / ``.txt`` / ``.pts`` / ``.csv`` / ``.npy``, or
    ``num_points`` points sampled on a mesh's surface (a ``.ply`` with faces; ``.obj``/``.off``/``.stl`` through
    trimesh, ``polymodal[mesh]``).

    ``features``: ``None`` keeps ``x y z`` only; ``"all"`` adds every other vertex property (PLY, in file order) or
    column (text, ``.npy``); a list names PLY properties (e.g. ``["nx", "ny", "nz"]``). Mesh samples have none.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in MESH_SUFFIXES:
        trimesh = _require_trimesh(suffix)
        mesh = trimesh.load(str(p), force="mesh")
        pts = sample_surface(np.asarray(mesh.vertices), np.asarray(mesh.faces), num_points, seed)
    elif suffix == ".ply":
        vertex, faces = read_ply(p)
        if faces is not None and len(faces):
            xyz = np.stack([vertex[k] for k in ("x", "y", "z")], axis=1)
            pts = sample_surface(xyz, faces, num_points, seed)
        else:
            pts = _pick_features(vertex, features, p.name)
    elif suffix in (".npy", ".xyz", ".txt", ".pts", ".csv"):
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            arr = _read_numbers(p)
        if arr.ndim != 2 or arr.shape[1] < 3:
            raise ValueError(f"{p.name}: expected points (P, 3 + C), got shape {arr.shape}")
        pts = arr if features == "all" else arr[:, :3]
        if features not in (None, "all"):
            raise ValueError(f"{p.name}: features by name need a .ply file; use features='all' or None")
    else:
        raise ValueError(
            f"read_points: unknown point cloud format {p.name} (ply, xyz, txt, pts, csv, npy, obj, off, stl)"
        )
    if len(pts) == 0:
        raise ValueError(f"{p.name}: the file has no points")
    return np.ascontiguousarray(pts, dtype=np.float32)
