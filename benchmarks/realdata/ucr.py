"""UCR time-series classification sets that ship inside the aeon wheel (``aeon/datasets/data/<NAME>/``).

    python benchmarks/realdata/ucr.py GunPoint

pip downloads ``aeon==1.6.0`` once (no install, no dependencies) and the ``.ts`` files of the set are read with the
small parser here. Sets in that wheel: ArrowHead (36 train / 175 test, length 251, 3 classes), GunPoint (50 / 150,
150, 2), ItalyPowerDemand (67 / 1029, 24, 2), OSULeaf (200 / 242, 427, 6), ACSF1, BasicMotions (multivariate),
JapaneseVowels (multivariate, unequal length), PLAID is not in it.
"""

from __future__ import annotations

import sys

import numpy as np

try:
    from ._cache import wheel_member
except ImportError:  # run as a script
    from _cache import wheel_member  # type: ignore[no-redef]

AEON = ("aeon", "1.6.0")


def read_ts(text: str) -> tuple[list[np.ndarray], list[str]]:
    """A univariate or multivariate ``.ts`` file (sktime/aeon format) -> (series ``[C, L_i]``, labels)."""
    series, labels = [], []
    in_data = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower().startswith("@data")
            continue
        *dims, label = line.split(":")
        series.append(np.array([[float(v) for v in d.split(",")] for d in dims], dtype=np.float32))
        labels.append(label.strip())
    return series, labels


def load(name: str) -> dict[str, object]:
    """``{"train": (series, labels), "test": (series, labels), "classes": sorted label names}``; labels are
    indices into ``classes``."""
    out: dict[str, object] = {}
    names: set[str] = set()
    raw = {}
    for split in ("TRAIN", "TEST"):
        path = wheel_member(*AEON, f"aeon/datasets/data/{name}/{name}_{split}.ts")
        raw[split] = read_ts(path.read_text())
        names |= set(raw[split][1])
    classes = sorted(names, key=lambda s: (len(s), s))
    for split, (series, labels) in raw.items():
        out[split.lower()] = (series, np.array([classes.index(v) for v in labels], dtype=np.int64))
    out["classes"] = classes
    return out


if __name__ == "__main__":
    for set_name in sys.argv[1:] or ["GunPoint"]:
        d = load(set_name)
        (xtr, ytr), (xte, yte) = d["train"], d["test"]  # type: ignore[misc]
        lengths = sorted({x.shape[1] for x in xtr})
        print(
            f"{set_name}: {len(xtr)} train / {len(xte)} test, channels {xtr[0].shape[0]}, lengths {lengths[:5]}, "
            f"classes {d['classes']}, train per class {np.bincount(ytr).tolist()}"
        )
