"""polymodal.fit's options and defaults: regression targets standardised by the head, metrics logged as evaluated,
threads, quiet runs, which checkpoints are kept, a time budget, how joint runs mix and pick their best epoch, and
the work-dir lock."""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mmengine.config import Config
from torch.utils.data import Dataset

import polymodal
from polymodal.data import ArrayDataset, stratified_split
from polymodal.train.fit import KNOWN_MMENGINE_WARNINGS, _KnownWarnings
from polymodal.train.hooks import MeanScoreHook, normalised_score
from polymodal.train.multitask import MultiTaskBatchSampler, MultiTaskSampler
from polymodal.train.registry import LOG_PROCESSORS
from polymodal.train.runner import SMOOTHED_LOG_KEYS, PolymodalLogProcessor
from polymodal.train.workdir import WorkDirLockedError, work_dir_lock

from .conftest import CONFIGS, SMALL_ENCODER


def _table(n: int, seed: int = 0, scale: float = 1.0, offset: float = 0.0) -> ArrayDataset:
    """``n`` rows of 3 features; the target ``offset + scale * tanh(x0 - x1 / 2)`` (regression)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    return ArrayDataset("tabular", x, offset + scale * np.tanh(x[:, 0] - 0.5 * x[:, 1]))


def _labels(n: int, seed: int = 0) -> ArrayDataset:
    """``n`` rows of 3 features; the class is the sign of the first one."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    return ArrayDataset("tabular", x, (x[:, 0] > 0).astype(np.int64))


def _model(data: ArrayDataset, task: str | None = None, **head: Any) -> polymodal.MultimodalModel:
    torch.manual_seed(0)
    task = task or data.modality
    config = {**data.head_config(), **head}
    if task != data.modality:
        config["modality"] = data.modality
    return polymodal.build_model(
        encoder=SMALL_ENCODER, tokenizers={data.modality: data.tokenizer_config}, heads={task: config}
    )


class Recording(Dataset):
    """A dataset that counts its reads and records torch's thread count while it is read."""

    def __init__(self, data: ArrayDataset) -> None:
        self.data = data
        self.modality = data.modality
        self.tokenizer_config = data.tokenizer_config
        self.targets = data.targets
        self.reads = 0
        self.threads: set[int] = set()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Any:
        self.reads += 1
        self.threads.add(torch.get_num_threads())
        return self.data[index]

    def head_config(self) -> dict[str, Any]:
        return self.data.head_config()


# -- regression heads standardise their targets ---------------------------------------------------------------------
def test_standardised_targets_reach_a_much_lower_rmse_than_raw_ones_on_the_same_budget() -> None:
    data = _table(256, offset=1000.0, scale=300.0)
    train, val = stratified_split(data, 0.25, seed=0)
    rmse = {}
    for name, stats in (("standardised", {}), ("raw", {"target_mean": [0.0], "target_std": [1.0]})):
        model = _model(train, **stats)
        result = polymodal.fit(model, train, val, epochs=6, lr=3e-3, summary=False, quiet=True, keep="none")
        rmse[name] = result.metrics["tabular/rmse"]
        assert result.metrics["tabular/rmse"] == pytest.approx(result.metrics["tabular/mse"] ** 0.5, rel=1e-5)
    spread = float(val.targets.std(unbiased=False))  # ~ 200: what predicting the mean would give
    assert rmse["standardised"] < 0.35 * spread  # learned the function (measured: 41 against a spread of 197)
    assert rmse["raw"] > 3 * spread  # the raw head is still far from the targets' level (measured: 1027)
    assert rmse["standardised"] < rmse["raw"] / 10


def test_fit_fills_the_statistics_from_the_training_targets_and_predicts_in_their_units(
    tmp_path: Path,
) -> None:
    data = _table(64, offset=50.0, scale=10.0)
    train, val = stratified_split(data, 0.25, seed=0)
    torch.manual_seed(0)
    model = polymodal.build_model(
        encoder=SMALL_ENCODER,
        tokenizers={"tabular": data.tokenizer_config},
        heads={"tabular": {"type": "regression"}},  # no statistics: fit fills them
    )
    polymodal.fit(model, train, val, epochs=1, lr=0.0, summary=False, quiet=True, keep="none")
    head = model.heads["tabular"]
    y = train.targets.double()
    assert head.config.target_mean == [
        pytest.approx(float(y.mean()), rel=1e-9)
    ]  # training targets, not val's
    assert head.config.target_std == [pytest.approx(float(y.std(unbiased=False)), rel=1e-9)]
    assert model.config.heads["tabular"].target_mean == head.config.target_mean  # what save_pretrained writes
    with torch.no_grad():  # a head with zero weights predicts the training mean, in the targets' units
        head.fc.weight.zero_()
        head.fc.bias.zero_()
    mean = float(y.mean())
    metrics = polymodal.evaluate(model, val)
    assert metrics["tabular/mae"] == pytest.approx(
        float((val.targets.double() - mean).abs().mean()), rel=1e-5
    )
    assert metrics["tabular/mse"] == pytest.approx(
        float(((val.targets.double() - mean) ** 2).mean()), rel=1e-5
    )
    saved = model.save_pretrained(tmp_path / "saved")
    config = json.loads((saved / "config.json").read_text())
    assert config["heads"]["tabular"]["target_std"] == head.config.target_std
    again = polymodal.from_pretrained(saved)
    assert again.heads["tabular"].config.target_mean == head.config.target_mean
    assert polymodal.evaluate(again, val) == pytest.approx(metrics)


def test_statistics_the_head_has_are_kept_and_the_dataset_gives_them() -> None:
    data = _table(40, offset=5.0, scale=2.0)
    y = data.targets.double()
    config = data.head_config()
    assert config["target_mean"] == [pytest.approx(float(y.mean()), rel=1e-9)]
    assert config["target_std"] == [pytest.approx(float(y.std(unbiased=False)), rel=1e-9)]
    model = _model(data, target_mean=[1.0], target_std=[2.0])  # other statistics than the data's: not refused
    polymodal.fit(model, data, epochs=1, lr=0.0, summary=False, quiet=True, keep="none")
    assert (model.heads["tabular"].config.target_mean, model.heads["tabular"].config.target_std) == (
        [1.0],
        [2.0],
    )


# -- the log shows metrics as evaluated -------------------------------------------------------------------------------
def test_a_task_named_time_series_is_logged_as_evaluated_not_as_a_running_mean(tmp_path: Path) -> None:
    data = _labels(96)
    train, val = stratified_split(data, 0.25, seed=0)
    model = _model(train, task="time_series")
    result = polymodal.fit(
        model, train, val, epochs=4, batch_size=8, lr=3e-3, work_dir=tmp_path, summary=False, quiet=True
    )
    evaluated = [e["time_series/accuracy"] for e in result.history]
    assert len(set(evaluated)) > 1  # otherwise a running mean would equal every value
    log = next(tmp_path.glob("*/*.log")).read_text()
    logged = [
        float(v) for v in re.findall(r"Epoch\(val\) \[\d+\]\[\d+/\d+\]\s+time_series/accuracy: ([\d.]+)", log)
    ]
    assert logged == [pytest.approx(v, abs=5e-5) for v in evaluated]
    assert (
        len(re.findall(r"Epoch\(train\) .* loss: [\d.]+", log)) == 4
    )  # the losses are logged, once an epoch


def test_the_log_processor_averages_losses_timings_and_grad_norm_only() -> None:
    smoothed = ["loss", "loss_time_series", "time", "data_time", "grad_norm", "train/loss", "val/time"]
    as_they_are = [
        "time_series/accuracy",
        "time_series/mse",
        "glossary/accuracy",
        "lr",
        "base_lr",
        "val/x/loss",
    ]
    assert all(re.search(SMOOTHED_LOG_KEYS, k) for k in smoothed)
    assert not any(re.search(SMOOTHED_LOG_KEYS, k) for k in as_they_are)
    assert LOG_PROCESSORS.get("PolymodalLogProcessor") is PolymodalLogProcessor
    runtime = Config.fromfile(str(CONFIGS / "_base_" / "default_runtime.py"))
    assert runtime.log_processor.type == "PolymodalLogProcessor"


# -- threads, quiet, known warnings ---------------------------------------------------------------------------------
def test_fit_runs_on_one_thread_by_default_and_restores_torchs_setting() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        data = Recording(_labels(16))
        polymodal.fit(_model(data.data), data, epochs=1, summary=False, quiet=True, keep="none")
        assert data.threads == {1} and torch.get_num_threads() == 2
        data = Recording(_labels(16))
        polymodal.fit(_model(data.data), data, epochs=1, summary=False, quiet=True, keep="none", threads=None)
        assert data.threads == {2} and torch.get_num_threads() == 2
        for bad in (0, True, 1.5):
            with pytest.raises(
                ValueError, match=rf"fit: threads must be an integer >= 1 or None .*got {bad!r}"
            ):
                polymodal.fit(_model(data.data), data, threads=bad)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(before)


def test_quiet_prints_nothing_of_mmengine_and_the_known_warnings_never_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _labels(32)
    train, val = stratified_split(data, 0.25, seed=0)
    model = _model(train)
    polymodal.fit(model, train, val, epochs=2, summary=False, quiet=True, work_dir=tmp_path / "quiet")
    assert capsys.readouterr().out == ""
    assert "Epoch(train) [2]" in next((tmp_path / "quiet").glob("*/*.log")).read_text()  # the file keeps all
    polymodal.fit(model, train, val, epochs=1, summary=False)  # a second fit of the same model, not quiet
    out = capsys.readouterr().out
    assert "Epoch(train) [1]" in out and "Epoch(val) [1]" in out
    for text in ("prefix is not set", "has been called more than once", "FileClient", "HardDiskBackend"):
        assert text not in out
    assert len(KNOWN_MMENGINE_WARNINGS) == 4


def test_only_the_known_warnings_are_filtered() -> None:
    def record(message: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("mmengine", level, __file__, 1, message, None, None)

    known = _KnownWarnings()
    for message in (
        "The prefix is not set in metric class MultiTaskMetric.",
        "init_weights of MultimodalModel has been called more than once.",
        '"FileClient" will be deprecated in future. Please use io functions in https://…',
        '"HardDiskBackend" is the alias of "LocalBackend" and the former will be deprecated in future.',
    ):
        assert not known.filter(record(message))
        assert known.filter(record(message, logging.ERROR))  # errors always pass
    for message in (
        "The prefix is not set in metric class Accuracy.",  # another metric's: the user's business
        "Skip early stopping process since the evaluation results do not include `monitor`",
        "init_weights of MultimodalModel failed",
    ):
        assert known.filter(record(message))


# -- checkpoints kept ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("keep", "files"),
    [
        ("last", ["best_tabular_accuracy_epoch_{best}.pth", "epoch_3.pth"]),
        ("best", ["best_tabular_accuracy_epoch_{best}.pth"]),
        ("none", []),
    ],
)
def test_keep_chooses_the_checkpoint_files(tmp_path: Path, keep: str, files: list[str]) -> None:
    data = _labels(48)
    train, val = stratified_split(data, 0.25, seed=0)
    options = {"epochs": 3, "batch_size": 8, "lr": 3e-3, "summary": False, "quiet": True}
    result = polymodal.fit(_model(train), train, val, keep=keep, work_dir=tmp_path, **options)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == [f.format(best=result.best_epoch) for f in files]
    assert (result.best_checkpoint is None) == (keep == "none")
    scores = [e["tabular/accuracy"] for e in result.history]
    assert result.metrics["tabular/accuracy"] == max(scores)
    assert polymodal.evaluate(result.model, val)["tabular/accuracy"] == pytest.approx(max(scores))


def test_keep_best_without_validation_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    data = _labels(24)
    polymodal.fit(_model(data), data, epochs=2, keep="best", work_dir=tmp_path, summary=False, quiet=True)
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["epoch_2.pth"]
    with pytest.raises(ValueError, match=r"fit: keep must be 'last', 'best' or 'none', got 'all'"):
        polymodal.fit(_model(data), data, keep="all")  # type: ignore[arg-type]


# -- a time budget ---------------------------------------------------------------------------------------------------
def test_max_time_stops_after_the_step_that_passes_it_and_still_validates() -> None:
    data = _labels(64)
    train, val = stratified_split(data, 0.25, seed=0)
    result = polymodal.fit(
        _model(train),
        train,
        val,
        epochs=5,
        batch_size=8,
        max_time=1e-6,
        summary=False,
        quiet=True,
        keep="none",
    )
    assert result.stopped == "max_time" and result.epochs_run == 1
    assert len(result.history) == 1 and result.history[0]["iter"] == 1  # one step of the 6 of an epoch
    assert result.best_epoch == 1 and "tabular/accuracy" in result.metrics
    assert str(result).endswith("(stopped: time budget reached)")
    full = polymodal.fit(
        _model(train), train, val, epochs=2, batch_size=8, summary=False, quiet=True, keep="none"
    )
    assert full.stopped is None and full.history[-1]["iter"] == 12
    with pytest.raises(ValueError, match=r"fit: max_time must be a number of seconds > 0, got 0"):
        polymodal.fit(_model(train), train, max_time=0)


# -- joint runs: how streams mix, which epoch is best -----------------------------------------------------------------
class _Sizes:
    def __init__(self, *sizes: int) -> None:
        self.stream_sizes = list(sizes)

    def __len__(self) -> int:
        return sum(self.stream_sizes)


def test_temperature_sampling_sees_a_small_stream_more_often() -> None:
    sizes = _Sizes(32, 1000)

    def share_of_small(mode: str, **kw: Any) -> float:
        sampler = MultiTaskSampler(sizes, mode=mode, seed=0, **kw)  # type: ignore[arg-type]
        batches = list(MultiTaskBatchSampler(sampler, 16, drop_last=False))
        items = [i for b in batches for i in b]
        assert len(items) == 1032 and len(batches) == 65  # an epoch as long as proportional's
        assert all(b == sorted(b, key=lambda i: i >= 32) for b in batches)  # grouped by stream
        return sum(i < 32 for i in items) / len(items)

    assert share_of_small("proportional") == pytest.approx(32 / 1032)
    expected = 32**0.5 / (32**0.5 + 1000**0.5)  # 0.152: seen 5.6x less often than the large one, not 31x
    assert share_of_small("temperature", temperature=2.0) == pytest.approx(expected, abs=0.03)
    assert share_of_small("temperature", temperature=1.0) == pytest.approx(32 / 1032, abs=0.015)
    assert MultiTaskSampler(sizes, mode="temperature", temperature=2.0).stream_weights() == pytest.approx(
        [expected, 1 - expected]
    )
    with pytest.raises(ValueError, match=r"temperature must be a number > 0, got 0"):
        MultiTaskSampler(sizes, mode="temperature", temperature=0)


@pytest.mark.parametrize("drop_last", [False, True])
def test_temperature_batches_are_shared_by_processes_like_the_other_modes(
    monkeypatch: pytest.MonkeyPatch, drop_last: bool
) -> None:
    import polymodal.train.multitask as multitask

    sizes = _Sizes(10, 90)
    single = list(MultiTaskBatchSampler(MultiTaskSampler(sizes, "temperature", seed=3), 16, drop_last))
    assert len(single) == (6 if drop_last else 7) and sum(map(len, single)) == (96 if drop_last else 100)
    per_rank = []
    for rank in range(2):
        monkeypatch.setattr(multitask, "get_dist_info", lambda r=rank: (r, 2))
        sampler = MultiTaskBatchSampler(MultiTaskSampler(sizes, "temperature", seed=3), 8, drop_last)
        per_rank.append(list(sampler))
        assert len(sampler) == len(per_rank[-1])
    assert len(per_rank[0]) == len(per_rank[1]) == len(single)
    for g, r0, r1 in zip(single, *per_rank):
        assert Counter(r0 + r1) == Counter(g)


def _joint(
    small: int = 8, large: int = 64, val: int = 0
) -> tuple[polymodal.MultimodalModel, Recording, Recording, Recording, Recording]:
    """A model of two inputs ``a`` (classes, ``small`` training rows) and ``b`` (values, ``large``), their training
    datasets and ``val`` validation rows of each (with the training parts' tokenizer configs)."""
    labels, values = _labels(small + val, seed=1), _table(large + val, seed=2)
    a, b = Recording(labels.subset(range(small))), Recording(values.subset(range(large)))
    va = Recording(labels.subset(range(small, small + val)))
    vb = Recording(values.subset(range(large, large + val)))
    torch.manual_seed(0)
    model = polymodal.build_model(
        encoder=SMALL_ENCODER,
        tokenizers={"a": a.tokenizer_config, "b": b.tokenizer_config},
        heads={"a": {**a.head_config(), "modality": "a"}, "b": {**b.head_config(), "modality": "b"}},
    )
    return model, a, b, va, vb


@pytest.mark.parametrize(
    ("sampling", "small_reads"), [("proportional", (8, 8)), ("balanced", (64, 64)), ("temperature", (12, 30))]
)
def test_sampling_of_several_training_datasets(sampling: str, small_reads: tuple[int, int]) -> None:
    model, a, b, _, _ = _joint()
    polymodal.fit(
        model,
        {"a": a, "b": b},
        epochs=1,
        batch_size=8,
        sampling=sampling,
        summary=False,
        quiet=True,
        keep="none",
    )  # type: ignore[arg-type]
    low, high = small_reads
    assert low <= a.reads <= high  # a stream of 8 beside one of 64: 8 reads; balanced: 64; T = 2: ~19
    assert b.reads == (64 if sampling != "temperature" else 72 - a.reads)
    with pytest.raises(
        ValueError, match=r"fit: sampling must be 'proportional', 'balanced' or 'temperature'"
    ):
        polymodal.fit(model, {"a": a, "b": b}, sampling="round_robin")  # type: ignore[arg-type]


def test_the_mean_monitor_is_the_default_of_joint_runs(tmp_path: Path) -> None:
    model, a, b, va, vb = _joint(48, 48, val=32)
    options = {"epochs": 3, "batch_size": 8, "lr": 3e-3, "summary": False, "quiet": True}
    result = polymodal.fit(model, {"a": a, "b": b}, {"a": va, "b": vb}, work_dir=tmp_path, **options)  # type: ignore[arg-type]
    assert (result.monitor, result.rule) == ("mean", "greater")
    first = result.history[0]["b/mse"]
    for entry in result.history:  # accuracy as it is, the MSE as 1 - mse / first mse
        assert entry["mean"] == pytest.approx((entry["a/accuracy"] + 1 - entry["b/mse"] / first) / 2)
    means = [e["mean"] for e in result.history]
    assert result.best_epoch == 1 + max(range(len(means)), key=lambda i: (means[i], -i))
    assert result.best_checkpoint is not None
    assert result.best_checkpoint.name == f"best_mean_epoch_{result.best_epoch}.pth"
    assert result.metrics["mean"] == pytest.approx(max(means))
    with pytest.raises(
        ValueError, match=r"fit: monitor 'a/nope' is not a metric of the data; expected 'mean' or"
    ):
        polymodal.fit(model, {"a": a, "b": b}, {"a": va, "b": vb}, monitor="a/nope")


def test_normalised_scores_and_the_mean_score_hook() -> None:
    assert normalised_score(0.7, 0.5, True) == 0.7
    assert normalised_score(2.0, 8.0, False) == pytest.approx(0.75)
    assert normalised_score(8.0, 8.0, False) == 0.0
    assert normalised_score(0.5, 0.0, False) == -0.5  # no scale from a perfect first value
    hook = MeanScoreHook(["a/accuracy", "b/rmse"])
    assert hook.score({"a/accuracy": 0.5, "b/rmse": 4.0}) == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert hook.score({"a/accuracy": 0.9, "b/rmse": 1.0}) == pytest.approx((0.9 + 0.75) / 2)
    saved: dict[str, Any] = {}
    hook.before_save_checkpoint(None, saved)
    resumed = MeanScoreHook(["a/accuracy", "b/rmse"])
    resumed.after_load_checkpoint(None, saved)
    assert resumed.score({"a/accuracy": 0.9, "b/rmse": 1.0}) == pytest.approx((0.9 + 0.75) / 2)
    with pytest.raises(KeyError, match=r"lack \['b/rmse'\]"):
        hook.score({"a/accuracy": 0.5})


# -- the work dir is locked -----------------------------------------------------------------------------------------
def test_fit_takes_the_work_dir_lock(tmp_path: Path) -> None:
    data = _labels(16)
    with work_dir_lock(tmp_path), pytest.raises(WorkDirLockedError, match=r"in use by another training run"):
        polymodal.fit(_model(data), data, epochs=1, work_dir=tmp_path, summary=False, quiet=True)
    result = polymodal.fit(_model(data), data, epochs=1, work_dir=tmp_path, summary=False, quiet=True)
    assert result.work_dir == tmp_path and (tmp_path / "epoch_1.pth").is_file()


def _logged_lrs(work_dir: Path) -> list[float]:
    log = next(work_dir.glob("*/*.log")).read_text()
    return [float(v) for v in re.findall(r"Epoch\(train\) .* lr: ([0-9.e+-]+)", log)]


def test_the_learning_rate_warms_up_over_the_first_epoch_then_decays(tmp_path: Path) -> None:
    train = _labels(64)  # 8 steps an epoch
    common = dict(batch_size=8, lr=1e-3, summary=False, quiet=True, log_interval=1)
    polymodal.fit(_model(train), train, epochs=20, work_dir=tmp_path / "warm", **common)
    lrs = _logged_lrs(tmp_path / "warm")
    assert len(lrs) == 160
    assert lrs[0] < 0.15e-3 and all(a < b for a, b in itertools.pairwise(lrs[:8]))  # rises over the first epoch
    assert max(lrs) == pytest.approx(1e-3, rel=1e-3) and int(np.argmax(lrs)) in (7, 8)
    assert all(a >= b for a, b in itertools.pairwise(lrs[7:])) and lrs[-1] < 0.05e-3  # then the cosine decay
    # no warm-up: the first step runs at lr; a short run warms up over at most a tenth of its steps
    polymodal.fit(_model(train), train, epochs=3, warmup_epochs=0, work_dir=tmp_path / "cold", **common)
    assert _logged_lrs(tmp_path / "cold")[0] == pytest.approx(1e-3, rel=1e-3)
    polymodal.fit(_model(train), train, epochs=3, work_dir=tmp_path / "short", **common)
    short = _logged_lrs(tmp_path / "short")
    assert short[0] < 0.6e-3 and int(np.argmax(short)) <= 2  # 24 steps: 2 of warm-up
    with pytest.raises(ValueError, match=r"warmup_epochs must be a number of epochs >= 0, got -1"):
        polymodal.fit(_model(train), train, epochs=1, warmup_epochs=-1, **common)
