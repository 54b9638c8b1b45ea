"""Fixtures of the training tests: toy components, one intra-op thread, small config files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import polymodal
from polymodal.registry.tables import unregister

from .toy import TOY_CLASSES

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "polymodal" / "configs"
OTHER_PLUGINS = "text,video,audio,point_cloud,infrared,xray,hyperspectral,imu,tabular,graph,time_series"
SMALL_ENCODER = {"type": "vit", "embed_dim": 32, "depth": 2, "num_heads": 2}


@pytest.fixture(scope="module")
def toy_components() -> Iterator[None]:
    """Register the toy tokenizers and data sources for the module, unregister them after."""
    for cls in TOY_CLASSES:
        polymodal.register(cls)
    yield
    for cls in TOY_CLASSES:
        unregister(cls.kind, cls.name)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run with one intra-op thread (two test workers share two cores; oversubscription is 10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def image_config(
    path: Path,
    *,
    max_epochs: int = 3,
    batch_size: int = 16,
    dropout: float = 0.0,
    num_train: int = 192,
    num_test: int = 96,
    two_streams: bool = False,
    extra: str = "",
) -> Path:
    """A tiny digits config (4 tokens of 8 x 8 patches, a 2-block encoder of width 32), as a file."""
    streams = "dict(image=dict(source=source))"
    tokenizers = "dict(image=tok)"
    heads = "dict(image=dict(type='classification', num_classes=10, dropout=dropout))"
    if two_streams:
        streams = "dict(image=dict(source=source), image2=dict(source=source2, input='image2'))"
        tokenizers = "dict(image=tok, image2=tok)"
        heads = (
            "dict(image=dict(type='classification', num_classes=10, dropout=dropout),"
            " image2=dict(type='classification', num_classes=10, dropout=dropout, loss_weight=0.5))"
        )
    path.write_text(
        f"""
_base_ = ['{CONFIGS}/_base_/default_runtime.py', '{CONFIGS}/_base_/schedules/adamw.py',
          '{CONFIGS}/_base_/data/multitask.py']
dropout = {dropout}
source = dict(type='digits', image_size=16, num_train={num_train}, num_test={num_test}, seed=0)
source2 = dict(type='digits', image_size=16, num_train={num_train}, num_test={num_test}, seed=1)
tok = dict(type='image', patch_size=8, img_size=16)
tokenizers = {tokenizers}
streams = {streams}
model = dict(type='MultimodalModel', encoder={SMALL_ENCODER!r}, tokenizers=tokenizers, heads={heads})
train_dataloader = dict(batch_size={batch_size}, num_workers=0,
                        dataset=dict(streams=streams, tokenizers=tokenizers))
val_dataloader = dict(batch_size=32, num_workers=0, dataset=dict(streams=streams, tokenizers=tokenizers))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs={max_epochs})
default_hooks = dict(logger=dict(interval=4), checkpoint=dict(interval=1, max_keep_ckpts=2))
{extra}
"""
    )
    return path


def run_cli(
    *args: str, cwd: Path, timeout: float = 180, python: list[str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m polymodal.cli ...`` (or ``python`` + args) with one thread per process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env["POLYMODAL_BLOCK_PLUGINS"] = (
        OTHER_PLUGINS  # these runs use the image plugin only; skip importing the rest
    )
    cmd = (python or [sys.executable, "-m", "polymodal.cli"]) + list(args)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
