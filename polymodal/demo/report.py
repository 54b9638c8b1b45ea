"""The demo's report: the results table, the figure (metric vs baseline per task, losses per task) and the rule
that says whether a value clearly beats its baseline. A metric's direction comes from the metric registry."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from polymodal import registry

__all__ = ["DemoResult", "DemoRow", "beats_baseline", "format_table", "plot_results"]


def _lower_is_better(metric: str) -> bool:
    return not registry.get("metric", metric).higher_is_better


def beats_baseline(value: float, baseline: float, metric: str) -> bool:
    """Whether ``value`` clearly beats ``baseline``: at most half the naive error for error metrics (MSE, …),
    else at least ``max(baseline + 0.2, 1.5 * baseline)``."""
    if not math.isfinite(value):
        return False
    if _lower_is_better(metric):
        return value <= 0.5 * baseline + 1e-12
    return value >= max(baseline + 0.2, 1.5 * baseline) - 1e-12  # 0.1 + 0.2 is 0.30000000000000004


@dataclass
class DemoRow:
    """One task's result: its modality, data source (name and the config it was built with), task, main metric,
    test value, baseline, real tokens per sample (without [CLS]) and whether the value clearly beats the
    baseline (:func:`beats_baseline`)."""

    modality: str
    source: str
    task: str
    metric: str
    value: float
    baseline: float
    tokens: float
    beats: bool
    source_config: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoResult:
    """What :func:`run_demo` gives back (per flavour): rows, loss curves, times, where the model is."""

    flavour: str
    rows: list[DemoRow]
    losses: dict[str, list[float]]
    metrics: dict[str, float]
    train_seconds: float
    model_dir: Path
    encoder_changed: float
    model: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "flavour": self.flavour,
            "rows": [asdict(r) for r in self.rows],
            "metrics": self.metrics,
            "train_seconds": self.train_seconds,
            "model_dir": str(self.model_dir),
            "encoder_changed": self.encoder_changed,
        }


def format_table(results: Sequence[DemoResult]) -> str:
    """The results table; with several flavours (``--compare``), one value column per flavour."""
    header = ["modality", "data source", "task", "metric"]
    header += [f"{r.flavour}" for r in results] + ["baseline", "tokens"]
    lines = [header]
    for i, row in enumerate(results[0].rows):
        cells = [row.modality, row.source, row.task, row.metric]
        for r in results:
            mark = "" if r.rows[i].beats else " (!)"
            cells.append(f"{r.rows[i].value:.3f}{mark}")
        direction = "naive" if _lower_is_better(row.metric) else "chance"
        cells += [f"{row.baseline:.3f} {direction}", f"{row.tokens:.0f}"]
        lines.append(cells)
    widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
    numeric = set(range(4, len(header)))
    text = []
    for n, line in enumerate(lines):
        cells = [
            c.rjust(w) if j in numeric and n else c.ljust(w) for j, (c, w) in enumerate(zip(line, widths))
        ]
        text.append("  ".join(cells).rstrip())
        if n == 0:
            text.append("  ".join("-" * w for w in widths))
    return "\n".join(text)


def _smooth(values: Sequence[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def plot_results(results: Sequence[DemoResult], path: str | Path) -> Path:
    """Write the demo figure (PNG): each task's metric against its baseline, and the training losses."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    rows = results[0].rows
    higher = [i for i, r in enumerate(rows) if not _lower_is_better(r.metric)]
    lower = [i for i, r in enumerate(rows) if _lower_is_better(r.metric)]
    fig = Figure(figsize=(15, 5.2), dpi=100)
    FigureCanvasAgg(fig)
    widths = [max(len(higher), 1), max(len(lower), 1) * 0.9 + 0.8, 5]
    grid = fig.add_gridspec(1, 3, width_ratios=widths if lower else [widths[0], 0.01, widths[2]])
    colours = ["tab:blue", "tab:orange", "tab:green"]
    titles = ("test metric vs chance\n(higher is better)", "error vs naive\n(lower is better)")
    for panel, idx, title in ((0, higher, titles[0]), (1, lower, titles[1])):
        if not idx:
            continue
        ax = fig.add_subplot(grid[0, panel])
        n = len(results) + 1
        width = 0.8 / n
        xs = range(len(idx))
        for k, res in enumerate(results):
            ax.bar(
                [x + k * width for x in xs],
                [res.rows[i].value for i in idx],
                width,
                color=colours[k % 3],
                label=res.flavour,
            )
        ax.bar(
            [x + len(results) * width for x in xs],
            [rows[i].baseline for i in idx],
            width,
            color="0.7",
            label="baseline",
        )
        ax.set_xticks([x + width * (n - 1) / 2 for x in xs])
        ax.set_xticklabels([rows[i].modality for i in idx], rotation=45, ha="right")
        ax.set_title(title)
        ax.set_ylabel(", ".join(sorted({rows[i].metric for i in idx})))
        top = max([r.rows[i].value for r in results for i in idx] + [rows[i].baseline for i in idx])
        ax.set_ylim(0, (1.0 if panel == 0 else top) * 1.25)  # room for the legend above the bars
        ax.legend(fontsize=8, loc="upper center", ncol=n if panel == 0 else 1)
    ax = fig.add_subplot(grid[0, 2])
    palette = matplotlib.colormaps["tab20"]

    def colours_of(j: int) -> Any:  # the ten strong colours first, then their light twins
        return palette((2 * j) % 20 + (2 * j // 20) % 2)

    for k, res in enumerate(results):
        style = "-" if k == 0 else "--"
        for j, (task, values) in enumerate(sorted(res.losses.items())):
            window = max(1, len(values) // 20)
            ax.plot(
                _smooth(values, window),
                style,
                color=colours_of(j),
                linewidth=1,
                label=task if k == 0 else None,
            )
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("training loss per task" + ("\n(solid: tuned, dashed: frozen)" if len(results) > 1 else ""))
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle("polymodal demo: one shared encoder, " + f"{len(rows)} modalities")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
