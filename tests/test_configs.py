"""The shipped configs (``polymodal::NAME``) and the rules config files and ``--cfg-options`` are read by
(:mod:`polymodal.configs`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config

from polymodal.configs import (
    CONFIG_DIR,
    ConfigError,
    ConfigNotFoundError,
    check_overrides,
    config_summary,
    follow_max_epochs,
    list_configs,
    resolve_config,
    shipped_bases,
)
from polymodal.train import load_config

SHIPPED = ["image_digits.py", "multimodal_all.py", "multimodal_small.py", "multimodal_small_fsdp.py"]


def test_the_shipped_configs_live_in_the_package() -> None:
    assert CONFIG_DIR == Path(__file__).resolve().parents[1] / "polymodal" / "configs"
    assert list_configs() == SHIPPED
    assert list_configs("multimodal_small*") == ["multimodal_small.py", "multimodal_small_fsdp.py"]
    assert list_configs("polymodal::image_*") == ["image_digits.py"]
    assert config_summary(CONFIG_DIR / "multimodal_small_fsdp.py") == (
        "multimodal_small sharded with FSDP through mmengine's FlexibleRunner (GPUs, NCCL), bf16 autocast:"
    )


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_reads_with_its_bases(name: str) -> None:
    """Each one resolves by name, reads with its relative ``_base_`` files, and names a model and a schedule."""
    cfg = load_config(f"polymodal::{name}")
    assert Path(cfg.filename) == CONFIG_DIR / name
    assert cfg.model.type == "MultimodalModel"
    assert cfg.default_scope == "polymodal"  # from _base_/default_runtime.py
    assert cfg.train_cfg.max_epochs == cfg.param_scheduler[-1].end
    assert cfg.work_dir == str(Path("work_dirs") / name.removesuffix(".py"))


def test_resolve_config() -> None:
    assert resolve_config("polymodal::image_digits.py") == CONFIG_DIR / "image_digits.py"
    assert resolve_config("polymodal::image_digits") == CONFIG_DIR / "image_digits.py"
    assert (
        resolve_config("polymodal::_base_/default_runtime.py") == CONFIG_DIR / "_base_" / "default_runtime.py"
    )
    with pytest.raises(ConfigNotFoundError, match=r"^unknown config 'polymodal::image_digit'; did you mean "):
        resolve_config("polymodal::image_digit")
    with pytest.raises(ConfigNotFoundError, match=r"^unknown config 'polymodal::../pyproject.toml'; shipped"):
        resolve_config("polymodal::../pyproject.toml")  # nothing outside the folder
    with pytest.raises(ConfigNotFoundError, match=r"^unknown config 'polymodal::__init__.py'"):
        resolve_config("polymodal::__init__.py")
    with pytest.raises(ConfigNotFoundError, match="is a folder; expected a config file"):
        resolve_config(CONFIG_DIR)
    with pytest.raises(ConfigNotFoundError) as err:
        resolve_config("nope.py")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ConfigError)


def test_a_config_of_ones_own_inherits_shipped_parts(tmp_path: Path) -> None:
    mine = tmp_path / "mine.py"
    mine.write_text(
        '_base_ = ["polymodal::_base_/default_runtime.py", "polymodal::_base_/schedules/adamw.py"]\n'
        "model = dict(type='MultimodalModel')\n"
        "optim_wrapper = dict(optimizer=dict(lr=5e-4))\n"
    )
    cfg = load_config(mine)
    assert cfg.default_scope == "polymodal"
    assert cfg.optim_wrapper.optimizer.lr == 5e-4 and cfg.optim_wrapper.optimizer.type == "AdamW"
    original = Config.__dict__["_get_cfg_path"]
    with shipped_bases():
        assert Config.__dict__["_get_cfg_path"] is not original
    assert Config.__dict__["_get_cfg_path"] is original  # mmengine's own again outside load_config
    with pytest.raises(AssertionError, match="mmengine does not support to load polymodal config"):
        Config.fromfile(str(mine))  # what mmengine alone says


CONFIG = {
    "train_cfg": {"by_epoch": True, "max_epochs": 10, "val_interval": 1},
    "optim_wrapper": {"optimizer": {"type": "AdamW", "lr": 1e-3}, "clip_grad": {"max_norm": 1.0}},
    "param_scheduler": [{"type": "LinearLR", "end": 1}, {"type": "CosineAnnealingLR", "end": 10}],
    "model": {"encoder": {"type": "vit", "embed_dim": 64}},
    "randomness": {"seed": 0, "deterministic": False},
}


@pytest.mark.parametrize(
    "options",
    [
        {"train_cfg.max_epochs": 2},
        {"train_cfg.val_begin": 2},  # a new key, not close to an existing one
        {"optim_wrapper.optimizer.lr": 5e-4},
        {"model.encoder.drop_path_rate": 0.1},
        {"param_scheduler.1.eta_min": 1e-6},
        {"param_scheduler.5.end": 3},  # past the list: mmengine says what it says
        {"randomness.deterministic": True},
        {"optim_wrapper.clip_grad": None},
        {"load_from": "work/epoch_1.pth"},
    ],
)
def test_overrides_that_pass(options: dict) -> None:
    check_overrides(CONFIG, options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"train_cfg.max_epoch": 2},
            "--cfg-options train_cfg.max_epoch=2: the config has no 'train_cfg.max_epoch'; did you mean "
            "'train_cfg.max_epochs'? (keys of 'train_cfg': by_epoch, max_epochs, val_interval)",
        ),
        (
            {"optim_wrapper.optimiser.lr": 0.1},
            "--cfg-options optim_wrapper.optimiser.lr=0.1: the config has no 'optim_wrapper.optimiser'; did you mean "
            "'optim_wrapper.optimizer.lr'? (keys of 'optim_wrapper': clip_grad, optimizer)",
        ),
        (
            {"model.encoder.embed_dims": 32},
            "--cfg-options model.encoder.embed_dims=32: the config has no 'model.encoder.embed_dims'; did you mean "
            "'model.encoder.embed_dim'? (keys of 'model.encoder': embed_dim, type)",
        ),
        (
            {"train_cfg.max_epochs": "abc"},
            "--cfg-options train_cfg.max_epochs=abc: expected an integer (the config has 10), got 'abc'",
        ),
        (
            {"optim_wrapper.optimizer.lr": "fast"},
            "--cfg-options optim_wrapper.optimizer.lr=fast: expected a number (the config has 0.001), got 'fast'",
        ),
        (
            {"randomness.deterministic": "yes"},
            "--cfg-options randomness.deterministic=yes: expected True or False (the config has False), got 'yes'",
        ),
    ],
)
def test_overrides_that_are_refused(options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_overrides(CONFIG, options)
    assert str(err.value) == message


def test_follow_max_epochs() -> None:
    schedule = [
        {"type": "LinearLR", "by_epoch": True, "begin": 0, "end": 1},
        {"type": "CosineAnnealingLR", "by_epoch": True, "begin": 1, "end": 10, "T_max": 9, "eta_min": 1e-5},
        {"type": "ConstantLR", "by_epoch": False, "begin": 0, "end": 10},  # iterations: not epochs
        {"type": "CosineAnnealingLR", "begin": 0, "end": 10, "T_max": 10},  # by_epoch by default; T_max = old
        {"type": "PolyLR", "begin": 0, "end": 10, "T_max": 6},  # a T_max of its own choosing: kept
    ]
    out, changes = follow_max_epochs(schedule, 10, 4)
    assert out == [
        {"type": "LinearLR", "by_epoch": True, "begin": 0, "end": 1},
        {"type": "CosineAnnealingLR", "by_epoch": True, "begin": 1, "end": 4, "T_max": 3, "eta_min": 1e-5},
        {"type": "ConstantLR", "by_epoch": False, "begin": 0, "end": 10},
        {"type": "CosineAnnealingLR", "begin": 0, "end": 4, "T_max": 4},
        {"type": "PolyLR", "begin": 0, "end": 4, "T_max": 6},
    ]
    assert changes[0] == "CosineAnnealingLR: end 10 -> 4, T_max 9 -> 3"
    assert schedule[1]["end"] == 10  # the input is left as it was
    longer, _ = follow_max_epochs(schedule[:2], 10, 20)
    assert (longer[1]["end"], longer[1]["T_max"]) == (20, 19)
    one, changes = follow_max_epochs(schedule[:2], 10, 1)
    assert [s["type"] for s in one] == ["LinearLR"]
    assert changes == ["CosineAnnealingLR (epochs 1-10) dropped: training now ends at epoch 1"]
    single, _ = follow_max_epochs({"type": "CosineAnnealingLR", "end": 10}, 10, 5)
    assert single == {"type": "CosineAnnealingLR", "end": 5}
