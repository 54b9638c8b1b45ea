"""Does polymodal learn small real data sets with its defaults? Each setting against logistic regression / ridge
on the same split, through the public API only (ArrayDataset, stratified_split, build_model, fit, evaluate).

    python benchmarks/realdata/probe.py --list                       # the sets and their settings
    python benchmarks/realdata/probe.py xray_drr                     # every setting of one set
    python benchmarks/realdata/probe.py xray_drr:default,p8_64 audio_digits:default
    python benchmarks/realdata/probe.py all --seeds 0 1              # everything, two training seeds
    python benchmarks/realdata/probe.py --table                      # the table of every result so far

Sets (generated or extracted offline, cached under ~/.cache/polymodal-bench, see the generator scripts):
``xray_drr`` (600 DRRs of a real chest CT, nodule or not, ``xray_drr.py``), ``xray_drr_easy`` (the same with
larger nodules), ``nodule_phantoms`` (600 raw radiographs of the package's own source at its default
difficulty), ``audio_digits`` (500 espeak-ng spoken digits, ``spoken_digits.py``), ``synthetic_sounds`` (480
clips of the package's source), ``ts_gunpoint`` / ``ts_arrowhead`` / ``ts_italypower`` (UCR sets from the aeon
wheel, their official train/test split, ``ucr.py``).

Every run: ``torch.set_num_threads(1)``, encoder ``{"type": "vit", "embed_dim": 128, "depth": 4, "num_heads": 4}``
(random init, tuned), ``stratified_split(val_fraction=0.25, seed=0)`` (UCR: the official split), the setting's
tokenizer / head / fit arguments, everything else the package's defaults. Reported: tokens per sample, validation
accuracy after the last epoch (no selection) and of the best epoch (what ``fit`` keeps: selected on the same
validation data, so optimistic), training accuracy of the kept model, wall and CPU seconds of ``fit``. Baseline:
scikit-learn logistic regression (classification) on standardised features, C chosen by 5-fold CV on the training
part only; the best of the listed feature sets. Results are appended to ``<cache>/probe_results.jsonl``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cache import cache_dir

import polymodal

ENCODER = {"type": "vit", "embed_dim": 128, "depth": 4, "num_heads": 4}
RESULTS = cache_dir() / "probe_results.jsonl"


@dataclass
class Setting:
    """One way to train: tokenizer overrides, head overrides, fit arguments, model fields."""

    tokenizer: dict[str, Any] = field(default_factory=dict)
    head: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class Task:
    """A data set: raw inputs for ArrayDataset, labels, the settings to try and the baseline features."""

    modality: str
    load: Callable[[], tuple[Any, np.ndarray, Any, np.ndarray | None]]  # inputs, labels, test inputs, labels
    features: Callable[[Any], dict[str, np.ndarray]]  # raw inputs -> {feature set name: [N, F]}
    settings: dict[str, Setting]
    fit: dict[str, Any] = field(default_factory=dict)  # defaults of this set (epochs, batch size)


# -- data ---------------------------------------------------------------------------------------------------------
def _xray_drr(radius: tuple[float, float], **view: Any) -> Callable[[], tuple[Any, np.ndarray, Any, None]]:
    def load() -> tuple[Any, np.ndarray, Any, None]:
        import xray_drr

        d = xray_drr.load(num=600, seed=0, radius=radius, **view)
        return d["images"], d["labels"], None, None

    return load


def _nodule_phantoms() -> tuple[Any, np.ndarray, Any, None]:
    source = polymodal.get("data source", "nodule_phantoms")()  # its default difficulty
    images, labels = source.raw_radiographs(600, np.random.default_rng(0))
    return images, labels, None, None


def _blobs(images: np.ndarray) -> np.ndarray:
    """Nodule-detector features: the strongest responses of a scale-normalised Laplacian of Gaussian (bright
    blobs) at 4 scales (sigma 1-3 px) of each percentile-scaled image: top 1, 3, 6, 11 and the 99th and 95th
    percentiles, 24 numbers."""
    from scipy import ndimage

    out = []
    for img in images:
        x = img.astype(np.float64)
        lo, hi = np.percentile(x, (0.5, 99.5))
        x = (x - lo) / max(hi - lo, 1e-9)
        f = []
        for sigma in (1.0, 1.5, 2.0, 3.0):
            d = -ndimage.gaussian_laplace(x, sigma) * sigma**2
            v = np.sort(d.ravel())[::-1]
            f += [v[0], v[2], v[5], v[10], np.percentile(d, 99), np.percentile(d, 95)]
        out.append(f)
    return np.array(out)


def _pixels(images: np.ndarray) -> dict[str, np.ndarray]:
    x = images.reshape(len(images), -1).astype(np.float64)
    lo = np.percentile(x, 0.5, axis=1, keepdims=True)
    hi = np.percentile(x, 99.5, axis=1, keepdims=True)
    scaled = np.clip((x - lo) / (hi - lo), 0, 1)
    return {"raw pixels": x, "percentile-scaled pixels": scaled, "LoG blob features": _blobs(images)}


def _digits() -> tuple[Any, np.ndarray, Any, None]:
    import spoken_digits

    d = spoken_digits.load(50, 0)
    return d["audio"], d["labels"], None, None


def _sounds() -> tuple[Any, np.ndarray, Any, None]:
    source = polymodal.get("data source", "synthetic_sounds")()
    clips = source.generate(480, 0)
    return [c.numpy() for c, _ in clips], np.array([y for _, y in clips]), None, None


def _log_mel(clips: Any) -> dict[str, np.ndarray]:
    from polymodal.plugins.audio import kaldi_fbank  # the same filter banks the tokenizer computes

    feats = []
    for clip in clips:
        fb = kaldi_fbank(
            torch.as_tensor(np.asarray(clip), dtype=torch.float32)[None], 16000, num_mel_bins=64
        )[0]
        feats.append(torch.cat([fb.mean(0), fb.std(0)]).numpy())
    f = np.stack(feats)
    return {"mean log-mel (64)": f[:, :64], "mean + std log-mel (128)": f}


def _ucr(name: str) -> Callable[[], tuple[Any, np.ndarray, Any, np.ndarray]]:
    def load() -> tuple[Any, np.ndarray, Any, np.ndarray]:
        import ucr

        d = ucr.load(name)
        (xtr, ytr), (xte, yte) = d["train"], d["test"]
        return np.stack(xtr), ytr, np.stack(xte), yte

    return load


def _raw_values(series: np.ndarray) -> dict[str, np.ndarray]:
    x = series.reshape(len(series), -1).astype(np.float64)
    z = (x - x.mean(1, keepdims=True)) / (x.std(1, keepdims=True) + 1e-8)
    return {"raw values": x, "z-normalised values": z}


# -- settings -----------------------------------------------------------------------------------------------------
def _xray_settings() -> dict[str, Setting]:
    s = {
        "default": Setting(note="resize 384, patch 16 (576 tokens), percentile, lr 1e-3, cls"),
        "native_p16": Setting({"resize": None, "img_size": 64}, note="no resize: 4 x 4 = 16 tokens"),
        "native_p8": Setting({"resize": None, "img_size": 64, "patch_size": 8}, note="64 tokens"),
        "native_p4": Setting({"resize": None, "img_size": 64, "patch_size": 4}, note="256 tokens"),
        "r128_p16": Setting({"resize": 128, "img_size": 128}, note="64 tokens of 16 px at 2x"),
        "r128_p8": Setting({"resize": 128, "img_size": 128, "patch_size": 8}, note="256 tokens"),
        "r224_p16": Setting({"resize": 224, "img_size": 224}, note="196 tokens"),
        "default_mean": Setting(head={"pool": "mean"}, note="576 tokens, mean pooling"),
        "default_lr3e-4": Setting(fit={"lr": 3e-4}),
        "default_lr1e-4": Setting(fit={"lr": 1e-4}),
        "default_window": Setting(
            {"normalization": "window", "window_center": 2048, "window_width": 4096},
            note="fixed 12-bit window",
        ),
        "native_p8_window": Setting(
            {"resize": None, "img_size": 64, "patch_size": 8, "normalization": "window"}, note="fixed window"
        ),
        "native_p8_pct1": Setting(
            {"resize": None, "img_size": 64, "patch_size": 8, "percentiles": (1.0, 99.0)},
            note="percentiles 1-99",
        ),
        "native_p8_mean": Setting({"resize": None, "img_size": 64, "patch_size": 8}, head={"pool": "mean"}),
        "native_p8_lr3e-4": Setting({"resize": None, "img_size": 64, "patch_size": 8}, fit={"lr": 3e-4}),
        "native_p8_lr3e-3": Setting({"resize": None, "img_size": 64, "patch_size": 8}, fit={"lr": 3e-3}),
        "native_p8_e30": Setting({"resize": None, "img_size": 64, "patch_size": 8}, fit={"epochs": 30}),
        "native_p4_mean": Setting({"resize": None, "img_size": 64, "patch_size": 4}, head={"pool": "mean"}),
        "native_p16_mean": Setting({"resize": None, "img_size": 64}, head={"pool": "mean"}),
        "native_p16_mean_window": Setting(
            {"resize": None, "img_size": 64, "normalization": "window"},
            head={"pool": "mean"},
            note="fixed window",
        ),
        "r64_p16_mean": Setting(
            {"resize": 64, "img_size": 64}, head={"pool": "mean"}, note="16 tokens, any input"
        ),
        "r64_p8": Setting(
            {"resize": 64, "img_size": 64, "patch_size": 8}, note="resize to 64 (any input size)"
        ),
        "r64_p8_mean": Setting({"resize": 64, "img_size": 64, "patch_size": 8}, head={"pool": "mean"}),
        "r128_p16_mean": Setting({"resize": 128, "img_size": 128}, head={"pool": "mean"}),
        "r128_p8_mean": Setting({"resize": 128, "img_size": 128, "patch_size": 8}, head={"pool": "mean"}),
    }
    return s


def _audio_settings() -> dict[str, Setting]:
    return {
        "default": Setting(note="128 mel, patch 16, stride 10 x 10: 9 x 12 = 108 tokens per second"),
        "mel64_s16": Setting(
            {"num_mel_bins": 64, "stride_time": 16, "stride_freq": 16}, note="6 x 4 = 24 tokens per second"
        ),
        "mel128_s16": Setting({"stride_time": 16, "stride_freq": 16}, note="6 x 8 = 48 tokens"),
        "mel64_s10": Setting({"num_mel_bins": 64}, note="9 x 5 = 45 tokens"),
        "mel64_s16_mean": Setting(
            {"num_mel_bins": 64, "stride_time": 16, "stride_freq": 16}, head={"pool": "mean"}
        ),
        "default_mean": Setting(head={"pool": "mean"}),
        "default_lr3e-4": Setting(fit={"lr": 3e-4}),
        "mel64_s16_e30": Setting(
            {"num_mel_bins": 64, "stride_time": 16, "stride_freq": 16}, fit={"epochs": 30}
        ),
        "default_e30": Setting(fit={"epochs": 30}),
        "mel64_p32_mean": Setting(
            {"num_mel_bins": 64, "patch_size": 32, "stride_time": 32, "stride_freq": 32},
            head={"pool": "mean"},
            note="the demo's: 3 x 2 = 6 tokens per second",
        ),
    }


def _ts_settings() -> dict[str, Setting]:
    return {
        "default": Setting(note="patch 16, stride 8"),
        "fine_p8s4": Setting({"patch_length": 8, "stride": 4}),
        "fine_p4s2": Setting({"patch_length": 4, "stride": 2}),
        "coarse_p32s16": Setting({"patch_length": 32, "stride": 16}),
        "default_mean": Setting(head={"pool": "mean"}),
        "fine_p8s4_mean": Setting({"patch_length": 8, "stride": 4}, head={"pool": "mean"}),
        "coarse_p32s16_mean": Setting({"patch_length": 32, "stride": 16}, head={"pool": "mean"}),
    }


SMALL_VIEW = {"yaw": 5.0, "tilt": 3.0, "roll": 3.0, "shift": 0.03, "fov_scale": (0.95, 1.05)}
TASKS: dict[str, Task] = {
    "xray_drr": Task("xray", _xray_drr((4.0, 7.0)), _pixels, _xray_settings(), {"epochs": 10}),
    "xray_drr_easy": Task("xray", _xray_drr((6.0, 10.0)), _pixels, _xray_settings(), {"epochs": 10}),
    "xray_drr_small_view": Task(
        "xray", _xray_drr((5.0, 9.0), **SMALL_VIEW), _pixels, _xray_settings(), {"epochs": 10}
    ),
    "xray_drr_big": Task(
        "xray", _xray_drr((8.0, 14.0), **SMALL_VIEW), _pixels, _xray_settings(), {"epochs": 10}
    ),
    "nodule_phantoms": Task("xray", _nodule_phantoms, _pixels, _xray_settings(), {"epochs": 10}),
    "audio_digits": Task("audio", _digits, _log_mel, _audio_settings(), {"epochs": 10}),
    "synthetic_sounds": Task("audio", _sounds, _log_mel, _audio_settings(), {"epochs": 10}),
    "ts_gunpoint": Task("time_series", _ucr("GunPoint"), _raw_values, _ts_settings(), {"epochs": 30}),
    "ts_arrowhead": Task("time_series", _ucr("ArrowHead"), _raw_values, _ts_settings(), {"epochs": 30}),
    "ts_italypower": Task(
        "time_series", _ucr("ItalyPowerDemand"), _raw_values, _ts_settings(), {"epochs": 30}
    ),
}


# -- running ------------------------------------------------------------------------------------------------------
def _split(task: Task) -> tuple[Any, Any, np.ndarray, np.ndarray, Any, Any]:
    """``(train inputs, val inputs, train labels, val labels, train idx, val idx)``."""
    x, y, xt, yt = task.load()
    if xt is not None:
        return x, xt, y, yt, None, None
    probe = polymodal.ArrayDataset(task.modality, x, y, check=1)
    train, val = polymodal.stratified_split(probe, val_fraction=0.25, seed=0)
    tr, va = train.indices.numpy(), val.indices.numpy()
    pick = (lambda a, i: a[i]) if isinstance(x, np.ndarray) else (lambda a, i: [a[k] for k in i])
    return pick(x, tr), pick(x, va), y[tr], y[va], tr, va


def baseline(task: Task, xtr: Any, xva: Any, ytr: np.ndarray, yva: np.ndarray) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    out = {}
    ftr, fva = task.features(xtr), task.features(xva)
    for name in ftr:
        clf = make_pipeline(
            StandardScaler(), LogisticRegressionCV(Cs=np.logspace(-4, 2, 7).tolist(), cv=5, max_iter=5000)
        )
        clf.fit(ftr[name], ytr)
        out[name] = float((clf.predict(fva[name]) == yva).mean())
    return out


def run(
    set_name: str, setting_name: str, seed: int, log: Path, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    task = TASKS[set_name]
    s = task.settings[setting_name]
    xtr, xva, ytr, yva, _, _ = _split(task)
    train = polymodal.ArrayDataset(task.modality, xtr, ytr, tokenizer=s.tokenizer or None)
    val = polymodal.ArrayDataset(task.modality, xva, yva, tokenizer=s.tokenizer or None)
    fit_args = {"batch_size": 32, **task.fit, **s.fit, **(extra or {})}
    torch.manual_seed(seed)  # the initial weights: build_model draws them from torch's global generator
    model = polymodal.build_model(
        encoder=dict(ENCODER),
        tokenizers={task.modality: train.tokenizer_config},
        heads={task.modality: train.head_config(**s.head)},
        **s.model,
    )
    w0, c0 = time.perf_counter(), time.process_time()
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f"=== {set_name}:{setting_name} seed {seed} {fit_args}", flush=True)
        result = polymodal.fit(model, train, val, seed=seed, summary=False, **fit_args)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    key = f"{task.modality}/accuracy"
    hist = [float(h[key]) for h in result.history]
    train_acc = polymodal.evaluate(result.model, train)[key]
    return {
        "set": set_name,
        "setting": setting_name + "".join(f" {k}={v}" for k, v in (extra or {}).items()),
        "seed": seed,
        "tokens": train.tokens_per_sample(),
        "n_train": len(train),
        "n_val": len(val),
        "epochs": fit_args["epochs"],
        "lr": fit_args.get("lr", 1e-3),
        "batch_size": fit_args["batch_size"],
        "tokenizer": s.tokenizer,
        "head": s.head,
        "last": hist[-1],
        "best": max(hist),
        "best_epoch": result.best_epoch,
        "history": hist,
        "train_acc": float(train_acc),
        "wall_s": wall,
        "cpu_s": cpu,
        "polymodal": str(Path(polymodal.__file__).parent),
        "init_seeded": True,
    }


def _baseline_cached(set_name: str, refresh: bool = False) -> dict[str, float]:
    path = cache_dir() / "baselines.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    if set_name not in known or refresh:
        task = TASKS[set_name]
        xtr, xva, ytr, yva, _, _ = _split(task)
        known[set_name] = baseline(task, xtr, xva, ytr, yva)
        # another process may have written meanwhile: merge
        latest = json.loads(path.read_text()) if path.exists() else {}
        latest.update(known)
        path.write_text(json.dumps(latest, indent=1))
        known = latest
    return known[set_name]


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| set | setting | tokens | epochs | lr | val acc last | val acc best (epoch) | train acc | baseline "
        "(LR) | wall s | cpu s | seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base_all = (
        json.loads((cache_dir() / "baselines.json").read_text())
        if (cache_dir() / "baselines.json").exists()
        else {}
    )
    for r in rows:
        b = base_all.get(r["set"], {})
        best_b = max(b.values()) if b else math.nan
        lines.append(
            f"| {r['set']} | {r['setting']} | {r['tokens']} | {r['epochs']} | {r['lr']:g} | {r['last']:.3f} | "
            f"{r['best']:.3f} ({r['best_epoch']}) | {r['train_acc']:.3f} | {best_b:.3f} | {r['wall_s']:.0f} | "
            f"{r['cpu_s']:.0f} | {r['seed']}{'' if r.get('init_seeded') else '*'} |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", nargs="*", help="SET, SET:SETTING[,SETTING...] or 'all'")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--list", action="store_true")
    p.add_argument(
        "--fit", action="append", default=[], metavar="KEY=VALUE", help="fit argument for every run"
    )
    p.add_argument("--table", action="store_true", help="print the table of all results so far")
    p.add_argument(
        "--refresh-baselines", action="store_true", help="recompute the baselines of the named sets"
    )
    p.add_argument(
        "--baselines-only", action="store_true", help="compute and print the baselines, train nothing"
    )
    a = p.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if a.list:
        for name, t in TASKS.items():
            print(f"{name} ({t.modality}, fit {t.fit}):")
            for k, s in t.settings.items():
                print(f"  {k}: tokenizer {s.tokenizer} head {s.head} fit {s.fit} {s.note}")
        return
    if a.table:
        rows = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
        print(table(rows))
        base = (
            json.loads((cache_dir() / "baselines.json").read_text())
            if (cache_dir() / "baselines.json").exists()
            else {}
        )
        for k, v in base.items():
            print(f"baseline {k}: " + ", ".join(f"{n} {acc:.3f}" for n, acc in v.items()))
        return
    jobs = []
    for item in a.what:
        if item == "all":
            jobs += [(n, k) for n, t in TASKS.items() for k in t.settings]
            continue
        name, _, which = item.partition(":")
        jobs += [(name, k) for k in (which.split(",") if which else TASKS[name].settings)]
    log = cache_dir() / "probe.log"
    extra = {k: (int(v) if v.isdigit() else float(v)) for k, v in (kv.split("=", 1) for kv in a.fit)}
    rows = []
    for name in dict.fromkeys(n for n, _ in jobs):
        b = _baseline_cached(name, a.refresh_baselines)
        print(f"baseline {name}: " + ", ".join(f"{n} {acc:.3f}" for n, acc in b.items()), flush=True)
    if a.baselines_only:
        return
    for name, setting in jobs:
        for seed in a.seeds:
            buf = io.StringIO()
            try:
                r = run(name, setting, seed, log, extra)
            except Exception as exc:  # keep going: one failing setting is a result too
                print(f"{name}:{setting} seed {seed} FAILED: {type(exc).__name__}: {exc}", flush=True)
                continue
            del buf
            rows.append(r)
            with open(RESULTS, "a") as f:
                f.write(json.dumps(r) + "\n")
            print(
                f"{name}:{setting} seed {seed}: tokens {r['tokens']} last {r['last']:.3f} best {r['best']:.3f} "
                f"(epoch {r['best_epoch']}) train {r['train_acc']:.3f} history "
                f"{[round(h, 2) for h in r['history']]} {r['wall_s']:.0f}s wall {r['cpu_s']:.0f}s cpu",
                flush=True,
            )
    if rows:
        print(table(rows))


if __name__ == "__main__":
    main()
