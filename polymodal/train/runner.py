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

import collections
import contextlib
import copy
import datetime
import inspect
import io
import os
import pickle
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mmengine
import torch
import torch.distributed as torch_dist
from mmengine._strategy import FSDPStrategy
from mmengine._strategy.single_device import SingleDeviceStrategy
from mmengine.config import Config
from mmengine.dist import is_distributed, is_main_process
from mmengine.model import MMDistributedDataParallel, MMFullyShardedDataParallel, is_model_wrapper
from mmengine.optim import AmpOptimWrapper, OptimWrapperDict
from mmengine.runner import FlexibleRunner, LogProcessor, Runner, TestLoop, ValLoop
from mmengine.utils import get_git_hash

from polymodal.model.checkpoint import _fsync_dir, atomic_write
from polymodal.train.hooks import ATOMIC_BACKEND
from polymodal.train.registry import FUNCTIONS, LOG_PROCESSORS, LOOPS, MODEL_WRAPPERS, RUNNERS, STRATEGIES
from polymodal.train.serialization import (
    UnsafeCheckpointError,
    install_safe_checkpoint_loaders,
    load_checkpoint_file,
    safe_checkpoint_globals,
)
from polymodal.train.workdir import latest_checkpoint, work_dir_lock

__all__ = [
    "SHARDED_STATE_FILE",
    "SMOOTHED_LOG_KEYS",
    "FSDPTestLoop",
    "FSDPValLoop",
    "LockstepBatches",
    "PolymodalDistributedDataParallel",
    "PolymodalFSDPStrategy",
    "PolymodalFlexibleRunner",
    "PolymodalFullyShardedDataParallel",
    "PolymodalLogProcessor",
    "PolymodalRunner",
    "component_wrap_policy",
    "evaluate_from_config",
    "find_unused_parameters_needed",
    "is_sharded_checkpoint",
    "load_config",
    "read_sharded_checkpoint",
    "save_sharded_checkpoint",
    "train_from_config",
]


# -- DDP ------------------------------------------------------------------------------------------------------------
@MODEL_WRAPPERS.register_module()
class PolymodalDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper that drops ``device_ids`` for a model on the CPU (gloo), and says which setting to
    change when DDP finds a parameter without a gradient.

    ``find_unused_parameters`` is ``True``, ``False`` or ``"auto"``: :class:`PolymodalRunner` decides ``"auto"`` from
    the run before it builds the wrapper (:func:`find_unused_parameters_needed`); built elsewhere, ``"auto"`` is
    ``True``, which is always correct (it costs a traversal of the autograd graph per step).
    """

    def __init__(
        self,
        module: torch.nn.Module,
        device_ids: list[int] | None = None,
        find_unused_parameters: bool | str = "auto",
        **kwargs: Any,
    ) -> None:
        param = next(module.parameters(), None)
        if param is None or param.device.type == "cpu":
            device_ids = None
        if find_unused_parameters == "auto":
            find_unused_parameters = True
        elif not isinstance(find_unused_parameters, bool):
            raise ValueError(
                f"find_unused_parameters: expected True, False or 'auto', got {find_unused_parameters!r}"
            )
        super().__init__(
            module=module, device_ids=device_ids, find_unused_parameters=find_unused_parameters, **kwargs
        )

    def train_step(self, data: dict, optim_wrapper: Any) -> dict:
        try:
            return super().train_step(data, optim_wrapper)
        except RuntimeError as exc:
            if self.find_unused_parameters or "find_unused_parameters" not in str(exc):
                raise
            raise RuntimeError(
                "DDP: a parameter got no gradient in a training step, and the model was wrapped with "
                "find_unused_parameters=False; steps that leave parameters unused (a stream, input or head absent "
                "from a process's share of a step, or a component that uses some of its parameters only for some "
                "inputs) need model_wrapper_cfg.find_unused_parameters=True (--cfg-options "
                "model_wrapper_cfg.find_unused_parameters=True); see 'More than one process' in docs/training.md"
            ) from exc


def _type_name(spec: Any) -> str | None:
    """The class name a config entry or object stands for (``"polymodal.MultiTaskSampler"`` -> ``MultiTaskSampler``)."""
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, Mapping) else type(spec)
    if isinstance(kind, type):
        return kind.__name__
    return None if kind is None else str(kind).rsplit(".", 1)[-1]


def _stream_inputs(spec: Any) -> tuple[set[str], set[str]] | None:
    """``(model inputs, tasks)`` of one stream of a ``MultiTaskDataset`` config; ``None`` when only its built dataset
    knows."""
    from polymodal.registry.lookup import get
    from polymodal.train.multitask import StreamConfig

    cfg = spec if isinstance(spec, StreamConfig) else StreamConfig.model_validate(dict(spec))
    inputs: set[str] | None = None
    if cfg.sources is not None:
        inputs = set(cfg.sources)
    elif cfg.input is not None:
        inputs = {cfg.input}
    elif cfg.source is not None:
        name = cfg.source if isinstance(cfg.source, str) else cfg.source.get("type")
        try:
            inputs = {get("data source", str(name)).modality}
        except Exception:  # an unknown source fails with its own message when the dataset is built
            return None
    else:
        modality = getattr(cfg.dataset, "modality", None)
        inputs = {modality} if isinstance(modality, str) and modality else None
    if inputs is None:
        return None
    return inputs, set(cfg.tasks) if cfg.tasks is not None else inputs  # tasks default to the input keys


def _inputs_of_every_step(loader: Any) -> tuple[list[tuple[set[str], set[str]]] | None, str]:
    """``([(inputs, tasks) of each stream], "")`` when every process's share of every training step holds an item of every
    stream of the loader, else ``(None, why not)``. ``loader`` is a ``train_dataloader`` config or a DataLoader."""
    if loader is None:
        return None, "no training data loader to read the steps from"
    if isinstance(loader, Mapping):
        batch_sampler, sampler = loader.get("batch_sampler"), loader.get("sampler") or {}
        batch_size, dataset = loader.get("batch_size"), loader.get("dataset") or {}
        mode = (
            sampler.get("mode", "proportional")
            if isinstance(sampler, Mapping)
            else getattr(sampler, "mode", None)
        )
        if _type_name(dataset) != "MultiTaskDataset":
            return None, f"the training dataset is a {_type_name(dataset)}, not a MultiTaskDataset"
        specs = dataset.get("streams") if isinstance(dataset, Mapping) else None
        streams = None if specs is None else [_stream_inputs(s) for s in dict(specs).values()]
        if isinstance(dataset, Mapping) and specs is None:
            return None, "the training dataset has no streams"
        if not isinstance(dataset, Mapping):
            streams = [(set(s.inputs), set(s.tasks)) for s in dataset.streams]
    else:
        from polymodal.train.multitask import MultiTaskDataset

        batch_sampler = getattr(loader, "batch_sampler", None)
        sampler = getattr(batch_sampler, "sampler", None)
        mode, batch_size = getattr(sampler, "mode", None), getattr(batch_sampler, "batch_size", None)
        dataset = getattr(loader, "dataset", None)
        if not isinstance(dataset, MultiTaskDataset):
            return None, f"the training dataset is a {type(dataset).__name__}, not a MultiTaskDataset"
        streams = [(set(s.inputs), set(s.tasks)) for s in dataset.streams]
    if _type_name(batch_sampler) != "MultiTaskBatchSampler" or _type_name(sampler) != "MultiTaskSampler":
        return None, (
            f"steps are composed by a {_type_name(batch_sampler)} (not a MultiTaskBatchSampler over a "
            "MultiTaskSampler), so a step may lack a stream"
        )
    if any(s is None for s in streams):
        return None, "a stream's input is known only once its dataset is built"
    if len(streams) > 1 and mode != "round_robin":
        return (
            None,
            f"mode={mode!r} mixes {len(streams)} streams, so a process's share of a step may lack one",
        )
    if len(streams) > 1 and not (isinstance(batch_size, int) and batch_size >= len(streams)):
        return None, (
            f"round-robin steps of batch_size={batch_size} items per process cannot give every process an item of "
            f"each of the {len(streams)} streams"
        )
    return streams, ""  # type: ignore[return-value]


def find_unused_parameters_needed(model: torch.nn.Module, train_dataloader: Any) -> tuple[bool, str]:
    """Whether DDP needs ``find_unused_parameters=True`` for this run, and why: ``(needed, reason)``.

    DDP waits for a gradient of every parameter that requires one; a parameter left out of a step's loss makes it
    fail (or hang) unless ``find_unused_parameters=True``, which costs a traversal of the autograd graph per step.
    Not needed (``False``) only when every parameter is in every step's loss, which polymodal can tell from the
    config when all of these hold:

    - steps are composed by a ``MultiTaskBatchSampler`` over a ``MultiTaskSampler`` on a ``MultiTaskDataset``, and
      either there is one stream, or ``mode="round_robin"`` with ``batch_size`` (per process) at least the number
      of streams: a step then holds at least ``world_size`` items of each stream and each process takes an
      interleaved share, so every process sees every stream in every step;
    - those streams feed every input of the model (a tokenizer no stream feeds gets no gradient) and supervise
      every head (a stream's ``tasks``, by default its input keys), so every head gets a loss;
    - no member of a fusion group is read by no head on its own (its [CLS] would be used only when it comes alone).

    Anything else is needed: proportional or temperature mixing over several streams, token-budget batches, streams
    read as they come (``MultiTaskStream``), a stream whose input only its built dataset knows, a model that is not a
    ``MultimodalModel``. A component that uses some of its parameters only for some inputs is beyond what the config
    says: force ``model_wrapper_cfg.find_unused_parameters=True`` for it (the DDP error then names that setting).
    """
    streams, why = _inputs_of_every_step(train_dataloader)
    if streams is None:
        return True, why
    tokenizers, head_inputs = getattr(model, "tokenizers", None), getattr(model, "head_inputs", None)
    if tokenizers is None or head_inputs is None:
        return (
            True,
            f"the model is a {type(model).__name__}, not a MultimodalModel; its parameters' use is unknown",
        )
    fed = set().union(*(inputs for inputs, _ in streams))
    missing = sorted(set(tokenizers) - fed)
    if missing:
        return True, f"no stream feeds the input(s) {missing}, so their tokenizers get no gradient"
    supervised = set().union(*(tasks for _, tasks in streams))
    unsupervised = sorted(set(head_inputs) - supervised)
    if unsupervised:
        return True, f"no stream supervises the head(s) {unsupervised}, so they get no loss"
    fusion = dict(getattr(getattr(model, "config", None), "fusion", None) or {})
    read = {k for keys in head_inputs.values() for k in keys}
    cls_tokens = getattr(model, "cls_tokens", {}) or {}
    for key, members in fusion.items():
        alone = [m for m in members if m not in read and m in cls_tokens]
        if alone:
            return (
                True,
                f"fusion {key!r}: the [CLS] of {alone} is used only when encoded alone, never with the group",
            )
    return False, (
        f"every process's share of every step holds all {len(streams)} stream(s), which feed every input and head"
    )


# -- FSDP -----------------------------------------------------------------------------------------------------------
@MODEL_WRAPPERS.register_module()
class PolymodalFullyShardedDataParallel(MMFullyShardedDataParallel):
    """mmengine's FSDP wrapper whose evaluation steps give :class:`MultimodalModel`'s evaluation records (mmengine's
    own runs ``mode="predict"`` through the wrapper, which the model answers with plain predictions)."""

    def val_step(self, data: dict) -> list:
        return self._run_forward(self.module.data_preprocessor(data, False), mode="evaluate")

    def test_step(self, data: dict) -> list:
        return self.val_step(data)


@FUNCTIONS.register_module()
def component_wrap_policy(module: torch.nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy: each transformer block of the shared encoder is one FSDP unit; the tokenizers, heads,
    [CLS] and modality embeddings and the encoder's norms form the root unit.

    A block is a :class:`~polymodal.core.encoders.vit.PackedBlock`, which the packed encoder calls through
    ``__call__`` (``block(x, layout, backend)``), so its unit gathers the block's parameters just before it runs and
    frees them after: besides the root's, one or two blocks' parameters are whole at a time. An encoder without
    ``PackedBlock`` s (a third party's) is one unit as a whole.

    Tokenizers and heads are not units of their own: FSDP's gathers are collectives, which every process must run in
    the same order, and the processes' shares of a step may hold different inputs (proportional or temperature
    mixing, and evaluation, which visits each item once); a tokenizer's unit run on one process only stops the job
    (gloo: "collective mismatch"; NCCL: a hang). Every process runs every block in every step, whatever its inputs.
    Use it in a config as ``model_wrapper=dict(auto_wrap_policy=dict(type="polymodal.component_wrap_policy"),
    use_orig_params=True)`` in the ``strategy`` (see ``polymodal::multimodal_small_fsdp.py``).
    """
    from polymodal.core.encoders import Encoder
    from polymodal.core.encoders.vit import PackedBlock

    if recurse:
        return True  # look into every module: torch wraps a module after its children
    if isinstance(module, PackedBlock):
        return True
    return isinstance(module, Encoder) and not any(isinstance(m, PackedBlock) for m in module.modules())


#: The file of a sharded checkpoint folder that holds everything but the weights and the optimiser state.
SHARDED_STATE_FILE = "state.pth"


def is_sharded_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a checkpoint folder written by ``torch.distributed.checkpoint`` (``state_dict_cfg=
    "sharded"``): a folder with DCP's ``.metadata``."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, ".metadata"))


def _dcp_metadata_globals() -> dict[tuple[str, str], Any]:
    import pathlib

    from torch.distributed.checkpoint import filesystem, metadata

    allowed: dict[tuple[str, str], Any] = {
        (metadata.__name__, name): obj
        for name, obj in vars(metadata).items()
        if isinstance(obj, type) and obj.__module__ == metadata.__name__
    }
    allowed[(filesystem.__name__, "_StorageInfo")] = filesystem._StorageInfo
    allowed[("torch", "Size")] = torch.Size
    allowed[("torch.serialization", "_get_layout")] = torch.serialization._get_layout
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    for name in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"):
        allowed[("pathlib", name)] = getattr(pathlib, name)
    return allowed


class _MetadataUnpickler(pickle.Unpickler):
    """Reads DCP's ``.metadata`` (a pickle) building only DCP's metadata records, tensor sizes, dtypes and paths."""

    def __init__(self, file: Any, name: str) -> None:
        super().__init__(file)
        self.name = name
        self.allowed = _dcp_metadata_globals()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise UnsafeCheckpointError(
            f"{self.name}: refused to load: it asks for the global {module}.{name}; a sharded checkpoint's metadata "
            "holds only torch.distributed.checkpoint's records, sizes and dtypes"
        )


def _safe_reader(path: str) -> Any:
    """DCP's ``FileSystemReader`` that reads the metadata with :class:`_MetadataUnpickler` (DCP itself uses plain
    ``pickle.load``); tensors are read by DCP with ``weights_only=True``."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class SafeFileSystemReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            rank = kwargs.get("rank")
            name = ".metadata" if rank is None else f"__{rank}.metadata"
            file = self.fs.concat_path(self.path, name)
            with self.fs.create_stream(file, "rb") as stream:
                metadata = _MetadataUnpickler(stream, str(file)).load()
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeFileSystemReader(path)


def _safe_planner(allow_partial_load: bool = False) -> Any:
    """DCP's ``DefaultLoadPlanner`` whose non-tensor entries (an optimiser's ``param_groups`` values) are read with
    ``torch.load(weights_only=True)`` (DCP itself passes ``weights_only=False``)."""
    from torch.distributed.checkpoint import DefaultLoadPlanner

    class SafeLoadPlanner(DefaultLoadPlanner):
        def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
            with safe_checkpoint_globals():
                obj = torch.load(value, weights_only=True)
            plain = io.BytesIO()
            torch.save(obj, plain)  # plain data now: DCP's own load of it runs nothing
            plain.seek(0)
            super().load_bytes(read_item, plain)

    return SafeLoadPlanner(allow_partial_load=allow_partial_load)


def _sharded_metadata(path: str) -> Any:
    return _safe_reader(path).read_metadata()


def _dcp_load(path: str, state: dict, *, allow_partial_load: bool = False, no_dist: bool = False) -> None:
    from torch.distributed.checkpoint import load

    load(state, storage_reader=_safe_reader(path), planner=_safe_planner(allow_partial_load), no_dist=no_dist)


def read_sharded_checkpoint(path: str | os.PathLike[str], optimizer: bool = False) -> dict[str, Any]:
    """A sharded checkpoint folder read whole by one process, without FSDP or a process group: ``{"state_dict":
    {name: tensor}, "meta": ..., "message_hub": ..., ...}`` like a full checkpoint. What :class:`PolymodalRunner`
    loads a sharded checkpoint with (``polymodal eval --checkpoint DIR/epoch_N.pth``, ``load_from``).

    ``optimizer=True`` adds ``"optimizer"``: the optimiser's tensors by their flat names
    (``"state.<parameter name>.exp_avg"``, ...), for inspection; resuming reads them with FSDP.
    """
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    path = os.fspath(path)
    if not is_sharded_checkpoint(path):
        raise FileNotFoundError(
            f"{path}: expected a sharded checkpoint folder (torch.distributed.checkpoint's .metadata inside)"
        )
    extra = load_checkpoint_file(os.path.join(path, SHARDED_STATE_FILE))
    metadata = _sharded_metadata(path)
    parts = ("model.", "optimizer.") if optimizer else ("model.",)
    state = {
        key: torch.empty(md.size, dtype=md.properties.dtype)
        for key, md in metadata.state_dict_metadata.items()
        if key.startswith(parts) and isinstance(md, TensorStorageMetadata)
    }
    _dcp_load(path, state, no_dist=True)
    out = {"state_dict": {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}, **extra}
    if optimizer:
        out["optimizer"] = {k[len("optimizer.") :]: v for k, v in state.items() if k.startswith("optimizer.")}
    return out


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def save_sharded_checkpoint(
    path: str | os.PathLike[str], state: dict[str, Any], extra: dict[str, Any]
) -> None:
    """Write a sharded checkpoint folder: every process writes its shards of ``state`` (``{"model": ...,
    "optimizer": ...}`` from ``get_state_dict``) through ``torch.distributed.checkpoint.save``, process 0 adds
    ``extra`` (meta, message hub, schedulers, hooks' entries) as :data:`SHARDED_STATE_FILE`. Every process calls it.

    Atomic like :class:`~polymodal.train.hooks.AtomicCheckpointHook`'s files: the folder is written as
    ``<path>.partial`` and renamed to ``path`` once complete (DCP writes its ``.metadata`` after every shard, the
    state file comes after that), so a killed job leaves the previous checkpoint untouched.
    """
    from mmengine.dist import barrier
    from torch.distributed.checkpoint import FileSystemWriter, save

    path = os.fspath(path)
    if "://" in path:
        raise ValueError(f"{path}: sharded checkpoints are written to a local (or mounted) folder, got a URL")
    partial = path + ".partial"
    if is_main_process():
        _remove(partial)
        os.makedirs(partial)
    barrier()
    save(state, storage_writer=FileSystemWriter(partial))
    if is_main_process():
        atomic_write(os.path.join(partial, SHARDED_STATE_FILE), lambda tmp: torch.save(extra, tmp))
        _fsync_dir(partial)
        old = path + ".old"
        if os.path.lexists(path):
            _remove(old)
            os.rename(path, old)
        os.rename(partial, path)
        _fsync_dir(os.path.dirname(os.path.abspath(path)))
        _remove(old)
    barrier()


#: torch's own warnings while FSDP gathers or shards a state dict with gloo (about its internals, nothing to act on).
_TORCH_STATE_DICT_WARNINGS = (
    r"Please use DTensor instead and we are deprecating ShardedTensor",
    r"`_get_pg_default_device` will be deprecated",
    r"Multiple backends are registered with this ProcessGroup",
    r"FSDP\.state_dict_type\(\) and FSDP\.set_state_dict_type\(\) are being deprecated",
)


@contextlib.contextmanager
def _quiet_state_dict_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        for pattern in _TORCH_STATE_DICT_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        yield


class _ShardedOptimizerState:
    """An optimiser state read from a sharded checkpoint, for :meth:`PolymodalFSDPStrategy.load_optim_state_dict`."""

    def __init__(
        self, state: dict[str, Any], loss_scaler: dict[str, Any] | None, groups: list | None = None
    ) -> None:
        self.state, self.loss_scaler, self.groups = state, loss_scaler, groups


def _init_cpu_process_group(launcher: str, dist_cfg: Mapping[str, Any]) -> None:
    """The process group of a ``--launcher pytorch`` job on a machine without CUDA: gloo (``nccl`` replaced), made
    here because mmengine's launcher calls ``torch.cuda.set_device`` first."""
    kwargs = {k: v for k, v in dist_cfg.items() if k != "backend"}
    backend = dist_cfg.get("backend", "nccl")
    if "timeout" in kwargs:
        kwargs["timeout"] = datetime.timedelta(seconds=kwargs["timeout"])
    torch_dist.init_process_group(backend="gloo" if backend == "nccl" else backend, **kwargs)


@STRATEGIES.register_module()
class PolymodalFSDPStrategy(FSDPStrategy):
    """mmengine's ``FSDPStrategy`` (torch's ``FullyShardedDataParallel``) with sharded checkpoints and these fixes.

    ``state_dict_cfg``:

    - ``"full"`` (default): a checkpoint is one file of full, unsharded tensors, gathered to process 0 and written
      atomically (temporary file, fsync, rename); loadable without FSDP (``polymodal eval``, ``from_pretrained`` of
      the final model, a DDP or one-process run).
    - ``"sharded"``: each process writes its shards of the weights and of the optimiser state through
      ``torch.distributed.checkpoint`` into a checkpoint folder (:func:`save_sharded_checkpoint`; nothing is
      gathered on one process), and resume reads them back (``dcp.load``), optimiser state included; the folder
      loads into any number of processes, and without FSDP through :func:`read_sharded_checkpoint`. Its metadata
      and non-tensor entries are read under the same weights-only policy as every other checkpoint.
    - ``"local"`` or a dict: mmengine's own (a folder of ``rank{i}.pth``, readable only by as many processes).

    Fixes: gradient clipping by norm (``clip_grad=dict(max_norm=...)``) uses FSDP's ``clip_grad_norm_``, whose
    norm covers every process's shards (mmengine calls torch's, which sees only the local shards, so every process
    clipped by a different norm); the process group is gloo and the wrapper's device the CPU on a machine without
    CUDA; optimiser-state loading on resume works with current torch (``optim_state_dict_to_load(model, optim,
    optim_state_dict)``; mmengine 0.10.7 passes the state first); a full checkpoint also loads in sharded mode.
    """

    def __init__(self, *, state_dict_cfg: str | dict = "full", **kwargs: Any) -> None:
        self.sharded = state_dict_cfg == "sharded"
        if self.sharded:
            from torch.distributed.fsdp import ShardedOptimStateDictConfig, ShardedStateDictConfig

            state_dict_cfg = dict(
                state_dict_type="SHARDED_STATE_DICT",
                state_dict_config=ShardedStateDictConfig(),
                optim_state_dict_config=ShardedOptimStateDictConfig(),
            )
        elif state_dict_cfg == "full" and not torch.cuda.is_available():
            from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig

            # Gathering an optimiser state with offload_to_cpu=True on the CPU (gloo) reuses one buffer for every
            # entry of a parameter: Adam's exp_avg was saved as a copy of exp_avg_sq (torch 2.14). The state is
            # on the CPU already, so nothing is offloaded.
            state_dict_cfg = dict(
                state_dict_type="FULL_STATE_DICT",
                state_dict_config=FullStateDictConfig(rank0_only=True, offload_to_cpu=False),
                optim_state_dict_config=FullOptimStateDictConfig(rank0_only=True, offload_to_cpu=False),
            )
        super().__init__(state_dict_cfg=state_dict_cfg, **kwargs)
        self._resuming = False

    # -- processes and wrapping -------------------------------------------------------------------------------------
    def _setup_distributed(self, launcher: str = "pytorch", backend: str = "nccl", **kwargs: Any) -> None:
        if launcher == "pytorch" and not torch.cuda.is_available() and not is_distributed():
            _init_cpu_process_group(launcher, {"backend": backend, **kwargs})
            return
        super()._setup_distributed(launcher, backend, **kwargs)

    @_quiet_state_dict_warnings()
    def prepare(self, model: Any, *, optim_wrapper: Any = None, **kwargs: Any) -> Any:
        self._optim_cfg = optim_wrapper  # read by _wrap_model, before the parameters become flat shards
        try:
            return super().prepare(model, optim_wrapper=optim_wrapper, **kwargs)
        finally:
            self._optim_cfg = None

    def _wrap_model(self, model: torch.nn.Module) -> Any:
        """mmengine's wrapping, with the optimiser built first from the config on the unwrapped model (its
        constructor sees the parameters' real shapes: FSDP's ``use_orig_params`` views are 1-D shards, which the
        no-decay rule for 1-D parameters took for biases, so no weight decayed); :meth:`build_optim_wrapper` then
        moves it onto the sharded parameters by name."""
        cfg = getattr(self, "_optim_cfg", None)
        self._prebuilt = None
        if isinstance(cfg, Mapping) and "optimizer" in cfg and not is_model_wrapper(model):
            from mmengine.optim import build_optim_wrapper

            cfg = copy.deepcopy(dict(cfg))
            if cfg.get("type", "OptimWrapper") in ("AmpOptimWrapper", AmpOptimWrapper):
                cfg.setdefault("use_fsdp", True)
            self._prebuilt = build_optim_wrapper(model, cfg)
            self._param_names = {id(p): n for n, p in model.named_parameters()}
        if not torch.cuda.is_available():
            wrapper_cfg = dict(self.model_wrapper or {"type": "polymodal.PolymodalFullyShardedDataParallel"})
            wrapper_cfg.setdefault("device_id", torch.device("cpu"))
            self.model_wrapper = wrapper_cfg
        return super()._wrap_model(model)

    def build_optim_wrapper(self, optim_wrapper: Any, model: torch.nn.Module | None = None) -> Any:
        built = getattr(self, "_prebuilt", None)
        if built is not None and model is not None:
            self._prebuilt = None
            self._onto_shards(built, model)
        else:
            built = super().build_optim_wrapper(optim_wrapper, model)
        for wrapper in built.values() if isinstance(built, OptimWrapperDict) else [built]:
            if getattr(wrapper, "clip_func", None) is torch.nn.utils.clip_grad_norm_:
                wrapper.clip_func = self._clip_grad_norm
        return built

    def _onto_shards(self, wrapper: Any, model: torch.nn.Module) -> None:
        """Replace the optimiser built on the unwrapped model by one of the same class and param groups over the
        FSDP model's parameters (matched by name)."""
        from polymodal.train.optim import clean_name

        optimizer = wrapper.optimizer
        sharded = {clean_name(n): p for n, p in model.named_parameters()}
        groups = []
        for group in optimizer.param_groups:
            names = [self._param_names[id(p)] for p in group["params"]]
            groups.append(
                {**{k: v for k, v in group.items() if k != "params"}, "params": [sharded[n] for n in names]}
            )
        accepted = inspect.signature(type(optimizer)).parameters
        defaults = {k: v for k, v in optimizer.defaults.items() if k in accepted and k != "params"}
        wrapper.optimizer = type(optimizer)(groups, **defaults)

    def _clip_grad_norm(self, params: Any, max_norm: float, norm_type: float = 2.0, **_: Any) -> torch.Tensor:
        """``clip_grad_norm_`` over the whole model, every process's shards: FSDP's own."""
        return self.model.clip_grad_norm_(max_norm, norm_type)

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        wrapper = getattr(self, "optim_wrapper", None)
        if wrapper is None:
            return []
        if isinstance(wrapper, OptimWrapperDict):
            return [w.optimizer for w in wrapper.values()]
        return [wrapper.optimizer]

    # -- checkpoints ------------------------------------------------------------------------------------------------
    @_quiet_state_dict_warnings()
    def save_checkpoint(
        self,
        filename: str,
        *,
        save_optimizer: bool = True,
        save_param_scheduler: bool = True,
        extra_ckpt: dict | None = None,
        callback: Any = None,
    ) -> None:
        """Write a full checkpoint file (process 0, atomically) or a sharded checkpoint folder (every process);
        every process calls it."""
        from mmengine.runner.checkpoint import save_checkpoint

        extra = dict(extra_ckpt or {})
        extra["meta"] = {
            **dict(extra.get("meta") or {}),
            "seed": self.seed,
            "time": time.strftime("%Y%m%d_%H%M%S", time.localtime()),
            "mmengine": mmengine.__version__ + get_git_hash(),
        }
        if save_param_scheduler and hasattr(self, "param_schedulers"):
            extra["param_schedulers"] = self.scheduler_state_dict()
        with_optimizer = save_optimizer and hasattr(self, "optim_wrapper")
        if not self.sharded:
            state = {"state_dict": self.model_state_dict()}  # a collective
            if with_optimizer:
                state["optimizer"] = self.optim_state_dict()
            state.update(extra)
            if callback is not None:
                callback(state)
            if not self._is_full_state_dict():  # mmengine's "local": rank{i}.pth in a folder
                os.makedirs(filename, exist_ok=True)
                filename = os.path.join(filename, f"rank{self.rank}.pth")
            elif not is_main_process():
                return
            backend = None if "://" in filename else {"backend": ATOMIC_BACKEND}
            save_checkpoint(state, filename, backend_args=backend)
            return
        from torch.distributed.checkpoint.state_dict import get_state_dict

        if callback is not None:
            callback(extra)  # hooks add their entries (RNG states, metric history, ...)
        optimizers = self._optimizers() if with_optimizer else []
        scaler = getattr(self.optim_wrapper, "loss_scaler", None) if with_optimizer else None
        if scaler is not None:
            extra["loss_scaler"] = scaler.state_dict()
        if optimizers:
            # Hyperparameters of every param group (lr, initial_lr, ...) and mmengine's base_param_settings, which
            # every process reads back from here: dcp.load of an FSDP optimiser state left a second process's
            # param groups at their current values (the warm-up's first lr on resume; torch 2.14).
            extra["optimizer_param_groups"] = [
                [{k: v for k, v in g.items() if k != "params"} for g in o.param_groups] for o in optimizers
            ]
            extra["base_param_settings"] = getattr(self.optim_wrapper, "base_param_settings", None)
        model_state, optim_state = get_state_dict(self.model, optimizers)
        state = {"model": model_state}
        if optimizers:
            state["optimizer"] = optim_state
        save_sharded_checkpoint(filename, state, extra)

    @_quiet_state_dict_warnings()
    def load_checkpoint(
        self,
        filename: str,
        *,
        map_location: Any = "cpu",
        strict: bool = False,
        revise_keys: list | None = None,
        callback: Any = None,
    ) -> dict:
        """Load a checkpoint whatever the mode it was written in: a sharded folder (into this process's shards,
        and on resume the optimiser state too), a full file, or mmengine's ``rank{i}.pth`` folder."""
        revise_keys = revise_keys if revise_keys is not None else [(r"^module.", "")]
        if not is_sharded_checkpoint(filename):
            if os.path.isdir(filename):  # mmengine's "local" folder
                return super().load_checkpoint(
                    filename,
                    map_location=map_location,
                    strict=strict,
                    revise_keys=revise_keys,
                    callback=callback,
                )
            return SingleDeviceStrategy.load_checkpoint(
                self,
                filename,
                map_location=map_location,
                strict=strict,
                revise_keys=revise_keys,
                callback=callback,
            )
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_state_dict,
            set_model_state_dict,
        )

        self.logger.info(f"Load sharded checkpoint from {filename}")
        extra = load_checkpoint_file(os.path.join(filename, SHARDED_STATE_FILE))
        if callback is not None:
            callback(extra)
        saved = set(_sharded_metadata(filename).state_dict_metadata)
        optimizers = self._optimizers() if self._resuming else []
        if optimizers and not any(k.startswith("optimizer.") for k in saved):
            raise KeyError(
                f"{filename}: expected an optimiser state to resume from, got a checkpoint saved without one "
                "(save_optimizer=False); load its weights with load_from instead"
            )
        model_state, optim_state = get_state_dict(self.model, optimizers)
        if strict:
            unexpected = sorted(k[6:] for k in saved if k.startswith("model.") and k[6:] not in model_state)
            if unexpected:
                raise KeyError(f"{filename}: holds weights this model lacks: {unexpected[:8]}")
        state = {"model": model_state}
        if optimizers:
            state["optimizer"] = optim_state
        _dcp_load(filename, state, allow_partial_load=not strict)
        set_model_state_dict(self.model, state["model"], options=StateDictOptions(strict=strict))
        if optimizers:
            extra["optimizer"] = _ShardedOptimizerState(
                state["optimizer"],
                extra.pop("loss_scaler", None),
                [extra.pop("optimizer_param_groups", None), extra.pop("base_param_settings", None)],
            )
        return extra

    def resume(self, filename: str, **kwargs: Any) -> dict:
        self._resuming = True
        try:
            return super().resume(filename, **kwargs)
        finally:
            self._resuming = False

    @_quiet_state_dict_warnings()
    def load_model_state_dict(
        self, state_dict: dict, *, strict: bool = False, revise_keys: list | None = None
    ) -> None:
        """A full state dict (a ``"full"`` checkpoint file) into the sharded model, in any mode."""
        if not self.sharded:
            return super().load_model_state_dict(state_dict, strict=strict)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        for pattern, repl in revise_keys if revise_keys is not None else [(r"^module.", "")]:
            state_dict = {re.sub(pattern, repl, k): v for k, v in state_dict.items()}
        set_model_state_dict(
            self.model, state_dict, options=StateDictOptions(full_state_dict=True, strict=strict)
        )

    @_quiet_state_dict_warnings()
    def load_optim_state_dict(self, state_dict: Any) -> None:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import StateDictType

        if isinstance(state_dict, _ShardedOptimizerState):
            from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

            set_optimizer_state_dict(self.model, self._optimizers(), state_dict.state)
            groups, base = state_dict.groups or [None, None]
            for optimizer, saved in zip(self._optimizers(), groups or []):
                for group, values in zip(optimizer.param_groups, saved):
                    group.update(values)
            if base is not None and getattr(self.optim_wrapper, "base_param_settings", None) is not None:
                self.optim_wrapper.base_param_settings = base
            scaler = getattr(self.optim_wrapper, "loss_scaler", None)
            if scaler is not None and state_dict.loss_scaler is not None:
                scaler.load_state_dict(state_dict.loss_scaler)
            return
        context = (
            FSDP.state_dict_type(self.model, StateDictType.FULL_STATE_DICT)
            if self.sharded  # a full file resumed in sharded mode
            else contextlib.nullcontext()
        )
        with context:
            optim_state_dict = FSDP.optim_state_dict_to_load(
                model=self.model, optim=self.optim_wrapper.optimizer, optim_state_dict=state_dict
            )
        self.optim_wrapper.load_state_dict(optim_state_dict)


# -- evaluation in lockstep -----------------------------------------------------------------------------------------
class _Repeat:
    """A step a process runs again, its outputs discarded, to join the other processes' collectives."""

    __slots__ = ("batch",)

    def __init__(self, batch: Any) -> None:
        self.batch = batch


class LockstepBatches:
    """A data loader's batches, with every process taking as many steps: one that has run out repeats its last
    batch (:class:`_Repeat`) while another still has batches. One ``all_reduce`` of one number per step.

    FSDP gathers each unit's parameters with a collective in every forward, so processes must take the same number
    of steps; an evaluation that visits each item once may give some processes one batch fewer (proportional
    mixing, ``drop_last=False``). Attributes (``dataset``, ``sampler``, ...) are the loader's.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        from mmengine.dist import all_reduce, get_rank

        end = object()
        last: Any = end
        batches = iter(self.loader)
        while True:
            batch = next(batches, end)
            more = torch.tensor([0 if batch is end else 1], dtype=torch.int64)
            all_reduce(more, op="max")
            if not int(more.item()):
                return
            if batch is not end:
                last = batch
                yield batch
            elif last is end:
                raise RuntimeError(
                    f"process {get_rank()} has no evaluation batch while other processes have some; FSDP needs at "
                    "least one batch on every process: make the evaluation batch size smaller"
                )
            else:
                yield _Repeat(last)


class _Lockstep:
    """Mixin of a validation or test loop whose processes step in lockstep (:class:`LockstepBatches`), as FSDP
    needs: a process out of batches runs its last one again, and its outputs are dropped."""

    step_name: str

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if is_distributed():
            self.dataloader = LockstepBatches(self.dataloader)

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: Any) -> None:
        if isinstance(data_batch, _Repeat):
            getattr(self.runner.model, self.step_name)(data_batch.batch)
            return
        super().run_iter(idx, data_batch)  # type: ignore[misc]


@LOOPS.register_module()
class FSDPValLoop(_Lockstep, ValLoop):
    """mmengine's ``ValLoop`` whose processes step in lockstep (:class:`LockstepBatches`), as FSDP needs;
    :class:`PolymodalFlexibleRunner` uses it when ``val_cfg`` names no loop."""

    step_name = "val_step"


@LOOPS.register_module()
class FSDPTestLoop(_Lockstep, TestLoop):
    """mmengine's ``TestLoop`` whose processes step in lockstep (:class:`LockstepBatches`), as FSDP needs;
    :class:`PolymodalFlexibleRunner` uses it when ``test_cfg`` names no loop."""

    step_name = "test_step"


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
                _init_cpu_process_group(self.launcher, dist_cfg)
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg: dict | None, model: torch.nn.Module) -> torch.nn.Module:
        """mmengine's ``wrap_model``, with ``find_unused_parameters`` of a DDP wrapper decided from the run when it is
        ``"auto"`` (the default runtime's) or unset (:func:`find_unused_parameters_needed`; the decision and its
        reason are logged). Without ``model_wrapper_cfg``, :class:`PolymodalDistributedDataParallel`."""
        if self.distributed and not is_model_wrapper(model):
            if model_wrapper_cfg is None:
                model_wrapper_cfg = dict(
                    type="polymodal.PolymodalDistributedDataParallel",
                    broadcast_buffers=False,
                    find_unused_parameters=self.cfg.get("find_unused_parameters", "auto"),
                )
            cfg = copy.deepcopy(dict(model_wrapper_cfg))
            wrapper = MODEL_WRAPPERS.get(cfg.get("type", "MMDistributedDataParallel"))
            is_ddp = isinstance(wrapper, type) and issubclass(
                wrapper, torch.nn.parallel.DistributedDataParallel
            )
            if is_ddp and cfg.get("find_unused_parameters", "auto") == "auto":
                needed, why = find_unused_parameters_needed(model, self._train_dataloader)
                cfg["find_unused_parameters"] = needed
                self.logger.info(f"DDP: find_unused_parameters={needed}: {why}")
            elif is_ddp:
                value = cfg["find_unused_parameters"]
                self.logger.info(f"DDP: find_unused_parameters={value} (set in the config)")
            model_wrapper_cfg = cfg
        return super().wrap_model(model_wrapper_cfg, model)

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
        weights of the model fails instead of leaving them initialised. A sharded checkpoint folder (FSDP with
        ``state_dict_cfg="sharded"``) loads too, read whole by this process (:func:`read_sharded_checkpoint`)."""
        revise_keys = revise_keys or [(r"^module.", "")]
        if not is_sharded_checkpoint(filename):
            with safe_checkpoint_globals():
                return super().load_checkpoint(
                    filename, map_location=map_location, strict=strict, revise_keys=revise_keys
                )
        from mmengine.runner.checkpoint import _load_checkpoint_to_model

        checkpoint = read_sharded_checkpoint(filename)
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f"Load sharded checkpoint from {filename}")
        return checkpoint

    def resume(self, filename: str, *args: Any, **kwargs: Any) -> None:
        """mmengine's ``resume``; a sharded checkpoint folder is refused with what to do instead."""
        if is_sharded_checkpoint(filename):
            raise ValueError(
                f"{filename}: a sharded checkpoint (FSDP, state_dict_cfg='sharded') resumes with the FSDP strategy "
                "that wrote it (its optimiser state is sharded by parameter name); this config has no strategy. Resume "
                "with the FSDP config, or start from its weights with load_from"
            )
        super().resume(filename, *args, **kwargs)


@RUNNERS.register_module()
class PolymodalFlexibleRunner(FlexibleRunner):
    """mmengine's ``FlexibleRunner`` (FSDP, DeepSpeed: chosen when the config has a ``strategy``) that loads checkpoints
    strictly under the safe allow-list, and whose validation and test steps run in lockstep on every process
    (:class:`FSDPValLoop`, :class:`FSDPTestLoop`) unless ``val_cfg`` / ``test_cfg`` name a loop."""

    def build_val_loop(self, loop: Any) -> Any:
        if isinstance(loop, dict) and "type" not in loop:
            loop = {**loop, "type": FSDPValLoop}
        return super().build_val_loop(loop)

    def build_test_loop(self, loop: Any) -> Any:
        if isinstance(loop, dict) and "type" not in loop:
            loop = {**loop, "type": FSDPTestLoop}
        return super().build_test_loop(loop)

    def load_checkpoint(
        self, filename: str, map_location: Any = "cpu", strict: bool = True, revise_keys: list | None = None
    ) -> Any:
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
        if cfg.get("resume") and cfg.get("load_from") is None:  # its own lookup reads the pointer as it is
            cfg.load_from = latest_checkpoint(cfg.work_dir)
        return PolymodalFlexibleRunner.from_cfg(cfg)
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


class _FullWeights:
    """What ``save_pretrained`` reads of a model (``config``, ``config_json()``, ``state_dict()``), with the full
    weights gathered from an FSDP model."""

    def __init__(self, model: Any, state: dict[str, torch.Tensor]) -> None:
        self.config, self.config_json, self._state = model.config, model.config_json, state

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._state


def _save_final_model(model: torch.nn.Module, directory: Path) -> None:
    """``save_pretrained`` of the trained model on process 0; every process calls it (FSDP gathers the weights)."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    if isinstance(model, FullyShardedDataParallel):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        with _quiet_state_dict_warnings():  # a collective; process 0 gets the tensors
            state = get_model_state_dict(model, options=options)
        inner = _unwrap(model)
        if is_main_process() and hasattr(inner, "save_pretrained"):
            from polymodal.model.checkpoint import save_pretrained

            save_pretrained(_FullWeights(inner, state), directory)
        return
    inner = _unwrap(model)
    if is_main_process() and hasattr(inner, "save_pretrained"):
        inner.save_pretrained(directory)


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
        if save_pretrained:
            _save_final_model(runner.model, Path(cfg.work_dir) / "pretrained")
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
    """Evaluate a checkpoint (a file, or a sharded checkpoint folder) on the config's test dataloader; return the
    metrics."""
    if not (os.path.isfile(checkpoint) or is_sharded_checkpoint(checkpoint)):
        raise FileNotFoundError(f"checkpoint {checkpoint} not found")
    cfg = load_config(config, work_dir=work_dir, cfg_options=cfg_options, launcher=launcher)
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    runner = _build_runner(cfg)
    with safe_checkpoint_globals():
        metrics = runner.test()
    return dict(metrics)
