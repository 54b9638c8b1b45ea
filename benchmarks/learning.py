"""Learning benchmark (not a test): the defaults trained on every registered data source at its default difficulty,
each metric side by side with a simple baseline on the same split.

For each data source (its default config, so its default difficulty): the modality's tokenizer with its default
settings (plus the source's own ``tokenizer_config()``, e.g. a fitted table schema) and the head of ``task()``, on a
small randomly initialised shared encoder (ViT, 128 wide, 4 blocks, 4 heads), trained with ``polymodal.fit``'s
defaults (a time budget per source) on the training split less a validation fifth that picks the best epoch,
then scored on the test split. The baseline is logistic regression (classification) or ridge regression
(forecasting), with its regularisation chosen by cross-validation on the training split, on simple features of the
same samples: pixels / voxels / values, per-channel statistics and band energies for signals, bags of words for
text, encoded columns for tables, size and degree statistics for graphs, shape statistics for point clouds. The
data source's own chance level or naive forecast is printed too.

    python benchmarks/learning.py                      # every source, 120 s of training each
    python benchmarks/learning.py --only nodule_phantoms synthetic_sounds --max-time 300
    python benchmarks/learning.py --json results.json

One torch thread (the machines here have 2 shared cores); times are wall-clock seconds of ``fit``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

import polymodal

ENCODER = {"type": "vit", "embed_dim": 128, "depth": 4, "num_heads": 4}


# -- baseline features --------------------------------------------------------------------------------------------
def _signal_features(x: torch.Tensor) -> np.ndarray:
    """Per channel: mean, std, min, max, mean |step|, and the energy of 16 frequency bands (log)."""
    x = x.double().reshape(-1, x.shape[-1]) if x.dim() > 1 else x.double()[None]
    stats = [x.mean(-1), x.std(-1), x.amin(-1), x.amax(-1), x.diff(dim=-1).abs().mean(-1)]
    spec = torch.fft.rfft(x - x.mean(-1, keepdim=True)).abs() ** 2
    bands = torch.stack([b.sum(-1) for b in torch.tensor_split(spec, 16, dim=-1)], -1)
    return torch.cat([torch.stack(stats, -1), (bands + 1e-12).log()], -1).flatten().numpy()


def _graph_features(g: Any) -> np.ndarray:
    n = int(g.num_nodes)
    deg = torch.bincount(g.edge_index[0], minlength=n).double()
    hist = torch.bincount(deg.long().clamp(max=9), minlength=10).double() / n
    feats = [np.array([n, g.edge_index.shape[1] / 2, float(deg.mean()), float(deg.max())]), hist.numpy()]
    if getattr(g, "x", None) is not None:
        feats.append(g.x.double().mean(0).numpy())
    return np.concatenate(feats)


def _cloud_features(p: torch.Tensor) -> np.ndarray:
    xyz = p[:, :3].double()
    xyz = xyz - xyz.mean(0)
    eig = torch.linalg.eigvalsh(xyz.T @ xyz / len(xyz))
    r = xyz.norm(dim=1)
    hist = torch.histc(r / r.max().clamp_min(1e-9), bins=10, min=0, max=1) / len(r)
    return torch.cat([eig, xyz.abs().amax(0), hist]).numpy()


def features(modality: str, task: str, samples: Sequence[Any]) -> np.ndarray:
    """One feature row per sample (what a simple baseline sees)."""
    first = samples[0]
    if isinstance(first, str):
        return np.asarray(samples, dtype=object)  # a bag of words is fitted in the baseline
    if isinstance(first, dict):  # encoded table rows
        rows = [
            np.concatenate(
                [torch.nan_to_num(s["numeric"].double()).numpy(), s["categorical"].double().numpy()]
            )
            for s in samples
        ]
        return np.stack(rows)
    if hasattr(first, "edge_index"):
        return np.stack([_graph_features(g) for g in samples])
    if modality == "point_cloud":
        return np.stack([_cloud_features(p) for p in samples])
    fixed = len({tuple(s.shape) for s in samples}) == 1
    if fixed and (
        first.dim() >= 3 or task == "forecasting"
    ):  # pixels, voxels, a forecast's context: as they are
        return torch.stack(list(samples)).flatten(1).double().numpy()
    return np.stack([_signal_features(s) for s in samples])  # signals, possibly of different lengths


def baseline(modality: str, task: str, train: Dataset, test: Dataset) -> tuple[float, str]:
    """Test metric of logistic / ridge regression on :func:`features`, tuned by 5-fold CV on the training split."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegressionCV, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xs, ys = zip(*(train[i] for i in range(len(train))))
    xt, yt = zip(*(test[i] for i in range(len(test))))
    a, b = features(modality, task, xs), features(modality, task, xt)
    if task == "forecasting":
        ya = torch.stack([torch.as_tensor(y) for y in ys]).flatten(1).numpy()
        yb = torch.stack([torch.as_tensor(y) for y in yt]).flatten(1).numpy()
        model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))).fit(a, ya)
        return float(((model.predict(b) - yb) ** 2).mean()), "ridge"
    ya = np.array([int(torch.as_tensor(y)) for y in ys])
    yb = np.array([int(torch.as_tensor(y)) for y in yt])
    if a.dtype == object:
        steps: list[Any] = [CountVectorizer()]
    else:
        steps = [StandardScaler()]
    model = make_pipeline(*steps, LogisticRegressionCV(Cs=8, cv=5, max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(a, ya)
    return float((model.predict(b) == yb).mean()), "logistic"


# -- the defaults -------------------------------------------------------------------------------------------------
class _Split(Subset):
    """A subset that keeps the source's target collation."""

    def __init__(self, dataset: Dataset, indices: Sequence[int], collate_targets: Any) -> None:
        super().__init__(dataset, list(indices))
        self.collate_targets = collate_targets


def run_source(name: str, *, max_time: float, epochs: int, seed: int) -> dict[str, Any]:
    cls = polymodal.get("data source", name)
    source = cls.from_config()
    splits = source.splits()
    task = source.task()
    key = cls.modality
    n = len(splits["train"])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    cut = max(1, n // 5)
    train = _Split(splits["train"], order[cut:], source.collate_targets)
    val = _Split(splits["train"], order[:cut], source.collate_targets)
    test = _Split(splits["test"], range(len(splits["test"])), source.collate_targets)
    torch.manual_seed(seed)
    model = polymodal.build_model(
        encoder=ENCODER,
        tokenizers={key: {"type": key, **source.tokenizer_config()}},
        heads={key: task},
    )
    start = time.perf_counter()
    result = polymodal.fit(
        model,
        {key: train},
        {key: val},
        epochs=epochs,
        max_time=max_time,
        summary=False,
        quiet=True,
        seed=seed,
    )
    seconds = time.perf_counter() - start
    metrics = polymodal.evaluate(result.model, {key: test})
    metric = model.heads[key].metrics[0]
    value = metrics[f"{key}/{metric}"]
    simple, kind = (
        baseline(key, task["type"], splits["train"], splits["test"])
        if task["type"] in ("classification", "forecasting")
        else (math.nan, "-")
    )
    higher = polymodal.get("metric", metric).higher_is_better
    return {
        "source": name,
        "modality": key,
        "task": task["type"],
        "metric": metric,
        "value": value,
        "baseline": simple,
        "baseline_kind": kind,
        "chance_or_naive": float(source.baseline()),
        "beats_baseline": (value > simple if higher else value < simple) if math.isfinite(simple) else None,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "seconds": round(seconds, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="data sources to run (default: every one with defaults)")
    parser.add_argument("--max-time", type=float, default=120.0, help="training seconds per source")
    parser.add_argument(
        "--epochs", type=int, default=200, help="most epochs per source (the time budget rules)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    names = args.only or [
        n
        for n in polymodal.list_data_sources()
        if not any(
            f.is_required() for f in polymodal.get("data source", n).config_class.model_fields.values()
        )
    ]
    rows = []
    header = f"{'data source':<18}{'modality':<15}{'metric':<10}{'defaults':>9}{'baseline':>10}{'chance':>8}  epochs  seconds"
    print(header)
    print("-" * len(header))
    for name in names:
        r = run_source(name, max_time=args.max_time, epochs=args.epochs, seed=args.seed)
        rows.append(r)
        mark = {True: "", False: " (!)", None: ""}[r["beats_baseline"]]
        print(
            f"{r['source']:<18}{r['modality']:<15}{r['metric']:<10}{r['value']:>9.3f}{r['baseline']:>10.3f}"
            f"{r['chance_or_naive']:>8.3f}  {r['epochs']:>6}  {r['seconds']:>7.1f}{mark}",
            flush=True,
        )
    beaten = sum(1 for r in rows if r["beats_baseline"])
    print(
        f"\n{beaten} of {sum(1 for r in rows if r['beats_baseline'] is not None)} beat the baseline "
        "((!) marks the others); chance / naive: the source's own level"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
