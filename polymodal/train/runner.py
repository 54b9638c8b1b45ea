"""mmengine Runner glue: the runner, the DDP wrapper, and the ``train`` / ``evaluate`` entry points of the CLI.

:class:`PolymodalRunner` is mmengine's ``Runner`` with these fixes:

- checkpoints load with ``weights_only=True`` and the allow-list of :mod:`polymodal.train.serialization`
  (mmengine 0.10.7's resume fails on torch >= 2.6 otherwise, and unpickles anything under
  ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``), and strictly (mmengine's default ignores missing weights);
- ``resume`` without a checkpoint resolves ``<work_dir>/last_checkpoint`` against the work dir
  (:func:`~polymodal.train.workdir.latest_checkpoint`: the pointer is relative, so a copied work dir resumes
  from its own checkpoints);
- ``--launcher pytorch`` works without CUDA: mmengine's launcher calls ``torch.cuda.set_device``; on a machine
  without GPUs the process group is created here with gloo (``nccl`` in the config is replaced by ``gloo``);
- :class:`PolymodalDistributedDataParallel` wraps CPU models without ``device_ids`` (which torch refuses there);
- :class:`PolymodalLogProcessor` logs validation metrics as they are: mmengine's ``LogProcessor`` averages every
  logged key that merely *contains* ``loss``, ``time`` or ``grad_norm`` over its window, so the metrics of a task
  named ``time_series`` (``time_series/accuracy``) were logged as a running mean of the last validations.

For FSDP (mmengine's ``FlexibleRunner``, chosen when the config has a ``strategy``): ``PolymodalFSDPStrategy``
fixes mmengine's optimiser-state loading on resume, :class:`PolymodalFullyShardedDataParallel` runs evaluation
through the wrapper, and :func:`component_wrap_policy` makes the encoder, tokenizers and heads FSDP units.

``train_from_config(config, ...)`` and ``evaluate_from_config(config, checkpoint, ...)`` read an mmengine config file, apply overrides and
run; after training, process 0 also writes the final model with ``save_pretrained`` into
``<work_dir>/pretrained``. A training run holds an exclusive lock on its work dir (process 0,
:func:`~polymodal.train.workdir.work_dir_lock`): a second run on the same work dir is refused while the first runs.
"""

from __future__ import annotations

import contextlib
import copy
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.distributed as torch_dist
from mmengine._strategy import FSDPStrategy
from mmengine.config import Config
from mmengine.dist import is_distributed, is_main_process
from mmengine.model import MMDistributedDataParallel, MMFullyShardedDataParallel, is_model_wrapper
from mmengine.runner import LogProcessor, Runner

from polymodal.train.registry import FUNCTIONS, LOG_PROCESSORS, MODEL_WRAPPERS, RUNNERS, STRATEGIES
from polymodal.train.serialization import install_safe_checkpoint_loaders, safe_checkpoint_globals
from polymodal.train.workdir import latest_checkpoint, work_dir_lock

__all__ = [
    "SMOOTHED_LOG_KEYS",
    "PolymodalDistributedDataParallel",
    "PolymodalFSDPStrategy",
    "PolymodalFullyShardedDataParallel",
    "PolymodalLogProcessor",
    "PolymodalRunner",
    "component_wrap_policy",
    "evaluate_from_config",
    "load_config",
    "train_from_config",
]


@MODEL_WRAPPERS.register_module()
class PolymodalDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper that drops ``device_ids`` for a model on the CPU (gloo)."""

    def __init__(self, module: torch.nn.Module, device_ids: list[int] | None = None, **kwargs: Any) -> None:
        param = next(module.parameters(), None)
        if param is None or param.device.type == "cpu":
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)


@MODEL_WRAPPERS.register_module()
class PolymodalFullyShardedDataParallel(MMFullyShardedDataParallel):
    """mmengine's FSDP wrapper whose evaluation steps give :class:`MultimodalModel`'s evaluation records (mmengine's
    own runs ``mode="predict"`` through the wrapper, which the model answers with plain predictions)."""

    def val_step(self, data: dict) -> list:
        return self._run_forward(self.module.data_preprocessor(data, False), mode="evaluate")

    def test_step(self, data: dict) -> list:
        return self.val_step(data)


@STRATEGIES.register_module()
class PolymodalFSDPStrategy(FSDPStrategy):
    """mmengine's ``FSDPStrategy`` whose optimiser-state loading (resume) works with current torch, which takes
    ``optim_state_dict_to_load(model, optim, optim_state_dict)`` (mmengine 0.10.7 passes the state first)."""

    def load_optim_state_dict(self, state_dict: dict) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        optim_state_dict = FSDP.optim_state_dict_to_load(
            model=self.model, optim=self.optim_wrapper.optimizer, optim_state_dict=state_dict
        )
        self.optim_wrapper.load_state_dict(optim_state_dict)


@FUNCTIONS.register_module()
def component_wrap_policy(module: torch.nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy: the shared encoder, each tokenizer and each head is one FSDP unit.

    (Not each transformer block: the packed encoder calls a block's layers itself, around the block's own
    ``forward``, so a block-level unit would never gather its parameters.) Use it in a config as
    ``model_wrapper=dict(auto_wrap_policy=dict(type="polymodal.component_wrap_policy"), use_orig_params=True)``
    in the ``strategy`` (see ``configs/multimodal_small_fsdp.py``).
    """
    from polymodal.core.encoders import Encoder
    from polymodal.core.heads import Head
    from polymodal.core.tokenizer import Tokenizer

    if recurse:
        return not isinstance(module, (Encoder, Tokenizer, Head))
    return isinstance(module, (Encoder, Tokenizer, Head))


#: The keys :class:`PolymodalLogProcessor` smooths over its window: the losses (``loss``, ``loss_<task>``), the
#: step timings and the gradient norm, as whole names (optionally behind the ``train/`` / ``val/`` / ``test/`` of a
#: hierarchical log), never a metric that merely contains one of these words.
SMOOTHED_LOG_KEYS = r"^(?:(?:train|val|test)/)?(?:loss(?:_[^/]*)?|time|data_time|grad_norm)$"


@LOG_PROCESSORS.register_module()
class PolymodalLogProcessor(LogProcessor):
    """mmengine's ``LogProcessor`` that averages only the losses, timings and gradient norm (:data:`SMOOTHED_LOG_KEYS`).

    mmengine's default ``mean_pattern`` (``.*(loss|time|data_time|grad_norm).*``) also matches metric names that
    contain these words, so ``time_series/accuracy`` was logged as the mean of the last ``window_size``
    validations instead of the value of this one. Takes mmengine's arguments; use it as
    ``log_processor = dict(type="PolymodalLogProcessor", window_size=10, by_epoch=True)``.
    """

    def __init__(self, *args: Any, mean_pattern: str = SMOOTHED_LOG_KEYS, **kwargs: Any) -> None:
        super().__init__(*args, mean_pattern=mean_pattern, **kwargs)


@RUNNERS.register_module()
class PolymodalRunner(Runner):
    """mmengine ``Runner`` with safe checkpoint loading and CPU-capable DDP (see the module docstring)."""

    def setup_env(self, env_cfg: dict) -> None:
        env_cfg = copy.deepcopy(dict(env_cfg or {}))
        if self.distributed and not torch.cuda.is_available():
            dist_cfg = dict(env_cfg.get("dist_cfg", {}))
            if dist_cfg.get("backend", "nccl") == "nccl":
                dist_cfg["backend"] = "gloo"
            env_cfg["dist_cfg"] = dist_cfg
            if self.launcher == "pytorch" and not is_distributed():
                kwargs = {k: v for k, v in dist_cfg.items() if k != "backend"}
                if "timeout" in kwargs:
                    import datetime

                    kwargs["timeout"] = datetime.timedelta(seconds=kwargs["timeout"])
                torch_dist.init_process_group(backend=dist_cfg["backend"], **kwargs)
        super().setup_env(env_cfg)

    def load_or_resume(self) -> None:
        """mmengine's ``load_or_resume``, with ``last_checkpoint`` resolved against the work dir."""
        if self._has_loaded:
            return None
        if self._resume and self._load_from is None:
            resume_from = latest_checkpoint(self.work_dir)
            if resume_from is None:
                self.logger.info(
                    f"No last_checkpoint in {self.work_dir} to resume from: training from the start."
                )
                return None
            self.logger.info(f"Auto resumed from the latest checkpoint {resume_from}.")
            self.resume(resume_from)
            self._has_loaded = True
            return None
        return super().load_or_resume()

    def load_checkpoint(
        self, filename: str, map_location: Any = "cpu", strict: bool = True, revise_keys: list | None = None
    ) -> Any:
        """mmengine's ``load_checkpoint`` under the safe allow-list, and strict by default: a checkpoint that lacks
        weights of the model fails instead of leaving them initialised."""
        with safe_checkpoint_globals():
            return super().load_checkpoint(
                filename,
                map_location=map_location,
                strict=strict,
                revise_keys=revise_keys or [(r"^module.", "")],
            )


def load_config(
    config: str | Path | Config,
    *,
    work_dir: str | Path | None = None,
    cfg_options: Mapping[str, Any] | None = None,
    launcher: str = "none",
    amp: bool = False,
) -> Config:
    """Read an mmengine config and apply command-line style overrides.

    ``config`` is a path, a shipped config ``polymodal::NAME`` (``polymodal::image_digits.py``; see
    :mod:`polymodal.configs`) or a ``Config``; a config file's ``_base_`` may name shipped parts
    (``polymodal::_base_/default_runtime.py``). ``cfg_options`` are checked first (a near miss of an existing key,
    text for a number: :func:`~polymodal.configs.check_overrides`); when they change ``train_cfg.max_epochs`` and
    leave ``param_scheduler`` alone, epoch-based schedules that ended with training follow the new count
    (:func:`~polymodal.configs.follow_max_epochs`). ``work_dir`` defaults to ``work_dirs/<config file stem>``;
    ``amp`` switches the optimiser wrapper to mmengine's ``AmpOptimWrapper`` with bf16 (CUDA only); a unique
    ``experiment_name`` keeps runs of one process apart (mmengine keys its logger and visualiser by it).

    Raises:
        ConfigError: a missing config file or unknown shipped name (:class:`~polymodal.configs.ConfigNotFoundError`),
            a config without ``model``, a refused override, ``amp`` without CUDA.
    """
    from polymodal.configs import (
        ConfigError,
        check_overrides,
        follow_max_epochs,
        resolve_config,
        shipped_bases,
    )

    if isinstance(config, Config):
        cfg = config.copy()
    else:
        with shipped_bases():
            cfg = Config.fromfile(str(resolve_config(config)))
    if "model" not in cfg:
        raise ConfigError(
            f"{cfg.filename or 'the config'}: expected a 'model' section (model = dict(type=\"MultimodalModel\", "
            "encoder=..., tokenizers=..., heads=...)), got none; start from a shipped config, e.g. "
            "polymodal::image_digits.py (polymodal list configs)"
        )
    if cfg_options:
        options = dict(cfg_options)
        check_overrides(cfg.to_dict(), options)
        old_epochs = (cfg.get("train_cfg") or {}).get("max_epochs")
        cfg.merge_from_dict(options)
        new_epochs = (cfg.get("train_cfg") or {}).get("max_epochs")
        epochs_set = any(k == "train_cfg" or k.startswith("train_cfg.max_epochs") for k in options)
        schedule_set = any(k == "param_scheduler" or k.startswith("param_scheduler.") for k in options)
        counts = (old_epochs, new_epochs)
        if (
            epochs_set
            and not schedule_set
            and cfg.get("param_scheduler") is not None
            and all(isinstance(n, int) and not isinstance(n, bool) for n in counts)
            and old_epochs != new_epochs
        ):
            cfg.param_scheduler, _ = follow_max_epochs(cfg.param_scheduler, old_epochs, new_epochs)
            if cfg.get("max_epochs") == old_epochs:  # the config's own variable, so a dumped config agrees
                cfg.max_epochs = new_epochs
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    elif cfg.get("work_dir") is None:
        stem = Path(cfg.filename).stem if cfg.filename else "run"
        cfg.work_dir = str(Path("work_dirs") / stem)
    cfg.launcher = launcher
    if amp:
        if not torch.cuda.is_available():
            raise ConfigError(
                "--amp needs CUDA (bf16 autocast on the GPU), and this machine has none; drop --amp to train in "
                "float32 on the CPU"
            )
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.setdefault("dtype", "bfloat16")
    if not cfg.get("experiment_name"):
        stem = Path(cfg.filename).stem if cfg.filename else "run"
        cfg.experiment_name = f"{stem}_{uuid.uuid4().hex[:8]}"  # mmengine appends a timestamp
    return cfg


def _build_runner(cfg: Config) -> Runner:
    install_safe_checkpoint_loaders()  # again, in case something re-registered mmengine's own since the import
    if cfg.get("strategy") is not None:  # FSDP / DeepSpeed through mmengine's FlexibleRunner
        from mmengine.runner import FlexibleRunner

        if cfg.get("resume") and cfg.get("load_from") is None:  # its own lookup reads the pointer as it is
            cfg.load_from = latest_checkpoint(cfg.work_dir)
        return FlexibleRunner.from_cfg(cfg)
    return PolymodalRunner.from_cfg(cfg)


def _is_first_process(launcher: str) -> bool:
    """Process 0 of the job, before the process group exists (from the launcher's environment)."""
    if launcher == "none":
        return True
    for var in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var]) == 0
    return True


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    while is_model_wrapper(model) or (hasattr(model, "module") and isinstance(model.module, torch.nn.Module)):
        model = model.module
    return model


def train_from_config(
    config: str | Path | Config,
    *,
    work_dir: str | Path | None = None,
    resume: bool | str = False,
    cfg_options: Mapping[str, Any] | None = None,
    launcher: str = "none",
    amp: bool = False,
    save_pretrained: bool = True,
) -> dict[str, Any]:
    """Train from an mmengine config; return the last validation metrics (``{}`` without validation).

    ``resume=True`` continues from the latest checkpoint in the work dir, a path from that checkpoint. The work
    dir is locked for the run: :class:`~polymodal.train.workdir.WorkDirLockedError` if another run holds it.
    """
    cfg = load_config(config, work_dir=work_dir, cfg_options=cfg_options, launcher=launcher, amp=amp)
    if resume:
        cfg.resume = True
        cfg.load_from = None if resume is True or resume == "auto" else str(resume)
    lock = work_dir_lock(cfg.work_dir) if _is_first_process(launcher) else contextlib.nullcontext()
    with lock:
        runner = _build_runner(cfg)
        with safe_checkpoint_globals():
            runner.train()
        if save_pretrained and is_main_process():
            model = _unwrap(runner.model)
            if hasattr(model, "save_pretrained"):
                model.save_pretrained(Path(cfg.work_dir) / "pretrained")
    history = runner.message_hub.get_info("polymodal_val_history", [])
    last = dict(history[-1]) if history else {}
    return {k: v for k, v in last.items() if k not in ("epoch", "iter")}


def evaluate_from_config(
    config: str | Path | Config,
    checkpoint: str | Path,
    *,
    work_dir: str | Path | None = None,
    cfg_options: Mapping[str, Any] | None = None,
    launcher: str = "none",
) -> dict[str, Any]:
    """Evaluate a checkpoint on the config's test dataloader; return the metrics."""
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint} not found")
    cfg = load_config(config, work_dir=work_dir, cfg_options=cfg_options, launcher=launcher)
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    runner = _build_runner(cfg)
    with safe_checkpoint_globals():
        metrics = runner.test()
    return dict(metrics)
