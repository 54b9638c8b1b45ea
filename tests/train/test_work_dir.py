"""A work dir belongs to one run at a time (an exclusive lock, which a killed run does not leave held), and its
``last_checkpoint`` names the checkpoint relative to it, so a copied work dir resumes from its own checkpoints."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from polymodal.cli import main
from polymodal.train import train_from_config
from polymodal.train.serialization import load_checkpoint_file
from polymodal.train.workdir import LOCK_NAME, WorkDirLockedError, latest_checkpoint, work_dir_lock

from .conftest import OTHER_PLUGINS, REPO, image_config, run_cli

# a training run that, once training starts, writes <work>/started and waits for <work>/go before going on
HOLDING_DRIVER = """
import sys, time
from pathlib import Path
from mmengine.hooks import Hook
from polymodal.train import train_from_config
from polymodal.train.registry import HOOKS

@HOOKS.register_module()
class WaitForGo(Hook):
    def before_train(self, runner):
        work = Path(runner.work_dir)
        (work / "started").write_text("")
        deadline = time.monotonic() + 120
        while not (work / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

hooks = [dict(type="RngStateHook"), dict(type="MetricsJsonHook"), dict(type="WaitForGo")]
train_from_config(sys.argv[1], work_dir=sys.argv[2], cfg_options={"custom_hooks": hooks})
"""


def _tiny(tmp_path: Path, epochs: int = 2) -> Path:
    return image_config(tmp_path / "tiny.py", max_epochs=epochs, num_train=32, num_test=16)


def test_a_second_run_on_a_work_dir_in_use_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    config, work = _tiny(tmp_path), tmp_path / "work"
    driver = tmp_path / "driver.py"
    driver.write_text(HOLDING_DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "POLYMODAL_BLOCK_PLUGINS": OTHER_PLUGINS}
    first = subprocess.Popen(
        [sys.executable, str(driver), str(config), str(work)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (work / "started").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()[0][-3000:]
            time.sleep(0.1)
        capsys.readouterr()
        assert main(["train", str(config), "--work-dir", str(work)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            f"polymodal: work dir {work} is in use by another training run (pid {first.pid} on "
        )
        assert "expected one run at a time per work dir" in err and str(driver) in err
        assert not list(work.glob("epoch_*.pth"))  # the refused run wrote nothing
    finally:
        (work / "go").write_text("")
        out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]
    assert sorted(p.name for p in work.glob("epoch_*.pth")) == ["epoch_1.pth", "epoch_2.pth"]
    assert (work / "last_checkpoint").read_text() == "epoch_2.pth"


def test_a_killed_run_leaves_no_lock_behind(tmp_path: Path) -> None:
    work = tmp_path / "work"
    script = (
        "import os, signal, sys\n"
        "from polymodal.train.workdir import work_dir_lock\n"
        "with work_dir_lock(sys.argv[1]):\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = run_cli("-c", script, str(work), cwd=REPO, python=[sys.executable])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (work / LOCK_NAME).read_text().startswith("pid ")  # the file stays; the lock went with the process
    with work_dir_lock(work):
        with pytest.raises(
            WorkDirLockedError, match=rf"in use by another training run \(pid {os.getpid()} on "
        ):
            with work_dir_lock(work):  # another open file description: refused even within one process
                pass
    with work_dir_lock(work):  # released at the end of the block
        pass


def test_a_copied_work_dir_resumes_from_its_own_checkpoint(tmp_path: Path, one_thread: None) -> None:
    original, copy = tmp_path / "original", tmp_path / "copy"
    train_from_config(_tiny(tmp_path, epochs=1), work_dir=original, save_pretrained=False)
    assert (original / "last_checkpoint").read_text() == "epoch_1.pth"
    shutil.copytree(original, copy)
    shutil.rmtree(original)  # resuming the copy must not need (or touch) the original
    assert latest_checkpoint(copy) == str(copy / "epoch_1.pth")
    proc = run_cli("train", str(_tiny(tmp_path, epochs=2)), "--work-dir", str(copy), "--resume", cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Auto resumed from the latest checkpoint {copy / 'epoch_1.pth'}" in proc.stdout + proc.stderr
    assert not original.exists()
    assert load_checkpoint_file(copy / "epoch_2.pth")["meta"]["epoch"] == 2
    assert (copy / "last_checkpoint").read_text() == "epoch_2.pth"


def test_latest_checkpoint_reads_relative_absolute_and_remote_pointers(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    assert latest_checkpoint(work) is None
    (work / "last_checkpoint").write_text("epoch_3.pth\n")
    assert latest_checkpoint(work) == str(work / "epoch_3.pth")
    (work / "last_checkpoint").write_text(
        str(tmp_path / "elsewhere" / "epoch_3.pth")
    )  # an older, absolute pointer
    assert latest_checkpoint(work) == str(tmp_path / "elsewhere" / "epoch_3.pth")
    (work / "epoch_3.pth").write_bytes(b"")  # ... in a copied work dir that has its own epoch_3.pth
    assert latest_checkpoint(work) == str(work / "epoch_3.pth")
    (work / "last_checkpoint").write_text("s3://bucket/run/epoch_3.pth")
    assert latest_checkpoint(work) == "s3://bucket/run/epoch_3.pth"
