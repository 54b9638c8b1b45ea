"""Training and evaluation on mmengine's Runner: data across modalities, metrics, optimiser, hooks, runner.

Importing this package registers everything the configs in ``configs/`` name (in the ``polymodal`` scope of
mmengine's registries, see :mod:`polymodal.train.registry`); config files do it through
``custom_imports = dict(imports=["polymodal.train"])``.

Two ways to train: :func:`train_from_config` / :func:`evaluate_from_config` run an mmengine config file (the CLI);
:func:`fit` fine-tunes a model object on dataset objects in Python and :func:`evaluate` evaluates one on datasets
(``polymodal.fit``, ``polymodal.evaluate``).
"""

from __future__ import annotations

from polymodal.train.collate import Example, Stream, TokenizerCollate, multitask_collate
from polymodal.train.fit import FitResult, evaluate, fit
from polymodal.train.hooks import (
    AtomicCheckpointHook,
    BestStateHook,
    MeanScoreHook,
    MetricsJsonHook,
    RngStateHook,
    TimeBudgetHook,
)
from polymodal.train.metrics import MultiTaskMetric, compute_task_metrics
from polymodal.train.multitask import MultiTaskBatchSampler, MultiTaskDataset, MultiTaskSampler, StreamConfig
from polymodal.train.optim import PolymodalOptimWrapperConstructor, layer_lr_scales, param_groups
from polymodal.train.runner import (
    PolymodalDistributedDataParallel,
    PolymodalFSDPStrategy,
    PolymodalFullyShardedDataParallel,
    PolymodalLogProcessor,
    PolymodalRunner,
    component_wrap_policy,
    evaluate_from_config,
    load_config,
    train_from_config,
)
from polymodal.train.serialization import (
    SAFE_CHECKPOINT_GLOBALS,
    load_checkpoint_file,
    safe_checkpoint_globals,
)

__all__ = [
    "SAFE_CHECKPOINT_GLOBALS",
    "AtomicCheckpointHook",
    "BestStateHook",
    "Example",
    "FitResult",
    "MeanScoreHook",
    "MetricsJsonHook",
    "MultiTaskBatchSampler",
    "MultiTaskDataset",
    "MultiTaskMetric",
    "MultiTaskSampler",
    "PolymodalDistributedDataParallel",
    "PolymodalFSDPStrategy",
    "PolymodalFullyShardedDataParallel",
    "PolymodalLogProcessor",
    "PolymodalOptimWrapperConstructor",
    "PolymodalRunner",
    "RngStateHook",
    "Stream",
    "StreamConfig",
    "TimeBudgetHook",
    "TokenizerCollate",
    "component_wrap_policy",
    "compute_task_metrics",
    "evaluate",
    "evaluate_from_config",
    "fit",
    "layer_lr_scales",
    "load_checkpoint_file",
    "load_config",
    "multitask_collate",
    "param_groups",
    "safe_checkpoint_globals",
    "train_from_config",
]
