"""Datasets and samplers that mix modalities, so one training step holds several of them.

:class:`MultiTaskDataset` concatenates *streams*; each stream is one plugin data source (``splits()[split]``) feeding
one model input, or several sources paired sample by sample (e.g. an image and a point cloud of the same class)
feeding several inputs, or a dataset object (e.g. :class:`polymodal.data.ArrayDataset`) the user made, or a
dataset config dict built through the ``DATASETS`` registry. Items are :class:`~polymodal.train.collate.Example`
tuples for :func:`~polymodal.train.collate.multitask_collate`. A stream is configured as::

    streams = dict(
        image=dict(source="digits"),                                  # input "image" (the source's modality)
        shapes=dict(source=dict(type="shape_clouds", num_train=256), input="point_cloud", tasks=["shapes"]),
        pairs=dict(sources=dict(pair_image="digits", pair_audio="spoken_digits"), pair_by="target",
                   tasks=["pair_cls", "pair_contrast"]),
        mine=dict(dataset=ArrayDataset("image", images, labels), tasks=["my_task"]),  # any split
    )

A dataset stream feeds the input ``input`` (default: the dataset's ``modality``) and collates with the dataset's
own tokenizer config (``dataset.tokenizer_config``), which must then agree with the model's tokenizer of that
input (``tokenizers``) apart from ``embed_dim``; its targets collate with ``dataset.collate_targets``.

:class:`MultiTaskSampler` + :class:`MultiTaskBatchSampler` decide which items form a step. They build *global*
batches of ``batch_size * world_size`` items (identical on every process, seeded by ``seed + epoch``) and give
each process an interleaved share, so a run on W processes sees the same global batches as a run on one:

- ``mode="proportional"``: the concatenation of all streams, shuffled; a step mixes streams in proportion to
  their sizes and an epoch visits every item once.
- ``mode="round_robin"``: every step holds an equal share of every stream (the remainder rotates); an epoch
  ends when the largest stream has been seen once, smaller streams restart with a fresh permutation.
- ``mode="temperature"`` (with ``temperature=T``): each item of a step comes from stream ``i`` with probability
  ``n_i ** (1 / T) / sum_j n_j ** (1 / T)`` (``n_i``: its size; Arivazhagan et al. 2019, T5), drawn from a cycle of
  fresh permutations of that stream; an epoch has as many items as all streams together. ``T = 1`` mixes like
  ``proportional`` (in expectation), larger ``T`` moves toward equal shares (``T = 2``: a stream 30x smaller is seen
  about 5.5x less often instead of 30x).
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from polymodal.core.source import DataSource
from polymodal.registry.config import resolve_config
from polymodal.registry.lookup import get
from polymodal.train.collate import Example, Stream, TokenizerCollate
from polymodal.train.registry import DATA_SAMPLERS, DATASETS

__all__ = [
    "SAMPLER_MODES",
    "MultiTaskBatchSampler",
    "MultiTaskDataset",
    "MultiTaskSampler",
    "StreamConfig",
    "build_dataset",
    "build_source",
    "stack_targets",
]

_SPLITS_CACHE: dict[tuple[str, str], dict[str, Dataset]] = {}
SAMPLER_MODES = ("proportional", "round_robin", "temperature")


class StreamConfig(BaseModel):
    """One stream of a :class:`MultiTaskDataset`: a data source or a dataset for one input, or paired sources."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    source: str | dict[str, Any] | None = Field(
        None, description="Data source (registry name or config dict) of a single-input stream."
    )
    dataset: Any = Field(
        None,
        description="A dataset object of (sample, target) items (e.g. polymodal.data.ArrayDataset), or a config "
        "dict of one in the DATASETS registry, for a single-input stream; used whatever the split.",
    )
    input: str | None = Field(None, description="Model input key it feeds; default: the source's modality.")
    sources: dict[str, str | dict[str, Any]] | None = Field(
        None, description="Paired stream: input key -> data source. The first source sets length and targets."
    )
    pair_by: Literal["target", "index"] = Field(
        "target",
        description="'target': item i of the first source is paired with an item of the same target (class) "
        "of each other source, chosen by a seeded permutation; 'index': items with the same index.",
    )
    tasks: list[str] | None = Field(
        None, description="Tasks (head names) the target supervises; default: the input key (single-input)."
    )
    max_samples: int | None = Field(None, gt=0, description="Use only the first max_samples items.")
    seed: int = Field(0, description="Seed of the pairing permutations.")

    @model_validator(mode="after")
    def _one_kind(self) -> StreamConfig:
        if sum(x is not None for x in (self.source, self.sources, self.dataset)) != 1:
            raise ValueError(
                "a stream needs exactly one of 'source' (a data source for one input), 'dataset' (a dataset for "
                "one input) or 'sources' (paired inputs)"
            )
        if self.sources is not None:
            if len(self.sources) < 2:
                raise ValueError(f"'sources' pairs two or more inputs, got {list(self.sources)}")
            if self.input is not None:
                raise ValueError(
                    "'input' applies to single-input streams; paired streams name inputs in 'sources'"
                )
            if self.tasks is None:
                raise ValueError("a paired stream needs 'tasks' (the heads its target supervises)")
        return self


def build_source(spec: str | Mapping[str, Any]) -> Any:
    """A registered data source from its name or config dict."""
    spec = {"type": spec} if isinstance(spec, str) else dict(spec)
    if "type" not in spec:
        raise ValueError(
            f"a data source needs a 'type' (a registered data source name), got keys {sorted(spec)}"
        )
    return get("data source", spec["type"]).from_config({k: v for k, v in spec.items() if k != "type"})


def build_dataset(spec: Any) -> Dataset:
    """A dataset object as it is, or one built from its config dict through the ``DATASETS`` registry."""
    if isinstance(spec, Mapping):
        if "type" not in spec:
            raise ValueError(
                f"a dataset config needs a 'type' (a registered dataset), got keys {sorted(spec)}"
            )
        return DATASETS.build(dict(spec))
    if not hasattr(spec, "__getitem__") or not hasattr(spec, "__len__"):
        raise TypeError(
            f"a stream's 'dataset' must be a map-style dataset or a config dict, got {type(spec).__name__}"
        )
    return spec


def stack_targets(targets: Sequence[Any]) -> Tensor:
    """Targets of a batch stacked into one tensor (for datasets without their own ``collate_targets``)."""
    return torch.stack([torch.as_tensor(t) for t in targets])


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _stream_tokenizer(stream: str, key: str, source: Any, model_spec: Any, data: Any = None) -> Any:
    """The tokenizer config an input of a stream collates with.

    A dataset that preprocesses its samples itself (it has ``tokenizer_config``; for a data source, its split
    ``data`` has, as the ``files`` source's do) collates with that config, which must agree with the model's
    tokenizer of the input (``model_spec``) apart from ``embed_dim``; other data sources collate with the model's
    tokenizer, or the default tokenizer of its modality (a data source's ``tokenizer_config()`` method only
    suggests the model's entry; its samples are not preprocessed for it).
    """
    holder = data if isinstance(source, DataSource) else source
    own = getattr(holder, "tokenizer_config", None)
    if own is None:
        return resolve_config("tokenizer", model_spec if model_spec is not None else source.modality)
    own_cfg = resolve_config("tokenizer", own)
    if model_spec is not None:
        model_cfg = resolve_config("tokenizer", model_spec)
        a = own_cfg.model_dump(mode="json", exclude={"embed_dim"})
        b = model_cfg.model_dump(mode="json", exclude={"embed_dim"})
        if a != b:
            diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            shown = "; ".join(f"{k}: data {_short(a.get(k))}, model {_short(b.get(k))}" for k in diff[:4])
            if holder is source:
                fix = (
                    f"build the model with tokenizers={{{key!r}: dataset.tokenizer_config}}, or make the dataset "
                    "with the model's tokenizer config"
                )
            else:
                fix = f"give the model's tokenizers[{key!r}] the config of source.tokenizer_config(): {_short(a, 200)}"
            raise ValueError(
                f"stream {stream!r}: the dataset's samples were preprocessed for a different {key!r} tokenizer "
                f"than the model's ({shown}); {fix}"
            )
    return own_cfg


def _splits(source: Any) -> dict[str, Dataset]:
    """``source.splits()``, generated once per process for one config (train and val datasets share it)."""
    key = (type(source).name, json.dumps(source.config.model_dump(mode="json"), sort_keys=True))
    if key not in _SPLITS_CACHE:
        _SPLITS_CACHE[key] = source.splits()
    return _SPLITS_CACHE[key]


def _targets(dataset: Dataset) -> list[Any]:
    tensors = getattr(dataset, "tensors", None)
    if tensors is not None:
        return list(tensors[-1])
    return [dataset[i][1] for i in range(len(dataset))]


def _label(target: Any) -> Any:
    t = torch.as_tensor(target)
    if t.numel() != 1:
        raise ValueError(
            f"pair_by='target' needs one class label per sample, got a target of shape {tuple(t.shape)}"
        )
    return t.item()


class _PairedDataset(Dataset):
    """Items ``({key: sample}, target)`` pairing several datasets (see ``StreamConfig.pair_by``)."""

    def __init__(self, datasets: Mapping[str, Dataset], pair_by: str, seed: int, name: str) -> None:
        self.keys = list(datasets)
        self.datasets = [datasets[k] for k in self.keys]
        first = self.datasets[0]
        n = len(first)
        if pair_by == "index":
            n = min(len(d) for d in self.datasets)
            self.index = [list(range(n)) for _ in self.datasets]
        else:
            labels = [_label(t) for t in _targets(first)]
            self.index = [list(range(n))]
            g = torch.Generator().manual_seed(seed)
            for key, other in zip(self.keys[1:], self.datasets[1:]):
                groups: dict[Any, list[int]] = {}
                for i, t in enumerate(_targets(other)):
                    groups.setdefault(_label(t), []).append(i)
                missing = sorted({y for y in labels if y not in groups}, key=str)
                if missing:
                    raise ValueError(f"stream {name!r}: input {key!r} has no sample of targets {missing[:5]}")
                perms = {
                    y: [idx[j] for j in torch.randperm(len(idx), generator=g).tolist()]
                    for y, idx in groups.items()
                }
                seen: dict[Any, int] = {}
                chosen = []
                for y in labels:
                    k = seen.get(y, 0)
                    chosen.append(perms[y][k % len(perms[y])])
                    seen[y] = k + 1
                self.index.append(chosen)
        self.length = n

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[dict[str, Any], Any]:
        items = [d[idx[i]] for d, idx in zip(self.datasets, self.index)]
        return {k: item[0] for k, item in zip(self.keys, items)}, items[0][1]


@DATASETS.register_module()
class MultiTaskDataset(Dataset):
    """Concatenation of streams of plugin data sources; items are :class:`Example` ``(stream, sample, target)``.

    Args:
        streams: ``{name: StreamConfig or dict}`` (see the module docstring).
        split: which split of every source (``"train"`` or ``"test"``); dataset streams are used as they are.
        tokenizers: ``{input_key: tokenizer name or config}`` as in the model config, for collation; an input not
            listed collates with the default tokenizer of its source's modality.
    """

    def __init__(
        self,
        streams: Mapping[str, StreamConfig | Mapping[str, Any]],
        split: str = "train",
        tokenizers: Mapping[str, Any] | None = None,
    ) -> None:
        if not streams:
            raise ValueError("MultiTaskDataset: expected at least one stream")
        tokenizers = dict(tokenizers or {})
        self.split = split
        self.streams: list[Stream] = []
        self.datasets: list[Dataset] = []
        used_inputs: dict[str, str] = {}
        used_tasks: dict[str, str] = {}
        for name, spec in streams.items():
            cfg = spec if isinstance(spec, StreamConfig) else StreamConfig.model_validate(dict(spec))
            sources: dict[str, Any] = {}
            data: dict[str, Dataset] = {}
            if cfg.dataset is not None:
                ds = build_dataset(cfg.dataset)
                key = cfg.input or getattr(ds, "modality", None)
                if not key:
                    raise ValueError(
                        f"stream {name!r}: the dataset has no 'modality'; set the stream's 'input' (a model input)"
                    )
                sources[key], data[key] = ds, ds
            named = {cfg.input: cfg.source} if cfg.source is not None else dict(cfg.sources or {})
            for key, source_spec in named.items():
                source = build_source(source_spec)
                key = key or source.modality
                splits = _splits(source)
                if split not in splits:
                    raise KeyError(
                        f"stream {name!r}: source {source.name!r} has no split {split!r}: {sorted(splits)}"
                    )
                sources[key], data[key] = source, splits[split]
            for key in sources:
                if key in used_inputs:
                    raise ValueError(f"streams {used_inputs[key]!r} and {name!r} both feed input {key!r}")
                used_inputs[key] = name
            tasks = cfg.tasks if cfg.tasks is not None else list(sources)
            for task in tasks:
                if task in used_tasks:
                    raise ValueError(
                        f"streams {used_tasks[task]!r} and {name!r} both supervise task {task!r}"
                    )
                used_tasks[task] = name
            collates = {}
            for key, source in sources.items():
                tok = _stream_tokenizer(name, key, source, tokenizers.get(key), data[key])
                collates[key] = TokenizerCollate(get("tokenizer", tok.type), tok.model_dump())
            first = next(iter(sources.values()))
            collate_targets = getattr(first, "collate_targets", stack_targets)
            dataset = (
                _PairedDataset(data, cfg.pair_by, cfg.seed, name)
                if len(data) > 1
                else next(iter(data.values()))
            )
            if cfg.max_samples is not None and cfg.max_samples < len(dataset):
                dataset = torch.utils.data.Subset(dataset, range(cfg.max_samples))
            if len(dataset) == 0:
                raise ValueError(f"stream {name!r}: split {split!r} is empty")
            self.streams.append(Stream(name, collates, tasks, collate_targets))
            self.datasets.append(dataset)
        self.stream_sizes = [len(d) for d in self.datasets]
        self.offsets = [0]
        for n in self.stream_sizes:
            self.offsets.append(self.offsets[-1] + n)
        self.metainfo = {
            "split": split,
            "streams": {
                s.name: {"inputs": list(s.inputs), "tasks": list(s.tasks), "size": n}
                for s, n in zip(self.streams, self.stream_sizes)
            },
        }

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """``(stream number, index within the stream)`` of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"MultiTaskDataset: index {index} out of range for {len(self)} items")
        s = bisect.bisect_right(self.offsets, index) - 1
        return s, index - self.offsets[s]

    def __getitem__(self, index: int) -> Example:
        s, i = self.locate(int(index))
        sample, target = self.datasets[s][i]
        return Example(self.streams[s], sample, target)


def _stream_sizes(dataset: Dataset) -> list[int]:
    return list(getattr(dataset, "stream_sizes", [len(dataset)]))


@DATA_SAMPLERS.register_module()
class MultiTaskSampler(Sampler[int]):
    """How items of a :class:`MultiTaskDataset` are mixed (``mode``), shuffled (``shuffle``) and seeded.

    Used through :class:`MultiTaskBatchSampler`, which composes the steps; iterated on its own it yields this
    process's share of the epoch one item at a time. ``set_epoch`` (called by mmengine's ``DistSamplerSeedHook``)
    reseeds the order: the plan of epoch ``e`` depends only on ``seed + e``.
    """

    def __init__(
        self,
        dataset: Dataset,
        mode: Literal["proportional", "round_robin", "temperature"] = "proportional",
        shuffle: bool = True,
        seed: int | None = None,
        temperature: float = 2.0,
    ) -> None:
        if mode not in SAMPLER_MODES:
            raise ValueError(
                f"MultiTaskSampler: mode must be 'proportional', 'round_robin' or 'temperature', got {mode!r}"
            )
        if isinstance(temperature, bool) or not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"MultiTaskSampler: temperature must be a number > 0, got {temperature!r}")
        if not math.isfinite(temperature):
            raise ValueError(f"MultiTaskSampler: temperature must be finite, got {temperature!r}")
        self.dataset = dataset
        self.mode = mode
        self.temperature = float(temperature)
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def num_global_batches(self, global_batch: int, drop_last: bool) -> int:
        sizes = [n for n in _stream_sizes(self.dataset) if n > 0]
        if self.mode in ("proportional", "temperature"):
            total = sum(sizes)
            return total // global_batch if drop_last else math.ceil(total / global_batch)
        steps = max(sizes) * len(sizes) / global_batch
        return max(1, math.floor(steps) if drop_last else math.ceil(steps))

    def global_batches(self, global_batch: int, drop_last: bool) -> list[list[int]]:
        """The epoch's steps as lists of global indices, grouped by stream within a step."""
        if global_batch < 1:
            raise ValueError(f"MultiTaskSampler: batch size must be positive, got {global_batch}")
        sizes = _stream_sizes(self.dataset)
        offsets = [sum(sizes[:s]) for s in range(len(sizes))]
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        n_batches = self.num_global_batches(global_batch, drop_last)
        if self.mode == "proportional":
            total = sum(sizes)
            order = torch.randperm(total, generator=g).tolist() if self.shuffle else list(range(total))
            batches = [order[i * global_batch : (i + 1) * global_batch] for i in range(n_batches)]
            return [sorted(b, key=lambda i: bisect.bisect_right(offsets, i)) for b in batches]
        live = [s for s, n in enumerate(sizes) if n > 0]
        streams = {s: self._cycle(sizes[s], offsets[s], g) for s in live}
        if self.mode == "temperature":
            return self._temperature_batches(sizes, live, streams, global_batch, n_batches, g)
        base, extra = divmod(global_batch, len(live))
        batches = []
        for b in range(n_batches):
            batch = []
            for j, s in enumerate(live):
                take = base + (1 if (j - b) % len(live) < extra else 0)
                batch.extend(next(streams[s]) for _ in range(take))
            batches.append(batch)
        return batches

    def stream_weights(self) -> list[float]:
        """The share of the epoch's items each stream gets in expectation (``temperature`` mode; the other modes:
        ``proportional`` gives the sizes' shares, ``round_robin`` equal shares of the non-empty streams)."""
        sizes = _stream_sizes(self.dataset)
        if self.mode == "round_robin":
            live = sum(1 for n in sizes if n > 0)
            return [1.0 / live if n > 0 else 0.0 for n in sizes]
        power = 1.0 / self.temperature if self.mode == "temperature" else 1.0
        w = [float(n) ** power if n > 0 else 0.0 for n in sizes]
        return [x / sum(w) for x in w]

    def _temperature_batches(
        self,
        sizes: list[int],
        live: list[int],
        streams: dict[int, Iterator[int]],
        global_batch: int,
        n_batches: int,
        g: torch.Generator,
    ) -> list[list[int]]:
        total = sum(sizes)
        p = torch.tensor(self.stream_weights(), dtype=torch.float64)
        picks = torch.multinomial(p, n_batches * global_batch, replacement=True, generator=g).tolist()
        batches = []
        for b in range(n_batches):
            size = min(global_batch, total - b * global_batch) if b == n_batches - 1 else global_batch
            chosen = sorted(picks[b * global_batch : b * global_batch + size])
            batches.append([next(streams[s]) for s in chosen])
        return batches

    def _cycle(self, n: int, offset: int, g: torch.Generator) -> Iterator[int]:
        while True:
            order = torch.randperm(n, generator=g).tolist() if self.shuffle else range(n)
            for i in order:
                yield offset + i

    def rank_batches(self, batch_size: int, drop_last: bool) -> list[list[int]]:
        """This process's batches: its interleaved share of each global batch of ``batch_size * world``."""
        rank, world = get_dist_info()
        out = []
        for batch in self.global_batches(batch_size * world, drop_last):
            mine = batch[rank::world]
            if mine:
                out.append(mine)
        return out

    def __iter__(self) -> Iterator[int]:
        for batch in self.rank_batches(1, drop_last=False):
            yield from batch

    def __len__(self) -> int:
        return sum(len(b) for b in self.rank_batches(1, drop_last=False))


@DATA_SAMPLERS.register_module()
class MultiTaskBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` items per process, composed by a :class:`MultiTaskSampler`.

    ``drop_last`` drops an incomplete last global batch (proportional mode); use ``True`` for training, so every
    process takes the same number of steps, and ``False`` for evaluation, so every item is seen once.
    """

    def __init__(self, sampler: MultiTaskSampler, batch_size: int, drop_last: bool = False) -> None:
        if not isinstance(sampler, MultiTaskSampler):
            raise TypeError(
                f"MultiTaskBatchSampler: expected a MultiTaskSampler, got {type(sampler).__name__} "
                "(set sampler=dict(type='MultiTaskSampler', ...) in the dataloader config)"
            )
        if batch_size < 1:
            raise ValueError(f"MultiTaskBatchSampler: batch_size must be positive, got {batch_size}")
        self.sampler = sampler
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.sampler.rank_batches(self.batch_size, self.drop_last)

    def __len__(self) -> int:
        rank, world = get_dist_info()
        n = self.sampler.num_global_batches(self.batch_size * world, self.drop_last)
        if self.sampler.mode in ("proportional", "temperature") and not self.drop_last and n:
            last = sum(_stream_sizes(self.sampler.dataset)) - (n - 1) * self.batch_size * world
            if last <= rank:  # this process gets nothing of the last, short batch
                n -= 1
        return n
