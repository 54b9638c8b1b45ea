"""FSDP on the CPU (gloo, 2 processes spawned with torch.multiprocessing): one FSDP unit per transformer block, the
same training as one process with the same global batch, sharded checkpoints (torch.distributed.checkpoint) that
resume exactly and load without FSDP; and when DDP needs ``find_unused_parameters``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.optim import OptimWrapper
from timm.models.vision_transformer import Block

import polymodal
from polymodal.core.encoders.vit import PackedBlock
from polymodal.train import load_checkpoint_file, load_config, safe_checkpoint_globals, train_from_config
from polymodal.train.runner import (
    SHARDED_STATE_FILE,
    PolymodalDistributedDataParallel,
    _build_runner,
    component_wrap_policy,
    evaluate_from_config,
    find_unused_parameters_needed,
    is_sharded_checkpoint,
    read_sharded_checkpoint,
)

from .conftest import OTHER_PLUGINS, image_config

STRATEGY = """
strategy = dict(
    type="polymodal.PolymodalFSDPStrategy",
    model_wrapper=dict(
        type="polymodal.PolymodalFullyShardedDataParallel",
        auto_wrap_policy=dict(type="polymodal.component_wrap_policy"),
        use_orig_params=True,
    ),
    state_dict_cfg={mode!r},
)
env_cfg = dict(dist_cfg=dict(backend="gloo", timeout=120))  # a hang fails after two minutes
"""
# 65 + 64 = 129 test items in global steps of 2 x 32: the last step holds one item, so process 1 has one evaluation
# step fewer than process 0, which FSDP's collectives do not allow (the evaluation loops keep them in lockstep).
UNEVEN_EVAL = """
val_streams = dict(image=dict(source=source), image2=dict(source=source2, input="image2", max_samples=64))
val_dataloader = dict(batch_size=32, num_workers=0, dataset=dict(streams=val_streams, tokenizers=tokenizers))
test_dataloader = val_dataloader
"""
PER_PROCESS = {"train_dataloader.batch_size": 8}  # 2 x 8: the global batch of one process with 16
TEST_ITEMS = 65 + 64


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def _fsdp_worker(rank: int, world: int, port: int, root_name: str) -> None:
    """One process of the FSDP job: run A (sharded checkpoints, 2 epochs), run B (resumes A's epoch 1 in another
    work dir), run C (full checkpoints, 2 epochs)."""
    os.environ.update(_env(rank, world, port))
    os.environ.update(OMP_NUM_THREADS="1", POLYMODAL_BLOCK_PLUGINS=OTHER_PLUGINS)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    root = Path(root_name)
    cfg = load_config(root / "sharded.py", work_dir=root / "a", cfg_options=PER_PROCESS, launcher="pytorch")
    runner = _build_runner(cfg)
    with safe_checkpoint_globals():
        runner.train()
    units = [name for name, m in runner.model.named_modules() if isinstance(m, FSDP)]
    if rank == 0:
        (root / "units.json").write_text(json.dumps(units))
        shutil.copytree(root / "a" / "epoch_1.pth", root / "b" / "epoch_1.pth")
        (root / "b" / "last_checkpoint").write_text("epoch_1.pth")
    dist.barrier()
    train_from_config(
        root / "sharded.py", work_dir=root / "b", resume=True, cfg_options=PER_PROCESS, launcher="pytorch"
    )
    train_from_config(root / "full.py", work_dir=root / "c", cfg_options=PER_PROCESS, launcher="pytorch")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The FSDP job (2 processes) and the same training in one process without FSDP (batch 16)."""
    root = tmp_path_factory.mktemp("fsdp")
    common = dict(max_epochs=2, two_streams=True, num_train=64, num_test=65)
    image_config(root / "sharded.py", **common, extra=STRATEGY.format(mode="sharded") + UNEVEN_EVAL)
    image_config(root / "full.py", **common, extra=STRATEGY.format(mode="full") + UNEVEN_EVAL)
    image_config(root / "plain.py", **common, extra=UNEVEN_EVAL)
    torch.multiprocessing.start_processes(
        _fsdp_worker, args=(2, _free_port(), str(root)), nprocs=2, start_method="spawn"
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_from_config(
            root / "plain.py", work_dir=root / "one", cfg_options={"train_dataloader.batch_size": 16}
        )
        yield root
    finally:
        torch.set_num_threads(before)


# -- the units --------------------------------------------------------------------------------------------------
def _tiny_model() -> polymodal.MultimodalModel:
    tok = dict(type="image", patch_size=8, img_size=16)
    return polymodal.build_model(
        encoder=dict(type="vit", embed_dim=32, depth=3, num_heads=2),
        tokenizers={"a": tok, "b": tok},
        heads={
            "a": dict(type="classification", num_classes=3),
            "b": dict(type="classification", num_classes=3),
        },
    )


def test_the_encoder_calls_each_block_so_its_hooks_fire() -> None:
    model = _tiny_model().eval()
    assert all(type(b) is PackedBlock for b in model.encoder.blocks)
    calls: list[int] = []
    for i, block in enumerate(model.encoder.blocks):
        block.register_forward_pre_hook(lambda module, args, i=i: calls.append(i))
    x = torch.randn(2, 3, 16, 16)
    out = model({"a": x, "b": x[:1]})
    assert calls == [0, 1, 2]  # one call per block for both inputs (packed into one stream)
    model.encoder.config.grad_checkpointing = True
    model.train()
    calls.clear()
    again = model({"a": x, "b": x[:1]})
    sum(o.sum() for o in again.values()).backward()
    assert calls == [0, 1, 2, 2, 1, 0]  # each block recomputed in the backward pass, through its __call__
    torch.testing.assert_close(again["a"], out["a"])
    # without a layout the block is timm's Block: same names, same numbers
    block = model.encoder.blocks[0].eval()
    seq = torch.randn(2, 5, 32)
    assert torch.equal(block(seq), Block.forward(block, seq))
    assert isinstance(block, Block) and list(block.state_dict())[:3] == [
        "norm1.weight",
        "norm1.bias",
        "attn.qkv.weight",
    ]


def test_the_wrap_policy_makes_each_block_a_unit_and_keeps_tokenizers_and_heads_in_the_root() -> None:
    model = _tiny_model()
    units = [name for name, m in model.named_modules() if component_wrap_policy(m, False, 0)]
    assert units == ["encoder.blocks.0", "encoder.blocks.1", "encoder.blocks.2"]
    assert all(component_wrap_policy(m, True, 0) for m in model.modules())  # torch looks into every module


def test_fsdp_has_one_unit_per_block(runs: Path) -> None:
    units = json.loads((runs / "units.json").read_text())
    assert len(units) == 1 + 2  # the root and the 2 blocks
    assert units[0] == "" and [u.replace("_fsdp_wrapped_module.", "") for u in units[1:]] == [
        "encoder.blocks.0",
        "encoder.blocks.1",
    ]


# -- the numbers ------------------------------------------------------------------------------------------------
def test_fsdp_matches_one_process_with_the_same_global_batch(runs: Path) -> None:
    one = load_checkpoint_file(str(runs / "one" / "epoch_2.pth"))
    fsdp = load_checkpoint_file(
        str(runs / "c" / "epoch_2.pth")
    )  # state_dict_cfg="full": one file, full tensors
    assert fsdp["meta"]["iter"] == one["meta"]["iter"] == 2 * (2 * 64) // 16
    assert set(fsdp["state_dict"]) == set(one["state_dict"])
    for key, value in one["state_dict"].items():
        # as in test_ddp: the key part of the qkv bias has a rounding-noise gradient that Adam scales to lr-size
        atol = 5e-5 if key.endswith("qkv.bias") else 2e-6
        torch.testing.assert_close(fsdp["state_dict"][key], value, rtol=1e-5, atol=atol, msg=key)
    a = json.loads((runs / "one" / "metrics.json").read_text())["last_val"]
    b = json.loads((runs / "c" / "metrics.json").read_text())["last_val"]
    assert {k for k in a if k.endswith("accuracy")} == {
        "image/accuracy",
        "image/top5_accuracy",
        "image2/accuracy",
        "image2/top5_accuracy",
    }
    for key in a:
        if key not in ("epoch", "iter", "data_time", "time"):
            assert abs(b[key] - a[key]) <= 1 / 64 + 1e-9, (
                key
            )  # all 129 test items evaluated, at most one differs


# -- sharded checkpoints --------------------------------------------------------------------------------------------
def test_sharded_checkpoints_are_folders_of_shards(runs: Path) -> None:
    folder = runs / "a" / "epoch_2.pth"
    assert is_sharded_checkpoint(folder) and not is_sharded_checkpoint(runs / "c" / "epoch_2.pth")
    assert sorted(p.name for p in folder.iterdir()) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
        SHARDED_STATE_FILE,
    ]
    assert (runs / "a" / "last_checkpoint").read_text() == "epoch_2.pth"
    assert not [p.name for p in (runs / "a").iterdir() if p.name.endswith((".partial", ".old"))]
    sharded = read_sharded_checkpoint(folder)  # one process, no FSDP
    full = load_checkpoint_file(str(runs / "c" / "epoch_2.pth"))
    assert sharded["meta"]["iter"] == 16 and set(sharded["state_dict"]) == set(full["state_dict"])
    for key, value in full["state_dict"].items():  # the same run, saved two ways
        assert torch.equal(sharded["state_dict"][key], value), key
    assert "polymodal_rng_state" in sharded and "message_hub" in sharded and "param_schedulers" in sharded


def test_a_sharded_checkpoint_resumes_exactly(runs: Path) -> None:
    straight = read_sharded_checkpoint(runs / "a" / "epoch_2.pth", optimizer=True)
    resumed = read_sharded_checkpoint(runs / "b" / "epoch_2.pth", optimizer=True)
    assert resumed["meta"]["iter"] == straight["meta"]["iter"] == 16
    for part in ("state_dict", "optimizer"):
        assert set(resumed[part]) == set(straight[part]) and straight[part]
        for key, value in straight[part].items():
            assert torch.equal(resumed[part][key], value), f"{part}: {key}"
    assert any(
        k.endswith(".exp_avg_sq") for k in straight["optimizer"]
    )  # Adam's moments were saved and restored
    # the final model of an FSDP run: full weights, from process 0
    final = polymodal.from_pretrained(runs / "b" / "pretrained")
    for key, value in final.state_dict().items():
        assert torch.equal(value, straight["state_dict"][key]), key


def test_a_sharded_checkpoint_loads_without_fsdp(runs: Path) -> None:
    trained = json.loads((runs / "a" / "metrics.json").read_text())["last_val"]
    metrics = evaluate_from_config(runs / "plain.py", runs / "a" / "epoch_2.pth", work_dir=runs / "eval")
    for key, value in metrics.items():
        assert abs(value - trained[key]) <= 1 / 64 + 1e-9, key
    with pytest.raises(
        ValueError, match=r"a sharded checkpoint \(FSDP, state_dict_cfg='sharded'\) resumes with"
    ):
        train_from_config(runs / "plain.py", work_dir=runs / "resume", resume=str(runs / "a" / "epoch_1.pth"))


# -- find_unused_parameters -------------------------------------------------------------------------------------
def _loader(mode: str = "round_robin", batch_size: int = 8, streams: dict | None = None) -> dict:
    streams = streams or {"a": {"source": "digits", "input": "a"}, "b": {"source": "digits", "input": "b"}}
    return {
        "batch_size": batch_size,
        "sampler": {"type": "MultiTaskSampler", "mode": mode},
        "batch_sampler": {"type": "MultiTaskBatchSampler", "drop_last": True},
        "dataset": {"type": "MultiTaskDataset", "streams": streams},
    }


def test_find_unused_parameters_is_needed_only_when_a_step_may_leave_parameters_unused() -> None:
    model = _tiny_model()
    assert find_unused_parameters_needed(model, _loader()) == (
        False,
        "every process's share of every step holds all 2 stream(s), which feed every input and head",
    )
    assert find_unused_parameters_needed(model, _loader("proportional")) == (
        True,
        "mode='proportional' mixes 2 streams, so a process's share of a step may lack one",
    )
    assert find_unused_parameters_needed(model, _loader("temperature"))[0] is True
    assert find_unused_parameters_needed(model, _loader(batch_size=1)) == (
        True,
        "round-robin steps of batch_size=1 items per process cannot give every process an item of each of the 2 "
        "streams",
    )
    one_stream = _loader("proportional", streams={"a": {"source": "digits", "input": "a"}})
    assert find_unused_parameters_needed(model, one_stream) == (
        True,
        "no stream feeds the input(s) ['b'], so their tokenizers get no gradient",
    )
    single = polymodal.build_model(
        encoder=dict(type="vit", embed_dim=32, depth=1, num_heads=2),
        tokenizers={"image": dict(type="image", patch_size=8, img_size=16)},
        heads={"image": dict(type="classification", num_classes=10)},
    )
    # one stream: every step holds it, whatever the mixing; its input defaults to the source's modality
    assert (
        find_unused_parameters_needed(
            single, _loader("proportional", streams={"image": {"source": "digits"}})
        )[0]
        is False
    )
    extra_head = polymodal.build_model(
        encoder=dict(type="vit", embed_dim=32, depth=1, num_heads=2),
        tokenizers={"a": dict(type="image", patch_size=8, img_size=16)},
        heads={
            "a": dict(type="classification", num_classes=3),
            "c": dict(type="classification", num_classes=3, modality="a"),
        },
    )
    assert find_unused_parameters_needed(
        extra_head, _loader(streams={"a": {"source": "digits", "input": "a"}})
    ) == (
        True,
        "no stream supervises the head(s) ['c'], so they get no loss",
    )
    both = {"a": {"source": "digits", "input": "a", "tasks": ["a", "c"]}}
    assert find_unused_parameters_needed(extra_head, _loader(streams=both))[0] is False
    token_budget = {**_loader(), "batch_sampler": {"type": "TokenBudgetBatchSampler", "max_tokens": 64}}
    assert find_unused_parameters_needed(model, token_budget)[0] is True
    assert find_unused_parameters_needed(torch.nn.Linear(2, 2), _loader())[0] is True


@pytest.fixture
def one_process_group(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Environment of a one-process ``--launcher pytorch`` job; the process group is destroyed after the test."""
    for key, value in _env(0, 1, _free_port()).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("POLYMODAL_BLOCK_PLUGINS", OTHER_PLUGINS)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_ddp_decides_find_unused_parameters_from_the_run(tmp_path: Path, one_process_group: None) -> None:
    config = image_config(tmp_path / "ddp.py", two_streams=True)
    decided = {}
    for name, options in {
        "round_robin": {},
        "proportional": {"train_dataloader.sampler.mode": "proportional"},
        "forced": {"model_wrapper_cfg.find_unused_parameters": True},
    }.items():
        cfg = load_config(config, work_dir=tmp_path / name, cfg_options=options, launcher="pytorch")
        runner = _build_runner(cfg)
        assert isinstance(runner.model, PolymodalDistributedDataParallel)
        decided[name] = runner.model.find_unused_parameters
    assert decided == {"round_robin": False, "proportional": True, "forced": True}
    log = next((tmp_path / "round_robin").glob("*/*.log")).read_text()
    assert (
        "DDP: find_unused_parameters=False: every process's share of every step holds all 2 stream(s)" in log
    )


def test_ddp_names_the_setting_when_a_parameter_gets_no_gradient(one_process_group: None) -> None:
    dist.init_process_group("gloo")
    model = PolymodalDistributedDataParallel(_tiny_model(), find_unused_parameters=False)
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    batch = {"inputs": {"a": torch.randn(2, 3, 16, 16)}, "data_samples": {"a": torch.tensor([0, 1])}}
    model.train_step(batch, optim)  # input "b" and its head are absent: their parameters get no gradient
    with pytest.raises(RuntimeError, match=r"model_wrapper_cfg\.find_unused_parameters=True"):
        model.train_step(batch, optim)


def test_the_config_can_force_find_unused_parameters() -> None:
    cfg = Config.fromfile(str(Path(polymodal.__file__).parent / "configs" / "_base_" / "default_runtime.py"))
    assert cfg.model_wrapper_cfg.find_unused_parameters == "auto"
    with pytest.raises(
        ValueError, match=r"find_unused_parameters: expected True, False or 'auto', got 'yes'"
    ):
        PolymodalDistributedDataParallel(torch.nn.Linear(2, 2), find_unused_parameters="yes")
