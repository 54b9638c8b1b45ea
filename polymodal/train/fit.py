"""Fine-tuning a model on the user's own datasets in a few lines, on mmengine's Runner: ``fit`` and ``evaluate``.

::

    train, val = polymodal.stratified_split(polymodal.ArrayDataset("image", images, labels))
    model = polymodal.build_model(modalities=["image"], encoder="vit_tiny", heads={"image": train.head_config()})
    result = polymodal.fit(model, train, val, epochs=5)
    polymodal.evaluate(result.model, val)          # {"image/accuracy": …, "image/macro_f1": …}

``fit`` checks that the model can take the data (a tokenizer of the dataset's modality and config, and a head whose
type and size solve the dataset's task), prints a summary of the data (:func:`polymodal.data.summarize`), and
trains with mmengine's ``Runner`` over a :class:`~polymodal.train.multitask.MultiTaskDataset` of dataset streams:
progress through mmengine's logger, validation after every epoch, the best checkpoint kept
(:class:`~polymodal.train.hooks.AtomicCheckpointHook` with ``save_best``), optional early stopping (mmengine's
``EarlyStoppingHook``) on the main validation metric, and the best weights loaded back into the model at the end.

``evaluate(model, data)`` runs the model over datasets and returns ``{"<task>/<metric>": value}`` (the CLI's
evaluation of a config file's checkpoint is :func:`polymodal.train.runner.evaluate_from_config`).
"""

from __future__ import annotations

import logging
import math
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from mmengine.logging import MMLogger
from torch.utils.data import DataLoader, Dataset

from polymodal.model.multimodal import MultimodalModel
from polymodal.registry.lookup import get
from polymodal.train.collate import multitask_collate
from polymodal.train.metrics import MultiTaskMetric
from polymodal.train.multitask import MultiTaskBatchSampler, MultiTaskDataset, MultiTaskSampler
from polymodal.train.runner import PolymodalRunner, _unwrap
from polymodal.train.serialization import safe_checkpoint_globals

__all__ = ["FitResult", "evaluate", "fit"]

Data = Dataset | Mapping[str, Dataset]


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        model: the fitted model, with the best weights (by ``monitor``) loaded when there was validation data.
        metrics: validation metrics of the best epoch (``{}`` without validation data).
        monitor: the metric that chose the best epoch (``"<task>/<metric>"``), and ``rule`` whether larger is better.
        best_epoch: the epoch (1-based) whose weights the model has; ``epochs_run``: epochs trained (fewer than
            asked when early stopping stopped training).
        history: validation metrics after every epoch (with ``epoch``).
        work_dir: where logs and checkpoints are (``None`` when ``fit`` used a temporary folder, since removed);
            ``best_checkpoint``: the best checkpoint's path in it.
    """

    model: MultimodalModel
    metrics: dict[str, float] = field(default_factory=dict)
    monitor: str | None = None
    rule: Literal["greater", "less"] | None = None
    best_epoch: int | None = None
    epochs_run: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    work_dir: Path | None = None
    best_checkpoint: Path | None = None

    def __str__(self) -> str:
        if not self.metrics:
            return f"trained {self.epochs_run} epochs (no validation data)"
        values = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        return f"best epoch {self.best_epoch} of {self.epochs_run} by {self.monitor}: {values}"


# -- matching data to the model -----------------------------------------------------------------------------------
def _input_key(model: MultimodalModel, dataset: Dataset) -> str:
    modality = getattr(dataset, "modality", None)
    if modality is None:
        raise TypeError(
            f"fit: a {type(dataset).__name__} has no 'modality'; pass a dict {{input_key: dataset}} naming the input"
        )
    if modality in model.tokenizers:
        return modality
    keys = [k for k, cfg in model.config.tokenizers.items() if cfg.type == modality]
    if len(keys) == 1:
        return keys[0]
    have = ", ".join(f"{k} ({c.type})" for k, c in model.config.tokenizers.items())
    if not keys:
        raise ValueError(
            f"fit: the model has no {modality!r} tokenizer for this data; its inputs: {have}. Build it with "
            f"modalities=[{modality!r}] (or tokenizers={{{modality!r}: data.tokenizer_config}})"
        )
    raise ValueError(
        f"fit: several inputs of the model take {modality!r} ({keys}); pass {{input_key: dataset}}"
    )


def _as_streams(model: MultimodalModel, data: Data, what: str) -> dict[str, Dataset]:
    if isinstance(data, Mapping):
        streams = dict(data)
        unknown = sorted(set(streams) - set(model.tokenizers))
        if unknown:
            raise KeyError(
                f"fit: {what} names inputs {unknown} the model does not have: {sorted(model.tokenizers)}"
            )
        if not streams:
            raise ValueError(f"fit: {what} is an empty dict")
        return streams
    if not isinstance(data, Dataset):
        raise TypeError(
            f"fit: {what} must be a dataset (e.g. polymodal.data.ArrayDataset) or a dict {{input_key: dataset}}, "
            f"got {type(data).__name__}"
        )
    return {_input_key(model, data): data}


def _task_of(model: MultimodalModel, key: str) -> str:
    tasks = [t for t, inputs in model.head_inputs.items() if inputs == (key,)]
    if len(tasks) == 1:
        return tasks[0]
    if not tasks:
        raise ValueError(
            f"fit: no head of the model reads input {key!r} (heads: {dict(model.head_inputs)}); build it with "
            f"heads={{{key!r}: data.head_config()}}"
        )
    raise ValueError(f"fit: heads {tasks} all read input {key!r}; the data's targets can supervise only one")


def _check_head(model: MultimodalModel, task: str, key: str, dataset: Dataset) -> None:
    """The model's head must be of the type and size the dataset's task needs."""
    wanted = getattr(dataset, "head_config", None)
    if wanted is None:
        return
    need = wanted()
    have = model.config.heads[task].model_dump()
    wrong = {k: v for k, v in need.items() if have.get(k, None if k != "multi_label" else False) != v}
    if wrong:
        describe = dataset.task.describe() if hasattr(dataset, "task") else "its task"
        fields = ", ".join(f"{k}={v!r} (the head has {have.get(k)!r})" for k, v in wrong.items())
        raise ValueError(
            f"fit: the data of input {key!r} ({describe}) needs a head with {fields}; build the model with "
            f"heads={{{task!r}: data.head_config()}} = {need}"
        )


def _streams_config(model: MultimodalModel, data: Mapping[str, Dataset]) -> dict[str, dict[str, Any]]:
    streams = {}
    for key, ds in data.items():
        task = _task_of(model, key)
        _check_head(model, task, key, ds)
        streams[key] = {"dataset": ds, "input": key, "tasks": [task]}
    return streams


def _loader(
    model: MultimodalModel,
    data: Mapping[str, Dataset],
    batch_size: int,
    shuffle: bool,
    seed: int,
    workers: int,
) -> DataLoader:
    tokenizers = {k: cfg.model_dump() for k, cfg in model.config.tokenizers.items()}
    dataset = MultiTaskDataset(_streams_config(model, data), tokenizers=tokenizers)
    sampler = MultiTaskSampler(dataset, mode="proportional", shuffle=shuffle, seed=seed)
    return DataLoader(
        dataset,
        batch_sampler=MultiTaskBatchSampler(sampler, batch_size, drop_last=False),
        collate_fn=multitask_collate,
        num_workers=workers,
        persistent_workers=False,
    )


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _monitor(model: MultimodalModel, data: Mapping[str, Dataset], monitor: str | None) -> tuple[str, str]:
    if monitor is None:
        key = next(iter(data))
        task = _task_of(model, key)
        monitor = f"{task}/{model.heads[task].metrics[0]}"  # the head's main metric
    name = monitor.rsplit("/", 1)[-1]
    return monitor, "greater" if get("metric", name).higher_is_better else "less"


class _FitRunner(PolymodalRunner):
    """The runner of :func:`fit`: the model on the chosen device, and one line of environment in the log."""

    def __init__(self, *args: Any, device: torch.device, **kwargs: Any) -> None:
        self._fit_device = device
        super().__init__(*args, **kwargs)

    def wrap_model(self, model_wrapper_cfg: dict | None, model: torch.nn.Module) -> torch.nn.Module:
        if self.distributed:
            return super().wrap_model(model_wrapper_cfg, model)
        return model.to(self._fit_device)

    def _log_env(self, env_cfg: dict) -> None:
        self.logger.info(f"fit: torch {torch.__version__}, device {self._fit_device}, seed {self._seed}")

    def get_hooks_info(self) -> str:
        return ", ".join(type(h).__name__ for h in self.hooks)


def _close_logger(name: str) -> None:
    """Close the file handlers mmengine's logger of one run keeps open."""
    logger = MMLogger.get_instance(name) if MMLogger.check_instance_created(name) else None
    if logger is None:
        return
    for handler in list(logger.handlers):
        if isinstance(handler, logging.FileHandler):
            logger.removeHandler(handler)
            handler.close()


# -- fit ------------------------------------------------------------------------------------------------------------
def fit(
    model: MultimodalModel,
    train_data: Data,
    val_data: Data | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    work_dir: str | Path | None = None,
    patience: int | None = None,
    monitor: str | None = None,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    seed: int = 0,
    log_interval: int = 10,
    summary: bool = True,
) -> FitResult:
    """Fine-tune ``model`` on ``train_data``, validating on ``val_data`` after every epoch.

    Args:
        model: a :class:`MultimodalModel` (``polymodal.build_model``) with a tokenizer for the data's modality and a
            head for its task (``heads={"image": train.head_config()}``).
        train_data: a dataset with ``modality`` (:class:`polymodal.data.ArrayDataset`, ``FileDataset``, a split of
            one), feeding the model input of that modality and the one head reading it; or ``{input_key: dataset}``
            for several inputs (each supervising the one head that reads it).
        val_data: the same for validation (optional).
        epochs, batch_size, lr, weight_decay: AdamW with a cosine learning-rate decay over ``epochs``, gradients
            clipped to norm 1.
        work_dir: logs, ``metrics.json`` and checkpoints (the last and the best); default a temporary folder,
            removed at the end.
        patience: stop after this many validations without improvement of ``monitor`` (needs ``val_data``).
        monitor: ``"<task>/<metric>"`` that picks the best epoch; default the first task's main metric
            (accuracy, micro-F1 for multi-label, MSE for regression and forecasting).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, …
        num_workers: DataLoader worker processes (they read and preprocess samples).
        seed: seed of initialisation-independent randomness (shuffling, dropout).
        log_interval: log the loss every this many steps.
        summary: print :func:`polymodal.data.summarize` of the data before training.

    Returns:
        :class:`FitResult` (``result.model`` is ``model``, with the best weights loaded).
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"fit: epochs and batch_size must be positive, got {epochs} and {batch_size}")
    if patience is not None and val_data is None:
        raise ValueError("fit: patience (early stopping) needs val_data")
    if not isinstance(model, MultimodalModel):
        raise TypeError(
            f"fit: expected a MultimodalModel (polymodal.build_model), got {type(model).__name__}"
        )
    train = _as_streams(model, train_data, "train_data")
    val = _as_streams(model, val_data, "val_data") if val_data is not None else None
    dev = _device(device)
    if summary:
        from polymodal.data.summary import summarize

        for key, ds in train.items():
            if hasattr(ds, "task"):
                print(summarize(ds, val.get(key) if val else None))  # type: ignore[arg-type]
    train_loader = _loader(model, train, batch_size, True, seed, num_workers)
    val_loader = _loader(model, val, batch_size, False, seed, num_workers) if val else None
    mon, rule = _monitor(model, val or train, monitor)
    temp = tempfile.TemporaryDirectory(prefix="polymodal_fit_") if work_dir is None else None
    root = Path(temp.name if temp is not None else work_dir)  # type: ignore[arg-type]
    name = f"fit_{uuid.uuid4().hex[:8]}"
    checkpoint: dict[str, Any] = {"type": "AtomicCheckpointHook", "interval": 1, "max_keep_ckpts": 1}
    custom_hooks: list[dict[str, Any]] = [{"type": "RngStateHook"}, {"type": "MetricsJsonHook"}]
    if val is not None:
        checkpoint.update(save_best=mon, rule=rule)
        if patience is not None:
            custom_hooks.append(
                # a validation counts as an improvement only when strictly better (mmengine counts ties otherwise)
                {
                    "type": "EarlyStoppingHook",
                    "monitor": mon,
                    "rule": rule,
                    "patience": patience,
                    "min_delta": 1e-9,
                }
            )
    steps = len(train_loader)
    runner = _FitRunner(
        model=model,
        device=dev,
        work_dir=str(root),
        experiment_name=name,
        default_scope="polymodal",
        train_dataloader=train_loader,
        val_dataloader=val_loader,
        val_evaluator={"type": "MultiTaskMetric"} if val_loader is not None else None,
        train_cfg={"by_epoch": True, "max_epochs": epochs, "val_interval": 1},
        val_cfg={} if val_loader is not None else None,
        optim_wrapper={
            "type": "OptimWrapper",
            "optimizer": {"type": "AdamW", "lr": lr, "weight_decay": weight_decay},
            "constructor": "PolymodalOptimWrapperConstructor",
            "clip_grad": {"max_norm": 1.0},
        },
        param_scheduler=[
            {
                "type": "CosineAnnealingLR",
                "by_epoch": False,
                "begin": 0,
                "end": epochs * steps,
                "T_max": epochs * steps,
                "eta_min": lr * 0.01,
            }
        ],
        default_hooks={
            "runtime_info": {"type": "RuntimeInfoHook"},
            "timer": {"type": "IterTimerHook"},
            "sampler_seed": {"type": "DistSamplerSeedHook"},
            "logger": {"type": "LoggerHook", "interval": max(1, min(log_interval, steps))},
            "param_scheduler": {"type": "ParamSchedulerHook"},
            "checkpoint": checkpoint,
        },
        custom_hooks=custom_hooks,
        log_processor={"type": "LogProcessor", "window_size": log_interval, "by_epoch": True},
        randomness={"seed": seed},
        env_cfg={"cudnn_benchmark": False, "dist_cfg": {"backend": "nccl"}},
        visualizer={"type": "Visualizer", "vis_backends": [], "name": name},
    )
    try:
        with safe_checkpoint_globals():
            runner.train()
        history = [dict(e) for e in runner.message_hub.get_info("polymodal_val_history", [])]
        epochs_run = int(runner.train_loop.epoch)
        result = FitResult(model=_unwrap(runner.model), epochs_run=epochs_run, history=history)  # type: ignore[arg-type]
        if val is not None and history:
            best_path = runner.message_hub.get_info("best_ckpt")
            scores = [(e.get(mon, math.nan), i) for i, e in enumerate(history)]
            finite = [(s, i) for s, i in scores if math.isfinite(s)]
            if best_path and finite:
                runner.load_checkpoint(best_path)
                _, best = (max if rule == "greater" else min)(finite, key=lambda si: (si[0], -si[1]))
                entry = history[best]
                result.best_epoch = int(entry["epoch"])
                result.metrics = {k: v for k, v in entry.items() if k not in ("epoch", "iter")}
                result.best_checkpoint = Path(best_path) if temp is None else None
            result.monitor, result.rule = mon, rule  # type: ignore[assignment]
        result.work_dir = root if temp is None else None
        return result
    finally:
        _close_logger(name)
        if temp is not None:
            temp.cleanup()


# -- evaluate -------------------------------------------------------------------------------------------------------
def evaluate(
    model: MultimodalModel,
    data: Data,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
) -> dict[str, float]:
    """Metrics of ``model`` on ``data`` (a dataset or ``{input_key: dataset}``, as for :func:`fit`):
    ``{"<task>/<metric>": value}``, computed by :class:`~polymodal.train.metrics.MultiTaskMetric` on the model's
    device, in evaluation mode (the model's mode is restored after)."""
    if not isinstance(model, MultimodalModel):
        raise TypeError(f"evaluate: expected a MultimodalModel, got {type(model).__name__}")
    streams = _as_streams(model, data, "data")
    loader = _loader(model, streams, batch_size, False, 0, num_workers)
    metric = MultiTaskMetric()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in loader:
                metric.process(batch, model.val_step(batch))
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in metric.evaluate(len(loader.dataset)).items()}
