"""Joint training of several modalities in one run: every step holds all streams and goes through the encoder in
one call; classification, token classification, regression, a fused pair and a contrastive pair, per-task metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mmengine.hooks import Hook

from polymodal.train import train_from_config
from polymodal.train.registry import HOOKS

from .conftest import CONFIGS, SMALL_ENCODER


@HOOKS.register_module()
class RecordStepInputs(Hook):
    """Remembers the input keys of every training batch and how often the encoder ran per step."""

    steps: list[tuple[list[str], int]] = []  # noqa: RUF012 - shared with the test on purpose

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        self._calls = 0

        def count(module: Any, args: Any) -> None:
            self._calls += 1

        self._handle = model.encoder.register_forward_pre_hook(count)
        self._keys = sorted(data_batch["inputs"])

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        self._handle.remove()
        RecordStepInputs.steps.append((self._keys, self._calls))


CONFIG = f"""
_base_ = ['{CONFIGS}/_base_/default_runtime.py', '{CONFIGS}/_base_/schedules/adamw.py',
          '{CONFIGS}/_base_/data/multitask.py']
digits = dict(type='digits', image_size=16, num_train=160, num_test=80)
image = dict(type='image', patch_size=8, img_size=16)
tokenizers = dict(image=image, toy_seq='toy_seq', toy_vec='toy_vec', pimage=image, pseq='toy_seq')
streams = dict(
    image=dict(source=digits),
    tokens=dict(source='toy_seq_tokens', input='toy_seq', tasks=['toy_seq']),
    vec=dict(source='toy_vec_linear'),
    pairs=dict(sources=dict(pimage=digits, pseq='toy_seq_classes'), pair_by='target',
               tasks=['pair_cls', 'pair_emb']),
)
model = dict(
    type='MultimodalModel',
    encoder={SMALL_ENCODER!r},
    tokenizers=tokenizers,
    fusion=dict(pfused=['pimage', 'pseq']),
    heads=dict(
        image=dict(type='classification', num_classes=10),
        toy_seq=dict(type='token_classification', num_classes=2),
        toy_vec=dict(type='regression', out_dim=1),
        pair_cls=dict(type='classification', num_classes=10, modality='pfused'),
        pair_emb=dict(type='embedding', modality='pimage', pair='pseq', out_dim=16, positives='label',
                      loss_weight=0.5),
    ),
)
train_dataloader = dict(batch_size=32, num_workers=2, dataset=dict(streams=streams, tokenizers=tokenizers))
val_dataloader = dict(batch_size=40, num_workers=0, dataset=dict(streams=streams, tokenizers=tokenizers))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=4, val_interval=4)
optim_wrapper = dict(optimizer=dict(lr=3e-3))
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=4))
custom_hooks = [dict(type='RngStateHook'), dict(type='MetricsJsonHook'), dict(type='RecordStepInputs')]
"""


def test_four_streams_three_modalities_train_together(
    tmp_path: Path, toy_components: None, one_thread: None
) -> None:
    RecordStepInputs.steps.clear()
    config = tmp_path / "multi.py"
    config.write_text(CONFIG)
    metrics = train_from_config(config, work_dir=tmp_path / "work")

    # every step: all five inputs (round-robin, 8 items per stream), one encoder call; workers collated them
    assert len(RecordStepInputs.steps) == 4 * 20  # 4 epochs; 160 items per stream, 8 per step
    for keys, calls in RecordStepInputs.steps:
        assert keys == ["image", "pimage", "pseq", "toy_seq", "toy_vec"]
        assert calls == 1
    assert set(metrics) == {
        "image/accuracy",
        "image/macro_f1",
        "image/top5_accuracy",  # 10 classes
        "toy_seq/accuracy",
        "toy_seq/macro_f1",
        "toy_vec/mse",
        "toy_vec/rmse",
        "toy_vec/mae",
        "pair_cls/accuracy",
        "pair_cls/macro_f1",
        "pair_cls/top5_accuracy",
        "pair_emb/recall_at_1",
    }
    # learned beyond the baselines of the sources (chance 0.1 for digits, 0.5 per token, variance 2.31)
    assert metrics["image/accuracy"] > 0.2
    assert metrics["toy_seq/accuracy"] > 0.8
    assert metrics["toy_vec/mse"] < 2.0
    assert metrics["pair_cls/accuracy"] > 0.2  # the level of the sequence in the fused pair gives the class
    assert metrics["pair_emb/recall_at_1"] > 0.15
    saved = json.loads((tmp_path / "work" / "metrics.json").read_text())
    assert saved["last_val"]["epoch"] == 4
    assert saved["last_val"]["toy_vec/mse"] == pytest.approx(metrics["toy_vec/mse"])
