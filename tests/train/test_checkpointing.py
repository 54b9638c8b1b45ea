"""weights_only loading of mmengine checkpoints through an exact allow-list; atomic files; RNG state round trip."""

from __future__ import annotations

import os
import pickle
import random
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from polymodal.model.checkpoint import atomic_write
from polymodal.train.hooks import AtomicLocalBackend, rng_state, set_rng_state
from polymodal.train.serialization import load_checkpoint_file, safe_checkpoint_globals


def _mmengine_checkpoint(path: Path) -> None:
    hub = MessageHub.get_instance(f"test-{uuid.uuid4().hex}")
    for v in (3.0, 2.0, 1.0):
        hub.update_scalar("train/loss", v)
    hub.update_info("best_score", np.float64(0.75))
    hub.update_info("keep_ckpt_ids", [1, 2])
    checkpoint = {
        "meta": {"epoch": 2, "iter": 20, "seed": 0},
        "state_dict": {"w": torch.ones(2)},
        "message_hub": hub.state_dict(),
        "optimizer": {
            "state": {0: {"step": torch.tensor(3.0)}},
            "param_groups": [{"lr": 0.1, "params": [0]}],
        },
    }
    torch.save(checkpoint, path)


def test_mmengine_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "epoch_2.pth"
    _mmengine_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        torch.load(path)  # torch >= 2.6 default: weights_only=True, as mmengine 0.10.7 calls it
    found = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    assert found == {
        "mmengine.logging.history_buffer.HistoryBuffer",
        "builtins.getattr",  # HistoryBuffer pickles its statistics methods as getattr(HistoryBuffer, "mean")
        "numpy.ndarray",
        "numpy.dtype",
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
    } or found <= {  # numpy 1 names
        "mmengine.logging.history_buffer.HistoryBuffer",
        "builtins.getattr",
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
    }
    before = set(torch.serialization.get_safe_globals())
    ckpt = load_checkpoint_file(str(path))
    assert set(torch.serialization.get_safe_globals()) == before  # the allow-list applies only inside the load
    buffer = ckpt["message_hub"]["log_scalars"]["train/loss"]
    assert (
        isinstance(buffer, HistoryBuffer) and buffer.mean() == pytest.approx(2.0) and buffer.current() == 1.0
    )
    assert ckpt["message_hub"]["runtime_info"]["best_score"] == 0.75
    assert ckpt["meta"]["epoch"] == 2 and torch.equal(ckpt["state_dict"]["w"], torch.ones(2))


class _RunsCode:
    def __reduce__(self):  # what a malicious checkpoint does
        return (os.system, ("echo pwned",))


class _GetsAnAttribute:
    def __reduce__(self):  # getattr is allowed only for HistoryBuffer's four statistics methods
        return (getattr, (HistoryBuffer, "__init__"))


@pytest.mark.parametrize("payload", [_RunsCode(), _GetsAnAttribute()])
def test_the_allow_list_refuses_anything_else(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "bad.pth"
    torch.save({"meta": {}, "x": payload}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint_file(str(path))
    with safe_checkpoint_globals(), pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "epoch_1.pth"
    target.write_bytes(b"old complete checkpoint")

    def half_then_crash(tmp: str) -> None:
        Path(tmp).write_bytes(b"new but trunc")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_crash)
    assert target.read_bytes() == b"old complete checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1.pth"]  # no temporary file left
    AtomicLocalBackend().put(b"new", target)
    assert target.read_bytes() == b"new"


def test_rng_state_round_trip() -> None:
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(2), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(2), random.random())
    assert (
        torch.equal(expected[0], again[0])
        and np.array_equal(expected[1], again[1])
        and expected[2] == again[2]
    )
    path_state = pickle.loads(pickle.dumps(state))
    assert set(path_state) >= {"torch", "numpy", "python"}
