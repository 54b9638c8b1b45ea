"""Checkpoints that lose nothing: train straight vs. SIGKILL part-way (twice, once inside a checkpoint save) and
resume -> identical weights, optimiser state and metrics; `polymodal eval` reproduces the reported metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import polymodal
from polymodal.cli import main
from polymodal.train.serialization import load_checkpoint_file

from .conftest import REPO, image_config, run_cli

# Kills itself with SIGKILL (no clean exit, no finally blocks) after a given training iteration, or inside the
# atomic rename of a given epoch's checkpoint (the temporary file is complete, the rename has not happened).
DRIVER = """
import os, signal, sys
from mmengine.hooks import Hook
from polymodal.train import train_from_config
from polymodal.train.registry import HOOKS

mode, config, work_dir, at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

@HOOKS.register_module()
class SigkillAfterIter(Hook):
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter == at:
            os.kill(os.getpid(), signal.SIGKILL)

hooks = [dict(type="RngStateHook"), dict(type="MetricsJsonHook")]
if mode == "kill_after_iter":
    hooks.append(dict(type="SigkillAfterIter"))
else:
    real_replace = os.replace
    def replace(src, dst):
        if str(dst).endswith(f"epoch_{at}.pth"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    os.replace = replace
train_from_config(config, work_dir=work_dir, resume=mode == "resume_kill_in_save", cfg_options={"custom_hooks": hooks})
"""

MAX_EPOCHS = 4  # 192 images / 16 = 12 iterations per epoch


def _straight(root: Path) -> tuple[Path, Path, str]:
    """The uninterrupted run, through the CLI."""
    config = image_config(root / "digits.py", max_epochs=MAX_EPOCHS, dropout=0.2)
    work = root / "straight"
    proc = run_cli("train", str(config), "--work-dir", str(work), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return config, work, proc.stdout + proc.stderr


def _state(path: Path) -> dict:
    return load_checkpoint_file(str(path))


def test_sigkill_and_resume_give_identical_weights_and_metrics_and_eval_reproduces_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    # (one test, not three: under pytest-xdist a shared module fixture would run the straight run per worker)
    config, work_a, log = _straight(tmp_path)
    assert "eta:" in log and "final validation metrics:" in log  # progress with ETA through mmengine's logger
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    work_b = tmp_path / "killed"
    py = [__import__("sys").executable, str(driver)]

    # 1. killed with SIGKILL after iteration 18 (epoch 2): epoch_1.pth is the last checkpoint
    proc = run_cli("kill_after_iter", str(config), str(work_b), "17", cwd=REPO, python=py)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert (work_b / "last_checkpoint").read_text() == "epoch_1.pth"  # relative to the work dir
    assert not (work_b / "epoch_2.pth").exists()

    # 2. resumed, then killed inside the atomic save of epoch 3: the pointer still names a complete epoch_2.pth
    proc = run_cli("resume_kill_in_save", str(config), str(work_b), "3", cwd=REPO, python=py)
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert (work_b / "last_checkpoint").read_text() == "epoch_2.pth"
    assert not (work_b / "epoch_3.pth").exists()
    leftovers = list(work_b.glob(".epoch_3.pth.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # written in full, never renamed
    assert _state(work_b / "epoch_2.pth")["meta"]["epoch"] == 2

    # 3. resumed to the end
    proc = run_cli("train", str(config), "--work-dir", str(work_b), "--resume", cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Auto resumed from the latest checkpoint" in proc.stdout + proc.stderr

    a, b = _state(work_a / f"epoch_{MAX_EPOCHS}.pth"), _state(work_b / f"epoch_{MAX_EPOCHS}.pth")
    assert a["meta"]["iter"] == b["meta"]["iter"] == 12 * MAX_EPOCHS
    assert list(a["state_dict"]) == list(b["state_dict"])
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    for pid, s in a["optimizer"]["state"].items():
        for name, value in s.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["optimizer"]["state"][pid][name])), (
                name
            )
    metrics_a = json.loads((work_a / "metrics.json").read_text())
    metrics_b = json.loads((work_b / "metrics.json").read_text())
    assert metrics_a["val"] == metrics_b["val"]  # the whole history, epochs 1..4
    assert [e["epoch"] for e in metrics_a["val"]] == [1, 2, 3, 4]
    assert metrics_a["last_val"]["image/accuracy"] > 0.3  # chance is 0.1
    # max_keep_ckpts=2: old checkpoints are deleted (after the new one is in place)
    assert sorted(p.name for p in work_a.glob("epoch_*.pth")) == ["epoch_3.pth", "epoch_4.pth"]

    _eval_reproduces_the_reported_metrics(config, work_a, capsys)
    _pretrained_export_matches_the_checkpoint(work_a)


def _eval_reproduces_the_reported_metrics(
    config: Path, work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reported = json.loads((work / "metrics.json").read_text())["last_val"]
    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                str(config),
                "--checkpoint",
                str(work / f"epoch_{MAX_EPOCHS}.pth"),
                "--work-dir",
                str(work),
                "--json",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    printed = json.loads(out[out.rindex("\n{\n") : out.rindex("\n}") + 2])  # the --json block at the end
    assert set(printed) == {"image/accuracy", "image/macro_f1", "image/top5_accuracy"}  # 10 classes
    for key, value in printed.items():
        assert value == pytest.approx(reported[key], abs=1e-9), key
    saved = json.loads((work / "metrics.json").read_text())
    assert (
        saved["test"] == printed and saved["last_val"] == reported
    )  # eval adds to metrics.json, keeps history


def _pretrained_export_matches_the_checkpoint(work: Path) -> None:
    model = polymodal.from_pretrained(work / "pretrained")
    ckpt = _state(work / f"epoch_{MAX_EPOCHS}.pth")["state_dict"]
    state = model.state_dict()
    assert set(state) == set(ckpt)
    assert all(torch.equal(state[k], ckpt[k]) for k in state)
