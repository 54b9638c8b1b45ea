"""Collation across modalities, in DataLoader workers: per-sample items -> ``{"inputs", "data_samples"}``.

A dataset item is an :class:`Example` ``(stream, sample, target)``. ``stream`` (a :class:`Stream`) says which
model inputs the sample feeds, how each input collates (its tokenizer's ``collate``), how targets collate (its
data source's ``collate_targets``) and which tasks the target supervises. :func:`multitask_collate` groups a
list of items by stream, so one batch can hold several modalities:

``{"inputs": {input_key: batch}, "data_samples": {task: target}}``

Everything here pickles without model weights: :class:`TokenizerCollate` keeps the tokenizer's class and config
and builds a weightless instance (on the ``meta`` device) the first time it is called in a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch

from polymodal.train.registry import FUNCTIONS

__all__ = ["Example", "Stream", "TokenizerCollate", "multitask_collate"]


class TokenizerCollate:
    """A tokenizer's ``collate`` as a small picklable object: the class and its config, not its weights.

    The tokenizer is built lazily on the ``meta`` device (no memory for parameters). If building there fails, or
    ``collate`` turns out to need real parameters, it is rebuilt once on the CPU.
    """

    def __init__(self, tokenizer_cls: type, config: Mapping[str, Any]) -> None:
        self.tokenizer_cls = tokenizer_cls
        self.config = dict(config)
        self._tokenizer: Any = None
        self._on_meta = False

    def __getstate__(self) -> dict[str, Any]:
        return {
            "tokenizer_cls": self.tokenizer_cls,
            "config": self.config,
            "_tokenizer": None,
            "_on_meta": False,
        }

    def __repr__(self) -> str:
        return f"TokenizerCollate({self.tokenizer_cls.__name__}, {self.config})"

    @property
    def modality(self) -> str:
        return self.tokenizer_cls.modality

    def _build(self) -> None:
        try:
            with torch.device("meta"):
                self._tokenizer, self._on_meta = self.tokenizer_cls(self.config), True
        except Exception:
            self._tokenizer, self._on_meta = self.tokenizer_cls(self.config), False

    def __call__(self, samples: Sequence[Any]) -> Any:
        if self._tokenizer is None:
            self._build()
        try:
            return self._tokenizer.collate(samples)
        except Exception:
            if not self._on_meta:
                raise
            # collate used a parameter or buffer: rebuild with real (CPU) weights and try once more
            self._tokenizer, self._on_meta = self.tokenizer_cls(self.config), False
            return self._tokenizer.collate(samples)


class Stream:
    """One source of examples: which inputs its samples feed, how they collate, and which tasks they supervise.

    Args:
        name: the stream's name (for messages).
        inputs: ``{input_key: collate}``; one entry for a single-modality stream, several for paired samples,
            whose ``sample`` is then a dict ``{input_key: per-sample form}``.
        tasks: the tasks (head names) its target supervises; the collated target is given to each.
        collate_targets: the data source's ``collate_targets``.
    """

    def __init__(
        self,
        name: str,
        inputs: Mapping[str, Callable[[Sequence[Any]], Any]],
        tasks: Sequence[str],
        collate_targets: Callable[[Sequence[Any]], Any],
    ) -> None:
        if not inputs:
            raise ValueError(f"stream {name!r}: expected at least one input")
        self.name = name
        self.inputs = dict(inputs)
        self.tasks = tuple(tasks)
        self.collate_targets = collate_targets

    @property
    def paired(self) -> bool:
        return len(self.inputs) > 1

    def __repr__(self) -> str:
        return f"Stream({self.name!r}, inputs={list(self.inputs)}, tasks={list(self.tasks)})"

    def collate(
        self, samples: Sequence[Any], targets: Sequence[Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(inputs, data_samples)`` of a batch of this stream's samples."""
        if self.paired:
            inputs = {key: fn([s[key] for s in samples]) for key, fn in self.inputs.items()}
        else:
            ((key, fn),) = self.inputs.items()
            inputs = {key: fn(list(samples))}
        target = self.collate_targets(list(targets)) if self.tasks else None
        return inputs, {task: target for task in self.tasks}


class Example(NamedTuple):
    """One dataset item: the stream it comes from, the sample (per-sample form) and its target."""

    stream: Stream
    sample: Any
    target: Any


@FUNCTIONS.register_module()
def multitask_collate(data_batch: Sequence[Example]) -> dict[str, dict[str, Any]]:
    """Collate :class:`Example` items of any streams into ``{"inputs": {...}, "data_samples": {...}}``.

    Items are grouped by stream (in order of first appearance); each group is collated by its stream. Two
    streams of one batch must not feed the same input or supervise the same task.
    """
    if len(data_batch) == 0:
        raise ValueError("multitask_collate: expected at least one example, got an empty batch")
    groups: dict[int, tuple[Stream, list[Any], list[Any]]] = {}
    for item in data_batch:
        if not isinstance(item, Example):
            raise TypeError(
                f"multitask_collate: expected Example items (from MultiTaskDataset), got {type(item).__name__}"
            )
        group = groups.setdefault(id(item.stream), (item.stream, [], []))
        group[1].append(item.sample)
        group[2].append(item.target)
    inputs: dict[str, Any] = {}
    data_samples: dict[str, Any] = {}
    for stream, samples, targets in groups.values():
        x, y = stream.collate(samples, targets)
        clash = sorted((set(x) & set(inputs)) | (set(y) & set(data_samples)))
        if clash:
            raise ValueError(
                f"multitask_collate: stream {stream.name!r} reuses inputs/tasks {clash} of another stream"
            )
        inputs.update(x)
        data_samples.update(y)
    return {"inputs": inputs, "data_samples": data_samples}
