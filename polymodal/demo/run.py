"""``polymodal demo``: one shared encoder trained jointly on every registered modality, then evaluated.

Meta-Transformer's claim (arXiv 2307.10802) in one command: the modality tokenizers feed one transformer encoder,
trained together on mmengine's Runner (round-robin mixing: every step holds every modality, and the encoder encodes
all of them in one packed call); each task is then scored on its data source's held-out split against that
source's chance level or naive baseline. Everything comes from the registry (each modality's data source, its
demo settings, ``task()`` head and ``baseline()``), so a modality whose plugin is blocked is left out and one that
is installed later is in.

Outputs, in the output folder: the trained model (``model/``, ``save_pretrained``), the figure (``demo.png``:
each task's metric against its baseline, and the training losses), ``results.json`` and mmengine's log folder
(``run/``). ``frozen=True`` is the Meta-Transformer setting: the encoder frozen (no gradients, eval mode), only
tokenizers, embeddings and heads trained. ``run_demo(compare=True)`` trains both flavours.

Without a local pretrained encoder file (none ships, and nothing downloads) the frozen encoder is a randomly
initialised one: that flavour shows how far tokenizers and heads get on random transformer features.

The sources' demo settings and :data:`~polymodal.demo.streams.PRESETS` are sized for a 2-core CPU and for learning
in a few hundred steps: few, rich tokens per sample, 16 samples of every modality per step, one torch thread.
``"default"`` (256 steps) takes about 70 s on two idle cores, ``"quick"`` (72 steps, what CI runs) about 30 s.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from mmengine.hooks import Hook

from polymodal import registry
from polymodal.demo.report import DemoResult, DemoRow, beats_baseline, format_table, plot_results
from polymodal.demo.streams import PRESETS, DemoPreset, DemoStream, demo_config, demo_streams, source_spec

__all__ = ["DemoProgressHook", "run_demo", "select_device"]


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


def _task_label(head: Mapping[str, Any]) -> str:
    kind = head["type"]
    if "num_classes" in head:
        return f"{kind} ({head['num_classes']} classes)"
    if "horizon" in head:
        return f"{kind} ({head['horizon']} steps)"
    return kind


def _tokens_per_sample(config: Any, data: Any, n: int = 64) -> float:
    """Mean real tokens per sample (without [CLS]) of the first ``n`` samples of ``data`` (a small CPU copy of the
    tokenizer counts them: the count does not depend on weights)."""
    tokenizer = registry.component_class("tokenizer", config)(config.model_copy(update={"embed_dim": 8}))
    return float(tokenizer.token_lengths([data[i][0] for i in range(min(n, len(data)))]).float().mean())


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
        spec = source_spec(stream, preset)
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
                tokens=_tokens_per_sample(model.config.tokenizers[key], data),
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
    missing = sorted(set(registry.list_modalities()) - set(streams)) if modalities is None else []
    if missing:
        log(f"not in this run (no data source): {', '.join(missing)}")
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
