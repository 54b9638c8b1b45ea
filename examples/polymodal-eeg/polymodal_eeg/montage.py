"""The 10-20 electrode system: names, 10-10 aliases, and positions on the scalp as unit vectors.

Positions are idealised (a spherical head): what the ``eeg`` tokenizer embeds so the encoder knows where each
channel was recorded, and what the ``eeg_rhythms`` data source uses to place rhythms and mix the background.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "ALIASES",
    "ELECTRODES",
    "MONTAGE_10_20",
    "canonical_electrode",
    "canonical_montage",
    "electrode_positions",
    "sphere_to_xyz",
]

# Idealised spherical positions of the 10-20 system: (polar angle from the vertex Cz, azimuth from the nose
# towards the left ear), in degrees. The outer ring lies 10 % of the nasion-inion arc above the ears (72°), the
# inner ring (F3, C3, P3, Fz, Pz, ...) halfway up; odd numbers are on the left, even on the right.
ELECTRODES: dict[str, tuple[float, float]] = {
    "Fp1": (72, 18), "Fpz": (72, 0), "Fp2": (72, -18),
    "F7": (72, 54), "F3": (50, 40), "Fz": (36, 0), "F4": (50, -40), "F8": (72, -54),
    "T3": (72, 90), "C3": (36, 90), "Cz": (0, 0), "C4": (36, -90), "T4": (72, -90),
    "T5": (72, 126), "P3": (50, 140), "Pz": (36, 180), "P4": (50, -140), "T6": (72, -126),
    "O1": (72, 162), "Oz": (72, 180), "O2": (72, -162),
}  # fmt: skip
# The 10-10 system renamed four temporal electrodes; files use either name.
ALIASES = {"T7": "T3", "T8": "T4", "P7": "T5", "P8": "T6"}
# The classic 19-channel clinical montage.
MONTAGE_10_20 = (
    "Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T3", "C3", "Cz",
    "C4", "T4", "T5", "P3", "Pz", "P4", "T6", "O1", "O2",
)  # fmt: skip


def canonical_electrode(name: str) -> str | None:
    """The 10-20 name of an electrode label (case-insensitive, 10-10 aliases accepted), or ``None``."""
    lookup = {k.lower(): k for k in ELECTRODES} | {k.lower(): v for k, v in ALIASES.items()}
    return lookup.get(str(name).strip().lower())


def sphere_to_xyz(angles: Sequence[tuple[float, float]]) -> Tensor:
    """(polar, azimuth) degrees -> ``[len(angles), 3]`` float64 unit vectors (x to the nose, y left, z up)."""
    theta, phi = torch.deg2rad(torch.tensor(angles, dtype=torch.float64).reshape(-1, 2)).unbind(-1)
    return torch.stack([theta.sin() * phi.cos(), theta.sin() * phi.sin(), theta.cos()], -1)


def canonical_montage(montage: Sequence[str], unique: bool = True) -> tuple[str, ...]:
    """The 10-20 names of a montage's electrodes; a ``ValueError`` names unknown (and, if ``unique``, repeated)
    electrodes."""
    names = [canonical_electrode(n) for n in montage]
    unknown = [m for m, n in zip(montage, names) if n is None]
    if unknown:
        raise ValueError(
            f"unknown 10-20 electrodes {unknown}; known: {', '.join(ELECTRODES)} (10-10: {', '.join(ALIASES)})"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if unique and twice:
        raise ValueError(f"electrodes listed twice: {twice} (10-10 aliases name the same electrode)")
    return tuple(names)


def electrode_positions(montage: Sequence[str]) -> Tensor:
    """``[C, 3]`` float32 unit vectors of the electrodes of ``montage`` (10-20 names or 10-10 aliases)."""
    return sphere_to_xyz([ELECTRODES[n] for n in canonical_montage(montage, unique=False)]).float()
