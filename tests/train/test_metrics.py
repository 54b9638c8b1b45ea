"""Metric functions against scikit-learn / direct formulas, and the mmengine metric over tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    roc_auc_score,
)

import polymodal
from polymodal.registry.tables import unregister
from polymodal.train.metrics import MultiTaskMetric, compute_task_metrics

CLS = {"num_classes": 5, "multi_label": False}


def _metric(name: str):
    return polymodal.get("metric", name).compute


def test_accuracy_and_macro_f1_match_sklearn() -> None:
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (200,), generator=g)
    pred = torch.where(torch.rand(200, generator=g) < 0.6, target, torch.randint(0, 4, (200,), generator=g))
    acc = _metric("accuracy")(pred, target, CLS)
    f1 = _metric("macro_f1")(pred, target, CLS)
    assert acc == pytest.approx(accuracy_score(target, pred))
    assert f1 == pytest.approx(f1_score(target, pred, average="macro"))
    # a class that is never a target nor predicted does not count (scikit-learn's labels = union)
    t, p = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
    assert _metric("macro_f1")(p, t, CLS) == pytest.approx(f1_score(t, p, average="macro"))


def test_ignored_positions_do_not_count() -> None:
    target = torch.tensor([[1, 0, -100], [2, -100, -100]])
    pred = torch.tensor([[1, 1, 0], [2, 0, 0]])
    assert _metric("accuracy")(pred, target, CLS) == pytest.approx(2 / 3)
    assert _metric("macro_f1")(pred, target, CLS) == pytest.approx(
        f1_score([1, 0, 2], [1, 1, 2], average="macro")
    )


def test_multi_label_metrics() -> None:
    g = torch.Generator().manual_seed(1)
    target = (torch.rand(50, 4, generator=g) < 0.5).long()
    pred = torch.where(torch.rand(50, 4, generator=g) < 0.7, target, 1 - target)
    params = {"num_classes": 4, "multi_label": True}
    assert _metric("accuracy")(pred, target, params) == pytest.approx(
        (pred == target).float().mean().item()
    )
    assert _metric("macro_f1")(pred, target, params) == pytest.approx(
        f1_score(target.numpy(), pred.numpy(), average="macro")
    )
    assert _metric("micro_f1")(pred, target, params) == pytest.approx(
        f1_score(target.numpy(), pred.numpy(), average="micro")
    )


def test_micro_f1_of_one_label_per_sample_is_accuracy() -> None:
    target, pred = torch.tensor([0, 1, 2, 2, 4, -100]), torch.tensor([0, 2, 2, 1, 4, 3])
    expected = f1_score([0, 1, 2, 2, 4], [0, 2, 2, 1, 4], average="micro")
    assert _metric("micro_f1")(pred, target, CLS) == pytest.approx(expected) == pytest.approx(0.6)


def test_regression_metrics() -> None:
    g = torch.Generator().manual_seed(2)
    target, pred = torch.randn(30, 2, generator=g), torch.randn(30, 2, generator=g)
    assert _metric("mse")(pred, target, {}) == pytest.approx(mean_squared_error(target, pred))
    assert _metric("mae")(pred, target, {}) == pytest.approx(mean_absolute_error(target, pred))
    assert _metric("rmse")(pred, target, {}) == pytest.approx(
        np.sqrt(mean_squared_error(target, pred))
    )
    with pytest.raises(ValueError, match=r"metric 'mse': predictions \(30, 2\) and targets \(30,\) differ"):
        _metric("mse")(pred, target[:, 0], {})


def test_recall_at_1_against_a_loop() -> None:
    g = torch.Generator().manual_seed(3)
    a = torch.nn.functional.normalize(torch.randn(12, 8, generator=g), dim=-1)
    b = torch.nn.functional.normalize(a + 0.8 * torch.randn(12, 8, generator=g), dim=-1)
    labels = torch.arange(12) % 3
    pred = torch.stack([a, b], dim=1)

    def reference(use_labels: bool) -> float:
        hits = 0
        for x, y in ((a, b), (b, a)):
            for i in range(12):
                j = max(range(12), key=lambda k: float(x[i] @ y[k]))
                hits += int(labels[j] == labels[i]) if use_labels else int(j == i)
        return hits / 24

    assert _metric("recall_at_1")(pred, None, {"positives": "pair"}) == pytest.approx(
        reference(False)
    )
    assert _metric("recall_at_1")(pred, labels, {"positives": "label"}) == pytest.approx(
        reference(True)
    )


def test_multitask_metric_reports_per_task() -> None:
    metric = MultiTaskMetric()
    batches = [
        {
            "a": {
                "pred": torch.tensor([1, 2]),
                "target": torch.tensor([1, 0]),
                "metrics": ("accuracy",),
                "params": CLS,
            },
            "r": {
                "pred": torch.tensor([[1.0]]),
                "target": torch.tensor([[0.0]]),
                "metrics": ("mse", "mae"),
                "params": {},
            },
        },
        {  # per-token outputs of another padded length are flattened
            "a": {
                "pred": torch.tensor([3]),
                "target": torch.tensor([3]),
                "metrics": ("accuracy",),
                "params": CLS,
            },
        },
    ]
    for b in batches:
        metric.process({}, [b])
    assert metric.evaluate(size=3) == {"a/accuracy": pytest.approx(2 / 3), "r/mse": 1.0, "r/mae": 1.0}
    assert compute_task_metrics(
        [torch.tensor([[1, 0]]), torch.tensor([[1, 1, 0]])],
        [torch.tensor([[1, 1]]), torch.tensor([[1, 1, -100]])],
        ["accuracy"],
        CLS,
    ) == {"accuracy": 0.75}
    with pytest.raises(
        KeyError,
        match=r"unknown metric 'top1_accuracy'.* Registered \(10\): accuracy, auroc, average_precision, macro_f1, "
        r"mae, micro_f1, mse, recall_at_1, rmse, top5_accuracy",
    ):
        compute_task_metrics([torch.zeros(2)], [torch.zeros(2)], ["top1_accuracy"], {})


def test_a_registered_metric_is_named_by_heads_and_knows_its_direction() -> None:
    class MaxError(polymodal.Metric):
        name = "max_error_test"
        higher_is_better = False

        @classmethod
        def _compute(cls, pred: torch.Tensor, target: torch.Tensor, params: dict) -> float:
            return float((pred - target).abs().max())

    polymodal.register(MaxError)
    try:
        assert compute_task_metrics(
            [torch.tensor([1.0, 4.0])], [torch.tensor([1.0, 2.0])], ["max_error_test"], {}
        ) == {"max_error_test": 2.0}
        assert "max_error_test" in polymodal.list_metrics()
        with pytest.raises(ValueError, match="needs targets"):
            compute_task_metrics([torch.tensor([1.0])], [None], ["max_error_test"], {})

        class Other(MaxError):
            pass

        with pytest.raises(polymodal.DuplicateNameError, match="metric 'max_error_test'"):
            polymodal.register(Other)
    finally:
        unregister("metric", "max_error_test")


def test_builtin_metric_directions() -> None:
    directions = {n: polymodal.get("metric", n).higher_is_better for n in polymodal.list_metrics()}
    assert directions == {
        "accuracy": True,
        "auroc": True,
        "average_precision": True,
        "macro_f1": True,
        "mae": False,
        "micro_f1": True,
        "mse": False,
        "recall_at_1": True,
        "rmse": False,
        "top5_accuracy": True,
    }


def test_regression_metrics_of_a_standardising_head_are_in_the_targets_units() -> None:
    torch.manual_seed(0)
    model = polymodal.build_model(
        encoder={"type": "vit", "embed_dim": 16, "depth": 1, "num_heads": 2},
        modalities=["tabular"],
        tokenizers={"tabular": {"type": "tabular", "numeric": [{"name": "x"}, {"name": "y"}]}},
        heads={
            "price": {"type": "regression", "modality": "tabular", "target_mean": [1000.0], "target_std": [300.0]}
        },
    ).eval()
    batch = {"tabular": {"numeric": torch.randn(6, 2)}}
    target = torch.tensor([900.0, 1000.0, 1100.0, 1300.0, 700.0, 1000.0])
    with torch.no_grad():
        out = model(batch)["price"]
    assert float((out - 1000.0).abs().max()) < 3 * 300  # in the targets' units, not standardised
    records = model.test_step({"inputs": batch, "data_samples": {"price": target}})
    assert records[0]["price"]["metrics"] == ("mse", "rmse", "mae")
    metric = MultiTaskMetric()
    metric.process({}, records)
    got = metric.evaluate(size=6)
    err = (out[:, 0] - target).double().numpy()
    assert list(got) == ["price/mse", "price/rmse", "price/mae"]  # mse first: the main metric
    assert got["price/mse"] == pytest.approx(mean_squared_error(target, out[:, 0]), rel=1e-5)
    assert got["price/rmse"] == pytest.approx(float(np.sqrt((err**2).mean())), rel=1e-5)
    assert got["price/mae"] == pytest.approx(mean_absolute_error(target, out[:, 0]), rel=1e-5)
    loss = model({"tabular": batch["tabular"]}, {"price": target}, mode="loss")["loss_price"]
    assert loss.item() == pytest.approx(float(((err / 300.0) ** 2).mean()), rel=1e-4)  # standardised residuals


def test_ranking_metrics_get_the_scores_and_the_others_the_predictions() -> None:
    g = torch.Generator().manual_seed(6)
    scores = [torch.rand(n, 2, generator=g) for n in (4, 6)]
    scores = [s / s.sum(1, keepdim=True) for s in scores]
    preds = [s.argmax(1) for s in scores]
    targets = [torch.tensor([0, 1, 1, 0]), torch.tensor([1, 1, 0, 0, 1, 0])]
    got = compute_task_metrics(
        preds, targets, ["accuracy", "auroc", "average_precision"], {"num_classes": 2}, scores=scores
    )
    s, t, p = torch.cat(scores)[:, 1], torch.cat(targets), torch.cat(preds)
    assert got == {
        "accuracy": pytest.approx(accuracy_score(t, p)),
        "auroc": pytest.approx(roc_auc_score(t, s), abs=1e-12),
        "average_precision": pytest.approx(average_precision_score(t, s), abs=1e-12),
    }
    # records without scores are fine for the other metrics, and refused for ranking ones
    assert compute_task_metrics(preds, targets, ["accuracy"], {}) == {"accuracy": got["accuracy"]}
    with pytest.raises(
        ValueError, match=r"metrics \['auroc'\] rank the head's scores \(Head.scores\), but 2 of 2"
    ):
        compute_task_metrics(preds, targets, ["accuracy", "auroc"], {"num_classes": 2})


def test_a_registered_ranking_metric_of_a_plugin_gets_the_scores() -> None:
    class MeanTargetScore(polymodal.Metric):
        name = "mean_target_score_test"
        uses_scores = True

        @classmethod
        def _compute(cls, pred: torch.Tensor, target: torch.Tensor, params: dict) -> float:
            return float(pred.gather(1, target[:, None]).mean())

    polymodal.register(MeanTargetScore)
    try:
        metric = MultiTaskMetric()
        for score, target in ((torch.tensor([[0.2, 0.8]]), 1), (torch.tensor([[0.6, 0.4], [0.3, 0.7]]), 0)):
            record = {
                "pred": score.argmax(1),
                "score": score,
                "target": torch.tensor([target] * len(score)),
                "metrics": ("accuracy", "mean_target_score_test"),
                "params": {},
            }
            metric.process({}, [{"t": record}])
        assert metric.evaluate(size=3) == {
            "t/accuracy": pytest.approx(2 / 3),
            "t/mean_target_score_test": pytest.approx((0.8 + 0.6 + 0.3) / 3),
        }
    finally:
        unregister("metric", "mean_target_score_test")
