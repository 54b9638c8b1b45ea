"""Sharded streams: write_shards / StreamingDataset round trips, exact splits over 2 processes x 2 DataLoader
workers, resuming mid-epoch, bad samples named by shard and key, webdataset interoperability, mixing streams
(MultiTaskStream) and fit on a stream."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

import polymodal
from polymodal.data import (
    ArrayDataset,
    SampleInputError,
    SampleReadError,
    ShardReadError,
    StreamingDataset,
    StreamLoader,
    write_shards,
)
from polymodal.data.streaming import MapStream
from polymodal.train.collate import multitask_collate
from polymodal.train.multitask import MultiTaskDataset, MultiTaskStream

from .test_arrays import ENCODER, MODALITIES, make_arrays


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if hasattr(a, "to_dict"):  # a PyG Data
        return type(a) is type(b) and _same(dict(a.to_dict()), dict(b.to_dict()))
    return bool(a == b)


def _ids(n: int, per_shard: int, folder: Path) -> ArrayDataset:
    """``n`` table rows whose regression target is their index (to see which samples came), written as shards."""
    x = np.stack([np.arange(n, dtype=np.float64), np.arange(n) % 3], axis=1)
    data = ArrayDataset("tabular", x, np.arange(n, dtype=np.float32))
    write_shards(data, folder, per_shard)
    return data


def _targets(batches: list[Any]) -> list[int]:
    return [int(v) for batch in batches for v in batch[1].tolist()]


# -- writing and reading ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("modality", MODALITIES)
def test_shards_round_trip_every_modality(modality: str, tmp_path: Path) -> None:
    x, y, extra = make_arrays(modality, 6)
    data = ArrayDataset(modality, x, y, tokenizer=extra)
    index = write_shards(data, tmp_path, samples_per_shard=4)
    stream = StreamingDataset(tmp_path)
    assert len(stream) == 6 and [s.samples for s in stream.shards] == [4, 2]
    assert stream.task == data.task and stream.tokenizer_config == data.tokenizer_config
    assert stream.head_config() == data.head_config()
    items = list(stream)
    assert len(items) == 6
    for i, (sample, target) in enumerate(items):  # preprocessed when read, as the ArrayDataset does
        want, want_target = data[i]
        assert _same(sample, want), i
        assert torch.equal(target, want_target)
    meta = json.loads(index.read_text())
    assert meta["form"] == "raw" and meta["num_samples"] == 6 and meta["modality"] == modality
    with tarfile.open(tmp_path / "shard-000001.tar") as tar:
        names = tar.getnames()
    assert names[0].startswith("000000004.sample.") and names[1] == "000000004.target.cls"


def test_a_dataset_without_raw_samples_stores_its_per_sample_form(tmp_path: Path) -> None:
    images = torch.rand(5, 3, 16, 16)
    data = TensorDataset(images, torch.tensor([0, 1, 2, 1, 0]))
    write_shards(data, tmp_path, 2, tokenizer={"type": "image", "patch_size": 8, "img_size": 16})
    stream = StreamingDataset(tmp_path)
    assert json.loads((tmp_path / "index.json").read_text())["form"] == "sample"
    assert stream.task.kind == "classification" and stream.task.num_classes == 3
    got = list(stream)
    assert all(torch.equal(s, images[i]) and int(t) == int(data[i][1]) for i, (s, t) in enumerate(got))


def test_write_shards_errors(tmp_path: Path) -> None:
    data = ArrayDataset("tabular", np.zeros((4, 2)), [0.0, 1.0, 2.0, 3.0])
    write_shards(data, tmp_path / "a", 3)
    with pytest.raises(FileExistsError, match=r"holds shards already \(index.json\); pass overwrite=True"):
        write_shards(data, tmp_path / "a", 3)
    write_shards(data, tmp_path / "a", 1, overwrite=True)  # replaces the old shards
    assert sorted(p.name for p in (tmp_path / "a").glob("*.tar")) == [f"shard-{k:06d}.tar" for k in range(4)]
    with pytest.raises(ValueError, match="has no tokenizer_config; pass tokenizer="):
        write_shards(TensorDataset(torch.zeros(2, 3), torch.zeros(2)), tmp_path / "b")
    with pytest.raises(ValueError, match="samples_per_shard must be an integer >= 1, got 0"):
        write_shards(data, tmp_path / "c", 0)

    class Objects(torch.utils.data.Dataset):
        tokenizer_config: ClassVar[dict[str, str]] = {"type": "tabular"}

        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> tuple[Any, float]:
            return {"row": object()}, 0.0

    with pytest.raises(
        TypeError, match=r"write_shards: sample 0: expected a sample of tensors, arrays, .* got dict"
    ):
        write_shards(Objects(), tmp_path / "d")


# -- 2 processes x 2 workers -------------------------------------------------------------------------------------------
def _read_share(rank: int, world: int, folder: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{out}/pg", rank=rank, world_size=world)
    try:
        result: dict[str, Any] = {}
        for drop_last in (False, True):
            stream = StreamingDataset(folder, shuffle=True, seed=3, drop_last=drop_last)
            # workers forked (a spawned process would spawn them too: a second import of everything per worker)
            loader = StreamLoader(stream, batch_size=2, num_workers=2, multiprocessing_context="fork")
            for epoch in (0, 1):
                loader.set_epoch(epoch)
                batches = list(loader)
                result[f"{drop_last}/{epoch}"] = _targets(batches)
                result[f"{drop_last}/{epoch}/steps"] = [len(batches), len(loader)]
        Path(out, f"{rank}.json").write_text(json.dumps(result))
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_with_two_workers_read_every_sample_once(tmp_path: Path) -> None:
    _ids(23, 5, tmp_path / "shards")  # shards of 5, 5, 5, 5, 3 samples
    mp.start_processes(
        _read_share, args=(2, str(tmp_path / "shards"), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    r0, r1 = (json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2))
    for epoch in (0, 1):
        both = r0[f"False/{epoch}"] + r1[f"False/{epoch}"]
        assert sorted(both) == list(range(23))  # none lost, none repeated
        assert {len(r0[f"False/{epoch}"]), len(r1[f"False/{epoch}"])} == {11, 12}
        even = r0[f"True/{epoch}"] + r1[f"True/{epoch}"]
        assert len(r0[f"True/{epoch}"]) == len(r1[f"True/{epoch}"]) == 11 and len(set(even)) == 22
        for r in (r0, r1):
            for drop_last in (False, True):
                steps, length = r[f"{drop_last}/{epoch}/steps"]
                assert steps == length  # len(loader) is the number of batches it gives
        assert r0[f"True/{epoch}/steps"] == r1[f"True/{epoch}/steps"]  # the same steps on both processes
    assert r0["False/0"] != r0["False/1"]  # each epoch its own order


# -- resuming ----------------------------------------------------------------------------------------------------------
def test_an_interrupted_epoch_resumes_at_the_next_unseen_sample(tmp_path: Path) -> None:
    _ids(23, 5, tmp_path)

    def loader(workers: int = 2) -> StreamLoader:
        return StreamLoader(
            StreamingDataset(tmp_path, shuffle=True, seed=1), batch_size=2, num_workers=workers
        )

    whole = loader()
    whole.set_epoch(3)
    every = list(whole)
    first = loader()
    first.set_epoch(3)
    it = iter(first)
    seen = [next(it) for _ in range(5)]
    state = first.state_dict()
    del it
    assert state["epoch"] == 3 and state["workers"] == 2 and sum(state["positions"]) == 10
    assert _targets(seen) == _targets(every[:5])

    again = loader()
    again.load_state_dict(state)
    again.set_epoch(3)  # as mmengine's DistSamplerSeedHook does before the epoch: the position stays
    rest = list(again)
    assert sorted(_targets(seen) + _targets(rest)) == list(range(23))  # the rest of the epoch, nothing twice
    assert Counter(_targets(rest)) == Counter(_targets(every[5:]))
    assert again.epoch == 4 and again.state_dict()["positions"] == [0, 0]  # the next epoch starts afresh
    with pytest.raises(ValueError, match=r"saved position is of 2 DataLoader worker\(s\), this loader has 1"):
        loader(workers=1).load_state_dict(state)

    # a stream iterated in this process keeps its own position, exactly
    stream = StreamingDataset(tmp_path, shuffle=True, seed=1)
    stream.set_epoch(2)
    items = iter(stream)
    part = [next(items)[1] for _ in range(7)]
    resumed = StreamingDataset(tmp_path, shuffle=True, seed=1)
    resumed.load_state_dict(stream.state_dict())
    full = StreamingDataset(tmp_path, shuffle=True, seed=1)
    full.set_epoch(2)
    assert [float(t) for t in part] + [float(t) for _, t in resumed] == [float(t) for _, t in full]


# -- bad samples -------------------------------------------------------------------------------------------------------
def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_a_bad_sample_is_named_by_shard_and_key(tmp_path: Path) -> None:
    good = np.zeros((16, 16, 3), np.uint8)
    shard = _tar(
        tmp_path / "bad.tar",
        {
            "a0.input.npy": _npy(good),
            "a0.cls": b"0",
            "a1.input.npy": _npy(good),
            "a1.cls": b"1",
            "a2.input.npy": _npy(np.zeros((16, 16, 4), np.uint8)),
            "a2.cls": b"1",
            "a3.input.npy": b"not an array",
            "a3.cls": b"0",
            "a4.input.pyd": b"\x80\x04N.",
            "a4.cls": b"0",
        },
    )
    options = {"modality": "image", "tokenizer": {"patch_size": 8}, "sample": "input", "target": "cls"}
    stream = StreamingDataset(shard, **options)  # type: ignore[arg-type]
    assert len(stream) == 5 and stream.targets.tolist() == [0, 1, 1, 0, 0]
    items = iter(stream)
    assert [int(next(items)[1]) for _ in range(2)] == [0, 1]
    with pytest.raises(SampleInputError, match=r"^image: shard bad.tar, key a2: expected .*got") as info:
        next(items)
    assert info.value.modality == "image" and info.value.where == "shard bad.tar, key a2"
    with pytest.raises(
        SampleReadError, match=r"cannot read sample 3 from .*bad.tar \(key a3, member a3.input.npy\)"
    ):
        stream.sample(3)
    with pytest.raises(SampleReadError, match=r"key a4, member a4.input.pyd\): ValueError: pickled members"):
        stream.sample(4)
    with pytest.raises(
        SampleInputError, match=r"shard bad\.tar, key a2"
    ):  # checked when made, as ArrayDataset is
        StreamingDataset(shard, check=3, **options)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shards without an index need modality="):
        StreamingDataset(shard)
    with pytest.raises(
        ValueError, match=r"key a0: no target member \(label\); members: input.npy, cls; pass target="
    ):
        StreamingDataset(shard, modality="image", sample="input", target="label")
    (tmp_path / "junk.tar").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(
        ShardReadError, match=r"cannot read shard .*junk.tar: _TarError: damaged tar header at byte 0"
    ):
        StreamingDataset(tmp_path / "junk.tar", modality="image")
    _ids(6, 6, tmp_path / "cut")
    cut = tmp_path / "cut" / "shard-000000.tar"
    cut.write_bytes(cut.read_bytes()[:4800])  # cut inside the third sample (2048 bytes a sample)
    stream = StreamingDataset(tmp_path / "cut", check=0)  # (its index says 6 samples)
    items = iter(stream)
    assert [float(next(items)[1]) for _ in range(2)] == [0.0, 1.0]
    with pytest.raises(
        ShardReadError, match=r"shard-000000.tar: _TarError: (member 000000002.* is truncated|trunc)"
    ):
        next(items)
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        StreamingDataset(str(tmp_path / "none-*.tar"), modality="image")


def test_files_of_the_modality_in_foreign_shards_are_read_by_its_reader(tmp_path: Path) -> None:
    from PIL import Image

    pngs = []
    for v in (10, 200):
        buffer = io.BytesIO()
        Image.fromarray(np.full((16, 16, 3), v, np.uint8)).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    shard = _tar(
        tmp_path / "s-{0}.tar", {"x0.png": pngs[0], "x0.cls": b"0", "x1.png": pngs[1], "x1.cls": b"1"}
    )
    one = _tar(tmp_path / "s-1.tar", {"y0.png": pngs[1], "y0.cls": b"1"})
    stream = StreamingDataset(
        [shard, one], modality="image", tokenizer={"patch_size": 8}, sample="jpg;png", target="cls"
    )
    data = ArrayDataset(
        "image", np.stack([np.full((16, 16, 3), v, np.uint8) for v in (10, 200, 200)]), [0, 1, 1]
    )
    data = ArrayDataset("image", data.inputs, [0, 1, 1], tokenizer={"patch_size": 8})
    assert all(_same(s, data[i][0]) for i, (s, _) in enumerate(stream))
    index = stream.save_index(tmp_path / "indexed")
    again = StreamingDataset(index)
    assert len(again) == 3 and [int(t) for _, t in again] == [0, 1, 1]


# -- webdataset ----------------------------------------------------------------------------------------------------------
def test_webdataset_reads_our_shards_and_we_read_its(tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    data = _ids(7, 4, tmp_path / "ours")
    urls = [str(p) for p in sorted((tmp_path / "ours").glob("*.tar"))]
    theirs = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert [s["__key__"] for s in theirs] == [f"{i:09d}" for i in range(7)]
    assert [float(np.asarray(s["target.npy"])) for s in theirs] == list(range(7))
    assert all(np.array_equal(s["sample.npy"], data.raw(i)) for i, s in enumerate(theirs))

    with wds.TarWriter(str(tmp_path / "theirs.tar")) as sink:
        for i in range(5):
            sink.write(
                {"__key__": f"k{i}", "input.npy": np.full((16, 16, 3), 40 * i, np.uint8), "cls": i % 2}
            )
    stream = StreamingDataset(
        tmp_path / "theirs.tar", modality="image", tokenizer={"patch_size": 8}, sample="input", target="cls"
    )
    assert stream.task.kind == "classification" and [int(t) for _, t in stream] == [0, 1, 0, 1, 0]


# -- mixing streams ------------------------------------------------------------------------------------------------------
def _two_streams(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    _ids(23, 5, tmp_path / "a")
    stream = StreamingDataset(tmp_path / "a")
    x = np.stack([np.arange(9, dtype=np.float64) + 100, np.arange(9) % 3], axis=1)
    small = ArrayDataset("tabular", x, np.arange(100, 109, dtype=np.float32))
    streams = {"a": {"dataset": stream, "input": "a"}, "b": {"dataset": small, "input": "b"}}
    return streams, {"a": stream.tokenizer_config, "b": small.tokenizer_config}


def _mixed_ids(batches: list[dict[str, Any]]) -> list[int]:
    return [int(v) for b in batches for t in b["data_samples"].values() for v in t.tolist()]


@pytest.mark.parametrize("mode", ["proportional", "round_robin", "temperature"])
def test_mixed_streams_over_workers(tmp_path: Path, mode: str) -> None:
    streams, tokenizers = _two_streams(tmp_path)
    mixed = MultiTaskStream(streams, tokenizers=tokenizers, mode=mode, seed=5)  # type: ignore[arg-type]
    loader = StreamLoader(mixed, 4, collate_fn=multitask_collate, num_workers=2)
    batches = list(loader)
    ids = Counter(_mixed_ids(batches))
    assert len(batches) == len(loader)
    if mode == "proportional":
        assert ids == Counter([*range(23), *range(100, 109)])  # every item of both once
    elif mode == "round_robin":  # per worker: the streams in turn until its larger share is used up
        assert all(ids[i] == 1 for i in range(23)) and sum(ids.values()) == 2 * 23
        assert all(ids[i] >= 2 for i in range(100, 109))
    else:
        assert sum(ids.values()) == 32 and set(ids) <= {*range(23), *range(100, 109)}
    assert {b["inputs"].keys() <= {"a", "b"} for b in batches} == {True}
    again = list(loader)  # the next epoch: a new order
    assert _mixed_ids(again) != _mixed_ids(batches)


def test_mixed_streams_resume_and_are_refused_by_the_map_dataset(tmp_path: Path) -> None:
    streams, tokenizers = _two_streams(tmp_path)

    def loader() -> StreamLoader:
        mixed = MultiTaskStream(streams, tokenizers=tokenizers, seed=2)
        return StreamLoader(mixed, 3, collate_fn=multitask_collate, num_workers=2)

    first = loader()
    it = iter(first)
    seen = [next(it) for _ in range(4)]
    state = first.state_dict()
    del it
    again = loader()
    again.load_state_dict(state)
    rest = list(again)
    assert Counter(_mixed_ids(seen) + _mixed_ids(rest)) == Counter([*range(23), *range(100, 109)])
    with pytest.raises(
        TypeError, match="stream 'a': a StreamingDataset is read as a stream, which MultiTaskDataset"
    ):
        MultiTaskDataset(streams, tokenizers=tokenizers)
    with pytest.raises(ValueError, match="max_samples applies to map-style datasets"):
        MultiTaskStream({"a": {**streams["a"], "max_samples": 3}}, tokenizers=tokenizers)
    assert (
        streams["a"]["dataset"].shuffle is False
    )  # the stream given is not changed by the mixing stream's copy


def test_a_map_dataset_read_as_a_stream_is_split_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    data = list(range(10))
    shares = []
    for rank in range(3):
        monkeypatch.setattr("polymodal.data.streaming._dist_info", lambda r=rank: (r, 3))
        stream = MapStream(data, shuffle=True, seed=4)  # type: ignore[arg-type]
        shares.append(list(stream))
        assert stream.rank_length() == len(shares[-1])
    assert sorted(i for s in shares for i in s) == data and [len(s) for s in shares] == [3, 3, 4]


# -- fit ------------------------------------------------------------------------------------------------------------------
def test_fit_and_evaluate_on_a_stream(tmp_path: Path, one_thread_fit: None) -> None:
    x, y, extra = make_arrays("image", 24)
    data = ArrayDataset("image", x, y, tokenizer=extra)
    write_shards(data, tmp_path / "shards", 10)
    stream = StreamingDataset(tmp_path / "shards")
    model = polymodal.build_model(
        encoder=ENCODER, tokenizers={"image": data.tokenizer_config}, heads={"image": data.head_config()}
    )
    result = polymodal.fit(
        model, stream, stream, epochs=2, batch_size=8, summary=False, quiet=True, keep="none"
    )
    assert result.epochs_run == 2 and result.history[-1]["iter"] == 2 * 3
    on_stream = polymodal.evaluate(result.model, stream, batch_size=5)
    on_arrays = polymodal.evaluate(result.model, data, batch_size=7)
    assert on_stream.keys() == on_arrays.keys() and on_stream == pytest.approx(on_arrays, abs=1e-6)
    with pytest.raises(ValueError, match="fit: batch_tokens needs map-style datasets"):
        polymodal.fit(model, stream, batch_tokens=100, summary=False, quiet=True)


@pytest.fixture
def one_thread_fit() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
