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
import copy
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset, Sampler

from polymodal.core.source import DataSource
from polymodal.data.dataset import CHECK_DIM
from polymodal.data.streaming import MapStream, Placement, ResumableStream
from polymodal.registry.config import resolve_config
from polymodal.registry.lookup import get
from polymodal.train.collate import Example, Stream, TokenizerCollate
from polymodal.train.registry import DATA_SAMPLERS, DATASETS

__all__ = [
    "SAMPLER_MODES",
    "MultiTaskBatchSampler",
    "MultiTaskDataset",
    "MultiTaskSampler",
    "MultiTaskStream",
    "StreamConfig",
    "TokenBudgetBatchSampler",
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
    if isinstance(spec, IterableDataset):
        if not hasattr(spec, "__len__"):
            raise TypeError(
                f"a stream's 'dataset' {type(spec).__name__} is iterable without a length; give a "
                "polymodal.data.StreamingDataset (or another ResumableStream), or write it with write_shards"
            )
        return spec
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


def _build_streams(
    streams: Mapping[str, StreamConfig | Mapping[str, Any]],
    split: str,
    tokenizers: Mapping[str, Any] | None,
) -> list[tuple[Stream, Dataset]]:
    """Each stream's :class:`Stream` (inputs, collation, tasks) and its dataset (map-style, or an iterable stream
    given as a ``dataset``), checked: no input fed and no task supervised twice, nothing empty."""
    if not streams:
        raise ValueError("expected at least one stream")
    tokenizers = dict(tokenizers or {})
    out: list[tuple[Stream, Dataset]] = []
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
                raise ValueError(f"streams {used_tasks[task]!r} and {name!r} both supervise task {task!r}")
            used_tasks[task] = name
        collates = {}
        for key, source in sources.items():
            tok = _stream_tokenizer(name, key, source, tokenizers.get(key), data[key])
            collates[key] = TokenizerCollate(get("tokenizer", tok.type), tok.model_dump())
        first = next(iter(sources.values()))
        collate_targets = getattr(first, "collate_targets", stack_targets)
        dataset = (
            _PairedDataset(data, cfg.pair_by, cfg.seed, name) if len(data) > 1 else next(iter(data.values()))
        )
        if cfg.max_samples is not None and cfg.max_samples < len(dataset):  # type: ignore[arg-type]
            if isinstance(dataset, IterableDataset):
                raise ValueError(
                    f"stream {name!r}: max_samples applies to map-style datasets, not to a {type(dataset).__name__}"
                )
            dataset = torch.utils.data.Subset(dataset, range(cfg.max_samples))
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError(f"stream {name!r}: split {split!r} is empty")
        out.append((Stream(name, collates, tasks, collate_targets), dataset))
    return out


def _metainfo(split: str, streams: Sequence[Stream], sizes: Sequence[int]) -> dict[str, Any]:
    return {
        "split": split,
        "streams": {
            s.name: {"inputs": list(s.inputs), "tasks": list(s.tasks), "size": n}
            for s, n in zip(streams, sizes)
        },
    }


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
        self.split = split
        built = _build_streams(streams, split, tokenizers)
        for stream, dataset in built:
            if isinstance(dataset, IterableDataset):
                raise TypeError(
                    f"stream {stream.name!r}: a {type(dataset).__name__} is read as a stream, which "
                    "MultiTaskDataset (indexed by its samplers) cannot index; read the streams with MultiTaskStream "
                    "(polymodal.fit does when a dataset is a stream)"
                )
        self.streams: list[Stream] = [s for s, _ in built]
        self.datasets: list[Dataset] = [d for _, d in built]
        self.stream_sizes = [len(d) for d in self.datasets]  # type: ignore[arg-type]
        self.offsets = [0]
        for n in self.stream_sizes:
            self.offsets.append(self.offsets[-1] + n)
        self.metainfo = _metainfo(split, self.streams, self.stream_sizes)
        self._token_counts: Tensor | None = None

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

    def token_counts(self, chunk: int = 64) -> Tensor:
        """Tokens of every item, ``[len(self)]`` ``int64``: the real tokens of each sequence its sample makes (of
        every input, for paired samples), plus one [CLS] per sequence. Counted once, by each input's tokenizer
        (:meth:`~polymodal.core.tokenizer.Tokenizer.token_lengths`, a small CPU instance) on the preprocessed
        samples, ``chunk`` at a time (a pass over the data), then cached on this dataset."""
        if self._token_counts is None:
            parts = [
                _stream_token_counts(stream, ds, chunk) for stream, ds in zip(self.streams, self.datasets)
            ]
            self._token_counts = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
        return self._token_counts


def _per_sample(lengths: Tensor, n: int, what: str) -> Tensor:
    """Tokens per sample (+1 [CLS] per sequence) of ``lengths`` of ``rows = k * n`` sequences (``k`` consecutive
    rows per sample)."""
    rows = lengths.numel()
    if n == 0 or rows % n:
        raise ValueError(f"{what}: token_lengths gave {rows} rows for {n} samples (expected a multiple)")
    return (lengths.long() + 1).reshape(n, rows // n).sum(1)


def _stream_token_counts(stream: Stream, dataset: Dataset, chunk: int) -> Tensor:
    n = len(dataset)  # type: ignore[arg-type]
    counts = torch.zeros(n, dtype=torch.long)
    for key, collate in stream.inputs.items():
        if not isinstance(collate, TokenizerCollate):
            raise TypeError(
                f"stream {stream.name!r}: input {key!r} collates with a {type(collate).__name__}, which cannot count "
                "tokens; pass lengths= to the token-budget sampler"
            )
        tok = collate.tokenizer_cls({**collate.config, "embed_dim": CHECK_DIM})
        tok.eval()
        for lo in range(0, n, chunk):
            samples = [dataset[i][0] for i in range(lo, min(n, lo + chunk))]
            if stream.paired:
                samples = [s[key] for s in samples]
            lengths = tok.token_lengths(samples, chunk=chunk)
            counts[lo : lo + len(samples)] += _per_sample(lengths, len(samples), f"stream {stream.name!r}")
    return counts


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

    def _plan(self, global_batch: int, drop_last: bool) -> tuple[Tensor, int]:
        """``(order, n)``: the epoch's items in plan order (one ``int64`` tensor) and its ``n`` global batches;
        batch ``b`` is ``order[b * global_batch : (b + 1) * global_batch]`` (the last may be shorter), in
        proportional mode still to be grouped by stream. Built with numpy and torch over whole arrays (memory: a few
        ``int64`` per item, no Python list of the items), drawing the same random numbers in the same order as a
        step-by-step plan would, so the plan of ``seed + epoch`` never changes."""
        if global_batch < 1:
            raise ValueError(f"MultiTaskSampler: batch size must be positive, got {global_batch}")
        sizes = _stream_sizes(self.dataset)
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        n_batches = self.num_global_batches(global_batch, drop_last)
        total = sum(sizes)
        if n_batches == 0:  # drop_last and fewer items than one global batch
            return torch.zeros(0, dtype=torch.long), 0
        if self.mode == "proportional":
            order = torch.randperm(total, generator=g) if self.shuffle else torch.arange(total)
            return order[: n_batches * global_batch], n_batches
        S = len(sizes)
        if self.mode == "temperature":
            p = torch.tensor(self.stream_weights(), dtype=torch.float64)
            picks = torch.multinomial(p, n_batches * global_batch, replacement=True, generator=g).numpy()
            length = min(total, n_batches * global_batch)
            batch_of = np.arange(length, dtype=np.int64) // global_batch
            # within a step, its items grouped by stream in stream order (a counting sort of the picks)
            counts = np.bincount(batch_of * S + picks[:length], minlength=n_batches * S)
            labels = np.repeat(np.tile(np.arange(S, dtype=np.int16), n_batches), counts)
        else:  # round robin: base items of every live stream per step, the remainder rotating
            live = np.asarray([s for s, n in enumerate(sizes) if n > 0], dtype=np.int16)
            base, extra = divmod(global_batch, len(live))
            b = np.arange(n_batches, dtype=np.int64)[:, None]
            j = np.arange(len(live), dtype=np.int64)[None, :]
            take = base + ((j - b) % len(live) < extra)
            labels = np.repeat(np.tile(live, n_batches), take.ravel())
        return self._draw_cycles(labels, sizes, g), n_batches

    def _draw_cycles(self, labels: np.ndarray, sizes: list[int], g: torch.Generator) -> Tensor:
        """Items for a plan of stream ``labels``: the ``k``-th item of stream ``s`` in the plan is item ``k mod n_s``
        of the concatenation of fresh permutations of the stream, each drawn when the plan first needs it."""
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        needs = []  # (position of first use, stream, cycle): the order in which permutations are drawn
        for s, n in enumerate(sizes):
            if n == 0:
                continue
            first = np.flatnonzero(labels == s)[::n]
            needs.extend((int(p), s, m) for m, p in enumerate(first.tolist()))
        cycles: dict[int, list[Tensor]] = {s: [] for _, s, _ in needs}
        for _, s, _ in sorted(needs):
            n = sizes[s]
            perm = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
            cycles[s].append(perm.to(torch.int32) if n < 2**31 else perm)
        order = np.empty(len(labels), dtype=np.int64)
        for s, parts in cycles.items():
            where = np.flatnonzero(labels == s)
            order[where] = torch.cat(parts)[: len(where)].numpy().astype(np.int64) + offsets[s]
        return torch.from_numpy(order)

    def iter_global_batches(self, global_batch: int, drop_last: bool) -> Iterator[Tensor]:
        """The epoch's steps, one at a time, as ``int64`` tensors of global indices grouped by stream."""
        order, n_batches = self._plan(global_batch, drop_last)
        ends = torch.as_tensor(np.cumsum(_stream_sizes(self.dataset)), dtype=torch.long)
        for b in range(n_batches):
            batch = order[b * global_batch : (b + 1) * global_batch]
            if self.mode == "proportional":  # grouped by stream, in stream order, stably
                stream = torch.searchsorted(ends, batch, right=True)
                batch = batch[torch.sort(stream, stable=True).indices]
            yield batch

    def global_batches(self, global_batch: int, drop_last: bool) -> list[list[int]]:
        """The epoch's steps as lists of global indices, grouped by stream within a step (small plans; training
        iterates :meth:`iter_global_batches`)."""
        return [b.tolist() for b in self.iter_global_batches(global_batch, drop_last)]

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

    def epoch_order(self) -> Tensor:
        """The epoch's items one at a time (``int64``): the plan of steps of one item (proportional: the shuffled
        concatenation; round robin: the streams in turn; temperature: one draw per item). What
        :class:`TokenBudgetBatchSampler` cuts into batches."""
        return self._plan(1, drop_last=False)[0]

    def iter_rank_batches(self, batch_size: int, drop_last: bool) -> Iterator[list[int]]:
        """This process's batches, one at a time: its interleaved share of each global batch of
        ``batch_size * world``."""
        rank, world = get_dist_info()
        for batch in self.iter_global_batches(batch_size * world, drop_last):
            mine = batch[rank::world]
            if len(mine):
                yield mine.tolist()

    def rank_batches(self, batch_size: int, drop_last: bool) -> list[list[int]]:
        """This process's batches: its interleaved share of each global batch of ``batch_size * world``."""
        return list(self.iter_rank_batches(batch_size, drop_last))

    def __iter__(self) -> Iterator[int]:
        for batch in self.iter_rank_batches(1, drop_last=False):
            yield from batch

    def __len__(self) -> int:
        rank, world = get_dist_info()
        n = self.num_global_batches(world, drop_last=False)
        if self.mode == "round_robin":
            return n  # every step holds `world` items: one per process
        last = sum(_stream_sizes(self.dataset)) - (n - 1) * world
        return max(0, n - 1) + (1 if n and last > rank else 0)


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
        yield from self.sampler.iter_rank_batches(self.batch_size, self.drop_last)

    def __len__(self) -> int:
        rank, world = get_dist_info()
        n = self.sampler.num_global_batches(self.batch_size * world, self.drop_last)
        if self.sampler.mode in ("proportional", "temperature") and not self.drop_last and n:
            last = sum(_stream_sizes(self.sampler.dataset)) - (n - 1) * self.batch_size * world
            if last <= rank:  # this process gets nothing of the last, short batch
                n -= 1
        return n


@DATA_SAMPLERS.register_module()
class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Batches of at most ``max_tokens`` tokens per process, for encoders that run a step's sequences packed
    (NaViT, arXiv 2307.06304; packing): each step costs about the same, whatever the mix of short and long samples,
    instead of a fixed number of samples whose tokens vary with the modalities drawn.

    The epoch's items come one at a time from a :class:`MultiTaskSampler` (:meth:`MultiTaskSampler.epoch_order`:
    its mode, shuffle and ``seed + epoch``), and are cut greedily, in that order, into batches whose tokens sum to
    at most ``max_tokens`` (every item once per epoch in proportional mode; the plan is the same on every process).
    Consecutive groups of ``world`` batches make a step: process ``r`` takes the ``r``-th of each. Within a batch,
    items are grouped by stream.

    Args:
        sampler: the :class:`MultiTaskSampler` that orders the items.
        max_tokens: the budget of one batch (of one process), in tokens (real tokens plus one [CLS] per
            sequence); an item above it is an error.
        drop_last: drop a last step that has fewer than ``world`` batches, so every process takes the same number
            of steps (training on several processes); with one process nothing is dropped.
        lengths: tokens of every item (``[len(dataset)]``); default: the dataset's ``token_counts()`` (counted once
            by the tokenizers, cached).
        batch_size: ignored (mmengine's Runner gives every batch sampler the loader's ``batch_size``).

    In a config file::

        train_dataloader = dict(
            batch_size=1,  # unused
            sampler=dict(type="MultiTaskSampler", mode="proportional"),
            batch_sampler=dict(type="TokenBudgetBatchSampler", max_tokens=4096, drop_last=True),
            ...)
    """

    def __init__(
        self,
        sampler: MultiTaskSampler,
        max_tokens: int,
        drop_last: bool = False,
        lengths: Sequence[int] | Tensor | np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> None:
        del (
            batch_size
        )  # mmengine's Runner passes the loader's batch_size to every batch sampler; tokens size these
        if not isinstance(sampler, MultiTaskSampler):
            raise TypeError(
                f"TokenBudgetBatchSampler: expected a MultiTaskSampler, got {type(sampler).__name__} "
                "(set sampler=dict(type='MultiTaskSampler', ...) in the dataloader config)"
            )
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(
                f"TokenBudgetBatchSampler: max_tokens must be an integer >= 1, got {max_tokens!r}"
            )
        self.sampler = sampler
        self.max_tokens = max_tokens
        self.drop_last = bool(drop_last)
        self._lengths: Tensor | None = None
        if lengths is not None:
            t = torch.as_tensor(np.asarray(lengths)).long()
            n = len(sampler.dataset)  # type: ignore[arg-type]
            if t.shape != (n,) or (n and int(t.min()) < 0):
                raise ValueError(
                    f"TokenBudgetBatchSampler: lengths must be {n} token counts >= 0 (one per item), got "
                    f"shape {tuple(t.shape)}"
                )
            self._lengths = t
        self._cache: tuple[tuple[Any, ...], Tensor, np.ndarray] | None = None

    def lengths(self) -> Tensor:
        """Tokens of every item (``int64``)."""
        if self._lengths is None:
            counts = getattr(self.sampler.dataset, "token_counts", None)
            if counts is None:
                raise TypeError(
                    f"TokenBudgetBatchSampler: a {type(self.sampler.dataset).__name__} has no token_counts(); pass "
                    "lengths= (tokens of every item)"
                )
            self._lengths = counts()
        return self._lengths

    def _epoch(self) -> tuple[Tensor, np.ndarray]:
        """``(order, bounds)``: the epoch's items and where its batches start (``bounds[k]:bounds[k + 1]``)."""
        s = self.sampler
        key = (s.seed, s.epoch, s.mode, s.shuffle, s.temperature, self.max_tokens)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        lengths = self.lengths()
        if lengths.numel() and int(lengths.max()) > self.max_tokens:
            i = int(lengths.argmax())
            where = f"item {i}"
            locate = getattr(s.dataset, "locate", None)
            if locate is not None:
                stream, j = locate(i)
                where += f" (stream {s.dataset.streams[stream].name!r}, sample {j})"  # type: ignore[attr-defined]
            raise ValueError(
                f"TokenBudgetBatchSampler: {where} has {int(lengths[i])} tokens, more than max_tokens="
                f"{self.max_tokens}; raise max_tokens above {int(lengths.max())} or cap the tokenizer's max_tokens"
            )
        order = s.epoch_order()
        cum = np.cumsum(lengths[order].numpy())
        bounds = [0]
        base = 0
        while bounds[-1] < len(order):  # greedy: each batch takes items while their sum fits
            end = int(np.searchsorted(cum, base + self.max_tokens, side="right"))
            bounds.append(end)
            base = int(cum[end - 1])
        self._cache = (key, order, np.asarray(bounds, dtype=np.int64))
        return order, self._cache[2]

    def _steps(self, n_batches: int, world: int) -> int:
        return n_batches // world if self.drop_last else math.ceil(n_batches / world)

    def _batch(self, k: int) -> list[int]:
        """Batch ``k`` of the epoch, its items grouped by stream (the stream order of the other samplers)."""
        order, bounds = self._epoch()
        ends = torch.as_tensor(np.cumsum(_stream_sizes(self.sampler.dataset)), dtype=torch.long)
        batch = order[bounds[k] : bounds[k + 1]]
        stream = torch.searchsorted(ends, batch, right=True)
        return batch[torch.sort(stream, stable=True).indices].tolist()

    def global_batches(self) -> list[list[int]]:
        """Every batch of the epoch (of all processes, step after step), grouped by stream."""
        return [self._batch(k) for k in range(len(self._epoch()[1]) - 1)]

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = get_dist_info()
        n_batches = len(self._epoch()[1]) - 1
        for step in range(self._steps(n_batches, world)):
            if step * world + rank < n_batches:
                yield self._batch(step * world + rank)

    def __len__(self) -> int:
        rank, world = get_dist_info()
        n_batches = len(self._epoch()[1]) - 1
        steps = self._steps(n_batches, world)
        return sum(1 for step in range(steps) if step * world + rank < n_batches)


# -- streams ------------------------------------------------------------------------------------------------------
class MultiTaskStream(ResumableStream):
    """:class:`MultiTaskDataset`'s streams read as one stream of :class:`Example` items, for data that is read as a
    stream (a :class:`~polymodal.data.StreamingDataset` of tar shards), alone or beside map-style datasets and
    data sources (read as :class:`~polymodal.data.streaming.MapStream`: a permutation per epoch with ``shuffle``).

    Every DataLoader worker of every process reads its own contiguous share of each stream
    (:class:`~polymodal.data.streaming.ResumableStream`) and mixes its shares into one sequence, drawn from
    ``seed``, the epoch, the process and the worker: ``mode="proportional"`` a random interleaving of all its items
    (each once per epoch), ``"temperature"`` a stream drawn per item with probability ``n_i ** (1 / T)`` (as
    :class:`MultiTaskSampler`'s; a stream starts over when its share is used up), ``"round_robin"`` the streams
    in turn until the largest share is used up (smaller ones start over). Batches are consecutive items of one
    worker (:class:`~polymodal.data.StreamLoader` makes and counts them: ``state_dict`` resumes mid-epoch). With
    ``drop_last`` every process gets the same number of items of each stream, hence of steps.

    Args:
        streams, split, tokenizers: as for :class:`MultiTaskDataset`; a stream's ``dataset`` may be a
            :class:`~polymodal.data.streaming.ResumableStream` (read with its own ``seed``, and this stream's
            ``shuffle`` and ``drop_last``; the object given is not changed).
        mode, temperature: how streams mix (above).
        shuffle: shuffle the map-style streams and the interleaving (``False``: streams one after another).
        seed: seed of the interleaving and of the map-style streams' permutations.
        drop_last: every process gets the same number of items (training on several processes).
    """

    def __init__(
        self,
        streams: Mapping[str, StreamConfig | Mapping[str, Any]],
        split: str = "train",
        tokenizers: Mapping[str, Any] | None = None,
        *,
        mode: Literal["proportional", "round_robin", "temperature"] = "proportional",
        temperature: float = 2.0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(seed=seed, drop_last=drop_last)
        if not streams:
            raise ValueError("MultiTaskStream: expected at least one stream")
        # the checks of MultiTaskSampler's arguments
        self.mode = MultiTaskSampler(_StreamSizes([1]), mode, shuffle, seed, temperature).mode
        self.temperature = float(temperature)
        self.shuffle = bool(shuffle)
        self.split = split
        built = _build_streams(streams, split, tokenizers)
        self.streams = [stream for stream, _ in built]
        self.sources: list[ResumableStream] = []
        for stream, ds in built:
            if isinstance(ds, ResumableStream):
                own = copy.copy(ds)  # the user's object keeps its settings
                own.drop_last = self.drop_last
                if hasattr(own, "shuffle"):
                    own.shuffle = self.shuffle
                self.sources.append(own)
            elif isinstance(ds, IterableDataset):
                raise TypeError(
                    f"stream {stream.name!r}: a {type(ds).__name__} cannot be split among processes and workers or "
                    "resumed; give a polymodal.data.StreamingDataset (write_shards makes its shards)"
                )
            else:
                self.sources.append(MapStream(ds, shuffle=shuffle, seed=seed, drop_last=drop_last))
        self.stream_sizes = [len(src) for src in self.sources]  # type: ignore[arg-type]
        self.metainfo = _metainfo(split, self.streams, self.stream_sizes)
        self._weights = MultiTaskSampler(
            _StreamSizes(self.stream_sizes), mode, shuffle, seed, temperature
        ).stream_weights()

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for src in self.sources:
            src.set_epoch(epoch)

    def __len__(self) -> int:
        """Items of an epoch read by one process with one worker."""
        return self.worker_length(Placement(0, 1, 0, 1))

    def _shares(self, place: Placement) -> list[int]:
        return [src.worker_length(place) for src in self.sources]

    def worker_length(self, place: Placement) -> int:
        shares = self._shares(place)
        if self.mode == "round_robin":
            return max(shares) * sum(1 for n in shares if n > 0)
        return sum(shares)

    def labels(self, place: Placement) -> np.ndarray:
        """The stream of each item the worker at ``place`` yields this epoch (``int16``)."""
        shares = self._shares(place)
        streams = np.arange(len(shares), dtype=np.int16)
        rng = np.random.default_rng([self.seed, self.epoch, place.rank, place.worker])
        if self.mode == "proportional":
            labels = np.repeat(streams, shares)
            if self.shuffle:
                rng.shuffle(labels)
            return labels
        live = np.asarray(shares) > 0
        if self.mode == "round_robin":
            return np.tile(streams[live], max(shares))
        p = np.where(live, np.asarray(self._weights), 0.0)
        return (
            rng.choice(streams, size=sum(shares), p=p / p.sum()).astype(np.int16) if p.sum() else streams[:0]
        )

    def _items(self, place: Placement, start: int) -> Iterator[Example]:
        shares = self._shares(place)
        labels = self.labels(place)
        used = np.bincount(labels[:start], minlength=len(shares)).tolist()
        readers: dict[int, Iterator[Any]] = {}
        for s in labels[start:].tolist():
            if s not in readers:
                readers[s] = self.sources[s]._items(place, used[s] % shares[s])
            try:
                sample, target = next(readers[s])
            except StopIteration:  # its share is used up: start it over
                readers[s] = self.sources[s]._items(place, 0)
                sample, target = next(readers[s])
            used[s] += 1
            yield Example(self.streams[s], sample, target)


class _StreamSizes:
    """Stream sizes as :class:`MultiTaskSampler` reads them (for its checks and weights)."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.stream_sizes = list(sizes)

    def __len__(self) -> int:
        return sum(self.stream_sizes)
