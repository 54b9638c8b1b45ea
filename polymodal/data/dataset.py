"""Datasets of the user's own data: items ``(sample, target)`` ready for a tokenizer's ``collate``.

:class:`SampleDataset` is the common base: it knows its modality (the tokenizer config that preprocesses its
samples), its :class:`Task` (classification, multi-label, regression or forecasting, with its sizes) and its
targets, and gives the head config that solves the task (:meth:`SampleDataset.head_config`).

- :class:`ArrayDataset`: samples held in memory (arrays, tensors, lists, a DataFrame, a list of PyG ``Data``, a
  list of strings), each turned into the tokenizer's per-sample form by ``tokenizer.preprocess`` when read.
  Every sample is checked when the dataset is made (preprocess, then collate + tokenizer forward on a few
  samples of each distinct shape), so a wrong shape fails there, with the sample index, not mid-epoch.
- :class:`FileDataset`: samples on disk, read lazily by ``reader(item)`` in ``__getitem__`` (so DataLoader workers
  read and decode). An unreadable or corrupt file raises :class:`SampleReadError` naming it
  (``on_error="raise"``), or, with ``on_error="skip"``, :meth:`FileDataset.check` reads every file once, drops the
  bad ones and reports them by path with a count (never silently).

Targets are stored as one tensor: ``[N]`` long class indices (classification), ``[N, K]`` float 0/1
(multi-label), ``[N]`` or ``[N, K]`` float (regression), ``[N, C, H]`` float (forecasting ``H`` steps of ``C``
channels).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor
from torch.utils.data import Dataset

from polymodal.core.component import ModalityInputError
from polymodal.core.heads.regression import target_stats
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig, describe
from polymodal.registry.config import resolve_config
from polymodal.registry.lookup import get

__all__ = [
    "ArrayDataset",
    "FileDataset",
    "SampleDataset",
    "SampleInputError",
    "SampleReadError",
    "Task",
    "TaskKind",
    "infer_task",
]

logger = logging.getLogger("polymodal.data")

TaskKind = Literal["classification", "multilabel", "regression", "forecasting"]
CHECK_DIM = 16  # token width of the tokenizer instance that checks samples (its weights are thrown away)
MAX_SHAPE_GROUPS = (
    8  # samples of this many distinct shapes are collated and tokenized together at construction
)


# -- errors -------------------------------------------------------------------------------------------------------
class SampleInputError(ModalityInputError):
    """A sample of a dataset does not fit its modality: the message names the modality, the sample, what was
    expected and what came (``image: sample 3: expected …, got …``)."""

    def __init__(self, modality: str, where: str, expected: str, got: str) -> None:
        self.where = where
        ValueError.__init__(self, f"{modality}: {where}: expected {expected}, got {got}")
        self.modality, self.expected, self.got = modality, expected, got


class SampleReadError(OSError):
    """A file of a :class:`FileDataset` could not be read or decoded (the message names the path)."""

    def __init__(self, path: Any, index: int, cause: BaseException) -> None:
        self.path, self.index, self.cause = str(path), index, cause
        super().__init__(f"cannot read sample {index} from {path}: {type(cause).__name__}: {cause}")


# -- the task -----------------------------------------------------------------------------------------------------
class Task(BaseModel):
    """What a dataset's targets ask for, and its sizes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TaskKind
    num_classes: int | None = Field(
        None, ge=1, description="Classes (classification) or labels (multilabel)."
    )
    class_names: list[str] | None = Field(None, description="Name of each class / label, by index.")
    num_outputs: int | None = Field(None, ge=1, description="Values per sample (regression).")
    horizon: int | None = Field(None, ge=1, description="Steps to forecast (forecasting).")
    channels: int | None = Field(None, ge=1, description="Channels of the forecast (forecasting).")
    inferred: str | None = Field(
        None,
        description="What the task was inferred from (e.g. 'integer targets (N,)'), if it was not given.",
    )

    def describe(self) -> str:
        """One line: ``classification, 3 classes (cat, dog, fox)``."""
        if self.kind in ("classification", "multilabel"):
            what = "labels" if self.kind == "multilabel" else "classes"
            text = f"{self.kind}, {self.num_classes} {what}"
            if self.class_names:
                names = ", ".join(self.class_names[:10]) + (", …" if len(self.class_names) > 10 else "")
                text += f" ({names})"
            return text
        if self.kind == "regression":
            return f"regression, {self.num_outputs} value{'s' if self.num_outputs != 1 else ''} per sample"
        return (
            f"forecasting, {self.horizon} steps of {self.channels} channel{'s' if self.channels != 1 else ''}"
        )


def _as_array(values: Any) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().cpu().numpy()
    if hasattr(values, "to_numpy"):  # pandas Series / DataFrame
        return values.to_numpy()
    return np.asarray(values)


def infer_task(
    targets: Any,
    modality: str,
    *,
    task: TaskKind | Task | Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[Task, Tensor]:
    """The task of ``targets`` and the targets as one tensor (see the module docstring).

    Without ``task``: strings, bools or integers ``[N]`` -> classification (string labels become indices into
    ``class_names``, by default the sorted distinct labels); floats ``[N]`` -> regression; ``[N, K]`` of only 0
    and 1 -> multilabel; other ``[N, K]`` floats -> regression of ``K`` values; before these rules, the modality's
    tokenizer may say what multi-dimensional targets of its data mean (``Tokenizer.implied_task``: float ``[N, H]``
    and ``[N, C, H]`` targets of a series are forecasts). ``task`` (a kind, a :class:`Task` or a dict) overrides.
    """
    given: dict[str, Any] = {}
    if isinstance(task, Task):
        given = task.model_dump(exclude_none=True)
    elif isinstance(task, Mapping):
        given = dict(task)
    elif task is not None:
        given = {"kind": task}
    kind = given.get("kind")
    if kind is not None and kind not in ("classification", "multilabel", "regression", "forecasting"):
        raise ValueError(
            f"{modality}: task must be 'classification', 'multilabel', 'regression' or 'forecasting', got {kind!r}"
        )
    names = list(class_names) if class_names is not None else given.get("class_names")
    y = _as_array(targets)
    if y.ndim == 0 or len(y) == 0:
        raise ValueError(f"{modality}: expected one target per sample, got {describe(targets)}")
    reason = None
    if y.dtype.kind in "OUS":  # strings (or objects: strings, possibly mixed with numbers)
        labels = [str(v) for v in y.reshape(-1)]
        if y.ndim != 1:
            raise ValueError(f"{modality}: string labels must be one per sample (N,), got shape {y.shape}")
        names = list(names) if names is not None else sorted(set(labels))
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise ValueError(f"{modality}: labels {unknown[:5]} are not in class_names {names}")
        if kind not in (None, "classification"):
            raise ValueError(f"{modality}: string labels make a classification task, not {kind!r}")
        reason = f"{len(names)} distinct string labels" if class_names is None else None
        y = np.asarray([index[v] for v in labels], dtype=np.int64)
        kind = "classification"
    elif kind is None:
        integral = y.dtype.kind in "biu"
        binary = y.dtype.kind == "b" or bool(np.isin(y, (0, 1)).all()) if y.size else False
        implied = get("tokenizer", modality).implied_task(y) if y.ndim > 1 else None
        if implied is not None:  # the modality's own rule (e.g. float (N, C, H) targets of a series: forecasts)
            kind, reason = implied
        elif y.ndim == 1 and integral:
            kind, reason = "classification", f"{'boolean' if y.dtype.kind == 'b' else 'integer'} targets (N,)"
        elif y.ndim == 1:
            kind, reason = "regression", "float targets (N,)"
        elif y.ndim == 2 and binary:
            kind, reason = "multilabel", f"0/1 targets (N, {y.shape[1]})"
        elif y.ndim == 2:
            kind, reason = "regression", f"targets (N, {y.shape[1]})"
        else:
            raise ValueError(
                f"{modality}: cannot infer the task of targets of shape {y.shape}; pass task='classification', "
                "'multilabel', 'regression' or 'forecasting'"
            )
    if kind == "classification":
        if y.ndim != 1 or not (y.dtype.kind in "biu" or np.array_equal(y, np.round(y))):
            raise ValueError(
                f"{modality}: classification expects integer class indices (N,), got {describe(y)}"
            )
        t = torch.as_tensor(y.astype(np.int64))
        if int(t.min()) < 0:
            raise ValueError(f"{modality}: class indices must be >= 0, got {int(t.min())}")
        n = given.get("num_classes") or (len(names) if names is not None else int(t.max()) + 1)
        if int(t.max()) >= n:
            source = "num_classes" if given.get("num_classes") else "class_names"
            raise ValueError(f"{modality}: expected class indices below {n} ({source}), got {int(t.max())}")
        out = Task(kind=kind, num_classes=max(n, 2) if names is None else n, class_names=names)
    elif kind == "multilabel":
        if y.ndim != 2 or not bool(np.isin(y, (0, 1)).all()):
            raise ValueError(f"{modality}: multilabel expects 0/1 targets (N, labels), got {describe(y)}")
        if names is not None and len(names) != y.shape[1]:
            raise ValueError(f"{modality}: {len(names)} class_names for {y.shape[1]} labels")
        t = torch.as_tensor(y.astype(np.float32))
        out = Task(kind=kind, num_classes=y.shape[1], class_names=names)
    elif kind == "regression":
        if y.ndim not in (1, 2) or y.dtype.kind not in "biuf":
            raise ValueError(f"{modality}: regression expects numbers (N,) or (N, K), got {describe(y)}")
        t = torch.as_tensor(y.astype(np.float32))
        out = Task(kind=kind, num_outputs=1 if y.ndim == 1 else y.shape[1])
    else:  # forecasting
        if y.ndim not in (2, 3) or y.dtype.kind not in "biuf":
            raise ValueError(
                f"{modality}: forecasting expects float targets (N, H) or (N, C, H), got {describe(y)}"
            )
        t = torch.as_tensor(y.astype(np.float32))
        t = t.unsqueeze(1) if t.dim() == 2 else t
        out = Task(kind=kind, horizon=t.shape[-1], channels=t.shape[1])
    if kind != "multilabel" and not bool(torch.isfinite(t.float()).all()):
        bad = int((~torch.isfinite(t.float())).sum())
        raise ValueError(f"{modality}: expected finite targets, got {bad} NaN/Inf")
    if reason is not None and task is None:
        out = out.model_copy(update={"inferred": reason})
        logger.info(
            "%s: task %s, inferred from %s (pass task=... to change it)", modality, out.describe(), reason
        )
    return out, t


# -- tokenizer configs --------------------------------------------------------------------------------------------
def tokenizer_config(
    modality: str | Mapping[str, Any] | TokenizerConfig, tokenizer: Any = None
) -> TokenizerConfig:
    """The validated tokenizer config of ``modality`` (a tokenizer name, a config dict or object) with
    ``tokenizer`` (a config dict/object, or field overrides without ``type``) applied."""
    base = resolve_config("tokenizer", modality)
    if tokenizer is None:
        return base
    if isinstance(tokenizer, str):
        tokenizer = {"type": tokenizer}
    if isinstance(tokenizer, TokenizerConfig):
        tokenizer = tokenizer.model_dump()
    if not isinstance(tokenizer, Mapping):
        raise TypeError(f"tokenizer must be a config dict or object, got {type(tokenizer).__name__}")
    tokenizer = dict(tokenizer)
    kind = tokenizer.pop("type", base.type)
    if kind != base.type:
        raise ValueError(f"tokenizer type {kind!r} does not match the modality {base.type!r}")
    return resolve_config("tokenizer", {**base.model_dump(exclude=set(tokenizer)), **tokenizer})


def sets_field(spec: Any, field: str) -> bool:
    """Whether a tokenizer spec (a name, a config dict or object, field overrides) sets ``field`` itself."""
    if isinstance(spec, TokenizerConfig):
        return field in spec.model_fields_set
    return isinstance(spec, Mapping) and field in spec


def explicit_fields(modality: Any, tokenizer: Any) -> set[str]:
    """The tokenizer fields the user set: those a modality dict or config object sets (besides ``type``) and the
    keys of ``tokenizer`` overrides; a whole config object given as ``tokenizer`` sets every field."""
    fields: set[str] = set()
    for spec in (modality, tokenizer):
        if isinstance(spec, TokenizerConfig):
            fields |= set(type(spec).model_fields) if spec is tokenizer else set(spec.model_fields_set)
        elif isinstance(spec, Mapping):
            fields |= set(spec)
    return fields - {"type"}


def public_config(config: TokenizerConfig) -> dict[str, Any]:
    """A tokenizer config as a plain dict for ``build_model(tokenizers=...)``: without ``embed_dim``, which the
    model takes from its encoder."""
    return config.model_dump(mode="json", exclude={"embed_dim"})


class _TokenizerHandle:
    """A small CPU tokenizer (width :data:`CHECK_DIM`) built on first use, for ``preprocess`` and checks; pickles
    as its config only (DataLoader workers build their own)."""

    def __init__(self, config: TokenizerConfig) -> None:
        self.config = config
        self._tokenizer: Tokenizer | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "_tokenizer": None}

    def get(self) -> Tokenizer:
        if self._tokenizer is None:
            cls = get("tokenizer", self.config.type)
            self._tokenizer = cls(self.config.model_copy(update={"embed_dim": CHECK_DIM}))
            self._tokenizer.eval()
        return self._tokenizer


# -- the base class -----------------------------------------------------------------------------------------------
class SampleDataset(Dataset):
    """Items ``(sample, target)``: ``sample`` in the per-sample form its tokenizer's ``collate`` takes.

    Attributes:
        modality: the tokenizer name (the model input key it feeds by default).
        tokenizer_config: the tokenizer config that preprocesses the samples, as a dict without ``embed_dim``
            (give it to ``build_model(tokenizers={modality: dataset.tokenizer_config})`` when it is not the
            default, e.g. a tabular schema).
        task: the :class:`Task`.
        targets: the targets as one tensor (see the module docstring).
    """

    task: Task
    targets: Tensor

    def __init__(self, config: TokenizerConfig, task: Task, targets: Tensor) -> None:
        self._config = config
        self._handle = _TokenizerHandle(config)
        self.task = task
        self.targets = targets

    @property
    def modality(self) -> str:
        return self._config.type

    @property
    def tokenizer_config(self) -> dict[str, Any]:
        return public_config(self._config)

    @property
    def tokenizer(self) -> Tokenizer:
        """A CPU tokenizer instance of this dataset's config (small width; for ``preprocess`` and checks)."""
        return self._handle.get()

    @property
    def class_names(self) -> list[str] | None:
        return self.task.class_names

    def __len__(self) -> int:
        return len(self.targets)

    def sample(self, index: int) -> Any:  # pragma: no cover - abstract
        """Sample ``index`` in its per-sample (preprocessed) form."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[Any, Tensor]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {len(self)} samples")
        index %= len(self)
        return self.sample(index), self.targets[index]

    def collate_targets(self, targets: Sequence[Any]) -> Tensor:
        """Stack the targets of a batch."""
        return torch.stack([torch.as_tensor(t) for t in targets])

    def head_config(self, **overrides: Any) -> dict[str, Any]:
        """The head config that solves the task, e.g. ``{"type": "classification", "num_classes": 3}``
        (``overrides``: other head fields, such as ``dropout``).

        For regression it holds the statistics of this dataset's targets (``target_mean``, ``target_std``, one per
        output), with which the head standardises its targets: call it on the training part
        (``train.head_config()``) to keep validation targets out of them."""
        t = self.task
        if t.kind in ("classification", "multilabel"):
            cfg: dict[str, Any] = {"type": "classification", "num_classes": t.num_classes}
            if t.kind == "multilabel":
                cfg["multi_label"] = True
        elif t.kind == "regression":
            mean, std = target_stats(self.targets)
            cfg = {"type": "regression", "out_dim": t.num_outputs, "target_mean": mean, "target_std": std}
        else:
            cfg = {
                "type": "forecasting",
                "horizon": t.horizon,
                "num_patches": self.tokens_per_sample(),
                "channels": t.channels,
            }
        return {**cfg, **overrides}

    def tokens_per_sample(self) -> int:
        """Tokens the tokenizer makes of sample 0 (per channel, for channel-independent series)."""
        return int(self.tokenizer.token_lengths([self.sample(0)])[0])

    def labels(self) -> Tensor | None:
        """``[N]`` class indices for classification, else ``None`` (what stratified splits use)."""
        return self.targets if self.task.kind == "classification" else None

    def subset(self, indices: Sequence[int] | Tensor) -> SampleDataset:
        """The samples at ``indices`` (a view sharing this dataset's task and tokenizer config)."""
        return SampleSubset(self, indices)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.modality!r}, {len(self)} samples, {self.task.describe()})"


class SampleSubset(SampleDataset):
    """Some samples of a :class:`SampleDataset` (from :meth:`SampleDataset.subset`)."""

    def __init__(self, parent: SampleDataset, indices: Sequence[int] | Tensor) -> None:
        idx = torch.as_tensor(list(indices) if not isinstance(indices, Tensor) else indices, dtype=torch.long)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(parent)):
            raise IndexError(f"subset: indices must be in [0, {len(parent)}), got {idx.min()}..{idx.max()}")
        while isinstance(parent, SampleSubset):  # flatten nested subsets
            idx = parent.indices[idx]
            parent = parent.parent
        super().__init__(parent._config, parent.task, parent.targets[idx])
        self._handle = parent._handle
        self.parent, self.indices = parent, idx

    def sample(self, index: int) -> Any:
        return self.parent.sample(int(self.indices[index]))

    def source(self, index: int) -> Any:
        """Where sample ``index`` comes from in the parent (its index, or path for files)."""
        return self.parent.source(int(self.indices[index]))  # type: ignore[attr-defined]


# -- in-memory data -----------------------------------------------------------------------------------------------
def _signature(x: Any) -> Any:
    if isinstance(x, Tensor):
        return ("tensor", tuple(x.shape), str(x.dtype))
    if isinstance(x, Mapping):
        return tuple(sorted((k, _signature(v)) for k, v in x.items()))
    return type(x).__name__


class ArrayDataset(SampleDataset):
    """In-memory samples and targets of any modality, checked when made.

    Args:
        modality: tokenizer name (``"image"``, ``"audio"``, …) or tokenizer config (dict or object).
        inputs: ``N`` samples in the raw form the tokenizer's ``preprocess`` takes: an array/tensor whose first
            axis is the sample, a list (of arrays, strings, PyG ``Data``, ``(waveform, rate)`` tuples …), or a
            pandas DataFrame of rows (tabular).
        targets: ``N`` targets (see :func:`infer_task`), or, for a DataFrame, the name of its target column.
        task: ``"classification"``, ``"multilabel"``, ``"regression"``, ``"forecasting"`` (or a :class:`Task`);
            default: inferred from the targets, and said so (``task.inferred``, the summary, the log).
        class_names: names of the classes, by index (string labels are mapped through them).
        tokenizer: tokenizer config, or field overrides (e.g. ``{"patch_size": 8}``). Tokenizers whose config is
            fitted on data (tabular) are fitted on ``inputs`` when not given.
        check: ``"all"`` preprocesses every sample when the dataset is made; an integer, only that many (the
            first ones); in both cases samples of up to 8 distinct shapes are collated and tokenized together.

    Raises:
        SampleInputError: a sample does not fit the modality (message: modality, sample index, expected, got).
    """

    def __init__(
        self,
        modality: str | Mapping[str, Any] | TokenizerConfig,
        inputs: Any,
        targets: Any,
        *,
        task: TaskKind | Task | Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        tokenizer: Any = None,
        check: Literal["all"] | int = "all",
    ) -> None:
        if isinstance(targets, str) and hasattr(inputs, "columns"):
            if targets not in inputs.columns:
                raise KeyError(
                    f"target column {targets!r} is not in the DataFrame; columns: {list(inputs.columns)}"
                )
            inputs, targets = inputs.drop(columns=[targets]), inputs[targets]
        name = tokenizer_config(modality).type
        n = self._count(inputs, name)
        task_, y = infer_task(targets, name, task=task, class_names=class_names)
        if len(y) != n:
            raise ValueError(f"{name}: {n} samples but {len(y)} targets")
        # settings implied by the data (a table's column schema, mixing a series' channels for a whole-series task)
        implied = get("tokenizer", name).config_for_data(inputs, task_.kind, explicit_fields(modality, tokenizer))
        if implied:
            tokenizer = {**implied, **tokenizer} if isinstance(tokenizer, Mapping) else tokenizer or implied
        config = tokenizer_config(modality, tokenizer)
        super().__init__(config, task_, y)
        self.inputs = inputs
        self._check(check)

    @staticmethod
    def _count(inputs: Any, name: str) -> int:
        if isinstance(inputs, (str, bytes)) or not hasattr(inputs, "__len__"):
            raise TypeError(
                f"{name}: expected a sequence of samples (an array/tensor with the sample first, a list, a "
                f"DataFrame), got {describe(inputs)}"
            )
        if getattr(inputs, "ndim", 1) == 0:
            raise TypeError(
                f"{name}: expected samples along the first axis, got a 0-d {type(inputs).__name__}"
            )
        n = len(inputs)
        if n == 0:
            raise ValueError(f"{name}: expected at least one sample, got none")
        return n

    def raw(self, index: int) -> Any:
        """Sample ``index`` as given (before ``preprocess``)."""
        if hasattr(self.inputs, "iloc"):
            return self.inputs.iloc[index]
        return self.inputs[index]

    def source(self, index: int) -> Any:
        return index

    def sample(self, index: int) -> Any:
        return self.tokenizer.preprocess(self.raw(index))

    def _preprocess(self, index: int) -> Any:
        try:
            return self.sample(index)
        except ModalityInputError as exc:
            raise SampleInputError(self.modality, f"sample {index}", exc.expected, exc.got) from None

    def _check(self, check: Literal["all"] | int) -> None:
        n = len(self)
        count = n if check == "all" else min(n, int(check))
        groups: dict[Any, int] = {}
        for i in range(count):
            s = self._preprocess(i)
            groups.setdefault(_signature(s), i)
        check_batch(self, list(groups.values())[:MAX_SHAPE_GROUPS])


def check_batch(dataset: SampleDataset, indices: Sequence[int]) -> None:
    """Collate samples ``indices`` of ``dataset`` and run its tokenizer on them; raise :class:`SampleInputError`
    naming the samples if that fails."""
    if not indices:
        return
    tok = dataset.tokenizer
    where = f"sample {indices[0]}" if len(indices) == 1 else f"samples {list(indices)}"
    samples = [dataset.sample(i) for i in indices]
    try:
        with torch.no_grad():
            tok(tok.collate(samples))
    except ModalityInputError as exc:
        raise SampleInputError(dataset.modality, where, exc.expected, exc.got) from None


# -- files --------------------------------------------------------------------------------------------------------
class FileDataset(SampleDataset):
    """Samples read lazily from files (or any items) by ``reader(item)``, then preprocessed by the tokenizer.

    Args:
        items: one entry per sample, usually a path; ``reader(item)`` gives the raw sample.
        targets: one target per item (see :func:`infer_task`).
        modality: tokenizer name or config (dict or object).
        reader: ``item -> raw sample`` (e.g. a Pillow image, a waveform array); called in ``__getitem__``.
        task: as for :class:`ArrayDataset`.
        class_names: as for :class:`ArrayDataset`.
        tokenizer: as for :class:`ArrayDataset`.
        on_error: ``"raise"``: an unreadable item raises :class:`SampleReadError` naming it, when it is read;
            ``"skip"``: :meth:`check` runs when the dataset is made, reads every item once and drops the bad ones,
            reporting each by path and the count (``skipped``, and a warning in the log).
        check: samples (the first ones) to read, preprocess and tokenize when made (default 2; with
            ``on_error="skip"`` every item is read).
    """

    def __init__(
        self,
        items: Sequence[Any],
        targets: Any,
        modality: str | Mapping[str, Any] | TokenizerConfig,
        reader: Callable[[Any], Any],
        *,
        task: TaskKind | Task | Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        tokenizer: Any = None,
        on_error: Literal["raise", "skip"] = "raise",
        check: int = 2,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        config = tokenizer_config(modality, tokenizer)
        items = list(items)
        if not items:
            raise ValueError(f"{config.type}: expected at least one file, got none")
        task_, y = infer_task(targets, config.type, task=task, class_names=class_names)
        if len(y) != len(items):
            raise ValueError(f"{config.type}: {len(items)} files but {len(y)} targets")
        super().__init__(config, task_, y)
        self.items, self.reader, self.on_error = items, reader, on_error
        self.skipped: list[tuple[str, str]] = []
        if on_error == "skip":
            self.check()
        check_batch(self, list(range(min(check, len(self)))))

    def source(self, index: int) -> Any:
        return self.items[index]

    def sample(self, index: int) -> Any:
        item = self.items[index]
        try:
            raw = self.reader(item)
        except (ImportError, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise SampleReadError(item, index, exc) from exc
        try:
            return self.tokenizer.preprocess(raw)
        except ModalityInputError as exc:
            raise SampleInputError(self.modality, f"sample {index} ({item})", exc.expected, exc.got) from None

    def check(self) -> list[tuple[str, str]]:
        """Read and preprocess every item once; drop those that fail and return them as ``(item, error)``
        (also kept in ``skipped`` and logged with their count). Raises if every item fails."""
        good, bad = [], []
        for i in range(len(self.items)):
            try:
                self.sample(i)
                good.append(i)
            except (SampleReadError, SampleInputError) as exc:
                bad.append((str(self.items[i]), str(exc)))
        if not good:
            raise ValueError(
                f"{self.modality}: none of the {len(self.items)} files could be read; first: {bad[0][1]}"
            )
        if bad:
            self.items = [self.items[i] for i in good]
            self.targets = self.targets[torch.as_tensor(good)]
            self.skipped += bad
            listing = "\n".join(f"  {path}: {err}" for path, err in bad[:20])
            more = f"\n  … and {len(bad) - 20} more" if len(bad) > 20 else ""
            logger.warning(
                "%s: skipped %d of %d files that could not be read:\n%s%s",
                self.modality,
                len(bad),
                len(bad) + len(good),
                listing,
                more,
            )
        return bad
