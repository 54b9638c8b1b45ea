"""MultiTaskDataset, collation in workers, pairing, and the samplers that mix streams."""

from __future__ import annotations

import pickle
from collections import Counter

import pytest
import torch
from pydantic import ValidationError
from torch.utils.data import DataLoader

from polymodal.registry.errors import UnknownNameError
from polymodal.registry.lookup import get
from polymodal.train import multitask as data_module
from polymodal.train.collate import Example, TokenizerCollate, multitask_collate
from polymodal.train.multitask import MultiTaskBatchSampler, MultiTaskDataset, MultiTaskSampler

DIGITS = {"type": "digits", "image_size": 16, "num_train": 40, "num_test": 20}


def _dataset(**extra: dict) -> MultiTaskDataset:
    streams = {
        "image": {"source": DIGITS},
        "tokens": {"source": {"type": "toy_seq_tokens", "num_train": 30}, "input": "toy_seq"},
        "vec": {"source": {"type": "toy_vec_linear", "num_train": 10}},
        **extra,
    }
    return MultiTaskDataset(streams, split="train", tokenizers={"image": {"type": "image", "patch_size": 8}})


def test_streams_concatenate_and_items_know_their_stream(toy_components: None) -> None:
    ds = _dataset()
    assert ds.stream_sizes == [40, 30, 10] and len(ds) == 80
    assert (
        ds.locate(0) == (0, 0)
        and ds.locate(39) == (0, 39)
        and ds.locate(40) == (1, 0)
        and ds.locate(79) == (2, 9)
    )
    item = ds[45]
    assert (
        isinstance(item, Example) and item.stream.name == "tokens" and list(item.stream.inputs) == ["toy_seq"]
    )
    assert item.stream.tasks == ("toy_seq",)  # the task defaults to the input key
    assert ds[0].stream.inputs["image"].config["patch_size"] == 8  # the model's tokenizer config is used
    assert ds.metainfo["streams"]["vec"] == {"inputs": ["toy_vec"], "tasks": ["toy_vec"], "size": 10}
    with pytest.raises(IndexError, match="index 80 out of range for 80 items"):
        ds.locate(80)


def test_stream_config_errors(toy_components: None) -> None:
    with pytest.raises(ValueError, match="streams 'image' and 'again' both feed input 'image'"):
        _dataset(again={"source": DIGITS})
    with pytest.raises(ValueError, match="both supervise task 'image'"):
        _dataset(other={"source": DIGITS, "input": "image_b", "tasks": ["image"]})
    with pytest.raises(ValidationError, match="exactly one of 'source'"):
        MultiTaskDataset({"x": {"input": "image"}})
    with pytest.raises(ValidationError, match="a paired stream needs 'tasks'"):
        MultiTaskDataset({"x": {"sources": {"a": DIGITS, "b": DIGITS}}})
    with pytest.raises(UnknownNameError, match="unknown data source 'digit'; did you mean 'digits'"):
        MultiTaskDataset({"x": {"source": "digit"}})


def test_collate_groups_streams_into_one_batch(toy_components: None) -> None:
    ds = _dataset()
    batch = multitask_collate([ds[i] for i in (41, 0, 75, 1, 42)])
    inputs, targets = batch["inputs"], batch["data_samples"]
    assert list(inputs) == ["toy_seq", "image", "toy_vec"]  # order of first appearance
    assert inputs["image"].shape == (2, 3, 16, 16)
    lengths = [len(ds[i].sample) for i in (41, 42)]
    assert inputs["toy_seq"]["values"].shape == (2, max(lengths))
    assert inputs["toy_seq"]["mask"].sum(1).tolist() == lengths
    # ragged targets are padded with -100 by the source's collate_targets
    assert (
        targets["toy_seq"].shape == (2, max(lengths))
        and (targets["toy_seq"][~inputs["toy_seq"]["mask"]] == -100).all()
    )
    assert torch.equal(targets["image"], torch.stack([ds[0].target, ds[1].target]))
    assert targets["toy_vec"].shape == (1, 1)
    with pytest.raises(ValueError, match="empty batch"):
        multitask_collate([])
    with pytest.raises(TypeError, match="expected Example items"):
        multitask_collate([(torch.zeros(1), 0)])


def test_tokenizer_collate_pickles_and_needs_no_weights(toy_components: None) -> None:
    collate = TokenizerCollate(
        get("tokenizer", "image"), {"type": "image", "embed_dim": 4096, "img_size": 1024}
    )
    samples = [torch.randn(3, 16, 16) for _ in range(3)]
    out = collate(samples)
    assert collate._on_meta  # built on the meta device: no memory for its 4096-wide weights
    assert torch.equal(out, torch.stack(samples))
    clone = pickle.loads(pickle.dumps(collate))
    assert clone._tokenizer is None  # the built tokenizer never travels
    assert torch.equal(clone(samples), out)


def test_tokenizer_collate_falls_back_to_real_weights(toy_components: None) -> None:
    class NeedsWeights(get("tokenizer", "toy_vec")):  # a collate that reads a parameter
        def collate(self, samples):  # type: ignore[override]
            return torch.stack(list(samples)) * self.weight[0, 0].detach().sign().abs()

    collate = TokenizerCollate(NeedsWeights, {"type": "toy_vec", "embed_dim": 8})
    out = collate([torch.ones(6), torch.ones(6)])
    assert not collate._on_meta and torch.equal(out, torch.ones(2, 6))


def test_dataset_pickles_and_collates_in_worker_processes(toy_components: None) -> None:
    ds = _dataset()
    again = pickle.loads(pickle.dumps(ds))  # what a spawned worker receives
    assert again.stream_sizes == ds.stream_sizes
    sampler = MultiTaskSampler(ds, mode="round_robin", shuffle=True, seed=0)
    loader = DataLoader(
        ds, batch_sampler=MultiTaskBatchSampler(sampler, 12), collate_fn=multitask_collate, num_workers=2
    )
    batches = list(loader)
    assert len(batches) == len(loader) == 10  # 40 items of the largest stream, 4 per step
    for b in batches:
        assert set(b["inputs"]) == {"image", "toy_seq", "toy_vec"}
        assert b["inputs"]["image"].shape[0] == 4 and b["data_samples"]["toy_vec"].shape == (4, 1)


def test_pairing_by_target_and_by_index(toy_components: None) -> None:
    pairs = {"sources": {"a": DIGITS, "b": {**DIGITS, "seed": 3}}, "pair_by": "target", "tasks": ["pair"]}
    ds = MultiTaskDataset({"pairs": pairs}, tokenizers={"a": "image", "b": "image"})
    digits = get("data source", "digits").from_config({k: v for k, v in DIGITS.items() if k != "type"})
    other = get("data source", "digits").from_config(
        {**{k: v for k, v in DIGITS.items() if k != "type"}, "seed": 3}
    )
    a, b = digits.splits()["train"], other.splits()["train"]
    paired = ds.datasets[0]
    assert len(ds) == len(a)
    for i in range(len(a)):
        sample, target = paired[i]
        j = paired.index[1][i]
        assert torch.equal(sample["a"], a[i][0]) and torch.equal(sample["b"], b[j][0])
        assert int(b[j][1]) == int(a[i][1]) == int(target)  # same class
    batch = multitask_collate([ds[i] for i in range(4)])
    assert set(batch["inputs"]) == {"a", "b"} and batch["inputs"]["b"].shape == (4, 3, 16, 16)
    assert batch["data_samples"]["pair"].tolist() == [int(a[i][1]) for i in range(4)]
    by_index = MultiTaskDataset({"p": {**pairs, "pair_by": "index"}}, tokenizers={"a": "image", "b": "image"})
    assert by_index.datasets[0].index[1][:5] == [0, 1, 2, 3, 4]


def test_proportional_epoch_visits_every_item_once_and_depends_on_seed_and_epoch(
    toy_components: None,
) -> None:
    ds = _dataset()
    sampler = MultiTaskSampler(ds, mode="proportional", shuffle=True, seed=7)
    batches = MultiTaskBatchSampler(sampler, 16, drop_last=False)
    first = list(batches)
    assert len(first) == len(batches) == 5
    assert sorted(i for b in first for i in b) == list(range(80))
    assert first == list(batches)  # same epoch, same plan
    sampler.set_epoch(1)
    assert first != list(batches)
    counts = Counter(ds.locate(i)[0] for i in first[0])
    assert counts[0] > counts[2]  # in proportion to sizes 40 : 30 : 10 (on average)
    assert (
        len(MultiTaskBatchSampler(sampler, 16, drop_last=True)) == 5
        and len(MultiTaskBatchSampler(sampler, 15, True)) == 5
    )
    ordered = list(MultiTaskBatchSampler(MultiTaskSampler(ds, "proportional", shuffle=False, seed=0), 32))
    assert [i for b in ordered for i in b] == list(range(80))


def test_round_robin_gives_every_step_an_equal_share(toy_components: None) -> None:
    ds = _dataset()
    sampler = MultiTaskSampler(ds, mode="round_robin", shuffle=True, seed=0)
    batches = list(MultiTaskBatchSampler(sampler, 10, drop_last=True))
    assert len(batches) == 12  # 40 items of the largest stream * 3 streams / 10 per step
    for b, batch in enumerate(batches):
        counts = Counter(ds.locate(i)[0] for i in batch)
        assert sorted(counts.values()) == [3, 3, 4] and counts[b % 3] == 4  # the extra slot rotates
    seen = Counter(i for batch in batches for i in batch)
    assert all(seen[i] == 1 for i in range(40))  # the largest stream is seen once; small ones cycle
    assert all(seen[i] == 4 for i in range(70, 80))
    with pytest.raises(ValueError, match="mode must be 'proportional', 'round_robin' or 'temperature', got"):
        MultiTaskSampler(ds, mode="random")


@pytest.mark.parametrize("mode", ["proportional", "round_robin"])
def test_processes_share_the_global_batches(
    toy_components: None, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    ds = _dataset()
    single = list(MultiTaskBatchSampler(MultiTaskSampler(ds, mode, seed=3), 12, drop_last=True))
    per_rank = []
    for rank in range(2):
        monkeypatch.setattr(data_module, "get_dist_info", lambda r=rank: (r, 2))
        per_rank.append(list(MultiTaskBatchSampler(MultiTaskSampler(ds, mode, seed=3), 6, drop_last=True)))
    assert len(per_rank[0]) == len(per_rank[1]) == len(single)
    for g, r0, r1 in zip(single, *per_rank):
        assert Counter(r0 + r1) == Counter(g)  # (round-robin may repeat a small stream's item in one step)
        assert len(r0) == len(r1) == 6
        if mode == "round_robin":  # 4 per stream: each process gets 2 of every stream
            assert Counter(ds.locate(i)[0] for i in r0) == Counter(ds.locate(i)[0] for i in r1)
    with pytest.raises(TypeError, match="expected a MultiTaskSampler"):
        MultiTaskBatchSampler(torch.utils.data.SequentialSampler(ds), 4)  # type: ignore[arg-type]
