"""Runner hooks: checkpoints that a kill cannot corrupt, exact RNG resume, and a metrics JSON in the work dir.

- :class:`AtomicCheckpointHook` (drop-in for mmengine's ``CheckpointHook``): every checkpoint file and the
  ``last_checkpoint`` pointer are written to a temporary file, ``fsync``-ed and renamed (through the
  ``polymodal_atomic`` file backend); the pointer moves only once the new checkpoint is complete, and old
  checkpoints (``max_keep_ckpts``) are deleted only after that. The pointer holds the checkpoint's path relative
  to the work dir (:func:`~polymodal.train.workdir.latest_checkpoint` resolves it), so a copied work dir resumes
  from its own checkpoints. mmengine's own hook deletes the oldest
  checkpoint *before* writing the new one and writes files in place, so a kill at the wrong moment leaves a
  truncated checkpoint or a pointer to a deleted one.
- :class:`RngStateHook`: stores the torch / numpy / Python RNG states in each checkpoint and restores them on
  load, and keeps validation from consuming the training RNG stream, so a resumed run draws the same dropout
  masks and data-loader seeds as an uninterrupted one. Under DDP the states of process 0 are stored; with
  mmengine's default (``diff_rank_seed=False``) every process has the same states.
- :class:`MetricsJsonHook`: ``<work_dir>/metrics.json`` with every validation result (``val``), the last one
  (``last_val``) and the test result (``test``); the history travels in the checkpoint's message hub and the
  file, so a resumed run continues it (a kill between a checkpoint save and the validation after it loses that
  one validation entry).
- :class:`TimeBudgetHook`: stops training once ``max_time`` seconds have passed (at the end of the step that passes
  it); the validation after that epoch still runs.
- :class:`MeanScoreHook`: adds ``mean`` to every validation's metrics, the mean of several tasks' main metrics,
  each made higher-is-better and comparable (see :func:`normalised_score`), so that ``save_best``, early stopping
  and ``fit`` can pick the best epoch of a joint run.
- :class:`BestStateHook`: keeps a CPU copy of the weights of the best validation in memory (``fit`` without
  checkpoint files).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.fileio.backends import backends as _registered_backends
from mmengine.hooks import CheckpointHook, Hook

from polymodal.model.checkpoint import atomic_write
from polymodal.registry.lookup import get
from polymodal.train.registry import HOOKS
from polymodal.train.workdir import LAST_CHECKPOINT

__all__ = [
    "ATOMIC_BACKEND",
    "AtomicCheckpointHook",
    "AtomicLocalBackend",
    "BestStateHook",
    "MeanScoreHook",
    "MetricsJsonHook",
    "RngStateHook",
    "TimeBudgetHook",
    "normalised_score",
]

ATOMIC_BACKEND = "polymodal_atomic"


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes are atomic (temporary file + fsync + rename)."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        atomic_write(filepath, lambda tmp: Path(tmp).write_bytes(obj))

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        atomic_write(filepath, lambda tmp: Path(tmp).write_text(obj, encoding=encoding))


if ATOMIC_BACKEND not in _registered_backends:
    register_backend(ATOMIC_BACKEND, AtomicLocalBackend)


def _pointer(checkpoint: str, work_dir: str) -> str:
    """What ``last_checkpoint`` holds: the checkpoint's path relative to the work dir (its file name, by default),
    so that a copied work dir points at its own copy; remote paths as they are."""
    if "://" in checkpoint:
        return checkpoint
    try:
        return os.path.relpath(checkpoint, work_dir)
    except ValueError:  # pragma: no cover - another drive on Windows
        return checkpoint


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with atomic files and a safe order (see the module docstring).

    Takes the same arguments. Local ``out_dir`` only uses the atomic backend; for other storage (``s3://…``) give
    ``backend_args`` and the writes are as atomic as that storage's ``put``.
    """

    def __init__(self, *args: Any, backend_args: dict | None = None, **kwargs: Any) -> None:
        out_dir = kwargs.get("out_dir")
        if backend_args is None and (out_dir is None or "://" not in str(out_dir)):
            backend_args = {"backend": ATOMIC_BACKEND}
        super().__init__(*args, backend_args=backend_args, **kwargs)

    def _save_checkpoint_with_step(self, runner: Any, step: int, meta: dict) -> None:
        to_remove: list[int] = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            while len(self.keep_ckpt_ids) >= self.max_keep_ckpts:  # a bounded deque: make room first
                to_remove.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args,
        )
        if not is_main_process():
            return
        # the pointer moves only after the checkpoint is complete; old ones go only after that
        text = _pointer(str(self.last_ckpt), runner.work_dir)
        atomic_write(Path(runner.work_dir) / LAST_CHECKPOINT, lambda tmp: Path(tmp).write_text(text))
        for old in to_remove:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints of some strategies are folders
                self.file_backend.rmtree(path)


def rng_state() -> dict[str, Any]:
    """The torch (CPU and CUDA), numpy and Python RNG states, as tensors and plain Python values only."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": n["key"].cpu().numpy().astype(np.uint32), "pos": int(n["pos"])},
            "has_gauss": int(n["has_gauss"]),
            "gauss": float(n["gauss"]),
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


@HOOKS.register_module()
class RngStateHook(Hook):
    """Save RNG states in checkpoints and restore them on load; validation does not touch the training stream."""

    priority = "VERY_LOW"
    KEY = "polymodal_rng_state"

    def __init__(self) -> None:
        self._stashed: dict[str, Any] | None = None

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        checkpoint[self.KEY] = rng_state()

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        if self.KEY in checkpoint:
            set_rng_state(checkpoint[self.KEY])

    def before_val(self, runner: Any) -> None:
        if getattr(runner, "_train_loop", None) is not None:
            self._stashed = rng_state()

    def after_val(self, runner: Any) -> None:
        if self._stashed is not None:
            set_rng_state(self._stashed)
            self._stashed = None


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value


@HOOKS.register_module()
class MetricsJsonHook(Hook):
    """Write ``<work_dir>/<filename>`` (atomically, on process 0) after every validation and test."""

    priority = "LOW"
    INFO_KEY = "polymodal_val_history"

    def __init__(self, filename: str = "metrics.json") -> None:
        self.filename = filename
        self.data: dict[str, Any] = {}

    def _path(self, runner: Any) -> Path:
        return Path(runner.work_dir) / self.filename

    def before_run(self, runner: Any) -> None:
        path = self._path(runner)
        if path.is_file():
            try:
                self.data = json.loads(path.read_text())
            except ValueError:
                self.data = {}

    def before_train(self, runner: Any) -> None:
        # After a resume the message hub holds the history saved with the checkpoint; validation right after
        # that save ran later, so its entries (up to the resumed iteration) come from the file on disk.
        merged = {e["iter"]: e for e in self.data.get("val", []) if e.get("iter", 1 << 62) <= runner.iter}
        merged.update({e["iter"]: e for e in runner.message_hub.get_info(self.INFO_KEY, [])})
        self.data["val"] = [merged[i] for i in sorted(merged)]
        if self.data["val"]:
            self.data["last_val"] = self.data["val"][-1]
        else:
            self.data.pop("last_val", None)
        runner.message_hub.update_info(self.INFO_KEY, self.data["val"])

    def _write(self, runner: Any) -> None:
        if not is_main_process():
            return
        text = json.dumps(self.data, indent=2, sort_keys=False)
        atomic_write(self._path(runner), lambda tmp: Path(tmp).write_text(text))

    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        if not metrics:
            return
        entry = {"epoch": runner.epoch, "iter": runner.iter, **{k: _plain(v) for k, v in metrics.items()}}
        history = [e for e in self.data.get("val", []) if e.get("iter", -1) < runner.iter]
        history.append(entry)
        self.data["val"] = history
        self.data["last_val"] = entry
        runner.message_hub.update_info(self.INFO_KEY, history)
        self._write(runner)

    def after_test_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        if not metrics:
            return
        self.data["test"] = {k: _plain(v) for k, v in metrics.items()}
        self._write(runner)


# -- stopping for time, several tasks' best epoch, the best weights in memory -----------------------------------
STOP_REASON_KEY = "polymodal_stop_reason"


@HOOKS.register_module()
class TimeBudgetHook(Hook):
    """Stop training once ``max_time`` seconds (wall clock, validation included) have passed since it began.

    The check runs after every training step: the loop's ``stop_training`` is set and the message hub's
    ``polymodal_stop_reason`` info becomes ``"max_time"``. mmengine's epoch loop then finishes the epoch and runs
    its validation (``polymodal.fit``'s loop ends the epoch at that step); the iteration loop stops at once.
    """

    priority = "LOW"

    def __init__(self, max_time: float) -> None:
        if isinstance(max_time, bool) or not isinstance(max_time, (int, float)) or not max_time > 0:
            raise ValueError(f"TimeBudgetHook: max_time must be a number of seconds > 0, got {max_time!r}")
        self.max_time = float(max_time)
        self.start: float | None = None

    def before_train(self, runner: Any) -> None:
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return 0.0 if self.start is None else time.monotonic() - self.start

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        if self.start is None or self.elapsed() < self.max_time or runner.train_loop.stop_training:
            return
        runner.train_loop.stop_training = True
        runner.message_hub.update_info(STOP_REASON_KEY, "max_time")
        runner.logger.info(
            f"Time budget of {self.max_time:g} s reached after {self.elapsed():.1f} s (step {runner.iter + 1}): "
            "training stops"
        )


def normalised_score(value: float, first: float, higher_is_better: bool) -> float:
    """One task's share of the ``mean`` monitor: ``value`` when larger is better; otherwise ``1 - value / first``,
    where ``first`` is the task's value at the first validation (0 then, 1 at a perfect 0 error, negative when worse
    than at first); ``-value`` when ``first`` is 0 or not finite."""
    if higher_is_better:
        return float(value)
    if not math.isfinite(first) or first == 0:
        return -float(value)
    return 1.0 - float(value) / abs(first)


@HOOKS.register_module()
class MeanScoreHook(Hook):
    """Add ``key`` (default ``"mean"``) to each validation's metrics: the mean of :func:`normalised_score` over
    ``monitors`` (``"<task>/<metric>"`` keys, usually each task's main metric); a metric's direction is the
    registered metric's ``higher_is_better`` (``polymodal.get("metric", name)``).

    It runs before every other hook of ``after_val_epoch`` (``HIGHEST``), so the log, ``metrics.json``,
    ``save_best=key`` and ``EarlyStoppingHook(monitor=key)`` all see it. The first values are stored in checkpoints,
    so a resumed run keeps its scale.
    """

    priority = "HIGHEST"
    CHECKPOINT_KEY = "polymodal_mean_score_first"

    def __init__(self, monitors: Sequence[str], key: str = "mean") -> None:
        if isinstance(monitors, str) or not monitors:
            raise ValueError(f"MeanScoreHook: expected a list of '<task>/<metric>' keys, got {monitors!r}")
        self.monitors = list(monitors)
        self.key = key
        self.higher = {m: get("metric", m.rsplit("/", 1)[-1]).higher_is_better for m in self.monitors}
        self.first: dict[str, float] = {}

    def score(self, metrics: dict[str, Any]) -> float:
        missing = [m for m in self.monitors if m not in metrics]
        if missing:
            raise KeyError(
                f"MeanScoreHook: the validation metrics lack {missing}; they have {sorted(metrics)}"
            )
        values = {m: float(_plain(metrics[m])) for m in self.monitors}
        for m, v in values.items():
            self.first.setdefault(m, v)
        scores = [normalised_score(v, self.first[m], self.higher[m]) for m, v in values.items()]
        return sum(scores) / len(scores)

    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        if not metrics:
            return
        metrics[self.key] = self.score(metrics)

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        checkpoint[self.CHECKPOINT_KEY] = dict(self.first)

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        self.first = dict(checkpoint.get(self.CHECKPOINT_KEY, self.first))


@HOOKS.register_module()
class BestStateHook(Hook):
    """Keep a CPU copy of the model's weights (``state``) and the metrics (``metrics``) of the validation whose
    ``monitor`` was best (``rule="greater"`` or ``"less"``; the first of equal ones, NaN never)."""

    priority = "LOW"

    def __init__(self, monitor: str, rule: str = "greater") -> None:
        if rule not in ("greater", "less"):
            raise ValueError(f"BestStateHook: rule must be 'greater' or 'less', got {rule!r}")
        self.monitor, self.rule = monitor, rule
        self.best: float | None = None
        self.state: dict[str, Any] | None = None
        self.metrics: dict[str, Any] = {}

    def after_val_epoch(self, runner: Any, metrics: dict[str, Any] | None = None) -> None:
        if not metrics or self.monitor not in metrics:
            return
        value = float(_plain(metrics[self.monitor]))
        if not math.isfinite(value):
            return
        if self.best is not None and not (value > self.best if self.rule == "greater" else value < self.best):
            return
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        self.best = value
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.metrics = copy.deepcopy({k: _plain(v) for k, v in metrics.items()})
