"""Readers: one file (or string) -> the raw sample a modality's tokenizer ``preprocess`` takes.

Every reader is a plain, picklable function of a path, so DataLoader workers can run it (through
:class:`~polymodal.data.FileDataset`); resampling, normalisation and frame/point handling after reading stay in the
tokenizers (one piece of code per idea). Outputs:

========================  ======================================================  ===============================
reader                    formats                                                 gives
========================  ======================================================  ===============================
:func:`read_image`        PNG, JPEG, TIFF, BMP, WebP … (Pillow), EXIF-oriented    ``(H, W)`` / ``(H, W, 3)`` array
:func:`read_cube`         ``.npy``, ``.npz``, ``.mat`` (scipy)                    ``(H, W, bands)`` array
:func:`read_audio`        WAV (``wave``: PCM 8/16/24/32-bit); FLAC, OGG, MP3 …   ``(samples,) float32, rate``
                          and float WAV through soundfile (``polymodal[audio]``)
:func:`read_video`        MP4, AVI, MKV, WebM … through PyAV (``[video]``)        ``(T, H, W, 3)`` uint8
:func:`read_points`       ``.ply`` (ascii, binary), ``.xyz``/``.txt``/``.pts``,   ``(P, 3 + C)`` float array
                          ``.npy``; meshes (``.ply`` faces; ``.obj``/``.off``/
                          ``.stl`` via trimesh, ``[mesh]``) sampled on the surface
:func:`read_table`        CSV, TSV, JSON lines, Parquet (``[parquet]``)           pandas DataFrame
:func:`read_series`       CSV (one column per channel), ``.npy``                  ``(C, L)`` float32 array
:func:`read_imu`          CSV with named axis columns (``acc_x`` … ``gyr_z``)     ``(C, T)`` (and its rate)
:func:`read_text`         one ``.txt`` file                                       ``str``
:func:`smiles_to_graph`   a SMILES string through RDKit (``[chem]``)              PyG ``Data``
========================  ======================================================  ===============================

A missing optional package raises :class:`MissingExtraError` (an ``ImportError``) naming the extra to install.
"""

from __future__ import annotations

import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.core.extras import MissingExtraError, require
from polymodal.data.points import read_points, sample_surface

__all__ = [
    "IMU_COLUMNS",
    "MissingExtraError",
    "read_audio",
    "read_cube",
    "read_image",
    "read_imu",
    "read_points",
    "read_series",
    "read_table",
    "read_text",
    "read_video",
    "sample_surface",
    "smiles_to_graph",
]

PathLike = str | Path
IMU_COLUMNS = ("acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z")
TIME_COLUMNS = ("time", "timestamp", "t", "date", "datetime")


_require = require


# -- images -------------------------------------------------------------------------------------------------------
_GREY_DEEP = {"I;16": np.uint16, "I;16L": np.uint16, "I;16B": np.uint16, "I;16N": np.uint16, "I": np.int32}


def read_image(path: PathLike, mode: str | None = None) -> np.ndarray:
    """One image file -> a numpy array, rotated upright by its EXIF orientation.

    ``mode``: ``None`` keeps what is stored (greyscale ``(H, W)`` at its depth: uint8, 16-bit as uint16, 32-bit
    integer as int32, float as float32; colour, palette, CMYK and alpha images as RGB ``(H, W, 3)`` uint8);
    ``"gray"`` gives ``(H, W)`` (greyscale kept at full depth, colour converted to 8-bit luminance); ``"rgb"``
    gives ``(H, W, 3)`` uint8 (16-bit greyscale scaled to 8 bits, not clipped).
    """
    if mode not in (None, "gray", "rgb"):
        raise ValueError(f"read_image: mode must be None, 'gray' or 'rgb', got {mode!r}")
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        img.load()
    grey = img.mode in ("1", "L", "F") or img.mode in _GREY_DEEP
    if grey:
        if img.mode == "1":
            arr = np.asarray(img.convert("L"))
        elif img.mode in _GREY_DEEP:
            arr = np.asarray(img).astype(_GREY_DEEP[img.mode])
        else:
            arr = np.asarray(img)
        if mode != "rgb":
            return np.ascontiguousarray(arr)
        if arr.dtype != np.uint8:  # to 8 bits by the type's range (floats are taken as [0, 1])
            if arr.dtype.kind == "f":
                arr = np.clip(arr, 0.0, 1.0) * 255.0
            else:
                arr = arr.astype(np.float64) * (255.0 / np.iinfo(arr.dtype).max)
            arr = np.round(arr).clip(0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=-1)
    rgb = img.convert("RGB")
    return np.asarray(rgb.convert("L") if mode == "gray" else rgb).copy()


def read_cube(path: PathLike, key: str | None = None) -> np.ndarray:
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
            io = _require("scipy.io", None, "reading .mat cubes")
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


# -- audio --------------------------------------------------------------------------------------------------------
def _read_wav(path: PathLike) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        data = w.readframes(frames)
    if channels < 1 or rate < 1:
        raise ValueError(f"bad WAV header: {channels} channels at {rate} Hz")
    n = len(data) // (width * channels)
    if n == 0:
        raise ValueError("WAV file has no samples")
    data = data[: n * width * channels]
    if width == 1:  # unsigned 8-bit
        x = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(data, "<i2").astype(np.float32) / 2.0**15
    elif width == 3:  # 24-bit: sign-extend three little-endian bytes into int32
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v)).astype(np.float32) / 2.0**23
    elif width == 4:
        x = (np.frombuffer(data, "<i4").astype(np.float64) / 2.0**31).astype(np.float32)
    else:
        raise ValueError(f"unsupported WAV sample width {width} bytes")
    return x.reshape(n, channels).mean(axis=1, dtype=np.float32), rate


def read_audio(path: PathLike) -> tuple[np.ndarray, int]:
    """One audio file -> ``(waveform, sample_rate)``: float32 ``(samples,)`` in [-1, 1), channels mixed down to
    mono. WAV (PCM 8/16/24/32-bit) is read by the standard library; other formats (FLAC, OGG, MP3 …) and float
    WAV through soundfile (``pip install 'polymodal[audio]'``). The audio tokenizer resamples the result to its
    ``sample_rate`` (band-limited windowed sinc)."""
    p = Path(path)
    if p.suffix.lower() in (".wav", ".wave"):
        try:
            return _read_wav(p)
        except (wave.Error, EOFError, RuntimeError) as exc:  # the wave module's ways to refuse a header
            if "unknown format" not in str(
                exc
            ):  # float or compressed WAV: soundfile reads them when installed
                raise ValueError(f"bad WAV file: {type(exc).__name__} {exc}".strip()) from exc
    sf = _require("soundfile", "audio", f"reading {p.suffix or 'this'} audio")
    data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise ValueError("audio file has no samples")
    return data.mean(axis=1, dtype=np.float32), int(rate)


# -- video --------------------------------------------------------------------------------------------------------
def read_video(path: PathLike, num_frames: int = 16) -> np.ndarray:
    """``num_frames`` RGB frames ``(T, H, W, 3)`` uint8 sampled uniformly over a video (PyAV, ``polymodal[video]``).

    Frames are found by seeking to the key frame before each sampled time and decoding forward from there, so a
    long file is not decoded whole. Frame ``i`` of ``N`` (at the stream's average rate) is taken at the same
    indices as the video tokenizer's uniform sampling."""
    if num_frames < 1:
        raise ValueError(f"read_video: num_frames must be positive, got {num_frames}")
    av = _require("av", "video", "reading video")
    from polymodal.plugins.video import uniform_frame_indices

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        tb = float(stream.time_base) if stream.time_base else 0.0
        total = stream.frames
        if not total and stream.duration and rate and tb:
            total = round(stream.duration * tb * rate)
        if not total or not rate or not tb:  # no index: decode in one pass (short or unusual files)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
            if not frames:
                raise ValueError("video has no frames")
            keep = uniform_frame_indices(len(frames), num_frames).tolist()
            return np.stack([frames[i] for i in keep])
        start = stream.start_time or 0
        step = 1.0 / (rate * tb)  # one frame, in time-base units
        out: list[np.ndarray] = []
        decoder: Any = None
        last_pts = None
        current = None
        for index in uniform_frame_indices(total, num_frames).tolist():
            target = start + index * step
            if current is not None and last_pts is not None and abs(last_pts - target) < step / 2:
                out.append(current)  # the same frame again (fewer frames than asked)
                continue
            if decoder is None or last_pts is None or target < last_pts or target - last_pts > rate * step:
                container.seek(int(target), stream=stream, backward=True, any_frame=False)
                decoder = container.decode(stream)
            frame = None
            for frame in decoder:
                pts = frame.pts if frame.pts is not None else target
                if pts + step / 2 >= target:
                    break
            if frame is None:
                if current is None:
                    raise ValueError("video has no frames")
                out.append(current)
                continue
            last_pts = frame.pts if frame.pts is not None else target
            current = frame.to_ndarray(format="rgb24")
            out.append(current)
    return np.stack(out)


# -- tables, series, IMU, text ------------------------------------------------------------------------------------
def read_table(path: PathLike, **kwargs: Any) -> Any:
    """A table as a pandas DataFrame: ``.csv``, ``.tsv``, ``.jsonl`` / ``.json`` (JSON lines), ``.parquet`` (needs
    pyarrow: ``pip install 'polymodal[parquet]'``). ``kwargs`` go to the pandas reader."""
    import pandas as pd

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in (".parquet", ".pq"):
        _require("pyarrow", "parquet", "reading Parquet files")
        return pd.read_parquet(p, **kwargs)
    if suffix in (".jsonl", ".json", ".ndjson"):
        return pd.read_json(p, lines=suffix != ".json", **{"dtype": False, **kwargs})  # values as written
    if suffix == ".tsv":
        return pd.read_csv(p, sep="\t", **kwargs)
    if suffix in (".csv", ".txt"):
        return pd.read_csv(p, **kwargs)
    raise ValueError(f"read_table: expected .csv, .tsv, .jsonl or .parquet, got {p.name}")


def _numeric_columns(
    frame: Any, columns: Sequence[str] | None, exclude: Sequence[str], where: str
) -> np.ndarray:
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise KeyError(f"{where}: no columns {missing}; it has {list(frame.columns)}")
        picked = frame[list(columns)]
    else:
        keep = [c for c in frame.columns if str(c).lower() not in exclude]
        picked = frame[keep].select_dtypes("number")
        if picked.shape[1] == 0:
            raise ValueError(f"{where}: no numeric columns (columns: {list(frame.columns)})")
    values = picked.to_numpy(dtype=np.float32)
    if values.shape[0] == 0:
        raise ValueError(f"{where}: the file has no rows")
    return np.ascontiguousarray(values.T)


def read_series(path: PathLike, columns: Sequence[str] | None = None) -> np.ndarray:
    """One time series ``(C, L)`` float32: a CSV/TSV/Parquet with one column per channel (``columns``; default
    every numeric column except time-like ones: time, timestamp, t, date) or a ``.npy`` ``(C, L)`` / ``(L,)``."""
    p = Path(path)
    if p.suffix.lower() == ".npy":
        arr = np.load(p, allow_pickle=False).astype(np.float32)
        if arr.ndim not in (1, 2) or arr.size == 0:
            raise ValueError(f"{p.name}: expected a series (C, L) or (L,), got shape {arr.shape}")
        return arr.reshape(-1, arr.shape[-1])
    return _numeric_columns(read_table(p), columns, TIME_COLUMNS, p.name)


def read_imu(
    path: PathLike,
    columns: Sequence[str] = IMU_COLUMNS,
    time_column: str | None = None,
    time_unit: float = 1.0,
) -> np.ndarray | dict[str, Any]:
    """One IMU recording from a CSV with named axis columns -> ``(C, T)`` float32 in ``columns`` order.

    With ``time_column`` (timestamps in units of ``time_unit`` seconds, e.g. ``1e-3`` for milliseconds) the
    result is ``{"values": (C, T), "sample_rate": Hz}``, the rate from the median time step, and the IMU tokenizer
    resamples it to its own rate; without, the recording is taken to be at the tokenizer's rate."""
    p = Path(path)
    frame = read_table(p)
    values = _numeric_columns(frame, columns, (), p.name)
    if time_column is None:
        return values
    if time_column not in frame.columns:
        raise KeyError(f"{p.name}: no time column {time_column!r}; it has {list(frame.columns)}")
    t = frame[time_column].to_numpy(dtype=np.float64) * time_unit
    dt = np.median(np.diff(t)) if len(t) > 1 else 0.0
    if not dt > 0:
        raise ValueError(f"{p.name}: timestamps in {time_column!r} do not increase")
    return {"values": values, "sample_rate": round(1.0 / dt)}


def read_text(path: PathLike, encoding: str = "utf-8") -> str:
    """The text of one file (one sample), decoded with ``encoding``; surrounding whitespace stripped."""
    return Path(path).read_text(encoding=encoding).strip()


# -- molecules ----------------------------------------------------------------------------------------------------
def smiles_to_graph(smiles: str) -> Any:
    """A molecule from its SMILES string -> PyG ``Data`` (PyG's ``from_smiles``, RDKit: ``polymodal[chem]``):
    ``x`` ``(atoms, 9)`` and ``edge_attr`` ``(2·bonds, 3)`` as float (PyG's categorical atom and bond features).
    An unparsable string raises ``ValueError`` (``from_smiles`` alone returns an empty graph)."""
    chem = _require("rdkit.Chem", "chem", "reading SMILES")
    from rdkit import RDLogger
    from torch_geometric.utils import from_smiles

    RDLogger.DisableLog("rdApp.*")
    if not isinstance(smiles, str) or chem.MolFromSmiles(smiles) is None:
        raise ValueError(f"invalid SMILES {smiles!r}")
    g = from_smiles(smiles)
    g.x = g.x.float()
    g.edge_attr = g.edge_attr.float()
    del g.smiles
    return g
