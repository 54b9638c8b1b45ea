"""The example third-party plugin ``examples/polymodal-eeg``: installed, discovered, conformant, trainable.

The package is pip-installed (offline, ``--no-deps --no-build-isolation``) into a temp folder from a copy of its
source, and everything runs in fresh interpreters with that folder on ``PYTHONPATH``, exactly as for a user who ran
``pip install ./examples/polymodal-eeg``. It then trains for a few epochs next to a built-in modality (IMU) with
one tiny shared encoder on mmengine's Runner and must beat chance on both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "polymodal-eeg"

CONFIG = """
_base_ = [{runtime!r}, {schedule!r}, {data!r}]
tokenizers = dict(eeg="eeg", imu="imu")
streams = dict(
    eeg=dict(source=dict(type="eeg_rhythms", num_train=256, num_test=128)),
    imu=dict(source=dict(type="activities", num_train=256, num_test=128)),
)
model = dict(
    type="MultimodalModel",
    encoder=dict(type="vit", embed_dim=32, depth=2, num_heads=2),
    tokenizers=tokenizers,
    heads=dict(eeg=dict(type="classification", num_classes=4), imu=dict(type="classification", num_classes=6)),
)
train_dataloader = dict(batch_size=32, num_workers=0, dataset=dict(streams=streams, tokenizers=tokenizers))
val_dataloader = dict(batch_size=64, num_workers=0, dataset=dict(streams=streams, tokenizers=tokenizers))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=5, val_interval=5)
optim_wrapper = dict(optimizer=dict(lr=3e-3))
default_hooks = dict(logger=dict(interval=8), checkpoint=dict(interval=100))
"""

TRAIN = """
import json, sys
import polymodal
from polymodal.train import train_from_config
metrics = train_from_config(sys.argv[1], work_dir=sys.argv[2])
model = polymodal.from_pretrained(sys.argv[2] + "/pretrained", modalities=["eeg"])
print(json.dumps({"metrics": metrics, "reloaded": sorted(model.tokenizers), "type": model.config.tokenizers["eeg"].type}))
"""


@pytest.fixture(scope="module")
def site(example_plugin_site: Path) -> Path:
    entry_points = example_plugin_site / "polymodal_eeg-0.1.0.dist-info" / "entry_points.txt"
    assert entry_points.read_text().split() == ["[polymodal.plugins]", "eeg", "=", "polymodal_eeg"]
    return example_plugin_site


def run(site: Path, *args: str, cwd: Path | None = None, timeout: float = 300, **env_vars: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMODAL_")} | env_vars
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, f"{args} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def plugin_rows(out: str) -> dict[str, list[str]]:
    """``polymodal list plugins`` output -> {plugin: [name, status, distribution, version, components]}."""
    return {line.split()[0]: line.split(None, 4) for line in out.splitlines()[2:] if line.strip()}


def test_listed_by_the_cli(site: Path, tmp_path: Path) -> None:
    rows = plugin_rows(run(site, "-m", "polymodal.cli", "list", "plugins", cwd=tmp_path))
    assert rows["eeg"][1:4] == ["loaded", "polymodal-eeg", "0.1.0"]
    assert rows["eeg"][4].strip() == "eeg, eeg_rhythms"
    assert rows["imu"][1] == "loaded"
    info = run(site, "-m", "polymodal.cli", "info", "eeg", "--kind", "tokenizers", cwd=tmp_path)
    assert "polymodal_eeg.tokenizer.EegTokenizer" in info and "montage" in info
    table = run(site, "-m", "polymodal.cli", "list", "modalities", "eeg", "--markdown", cwd=tmp_path)
    assert table.splitlines()[2] == (
        "| eeg | `eeg` | epochs `[B, C, T]` in µV (+ `channel_mask [B, C]`) | `eeg_rhythms`: 76 |"
    )


def test_blocked_by_name(site: Path, tmp_path: Path) -> None:
    out = run(site, "-m", "polymodal.cli", "list", "plugins", cwd=tmp_path, POLYMODAL_BLOCK_PLUGINS="eeg")
    rows = plugin_rows(out)
    assert rows["eeg"][1:4] == ["blocked", "polymodal-eeg", "0.1.0"] and len(rows["eeg"]) == 4
    assert rows["imu"][1] == "loaded"


def test_own_tests_pass_against_the_installed_copy(site: Path, tmp_path: Path) -> None:
    tests = shutil.copytree(
        EXAMPLE / "tests", tmp_path / "tests", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = run(site, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests), cwd=tmp_path)
    summary = out.strip().splitlines()[-1]  # "15 passed, 1 warning in 20.1s"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed[1]) >= 10 and not re.search(r"failed|error", summary), out[-3000:]


def test_trains_alongside_a_builtin_and_beats_chance(site: Path, tmp_path: Path) -> None:
    base = ROOT / "polymodal" / "configs" / "_base_"
    config = tmp_path / "eeg_imu.py"
    config.write_text(
        CONFIG.format(
            runtime=str(base / "default_runtime.py"),
            schedule=str(base / "schedules" / "adamw.py"),
            data=str(base / "data" / "multitask.py"),
        )
    )
    out = run(site, "-c", textwrap.dedent(TRAIN), str(config), str(tmp_path / "work"), cwd=tmp_path)
    result = json.loads(out.strip().splitlines()[-1])
    metrics = result["metrics"]
    assert metrics["eeg/accuracy"] >= 0.9, metrics  # chance 1/4; 1.0 measured
    assert metrics["imu/accuracy"] >= 0.8, metrics  # chance 1/6; 0.99 measured
    assert result["reloaded"] == ["eeg"] and result["type"] == "eeg"


EVERYWHERE = """
import json, sys
from pathlib import Path
import numpy as np, pandas as pd
import polymodal
from polymodal.data import from_folder, from_table
from polymodal.demo import demo_streams, run_demo

root = Path(sys.argv[1])
source = polymodal.get("data source", "eeg_rhythms").from_config(num_train=8, num_test=4)
rows = []
for i, (x, y) in enumerate(source.splits()["train"]):
    path = root / "files" / f"class_{int(y)}" / f"{i}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, x.numpy())
    rows.append({"path": str(path), "label": f"class_{int(y)}"})
folder = from_folder(root / "files", "eeg")
table = from_table(pd.DataFrame(rows), "eeg", target="label")
(result,) = run_demo(root / "demo", preset="quick", modalities=["eeg"], epochs=1, log=lambda _: None)
print(json.dumps({
    "folder": [len(folder), folder.task.kind, folder.sample(0)["values"].shape[0]],
    "table": [len(table), table.task.num_classes],
    "demo_streams": "eeg" in demo_streams(),
    "demo_rows": [r.modality for r in result.rows],
}))
"""


def test_a_thirteenth_modality_needs_no_edit_outside_its_package(site: Path, tmp_path: Path) -> None:
    """The installed example (its own package only: tokenizer with file_extensions/read_file, data source) is in
    the demo, from_folder/from_table and the registry-driven contract tests, with no edit of polymodal."""
    out = run(site, "-c", textwrap.dedent(EVERYWHERE), str(tmp_path), cwd=tmp_path)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["folder"] == [8, "classification", 19] and result["table"][0] == 8
    assert result["demo_streams"] and result["demo_rows"] == ["eeg"]
    contract = run(
        site,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(ROOT / "tests" / "test_contract.py"),
        "-k",
        "eeg",
        cwd=ROOT,
    )
    assert re.search(r"\b2 passed\b", contract.strip().splitlines()[-1]), contract[-2000:]
