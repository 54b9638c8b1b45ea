"""DDP through torchrun and mmengine's launcher on CPU (gloo, 2 processes) matches one process with the same
global batch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from polymodal.train import train_from_config
from polymodal.train.serialization import load_checkpoint_file

from .conftest import REPO, image_config, run_cli


def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path, one_thread: None) -> None:
    # two streams (two inputs, two heads, loss weights 1 and 0.5), round-robin: 8 + 8 items per global step
    config = image_config(tmp_path / "ddp.py", max_epochs=2, two_streams=True, num_train=128, num_test=64)
    work_2 = tmp_path / "two"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = run_cli(
        "-m",
        "polymodal.cli",
        "train",
        str(config),
        "--launcher",
        "pytorch",
        "--work-dir",
        str(work_2),
        "--cfg-options",
        "train_dataloader.batch_size=8",
        cwd=REPO,
        python=torchrun,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    log = proc.stdout + proc.stderr
    assert "Distributed training is not used" not in log
    work_1 = tmp_path / "one"
    one = train_from_config(config, work_dir=work_1, cfg_options={"train_dataloader.batch_size": 16})

    a = load_checkpoint_file(str(work_1 / "epoch_2.pth"))
    b = load_checkpoint_file(str(work_2 / "epoch_2.pth"))
    assert a["meta"]["iter"] == b["meta"]["iter"] == 2 * 128 * 2 // 16  # same number of global steps
    assert set(a["state_dict"]) == set(b["state_dict"])
    for key, value in a["state_dict"].items():
        # The key part of the qkv bias cancels in the softmax: its gradient is rounding noise, which Adam
        # normalises into lr-sized steps; every other weight agrees to float32 rounding.
        atol = 5e-5 if key.endswith("qkv.bias") else 2e-6
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-5, atol=atol, msg=key)
    two = json.loads((work_2 / "metrics.json").read_text())["last_val"]
    assert set(one) == {
        "image/accuracy",
        "image/macro_f1",
        "image/top5_accuracy",  # 10 classes
        "image2/accuracy",
        "image2/macro_f1",
        "image2/top5_accuracy",
    }
    for key, value in one.items():
        assert abs(two[key] - value) <= 1 / 64 + 1e-9, key  # at most one of 64 test images changes its class
