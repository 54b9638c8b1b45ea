"""``polymodal demo``: one shared encoder trained jointly on every built-in modality, then evaluated.

Meta-Transformer's claim (arXiv 2307.10802) in one command: twelve modality tokenizers feed one transformer
encoder, trained together on mmengine's Runner (round-robin mixing: every step holds every modality, and the
encoder encodes all of them in one packed call); each task is then scored on its data source's held-out split
against that source's chance level or naive baseline. Everything comes from the registry (each modality's data
source, its ``task()`` head and ``baseline()``), so a modality whose plugin is blocked is simply left out.

Outputs, in the output folder: the trained model (``model/``, ``save_pretrained``), the figure (``demo.png``:
each task's metric against its baseline, and the training losses), ``results.json`` and mmengine's log folder
(``run/``). ``frozen=True`` is the Meta-Transformer setting: the encoder frozen (no gradients, eval mode), only
tokenizers, embeddings and heads trained. ``run_demo(compare=True)`` trains both flavours.

Without a local pretrained encoder file (none ships, and nothing downloads) the frozen encoder is a randomly
initialised one: that flavour shows how far tokenizers and heads get on random transformer features.

The embedded settings (:data:`DEMO_STREAMS`, :data:`PRESETS`) are sized for a 2-core CPU and for learning in a few
hundred steps: few, rich tokens per sample (a 16 x 16 digit as 4 patches, a clip as 4 tubelets of all 8 frames, a
sentence as words of a vocabulary fitted on the training split, a point cloud as 8 groups), mean-pooling heads, 16
samples of every modality per step, one torch thread. ``"default"`` (256 steps) takes about 70 s on two idle
cores, ``"quick"`` (72 steps, what CI runs) about 30 s.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from mmengine.hooks import Hook

__all__ = [
    "DEMO_STREAMS",
    "LOWER_IS_BETTER",
    "PRESETS",
    "DemoPreset",
    "DemoProgressHook",
    "DemoResult",
    "DemoRow",
    "DemoStream",
    "beats_baseline",
    "demo_config",
    "demo_streams",
    "format_table",
    "plot_results",
    "run_demo",
    "select_device",
    "word_vocabulary",
]

LOWER_IS_BETTER = frozenset({"mse", "mae", "rmse"})


@dataclass(frozen=True)
class DemoStream:
    """What the demo trains for one modality: a data source (name or config), tokenizer settings (over the
    source's own ``tokenizer_config()`` where it has one) and head settings (over the source's ``task()``)."""

    source: str | Mapping[str, Any]
    tokenizer: Mapping[str, Any] = field(default_factory=dict)
    head: Mapping[str, Any] = field(default_factory=dict)
    fit: Callable[[Any, Path], Mapping[str, Any]] | None = None
    """Optional: ``fit(source, folder)`` -> more tokenizer settings fitted on the source's training split (it may
    write files, such as a vocabulary, into ``folder``)."""


def word_vocabulary(source: Any, folder: Path) -> dict[str, Any]:
    """Text tokenizer settings with a word-level WordPiece vocabulary of ``source``'s training split: every word
    and punctuation mark seen there is one token (``folder/text_vocab.txt``), unseen ones are ``[UNK]``.

    A sentence is then about a dozen tokens instead of one per byte, and a mean over word embeddings is already a
    bag of words: the topic task is learned in the demo's few steps, which UTF-8 bytes are not (words must first
    be assembled from their spelling). Needs Hugging Face ``tokenizers`` (``polymodal[text]``); without it the
    demo keeps bytes and warns.
    """
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        warnings.warn(
            "demo: text keeps UTF-8 byte tokens (install polymodal[text] for a word vocabulary); "
            "bytes learn too slowly to beat chance in the demo's budget",
            stacklevel=2,
        )
        return {}
    train = source.splits()["train"]
    words = sorted(
        {w for i in range(len(train)) for w in re.findall(r"\w+|[^\w\s]", str(train[i][0]).lower())}
    )
    path = Path(folder).resolve() / "text_vocab.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["[PAD]", "[UNK]", "[SEP]", *words]) + "\n")
    return {"vocabulary": "wordpiece", "vocab_file": str(path)}


# One data source per built-in modality, with tokenizer settings that keep a CPU step cheap (few tokens per
# sample) and sample counts set by the preset. Tokens per sample (without [CLS]) are printed in the table.
# Classification heads mean-pool the tokens (they learn faster from scratch than from [CLS]). Sources differ from
# their defaults in size only (digits and clips at 16 x 16, clouds of 96-128 points, radiographs at 32 x 32),
# except the radiographs' nodules: radius 0.2-0.3 of the half-width instead of 0.08-0.12, which a randomly
# initialised encoder does not learn to find in this budget.
_MEAN = dict(pool="mean")
DEMO_STREAMS: dict[str, DemoStream] = {
    "text": DemoStream("topic_sentences", head=_MEAN, fit=word_vocabulary),
    "image": DemoStream(dict(type="digits", image_size=16), dict(patch_size=8, img_size=16), _MEAN),
    "video": DemoStream(
        dict(type="moving_shapes", num_frames=8, image_size=16),
        dict(patch_size=8, img_size=16, num_frames=8, tubelet_size=8),
        _MEAN,
    ),
    "audio": DemoStream(
        "synthetic_sounds", dict(num_mel_bins=64, patch_size=32, stride_time=32, stride_freq=32), _MEAN
    ),
    "point_cloud": DemoStream(
        dict(type="shape_clouds", num_points=128, min_points=96),
        dict(num_groups=8, group_size=32, hidden_dim=64, mid_dim=128, pos_hidden_dim=64),
        _MEAN,
    ),
    "infrared": DemoStream("thermal_scenes", dict(patch_size=8, img_size=32), _MEAN),
    "xray": DemoStream(
        dict(type="nodule_phantoms", image_size=32, nodule_radius=(0.2, 0.3)),
        dict(patch_size=8, img_size=32, resize=None),
        _MEAN,
    ),
    "hyperspectral": DemoStream("mixed_patches", dict(band_group=16), _MEAN),
    "imu": DemoStream("activities", head=_MEAN),
    "tabular": DemoStream(dict(type="wine", num_train=120, num_test=58), head=_MEAN),  # 178 rows in all
    "graph": DemoStream("graph_families", head=_MEAN),
    "time_series": DemoStream("seasonal_series"),
}


@dataclass(frozen=True)
class DemoPreset:
    """Size of a demo run: the encoder, the steps (``epochs`` over ``num_train`` samples per modality, in steps of
    ``batch_per_stream`` samples of every modality) and the learning-rate schedule (linear warm-up over
    ``warmup`` epochs, then cosine decay)."""

    embed_dim: int = 64
    depth: int = 4
    num_heads: int = 4
    epochs: int = 4
    batch_per_stream: int = 16
    num_train: int = 1024
    num_test: int = 256
    lr: float = 2e-3
    warmup: float = 0.25
    num_workers: int = 0
    seed: int = 0


# Steps: epochs * num_train / batch_per_stream (each step holds batch_per_stream samples of every modality).
PRESETS: dict[str, DemoPreset] = {
    "default": DemoPreset(),  # 256 steps
    "quick": DemoPreset(epochs=3, num_train=384, num_test=128),  # 72 steps
}


def beats_baseline(value: float, baseline: float, metric: str) -> bool:
    """Whether ``value`` clearly beats ``baseline``: at most half the naive error for error metrics (MSE, …),
    else at least ``max(baseline + 0.2, 1.5 * baseline)``."""
    if not math.isfinite(value):
        return False
    if metric in LOWER_IS_BETTER:
        return value <= 0.5 * baseline + 1e-12
    return value >= max(baseline + 0.2, 1.5 * baseline) - 1e-12  # 0.1 + 0.2 is 0.30000000000000004


def demo_streams(modalities: Sequence[str] | None = None) -> dict[str, DemoStream]:
    """The streams to train: the built-ins of :data:`DEMO_STREAMS` whose plugin is loaded, or ``modalities``.

    A requested modality without an entry in :data:`DEMO_STREAMS` (a third-party plugin's) uses its first data
    source and its tokenizer's defaults.
    """
    from polymodal import registry

    sources = {n: registry.get("data source", n) for n in registry.list_data_sources()}
    registered = set(registry.list_modalities())
    if modalities is None:
        return {m: s for m, s in DEMO_STREAMS.items() if m in registered}
    out = {}
    for m in modalities:
        if m in DEMO_STREAMS and m in registered:
            out[m] = DEMO_STREAMS[m]
            continue
        own = [n for n, cls in sources.items() if cls.modality == m]
        if not own:
            known = sorted({cls.modality for cls in sources.values()})
            raise ValueError(
                f"demo: no data source for modality {m!r}; modalities with data: {', '.join(known)}"
            )
        # a source we do not know: its own sample counts (a real data set may have no more)
        fields = sources[own[0]].config_class.model_fields
        sizes = {k: fields[k].default for k in ("num_train", "num_test") if k in fields}
        out[m] = DemoStream(dict(type=own[0], **sizes))
    return out


def _source_spec(stream: DemoStream, preset: DemoPreset) -> dict[str, Any]:
    """The stream's data-source config, with the preset's sample counts where the stream sets none."""
    from polymodal import registry

    spec = {"type": stream.source} if isinstance(stream.source, str) else dict(stream.source)
    fields = registry.get("data source", spec["type"]).config_class.model_fields
    if "num_train" in fields:
        spec.setdefault("num_train", preset.num_train)
    if "num_test" in fields:
        spec.setdefault("num_test", preset.num_test)
    return spec


def demo_config(
    streams: Mapping[str, DemoStream],
    preset: DemoPreset,
    *,
    frozen: bool = False,
    amp: bool = False,
    out: str | Path = "demo_out",
) -> Config:
    """The mmengine config of a demo run: no checkpoints, no validation during training, the test splits at the
    end; mmengine's logs go to ``out/run``, files that tokenizers are fitted with (a vocabulary) to ``out/model``.
    ``amp``: bf16 autocast (CUDA)."""
    from polymodal.train.multitask import build_source

    tokenizers, data_streams, heads = {}, {}, {}
    largest = 1
    for key, stream in streams.items():
        spec = _source_spec(stream, preset)
        source = build_source(spec)
        # the source's own tokenizer entry (e.g. a table's fitted column schema), then the demo's settings
        own = source.tokenizer_config() if hasattr(source, "tokenizer_config") else {}
        fitted = stream.fit(source, Path(out) / "model") if stream.fit is not None else {}
        tokenizers[key] = {"type": source.modality, **own, **stream.tokenizer, **fitted}
        data_streams[key] = {"source": spec}
        heads[key] = {**source.task(), **stream.head}
        largest = max(largest, int(source.config.num_train))
    # round-robin mixing: an epoch ends when the largest stream has been seen once
    steps_per_epoch = max(1, largest // preset.batch_per_stream)
    warmup = min(preset.warmup, preset.epochs / 2)
    optim_wrapper: dict[str, Any] = dict(
        type="AmpOptimWrapper" if amp else "OptimWrapper",
        optimizer=dict(type="AdamW", lr=preset.lr, betas=(0.9, 0.999), weight_decay=0.05),
        constructor="PolymodalOptimWrapperConstructor",
        clip_grad=dict(max_norm=1.0),
    )
    if amp:
        optim_wrapper["dtype"] = "bfloat16"
    schedule = [
        dict(
            type="CosineAnnealingLR",
            by_epoch=True,
            begin=warmup,
            end=preset.epochs,
            T_max=preset.epochs - warmup,
            eta_min=preset.lr * 0.02,
            convert_to_iter_based=True,
        )
    ]
    if warmup > 0:
        schedule.insert(
            0,
            dict(
                type="LinearLR",
                start_factor=0.1,
                by_epoch=True,
                begin=0,
                end=warmup,
                convert_to_iter_based=True,
            ),
        )
    loader = dict(
        num_workers=preset.num_workers,
        persistent_workers=False,
        collate_fn=dict(type="polymodal.multitask_collate"),
    )
    cfg = dict(
        default_scope="polymodal",
        custom_imports=dict(imports=["polymodal.train"], allow_failed_imports=False),
        env_cfg=dict(
            cudnn_benchmark=False, mp_cfg=dict(mp_start_method="fork"), dist_cfg=dict(backend="nccl")
        ),
        default_hooks=dict(
            runtime_info=dict(type="RuntimeInfoHook"),
            timer=dict(type="IterTimerHook"),
            sampler_seed=dict(type="DistSamplerSeedHook"),
            logger=dict(type="LoggerHook", interval=max(1, steps_per_epoch // 2)),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=None,
        ),
        custom_hooks=[dict(type="MetricsJsonHook")],
        log_processor=dict(type="LogProcessor", window_size=10, by_epoch=True),
        log_level="WARNING",  # the progress hook prints; mmengine's log file in run/ keeps the details
        randomness=dict(seed=preset.seed, deterministic=False),
        model=dict(
            type="MultimodalModel",
            encoder=dict(
                type="vit",
                embed_dim=preset.embed_dim,
                depth=preset.depth,
                num_heads=preset.num_heads,
                freeze="frozen" if frozen else "tuned",
            ),
            tokenizers=tokenizers,
            heads=heads,
        ),
        train_dataloader=dict(
            batch_size=preset.batch_per_stream * len(streams),
            sampler=dict(type="MultiTaskSampler", mode="round_robin", shuffle=True),
            batch_sampler=dict(type="MultiTaskBatchSampler", drop_last=True),
            dataset=dict(type="MultiTaskDataset", split="train", streams=data_streams, tokenizers=tokenizers),
            **loader,
        ),
        test_dataloader=dict(
            batch_size=128,
            sampler=dict(type="MultiTaskSampler", mode="proportional", shuffle=False),
            batch_sampler=dict(type="MultiTaskBatchSampler", drop_last=False),
            dataset=dict(type="MultiTaskDataset", split="test", streams=data_streams, tokenizers=tokenizers),
            **loader,
        ),
        test_evaluator=dict(type="MultiTaskMetric", prefix="test"),  # keys test/<task>/<metric>
        test_cfg=dict(),
        optim_wrapper=optim_wrapper,
        param_scheduler=schedule,
        train_cfg=dict(by_epoch=True, max_epochs=preset.epochs),
        work_dir=str(Path(out) / "run"),
    )
    return Config(cfg)


def _scalar(value: Any) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


class DemoProgressHook(Hook):
    """Reports training progress (step, epoch, loss, elapsed, ETA) about ``lines`` times through ``log`` (default
    ``print``) and keeps every step's task losses (``losses[task]``)."""

    priority = "BELOW_NORMAL"

    def __init__(self, label: str = "", lines: int = 10, log: Callable[[str], None] | None = None) -> None:
        self.label = label
        self.lines = max(1, lines)
        self.log = log or (lambda text: print(text, flush=True))
        self.losses: dict[str, list[float]] = {}
        self.start = 0.0

    def _print(self, text: str) -> None:
        self.log(text)

    def before_train(self, runner: Any) -> None:
        self.start = time.perf_counter()
        self._print(
            f"{self.label}training {runner.max_iters} steps ({runner.max_epochs} epochs) on "
            f"{next(runner.model.parameters()).device} ..."
        )

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Mapping[str, Any] | None = None
    ) -> None:
        for key, value in (outputs or {}).items():
            if key.startswith("loss_"):
                self.losses.setdefault(key[len("loss_") :], []).append(_scalar(value))
        step, total = runner.iter + 1, runner.max_iters
        every = max(1, total // self.lines)
        if step % every and step != total:
            return
        elapsed = time.perf_counter() - self.start
        loss = _scalar((outputs or {}).get("loss", float("nan")))
        eta = elapsed / step * (total - step)
        self._print(
            f"{self.label}  step {step:>4}/{total}  epoch {runner.epoch + 1}/{runner.max_epochs}  "
            f"loss {loss:7.3f}  {elapsed:5.1f} s  ETA {eta:4.0f} s"
        )


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


def _task_label(head: Mapping[str, Any]) -> str:
    kind = head["type"]
    if "num_classes" in head:
        return f"{kind} ({head['num_classes']} classes)"
    if "horizon" in head:
        return f"{kind} ({head['horizon']} steps)"
    return kind


@torch.no_grad()
def _tokens_per_sample(model: Any, key: str, data: Any, n: int = 64) -> float:
    """Mean real tokens per sample (without [CLS]) of the first ``n`` samples of ``data``."""
    tokenizer = model.tokenizers[key]
    batch = tokenizer.collate([data[i][0] for i in range(min(n, len(data)))])
    tokens = tokenizer(model.data_preprocessor.cast_data(batch))
    return float(tokens.mask.sum(1).float().mean())


def select_device(device: str) -> str:
    """The torch device of ``device`` (``"auto"``: CUDA when available); a clear error for CUDA without a GPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"demo: --device {device} asked for, but torch sees no CUDA device on this machine"
        )
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"demo: device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}")
    return device


def _train_one(
    streams: Mapping[str, DemoStream],
    preset: DemoPreset,
    *,
    frozen: bool,
    out: Path,
    device: str,
    label: str,
    log: Callable[[str], None],
) -> DemoResult:
    from polymodal.train.fit import _close_logger, _FitRunner
    from polymodal.train.multitask import build_source
    from polymodal.train.serialization import safe_checkpoint_globals

    cfg = demo_config(streams, preset, frozen=frozen, amp=device.startswith("cuda"), out=out)
    kwargs = cfg.to_dict()
    kwargs.pop("custom_imports")
    name = f"demo_{'frozen' if frozen else 'tuned'}_{uuid.uuid4().hex[:8]}"
    # built from the config's parts rather than the Config itself: mmengine would pretty-print (yapf) the
    # whole config into the log several times, which costs more than a quick run's training
    runner = _FitRunner(
        device=torch.device(device),
        experiment_name=name,
        visualizer=dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")], name=name),
        **kwargs,
    )
    model = runner.model
    encoder_before = {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}
    progress = DemoProgressHook(label=label, log=log)
    runner.register_hook(progress)
    try:
        start = time.perf_counter()
        with safe_checkpoint_globals():
            runner.train()
        train_seconds = time.perf_counter() - start
        log(f"{label}evaluating on the held-out test splits ...")
        metrics = {k: float(v) for k, v in runner.test().items()}
        test_data = runner.test_dataloader.dataset
    finally:
        _close_logger(name)
    model.eval()
    encoder_changed = max(
        float((v.detach().to(encoder_before[k].device) - encoder_before[k]).abs().max())
        for k, v in model.encoder.state_dict().items()
        if v.is_floating_point()
    )
    model_dir = model.save_pretrained(out / "model")
    rows = []
    for (key, stream), data in zip(streams.items(), test_data.datasets):
        spec = _source_spec(stream, preset)
        source = build_source(spec)
        metric = model.heads[key].metrics[0]
        value = metrics.get(f"test/{key}/{metric}", float("nan"))
        baseline = float(source.baseline())
        rows.append(
            DemoRow(
                modality=key,
                source=source.name,
                task=_task_label(model.config.heads[key].model_dump()),
                metric=metric,
                value=value,
                baseline=baseline,
                tokens=_tokens_per_sample(model, key, data),
                beats=beats_baseline(value, baseline, metric),
                source_config=spec,
            )
        )
    return DemoResult(
        flavour="frozen" if frozen else "tuned",
        rows=rows,
        losses=progress.losses,
        metrics=metrics,
        train_seconds=train_seconds,
        model_dir=Path(model_dir),
        encoder_changed=encoder_changed,
        model=model,
    )


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
        direction = "naive" if row.metric in LOWER_IS_BETTER else "chance"
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
    higher = [i for i, r in enumerate(rows) if r.metric not in LOWER_IS_BETTER]
    lower = [i for i, r in enumerate(rows) if r.metric in LOWER_IS_BETTER]
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


def run_demo(
    out: str | Path = "demo_out",
    *,
    preset: str | DemoPreset = "default",
    modalities: Sequence[str] | None = None,
    frozen: bool = False,
    compare: bool = False,
    device: str = "auto",
    epochs: int | None = None,
    threads: int = 1,
    log: Callable[[str], None] | None = None,
) -> list[DemoResult]:
    """Train, evaluate, save and plot; return one :class:`DemoResult` per flavour (two with ``compare``).

    Args:
        out: output folder (model in ``model/``, or ``tuned/model`` and ``frozen/model`` with ``compare``; figure
            ``demo.png``; ``results.json``; mmengine's logs in ``run/``).
        preset: ``"default"``, ``"quick"`` (see :data:`PRESETS`) or a :class:`DemoPreset`.
        modalities: train only these (default: every built-in whose plugin is loaded).
        frozen: freeze the encoder (only tokenizers, embeddings and heads train).
        compare: train the tuned and the frozen flavour and report them side by side.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:i]"``; CUDA runs in bf16 autocast.
        epochs: override the preset's number of epochs.
        threads: torch threads on the CPU (restored after). One is fastest for these small tensors, and on a
            machine whose cores are busy more threads make every step much slower.
        log: where messages go (default ``print``).
    """
    log = log or (lambda text: print(text, flush=True))
    if isinstance(preset, str) and preset not in PRESETS:
        raise ValueError(f"demo: unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    settings = PRESETS[preset] if isinstance(preset, str) else preset
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"demo: epochs must be at least 1, got {epochs}")
        settings = replace(settings, epochs=epochs)
    if threads < 1:
        raise ValueError(f"demo: threads must be at least 1, got {threads}")
    device = select_device(device)
    out = Path(out)
    streams = demo_streams(modalities)
    if not streams:
        raise ValueError("demo: no modality to train (are the plugins blocked?)")
    missing = sorted(set(DEMO_STREAMS) - set(streams)) if modalities is None else []
    if missing:
        log(f"not in this run (plugin not loaded): {', '.join(missing)}")
    flavours = [False, True] if compare else [frozen]
    results = []
    threads_before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for is_frozen in flavours:
            name = "frozen" if is_frozen else "tuned"
            where = out / name if compare else out
            label = f"[{name}] " if compare else ""
            log(
                f"{label}{len(streams)} modalities -> one shared encoder ({settings.depth} blocks of "
                f"{settings.embed_dim}, {name}): {', '.join(streams)}"
            )
            results.append(
                _train_one(
                    streams, settings, frozen=is_frozen, out=where, device=device, label=label, log=log
                )
            )
    finally:
        torch.set_num_threads(threads_before)
    figure = plot_results(results, out / "demo.png")
    (out / "results.json").write_text(
        json.dumps({"preset": asdict(settings), "results": [r.to_json() for r in results]}, indent=2)
    )
    log("")
    log(format_table(results))
    log("")
    for r in results:
        failed = [row.modality for row in r.rows if not row.beats]
        verdict = "every task beats its baseline" if not failed else f"NOT clearly above baseline: {failed}"
        log(
            f"{r.flavour}: trained in {r.train_seconds:.1f} s; {verdict}; encoder weights changed by "
            f"{r.encoder_changed:.2g} (max abs); model: {r.model_dir}"
        )
    log(f"figure: {figure}")
    return results
