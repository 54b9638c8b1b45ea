"""Shared fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

EXAMPLE_PLUGIN = Path(__file__).resolve().parents[1] / "examples" / "polymodal-eeg"


def pytest_configure(config: pytest.Config) -> None:
    # `pytest -n N` on N cores: one thread per worker (and per subprocess it starts). torch's default of one
    # thread per core oversubscribes the cores, and the many small ops of these tests then run several times slower.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``examples/polymodal-eeg`` pip-installed (offline, without dependencies) into a folder for ``PYTHONPATH``:
    what ``pip install ./examples/polymodal-eeg`` installs, entry point included, leaving the environment alone."""
    src = tmp_path_factory.mktemp("eeg_src") / "polymodal-eeg"  # a copy: pip builds in the source tree
    shutil.copytree(
        EXAMPLE_PLUGIN, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*")
    )
    target = tmp_path_factory.mktemp("eeg_site")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    out = subprocess.run([*pip, "--target", str(target), str(src)], capture_output=True, text=True)
    assert out.returncode == 0, f"pip install {src} failed:\n{out.stdout}\n{out.stderr}"
    return target
