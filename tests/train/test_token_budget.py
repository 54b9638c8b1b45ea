"""TokenBudgetBatchSampler: batches of at most max_tokens tokens, every item once per epoch, deterministic, shared by
processes; token counts from the tokenizers; fit(batch_tokens=...)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

import polymodal
from polymodal.data import ArrayDataset
from polymodal.train import multitask
from polymodal.train.multitask import MultiTaskDataset, MultiTaskSampler, TokenBudgetBatchSampler
from polymodal.train.registry import DATA_SAMPLERS

from .conftest import SMALL_ENCODER

DIGITS = {"type": "digits", "image_size": 16, "num_train": 40, "num_test": 20}


def _dataset() -> MultiTaskDataset:
    streams = {
        "image": {"source": DIGITS},  # 16 x 16 in 8 x 8 patches: 4 tokens + [CLS]
        "tokens": {
            "source": {"type": "toy_seq_tokens", "num_train": 30},
            "input": "toy_seq",
        },  # 4..12 + [CLS]
        "vec": {"source": {"type": "toy_vec_linear", "num_train": 10}},  # 6 features + [CLS]
    }
    return MultiTaskDataset(streams, split="train", tokenizers={"image": {"type": "image", "patch_size": 8}})


def test_token_counts_come_from_the_tokenizers(toy_components: None) -> None:
    ds = _dataset()
    counts = ds.token_counts()
    assert counts.dtype == torch.long and counts.shape == (80,)
    assert counts[:40].tolist() == [5] * 40
    assert counts[40:70].tolist() == [len(ds[i].sample) + 1 for i in range(40, 70)]
    assert counts[70:].tolist() == [7] * 10
    assert ds.token_counts() is counts  # counted once


def _greedy(order: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    batches, cur, used = [], [], 0
    for i in order:
        if used + lengths[i] > budget:
            batches.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += lengths[i]
    return [*batches, cur] if cur else batches


@pytest.mark.parametrize("mode", ["proportional", "round_robin", "temperature"])
def test_batches_respect_the_budget_and_pack_greedily(toy_components: None, mode: str) -> None:
    ds = _dataset()
    lengths = ds.token_counts().tolist()
    sampler = MultiTaskSampler(ds, mode, seed=4)  # type: ignore[arg-type]
    budget = 40
    batches = list(TokenBudgetBatchSampler(sampler, budget))
    assert all(sum(lengths[i] for i in b) <= budget for b in batches)
    order = sampler.epoch_order().tolist()
    # the epoch's order cut greedily: a batch ends where the next item would pass the budget
    assert [sorted(b) for b in batches] == [sorted(b) for b in _greedy(order, lengths, budget)]
    for b in batches:  # grouped by stream
        streams = [ds.locate(i)[0] for i in b]
        assert streams == sorted(streams)
    if mode == "proportional":
        assert sorted(i for b in batches for i in b) == list(range(80))  # every item once
    full = [sum(lengths[i] for i in b) for b in batches[:-1]]
    assert min(full) > budget - 13  # only an item that does not fit (at most 13 tokens) ends a batch


def test_the_plan_is_deterministic_and_follows_the_epoch(toy_components: None) -> None:
    ds = _dataset()
    a = TokenBudgetBatchSampler(MultiTaskSampler(ds, seed=9), 50)
    b = TokenBudgetBatchSampler(MultiTaskSampler(ds, seed=9), 50)
    first = list(a)
    assert first == list(b) == list(a)  # same seed and epoch: same batches
    assert len(a) == len(first)
    a.sampler.set_epoch(1)
    second = list(a)
    assert second != first and sorted(i for x in second for i in x) == list(range(80))
    assert list(TokenBudgetBatchSampler(MultiTaskSampler(ds, seed=10), 50)) != first


@pytest.mark.parametrize("drop_last", [False, True])
def test_processes_take_turns_and_cover_the_epoch(
    toy_components: None, monkeypatch: pytest.MonkeyPatch, drop_last: bool
) -> None:
    ds = _dataset()
    lengths = ds.token_counts()
    every = TokenBudgetBatchSampler(MultiTaskSampler(ds, seed=2), 45, lengths=lengths).global_batches()
    per_rank = []
    for rank in range(3):
        monkeypatch.setattr(multitask, "get_dist_info", lambda r=rank: (r, 3))
        sampler = TokenBudgetBatchSampler(MultiTaskSampler(ds, seed=2), 45, drop_last, lengths=lengths)
        per_rank.append(list(sampler))
        assert len(sampler) == len(per_rank[-1])
    steps = len(every) // 3 if drop_last else -(-len(every) // 3)
    for rank, mine in enumerate(per_rank):
        assert mine == every[rank : steps * 3 : 3]  # batch r of every step of three
    if drop_last:
        assert len({len(m) for m in per_rank}) == 1  # the same number of steps on every process
    else:
        assert Counter(i for m in per_rank for b in m for i in b) == Counter(range(80))


def test_lengths_and_budget_errors(toy_components: None) -> None:
    ds = _dataset()
    sampler = MultiTaskSampler(ds, seed=0)
    with pytest.raises(
        ValueError, match=r"item \d+ \(stream 'tokens', sample \d+\) has 13 tokens, more than "
    ):
        list(TokenBudgetBatchSampler(sampler, 12))
    with pytest.raises(
        ValueError, match=r"lengths must be 80 token counts >= 0 \(one per item\), got shape \(3,\)"
    ):
        TokenBudgetBatchSampler(sampler, 12, lengths=[1, 2, 3])
    with pytest.raises(ValueError, match="max_tokens must be an integer >= 1, got 0"):
        TokenBudgetBatchSampler(sampler, 0)
    with pytest.raises(TypeError, match="expected a MultiTaskSampler"):
        TokenBudgetBatchSampler(torch.utils.data.SequentialSampler(ds), 12)  # type: ignore[arg-type]
    built = (
        DATA_SAMPLERS.build(  # as mmengine's Runner builds it from a config (with the loader's batch_size)
            {"type": "TokenBudgetBatchSampler", "max_tokens": 40},
            default_args={"sampler": sampler, "batch_size": 16},
        )
    )
    assert isinstance(built, TokenBudgetBatchSampler) and built.max_tokens == 40
    given = np.full(80, 10)
    assert [len(b) for b in TokenBudgetBatchSampler(sampler, 30, lengths=given)] == [3] * 26 + [2]


def test_fit_takes_batches_by_tokens(one_thread: None) -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.standard_normal((1, int(n))).astype(np.float32) for n in rng.integers(16, 97, 24)]
    data = ArrayDataset("time_series", seqs, np.arange(24) % 2, tokenizer={"stride": 16})
    model = polymodal.build_model(
        encoder=SMALL_ENCODER,
        tokenizers={"time_series": data.tokenizer_config},
        heads={"time_series": data.head_config()},
    )
    tokens = [int(data.tokenizer.token_lengths([data[i][0]]).sum()) + 1 for i in range(24)]
    assert min(tokens) < 5 < max(tokens)  # series of 1 to 6 patches
    options = {"epochs": 1, "summary": False, "quiet": True, "keep": "none"}
    result = polymodal.fit(model, data, data, batch_tokens=20, **options)  # type: ignore[arg-type]
    # the steps are the epoch's order (seed 0) cut into batches of at most 20 tokens, not one batch of 32 samples
    order = MultiTaskSampler(MultiTaskDataset({"t": {"dataset": data}}), seed=0).epoch_order().tolist()
    expected = len(_greedy(order, tokens, 20))
    assert expected >= sum(tokens) // 20 > 1
    assert result.history[-1]["iter"] == expected
    with pytest.raises(ValueError, match="fit: batch_tokens must be an integer >= 1, got 0"):
        polymodal.fit(model, data, batch_tokens=0)
