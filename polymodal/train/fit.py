"""Fine-tuning a model on the user's own datasets in a few lines, on mmengine's Runner: ``fit`` and ``evaluate``.

::

    train, val = polymodal.stratified_split(polymodal.ArrayDataset("image", images, labels))
    model = polymodal.build_model(modalities=["image"], encoder="vit_tiny", heads={"image": train.head_config()})
    result = polymodal.fit(model, train, val, epochs=5)
    polymodal.evaluate(result.model, val)          # {"image/accuracy": …, "image/macro_f1": …}

``fit`` checks that the model can take the data (a tokenizer of the dataset's modality and config, and a head whose
type and size solve the dataset's task), fills the target statistics of regression heads that have none from the
training targets, prints a summary of the data (:func:`polymodal.data.summarize`), and trains with mmengine's
``Runner`` over a :class:`~polymodal.train.multitask.MultiTaskDataset` of dataset streams: progress through
mmengine's logger (:class:`~polymodal.train.runner.PolymodalLogProcessor`; ``quiet=True`` keeps it in the work
dir's log file only), one torch thread on the CPU unless told otherwise, validation after every epoch, the best
checkpoint kept (:class:`~polymodal.train.hooks.AtomicCheckpointHook` with ``save_best``; ``keep=``), optional
early stopping (mmengine's ``EarlyStoppingHook``) and a time budget (``max_time=``), best-epoch selection on one
metric or on the mean of several tasks' (``monitor="mean"``), and the best weights loaded back into the model at
the end. A given ``work_dir`` is locked for the run (:func:`~polymodal.train.workdir.work_dir_lock`).

``evaluate(model, data)`` runs the model over datasets and returns ``{"<task>/<metric>": value}`` (the CLI's
evaluation of a config file's checkpoint is :func:`polymodal.train.runner.evaluate_from_config`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from mmengine.logging import MMLogger
from mmengine.runner import EpochBasedTrainLoop
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from polymodal.core.heads.regression import target_stats
from polymodal.data.streaming import StreamLoader
from polymodal.model.multimodal import MultimodalModel
from polymodal.registry.lookup import get
from polymodal.train.collate import multitask_collate
from polymodal.train.hooks import STOP_REASON_KEY, BestStateHook
from polymodal.train.metrics import MultiTaskMetric
from polymodal.train.multitask import (
    MultiTaskBatchSampler,
    MultiTaskDataset,
    MultiTaskSampler,
    MultiTaskStream,
    TokenBudgetBatchSampler,
)
from polymodal.train.runner import PolymodalRunner, _unwrap
from polymodal.train.serialization import safe_checkpoint_globals
from polymodal.train.workdir import work_dir_lock

__all__ = ["MEAN_MONITOR", "FitResult", "evaluate", "fit"]

Data = Dataset | Mapping[str, Dataset]
Keep = Literal["last", "best", "none"]
Sampling = Literal["proportional", "balanced", "temperature"]

#: ``monitor=MEAN_MONITOR`` picks the best epoch by the mean of the tasks' normalised main metrics
#: (:class:`~polymodal.train.hooks.MeanScoreHook`); the default when the validation data has several tasks.
MEAN_MONITOR = "mean"
#: ``fit``'s ``sampling`` -> the :class:`~polymodal.train.multitask.MultiTaskSampler` mode.
SAMPLER_MODE = {"proportional": "proportional", "balanced": "round_robin", "temperature": "temperature"}
#: Head config fields fitted on the training data, which ``fit`` does not compare with the dataset's head config.
FITTED_HEAD_FIELDS = frozenset({"target_mean", "target_std"})


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        model: the fitted model, with the best weights (by ``monitor``) loaded when there was validation data.
        metrics: validation metrics of the best epoch (``{}`` without validation data).
        monitor: the metric that chose the best epoch (``"<task>/<metric>"``), and ``rule`` whether larger is better.
        best_epoch: the epoch (1-based) whose weights the model has; ``epochs_run``: epochs trained (fewer than
            asked when early stopping stopped training).
        history: validation metrics after every epoch (with ``epoch``; and ``mean`` with ``monitor="mean"``).
        work_dir: where logs and checkpoints are (``None`` when ``fit`` used a temporary folder, since removed);
            ``best_checkpoint``: the best checkpoint's path in it (``None`` with ``keep="none"``).
        stopped: why training ended before ``epochs``: ``"max_time"`` (the time budget; the epoch of the step that
            passed it was validated), ``"early_stopping"`` (``patience``), or ``None`` (all epochs ran).
        train_seconds: wall-clock seconds of training and validation.
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
    stopped: Literal["max_time", "early_stopping"] | None = None
    train_seconds: float = 0.0

    def __str__(self) -> str:
        why = {
            "max_time": " (stopped: time budget reached)",
            "early_stopping": " (stopped early: no improvement)",
        }
        note = why.get(self.stopped or "", "")
        if not self.metrics:
            return f"trained {self.epochs_run} epochs (no validation data){note}"
        values = ", ".join(f"{k} {v:.4f}" for k, v in self.metrics.items())
        return f"best epoch {self.best_epoch} of {self.epochs_run} by {self.monitor}: {values}{note}"


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
    need = {k: v for k, v in wanted().items() if k not in FITTED_HEAD_FIELDS}
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


def _dataset_targets(dataset: Dataset) -> Tensor:
    targets = getattr(dataset, "targets", None)
    if isinstance(targets, Tensor):
        return targets
    tensors = getattr(dataset, "tensors", None)  # torch's TensorDataset
    if tensors is not None:
        return tensors[-1]
    return torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))])  # type: ignore[arg-type]


def _fill_target_stats(model: MultimodalModel, train: Mapping[str, Dataset]) -> dict[str, tuple[list, list]]:
    """Give every head that standardises its targets (``set_target_stats``) and has no statistics those of its
    training targets; return ``{task: (mean, std)}`` of the heads filled."""
    filled = {}
    for key, ds in train.items():
        task = _task_of(model, key)
        head = model.heads[task]
        if not hasattr(head, "set_target_stats") or getattr(head.config, "has_target_stats", True):
            continue
        try:
            mean, std = target_stats(_dataset_targets(ds))
        except ValueError as exc:
            raise ValueError(f"fit: the training targets of {task!r}: {exc}") from None
        head.set_target_stats(mean, std)
        filled[task] = (mean, std)
    return filled


def _loader(
    model: MultimodalModel,
    data: Mapping[str, Dataset],
    batch_size: int,
    shuffle: bool,
    seed: int,
    workers: int,
    mode: str = "proportional",
    temperature: float = 2.0,
    batch_tokens: int | None = None,
) -> DataLoader:
    """The loader of ``data``: map-style datasets through a :class:`MultiTaskDataset` and its samplers (batches of
    ``batch_size`` items, or of at most ``batch_tokens`` tokens); when any dataset is a stream (an
    ``IterableDataset`` such as :class:`~polymodal.data.StreamingDataset`), all of them through a
    :class:`MultiTaskStream` and a :class:`~polymodal.data.StreamLoader`."""
    tokenizers = {k: cfg.model_dump() for k, cfg in model.config.tokenizers.items()}
    streams = _streams_config(model, data)
    if any(isinstance(ds, IterableDataset) for ds in data.values()):
        if batch_tokens is not None:
            raise ValueError(
                "fit: batch_tokens needs map-style datasets (every item's tokens are counted before the epoch); "
                "with a stream, use batch_size"
            )
        stream = MultiTaskStream(
            streams,
            tokenizers=tokenizers,
            mode=mode,  # type: ignore[arg-type]
            temperature=temperature,
            shuffle=shuffle,
            seed=seed,
        )
        return StreamLoader(stream, batch_size, collate_fn=multitask_collate, num_workers=workers)
    dataset = MultiTaskDataset(streams, tokenizers=tokenizers)
    sampler = MultiTaskSampler(dataset, mode=mode, shuffle=shuffle, seed=seed, temperature=temperature)  # type: ignore[arg-type]
    batches: Sampler[list[int]] = (
        TokenBudgetBatchSampler(sampler, batch_tokens)
        if batch_tokens is not None
        else MultiTaskBatchSampler(sampler, batch_size, drop_last=False)
    )
    return DataLoader(
        dataset,
        batch_sampler=batches,
        collate_fn=multitask_collate,
        num_workers=workers,
        persistent_workers=False,
    )


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _main_metrics(model: MultimodalModel, data: Mapping[str, Dataset]) -> list[str]:
    """``"<task>/<main metric>"`` of every task the data supervises, in the data's order."""
    out = []
    for key in data:
        task = _task_of(model, key)
        if model.heads[task].metrics:
            out.append(f"{task}/{model.heads[task].metrics[0]}")
    return out


def _monitor(
    model: MultimodalModel, data: Mapping[str, Dataset], monitor: str | None
) -> tuple[str, Literal["greater", "less"], list[str]]:
    """The monitored key, its rule and the main metrics the ``mean`` monitor averages."""
    mains = _main_metrics(model, data)
    if monitor is None:
        if not mains:
            raise ValueError("fit: the heads of the data name no metrics; pass monitor=")
        monitor = MEAN_MONITOR if len(mains) > 1 else mains[0]
    if monitor == MEAN_MONITOR:
        return monitor, "greater", mains
    available = [f"{_task_of(model, k)}/{m}" for k in data for m in model.heads[_task_of(model, k)].metrics]
    if monitor not in available:
        raise ValueError(
            f"fit: monitor {monitor!r} is not a metric of the data; expected {MEAN_MONITOR!r} or one of {available}"
        )
    name = monitor.rsplit("/", 1)[-1]
    return monitor, "greater" if get("metric", name).higher_is_better else "less", mains


class _FitTrainLoop(EpochBasedTrainLoop):
    """mmengine's epoch loop that ends an epoch at the step after which a hook set ``stop_training`` (the time
    budget); the epoch's end hooks (its checkpoint) and its validation still run."""

    def run_epoch(self) -> None:
        self.runner.call_hook("before_train_epoch")
        self.runner.model.train()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
            if self.stop_training:
                break
        self.runner.call_hook("after_train_epoch")
        self._epoch += 1


#: mmengine's warnings that every ``fit`` call would print and that say nothing about the user's run: the evaluator's
#: metric has no prefix (our keys are ``<task>/<metric>`` by design), the model's ``init_weights`` already ran (a
#: second ``fit`` of the same model; its weights are kept, as they should be), and the FileClient deprecation notices
#: of mmengine's own checkpoint hook.
KNOWN_MMENGINE_WARNINGS = (
    re.compile(r"^The prefix is not set in metric class MultiTaskMetric\.$"),
    re.compile(r"^init_weights of \w+ has been called more than once\.$"),
    re.compile(r'^"FileClient" will be deprecated in future\. '),
    re.compile(
        r'^"HardDiskBackend" is the alias of "LocalBackend" and the former will be deprecated in future\.$'
    ),
)


class _KnownWarnings(logging.Filter):
    """Drops the records of :data:`KNOWN_MMENGINE_WARNINGS` (only those) from an mmengine logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        message = record.getMessage()
        return not any(p.search(message) for p in KNOWN_MMENGINE_WARNINGS)


class _FitRunner(PolymodalRunner):
    """The runner of :func:`fit`: the model on the chosen device, one line of environment in the log, mmengine's
    uninformative warnings dropped, and with ``quiet`` only warnings and errors on the console (the log file in the
    work dir keeps everything)."""

    def __init__(self, *args: Any, device: torch.device, quiet: bool = False, **kwargs: Any) -> None:
        self._fit_device = device
        self._quiet = quiet
        super().__init__(*args, **kwargs)

    def build_logger(
        self, log_level: int | str = "INFO", log_file: str | None = None, **kwargs: Any
    ) -> MMLogger:
        logger = super().build_logger(log_level=log_level, log_file=log_file, **kwargs)
        if not any(isinstance(f, _KnownWarnings) for f in logger.filters):
            logger.addFilter(_KnownWarnings())
        if self._quiet:
            for handler in logger.handlers:
                if not isinstance(handler, logging.FileHandler):
                    handler.setLevel(max(handler.level, logging.WARNING))
        return logger

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
def _check_threads(threads: int | None, who: str) -> None:
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"{who}: threads must be an integer >= 1 or None (torch's setting), got {threads!r}")


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` for the block, restored after; ``None`` leaves torch's setting."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _checkpoint_hook(keep: Keep, val: bool, monitor: str, rule: str) -> dict[str, Any] | None:
    """The checkpoint hook of ``keep``: ``"last"``: the last epoch's and the best; ``"best"``: only the best (the
    last one without validation data); ``"none"``: no files."""
    if keep == "none":
        return None
    hook: dict[str, Any] = {"type": "AtomicCheckpointHook", "interval": 1, "max_keep_ckpts": 1}
    if val:
        hook.update(save_best=monitor, rule=rule)
        if keep == "best":
            hook.update(interval=-1, save_last=False)
    return hook


def fit(
    model: MultimodalModel,
    train_data: Data,
    val_data: Data | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    warmup_epochs: float = 1.0,
    work_dir: str | Path | None = None,
    patience: int | None = None,
    monitor: str | None = None,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    seed: int = 0,
    log_interval: int = 10,
    summary: bool = True,
    threads: int | None = 1,
    quiet: bool = False,
    keep: Keep = "last",
    max_time: float | None = None,
    sampling: Sampling = "proportional",
    temperature: float = 2.0,
    batch_tokens: int | None = None,
) -> FitResult:
    """Fine-tune ``model`` on ``train_data``, validating on ``val_data`` after every epoch.

    Args:
        model: a :class:`MultimodalModel` (``polymodal.build_model``) with a tokenizer for the data's modality and a
            head for its task (``heads={"image": train.head_config()}``). A regression head without target
            statistics gets those of the training targets (``target_mean``, ``target_std`` in its config).
        train_data: a dataset with ``modality`` (:class:`polymodal.data.ArrayDataset`, ``FileDataset``, a split of
            one), feeding the model input of that modality and the one head reading it; or ``{input_key: dataset}``
            for several inputs (each supervising the one head that reads it).
        val_data: the same for validation (optional).
        epochs: passes over the training data; AdamW with a linear warm-up (``warmup_epochs``) then a cosine
            learning-rate decay over them, gradients clipped to norm 1.
        batch_size: samples per step (of every stream together).
        lr: AdamW's peak learning rate.
        weight_decay: AdamW's weight decay (not on norms and biases).
        warmup_epochs: the learning rate rises linearly from ``lr / 100`` to ``lr`` over this many epochs (at most a
            tenth of the run's steps), as transformers are trained; 0 starts at ``lr``. Without it a randomly
            initialised encoder pooled by [CLS] could settle on one class (shape_clouds stayed at chance).
        work_dir: logs, ``metrics.json`` and checkpoints (see ``keep``); default a temporary folder, removed at the
            end. A given work dir is locked for the run: a second run on it raises
            :class:`~polymodal.train.workdir.WorkDirLockedError`.
        patience: stop after this many validations without improvement of ``monitor`` (needs ``val_data``).
        monitor: what picks the best epoch: ``"<task>/<metric>"``, or ``"mean"``, the mean over the tasks of their
            main metric made higher-is-better: a metric where larger is better as it is, one where smaller is
            better as ``1 - value / value_at_the_first_validation``
            (:func:`~polymodal.train.hooks.normalised_score`). Default: the task's main metric (accuracy,
            micro-F1 for multi-label, MSE for regression and forecasting) with one task, ``"mean"`` with several.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, …
        num_workers: DataLoader worker processes (they read and preprocess samples).
        seed: seed of initialisation-independent randomness (shuffling, dropout).
        log_interval: log the loss every this many steps.
        summary: print :func:`polymodal.data.summarize` of the data before training.
        threads: torch's intra-op CPU threads while ``fit`` runs, restored after (default 1: small models step
            fastest on one thread, and on a machine whose cores are busy more threads make every step many times
            slower); ``None`` leaves torch's setting (all cores).
        quiet: no mmengine progress lines on the console (the log file in ``work_dir`` keeps them); warnings and
            what ``fit`` prints itself (the summary, unless ``summary=False``) remain.
        keep: checkpoints kept in ``work_dir``: ``"last"`` the last epoch's and the best one; ``"best"`` only the
            best one (the last one without validation data); ``"none"`` no checkpoint files (the best weights are
            kept in memory and loaded at the end all the same).
        max_time: a time budget in seconds: training stops after the step that passes it, that epoch is still
            validated, and ``result.stopped`` is ``"max_time"``.
        sampling: how the steps mix several training datasets: ``"proportional"`` (each epoch visits every sample
            once, so a dataset is seen in proportion to its size), ``"balanced"`` (every step holds an equal share
            of every dataset; an epoch ends when the largest has been seen once, smaller ones repeat), or
            ``"temperature"`` (dataset ``i`` drawn with probability proportional to ``size_i ** (1 / temperature)``;
            epochs as long as ``"proportional"``'s). Validation visits every sample once whatever this says.
        temperature: of ``sampling="temperature"`` (1: proportional; larger: closer to balanced).
        batch_tokens: training batches of at most this many tokens instead of ``batch_size`` samples
            (:class:`~polymodal.train.multitask.TokenBudgetBatchSampler`: every item's tokens are counted once by
            its tokenizer before training; validation keeps ``batch_size``). Map-style datasets only.

    A dataset may be a stream (an ``IterableDataset``: :class:`~polymodal.data.StreamingDataset` of tar shards):
    the data is then read through :class:`~polymodal.train.multitask.MultiTaskStream` (training streams shuffled
    per epoch, ``sampling`` mixing them) by a :class:`~polymodal.data.StreamLoader` (``num_workers`` share each
    stream, no sample read twice).

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
    _check_threads(threads, "fit")
    if keep not in ("last", "best", "none"):
        raise ValueError(f"fit: keep must be 'last', 'best' or 'none', got {keep!r}")
    if sampling not in SAMPLER_MODE:
        raise ValueError(
            f"fit: sampling must be 'proportional', 'balanced' or 'temperature', got {sampling!r}"
        )
    if batch_tokens is not None and (
        isinstance(batch_tokens, bool) or not isinstance(batch_tokens, int) or batch_tokens < 1
    ):
        raise ValueError(f"fit: batch_tokens must be an integer >= 1, got {batch_tokens!r}")
    if (
        isinstance(warmup_epochs, bool)
        or not isinstance(warmup_epochs, (int, float))
        or not warmup_epochs >= 0
    ):
        raise ValueError(f"fit: warmup_epochs must be a number of epochs >= 0, got {warmup_epochs!r}")
    if max_time is not None and (
        isinstance(max_time, bool) or not isinstance(max_time, (int, float)) or not max_time > 0
    ):
        raise ValueError(f"fit: max_time must be a number of seconds > 0, got {max_time!r}")
    train = _as_streams(model, train_data, "train_data")
    val = _as_streams(model, val_data, "val_data") if val_data is not None else None
    dev = _device(device)
    mon, rule, mains = _monitor(model, val or train, monitor)
    for key, ds in train.items():  # the model must take the data before anything is changed
        _check_head(model, _task_of(model, key), key, ds)
    with _torch_threads(threads):
        if summary:
            from polymodal.data.summary import summarize

            for key, ds in train.items():
                if hasattr(ds, "task"):
                    print(summarize(ds, val.get(key) if val else None))  # type: ignore[arg-type]
        mode = SAMPLER_MODE[sampling]
        train_loader = _loader(
            model, train, batch_size, True, seed, num_workers, mode, temperature, batch_tokens
        )
        val_loader = _loader(model, val, batch_size, False, seed, num_workers) if val else None
        _fill_target_stats(model, train)  # once the data is known to fit the model
        temp = tempfile.TemporaryDirectory(prefix="polymodal_fit_") if work_dir is None else None
        root = Path(temp.name if temp is not None else work_dir)  # type: ignore[arg-type]
        lock = work_dir_lock(root) if temp is None else contextlib.nullcontext()
        try:
            with lock:
                return _run(
                    model,
                    train_loader,
                    val_loader,
                    root=root,
                    temp=temp is not None,
                    epochs=epochs,
                    lr=lr,
                    weight_decay=weight_decay,
                    warmup_epochs=warmup_epochs,
                    patience=patience,
                    monitor=mon,
                    rule=rule,
                    mains=mains,
                    device=dev,
                    seed=seed,
                    log_interval=log_interval,
                    quiet=quiet,
                    keep=keep,
                    max_time=max_time,
                )
        finally:
            if temp is not None:
                temp.cleanup()


def _run(
    model: MultimodalModel,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    *,
    root: Path,
    temp: bool,
    epochs: int,
    lr: float,
    weight_decay: float,
    warmup_epochs: float,
    patience: int | None,
    monitor: str,
    rule: Literal["greater", "less"],
    mains: list[str],
    device: torch.device,
    seed: int,
    log_interval: int,
    quiet: bool,
    keep: Keep,
    max_time: float | None,
) -> FitResult:
    """Build the runner of :func:`fit`, train, and load the best weights."""
    name = f"fit_{uuid.uuid4().hex[:8]}"
    has_val = val_loader is not None
    custom_hooks: list[dict[str, Any]] = [{"type": "RngStateHook"}, {"type": "MetricsJsonHook"}]
    if has_val and monitor == MEAN_MONITOR:
        custom_hooks.append({"type": "MeanScoreHook", "monitors": mains, "key": MEAN_MONITOR})
    if has_val and patience is not None:
        # a validation counts as an improvement only when strictly better (mmengine counts ties otherwise)
        custom_hooks.append(
            {
                "type": "EarlyStoppingHook",
                "monitor": monitor,
                "rule": rule,
                "patience": patience,
                "min_delta": 1e-9,
            }
        )
    if max_time is not None:
        custom_hooks.append({"type": "TimeBudgetHook", "max_time": max_time})
    best_state = BestStateHook(monitor, rule) if has_val and keep == "none" else None
    if best_state is not None:
        custom_hooks.append(best_state)  # type: ignore[arg-type]
    steps = len(train_loader)
    warmup = min(round(warmup_epochs * steps), epochs * steps // 10)
    cosine = {
        "type": "CosineAnnealingLR",
        "by_epoch": False,
        "begin": warmup,
        "end": epochs * steps,
        "T_max": epochs * steps - warmup,
        "eta_min": lr * 0.01,
    }
    warm = [{"type": "LinearLR", "start_factor": 0.01, "by_epoch": False, "begin": 0, "end": warmup}]
    runner = _FitRunner(
        model=model,
        device=device,
        quiet=quiet,
        work_dir=str(root),
        experiment_name=name,
        default_scope="polymodal",
        train_dataloader=train_loader,
        val_dataloader=val_loader,
        val_evaluator={"type": "MultiTaskMetric"} if has_val else None,
        train_cfg={"type": _FitTrainLoop, "max_epochs": epochs, "val_interval": 1},
        val_cfg={} if has_val else None,
        optim_wrapper={
            "type": "OptimWrapper",
            "optimizer": {"type": "AdamW", "lr": lr, "weight_decay": weight_decay},
            "constructor": "PolymodalOptimWrapperConstructor",
            "clip_grad": {"max_norm": 1.0},
        },
        param_scheduler=(warm if warmup > 0 else []) + [cosine],
        default_hooks={
            "runtime_info": {"type": "RuntimeInfoHook"},
            "timer": {"type": "IterTimerHook"},
            "sampler_seed": {"type": "DistSamplerSeedHook"},
            "logger": {"type": "LoggerHook", "interval": max(1, min(log_interval, steps))},
            "param_scheduler": {"type": "ParamSchedulerHook"},
            "checkpoint": _checkpoint_hook(keep, has_val, monitor, rule),
        },
        custom_hooks=custom_hooks,
        log_processor={"type": "PolymodalLogProcessor", "window_size": log_interval, "by_epoch": True},
        randomness={"seed": seed},
        env_cfg={"cudnn_benchmark": False, "dist_cfg": {"backend": "nccl"}},
        visualizer={"type": "Visualizer", "vis_backends": [], "name": name},
    )
    try:
        start = time.perf_counter()
        with safe_checkpoint_globals():
            runner.train()
        seconds = time.perf_counter() - start
        history = [dict(e) for e in runner.message_hub.get_info("polymodal_val_history", [])]
        epochs_run = int(runner.train_loop.epoch)
        fitted: MultimodalModel = _unwrap(runner.model)  # type: ignore[assignment]
        result = FitResult(model=fitted, epochs_run=epochs_run, history=history, train_seconds=seconds)
        if int(runner.iter) < epochs * steps:  # cut short (a budget passed at the very last step cut nothing)
            result.stopped = runner.message_hub.get_info(STOP_REASON_KEY) or "early_stopping"
        if has_val and history:
            scores = [(e.get(monitor, math.nan), i) for i, e in enumerate(history)]
            finite = [(s, i) for s, i in scores if math.isfinite(s)]
            best_path = runner.message_hub.get_info("best_ckpt") if keep != "none" else None
            restored = False
            if best_state is not None and best_state.state is not None:
                fitted.load_state_dict(best_state.state)
                restored = True
            elif best_path:
                silence = contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
                with silence:  # mmengine prints the loader it chose
                    runner.load_checkpoint(best_path)
                result.best_checkpoint = None if temp else Path(best_path)
                restored = True
            if restored and finite:
                _, best = (max if rule == "greater" else min)(finite, key=lambda si: (si[0], -si[1]))
                entry = history[best]
                result.best_epoch = int(entry["epoch"])
                result.metrics = {k: v for k, v in entry.items() if k not in ("epoch", "iter")}
            result.monitor, result.rule = monitor, rule
        result.work_dir = None if temp else root
        return result
    finally:
        _close_logger(name)


# -- evaluate -------------------------------------------------------------------------------------------------------
def evaluate(
    model: MultimodalModel,
    data: Data,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    threads: int | None = 1,
) -> dict[str, float]:
    """Metrics of ``model`` on ``data`` (a dataset or ``{input_key: dataset}``, as for :func:`fit`):
    ``{"<task>/<metric>": value}``, computed by :class:`~polymodal.train.metrics.MultiTaskMetric` on the model's
    device, in evaluation mode (the model's mode is restored after). ``threads``: torch's CPU threads meanwhile, as
    for :func:`fit` (default 1, restored after; ``None`` leaves torch's setting)."""
    if not isinstance(model, MultimodalModel):
        raise TypeError(f"evaluate: expected a MultimodalModel, got {type(model).__name__}")
    _check_threads(threads, "evaluate")
    streams = _as_streams(model, data, "data")
    loader = _loader(model, streams, batch_size, False, 0, num_workers)
    logger, known = MMLogger.get_current_instance(), _KnownWarnings()
    logger.addFilter(known)  # the metric's "prefix is not set" warning
    try:
        metric = MultiTaskMetric()
    finally:
        logger.removeFilter(known)
    was_training = model.training
    model.eval()
    try:
        with _torch_threads(threads), torch.no_grad():
            for batch in loader:
                metric.process(batch, model.val_step(batch))
            results = metric.evaluate(len(loader.dataset))
    finally:
        model.train(was_training)
    return {k: float(v) for k, v in results.items()}
