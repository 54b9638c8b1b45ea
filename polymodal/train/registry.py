"""mmengine registries of the ``polymodal`` scope, children of mmengine's root registries.

mmengine's Runner builds everything (datasets, samplers, hooks, metrics, optimiser constructors, wrappers …)
through its root registries with ``default_scope="polymodal"``; it then looks for the child registry of that
scope and falls back (with a warning) to the root when there is none. These children hold what
:mod:`polymodal.train` registers and find everything else (mmengine's own hooks, optimisers, schedulers) in their
parents. The model table (``MODELS``) is :data:`polymodal.registry.tables.MODELS`.
"""

from __future__ import annotations

from mmengine import registry as mm
from mmengine.registry import Registry

__all__ = [
    "DATASETS",
    "DATA_SAMPLERS",
    "EVALUATOR",
    "FUNCTIONS",
    "HOOKS",
    "LOG_PROCESSORS",
    "LOOPS",
    "METRICS",
    "MODEL_WRAPPERS",
    "OPTIMIZERS",
    "OPTIM_WRAPPERS",
    "OPTIM_WRAPPER_CONSTRUCTORS",
    "PARAM_SCHEDULERS",
    "RUNNERS",
    "STRATEGIES",
    "VISBACKENDS",
    "VISUALIZERS",
    "WEIGHT_INITIALIZERS",
]

_HERE = ["polymodal.train"]

RUNNERS = Registry("runner", parent=mm.RUNNERS, scope="polymodal", locations=_HERE)
LOOPS = Registry("loop", parent=mm.LOOPS, scope="polymodal")
HOOKS = Registry("hook", parent=mm.HOOKS, scope="polymodal", locations=_HERE)
STRATEGIES = Registry("strategy", parent=mm.STRATEGIES, scope="polymodal")
DATASETS = Registry("dataset", parent=mm.DATASETS, scope="polymodal", locations=_HERE)
DATA_SAMPLERS = Registry("data sampler", parent=mm.DATA_SAMPLERS, scope="polymodal", locations=_HERE)
MODEL_WRAPPERS = Registry("model_wrapper", parent=mm.MODEL_WRAPPERS, scope="polymodal", locations=_HERE)
WEIGHT_INITIALIZERS = Registry("weight initializer", parent=mm.WEIGHT_INITIALIZERS, scope="polymodal")
OPTIMIZERS = Registry("optimizer", parent=mm.OPTIMIZERS, scope="polymodal")
OPTIM_WRAPPERS = Registry("optim_wrapper", parent=mm.OPTIM_WRAPPERS, scope="polymodal")
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    "optimizer wrapper constructor", parent=mm.OPTIM_WRAPPER_CONSTRUCTORS, scope="polymodal", locations=_HERE
)
PARAM_SCHEDULERS = Registry("parameter scheduler", parent=mm.PARAM_SCHEDULERS, scope="polymodal")
METRICS = Registry("metric", parent=mm.METRICS, scope="polymodal", locations=_HERE)
EVALUATOR = Registry("evaluator", parent=mm.EVALUATOR, scope="polymodal")
VISUALIZERS = Registry("visualizer", parent=mm.VISUALIZERS, scope="polymodal")
VISBACKENDS = Registry("vis_backend", parent=mm.VISBACKENDS, scope="polymodal")
LOG_PROCESSORS = Registry("log_processor", parent=mm.LOG_PROCESSORS, scope="polymodal")
FUNCTIONS = Registry("function", parent=mm.FUNCTIONS, scope="polymodal", locations=_HERE)
