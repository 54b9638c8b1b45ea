"""The lazy epoch plan of MultiTaskSampler (whole-array numpy/torch, one step at a time) equals the list-based plan it
replaced, step for step, in every mode; its lengths need no plan."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterator

import pytest
import torch

from polymodal.train import multitask
from polymodal.train.multitask import MultiTaskBatchSampler, MultiTaskSampler


class _Sizes:
    def __init__(self, *sizes: int) -> None:
        self.stream_sizes = list(sizes)

    def __len__(self) -> int:
        return sum(self.stream_sizes)


def reference_global_batches(
    sampler: MultiTaskSampler, global_batch: int, drop_last: bool
) -> list[list[int]]:
    """The plan as MultiTaskSampler built it before (Python lists of every item, a generator per stream)."""
    sizes = list(sampler.dataset.stream_sizes)
    offsets = [sum(sizes[:s]) for s in range(len(sizes))]
    g = torch.Generator().manual_seed(sampler.seed + sampler.epoch)
    n_batches = sampler.num_global_batches(global_batch, drop_last)

    def cycle(n: int, offset: int) -> Iterator[int]:
        while True:
            order = torch.randperm(n, generator=g).tolist() if sampler.shuffle else range(n)
            for i in order:
                yield offset + i

    if sampler.mode == "proportional":
        total = sum(sizes)
        order = torch.randperm(total, generator=g).tolist() if sampler.shuffle else list(range(total))
        batches = [order[i * global_batch : (i + 1) * global_batch] for i in range(n_batches)]
        return [sorted(b, key=lambda i: bisect.bisect_right(offsets, i)) for b in batches]
    live = [s for s, n in enumerate(sizes) if n > 0]
    streams = {s: cycle(sizes[s], offsets[s]) for s in live}
    if sampler.mode == "temperature":
        total = sum(sizes)
        p = torch.tensor(sampler.stream_weights(), dtype=torch.float64)
        picks = torch.multinomial(p, n_batches * global_batch, replacement=True, generator=g).tolist()
        out = []
        for b in range(n_batches):
            size = min(global_batch, total - b * global_batch) if b == n_batches - 1 else global_batch
            out.append([next(streams[s]) for s in sorted(picks[b * global_batch : b * global_batch + size])])
        return out
    base, extra = divmod(global_batch, len(live))
    out = []
    for b in range(n_batches):
        batch = []
        for j, s in enumerate(live):
            take = base + (1 if (j - b) % len(live) < extra else 0)
            batch.extend(next(streams[s]) for _ in range(take))
        out.append(batch)
    return out


SIZES = [(40, 30, 10), (5, 0, 17, 3), (1, 64), (7,)]


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("mode", ["proportional", "round_robin", "temperature"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_the_lazy_plan_equals_the_list_plan(sizes: tuple[int, ...], mode: str, shuffle: bool) -> None:
    data = _Sizes(*sizes)
    for global_batch in (1, 3, 16, 200):
        for drop_last in (False, True):
            for epoch in (0, 1):
                sampler = MultiTaskSampler(data, mode, shuffle=shuffle, seed=5, temperature=1.5)  # type: ignore[arg-type]
                sampler.set_epoch(epoch)
                new = sampler.global_batches(global_batch, drop_last)
                if sampler.num_global_batches(global_batch, drop_last) == 0:
                    assert new == []  # (the list plan raised here: multinomial of no samples)
                    continue
                old = reference_global_batches(sampler, global_batch, drop_last)
                assert new == old, (global_batch, drop_last, epoch)


@pytest.mark.parametrize("mode", ["proportional", "round_robin", "temperature"])
def test_coverage_and_interleaving_rules(mode: str) -> None:
    data = _Sizes(40, 30, 10)
    ends = [40, 70, 80]
    batches = MultiTaskSampler(data, mode, seed=1).global_batches(10, drop_last=True)  # type: ignore[arg-type]
    seen = Counter(i for b in batches for i in b)
    for b in batches:  # grouped by stream within a step
        streams = [bisect.bisect_right(ends, i) for i in b]
        assert streams == sorted(streams)
    if mode == "proportional":
        assert sorted(seen) == list(range(80)) and set(seen.values()) == {1}  # every item once
    elif mode == "round_robin":
        assert len(batches) == 12 and all(seen[i] == 1 for i in range(40))  # the largest stream once
        assert all(seen[i] == 4 for i in range(70, 80))  # the small one cycles through fresh permutations
        assert all(
            sorted(Counter(bisect.bisect_right(ends, i) for i in b).values()) == [3, 3, 4] for b in batches
        )
    else:
        assert sum(seen.values()) == 80  # as long as proportional's epoch
        small = sum(c for i, c in seen.items() if i >= 70)
        assert small > 10  # T = 2 raises the share of the smallest stream above its 1/8


@pytest.mark.parametrize("mode", ["proportional", "round_robin", "temperature"])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_lengths_need_no_plan_and_match_it(monkeypatch: pytest.MonkeyPatch, mode: str, world: int) -> None:
    data = _Sizes(11, 0, 6)
    for rank in range(world):
        monkeypatch.setattr(multitask, "get_dist_info", lambda r=rank: (r, world))
        sampler = MultiTaskSampler(data, mode, seed=2)  # type: ignore[arg-type]
        assert len(sampler) == len(list(sampler))
        for drop_last in (False, True):
            batches = MultiTaskBatchSampler(sampler, 4, drop_last)
            assert len(batches) == len(list(batches))


def test_the_plan_is_one_tensor_not_a_list_of_items() -> None:
    sampler = MultiTaskSampler(_Sizes(300_000, 700_000), "proportional", seed=0)
    order, n = sampler._plan(64, drop_last=True)
    assert isinstance(order, torch.Tensor) and order.dtype == torch.int64 and n == 1_000_000 // 64
    first = next(sampler.iter_global_batches(64, True))
    assert first.shape == (64,) and len(set(first.tolist())) == 64
    stream = (first >= 300_000).long()
    assert torch.equal(stream, stream.sort().values)  # grouped by stream
    assert math.isclose(float(stream.float().mean()), 0.7, abs_tol=0.2)
