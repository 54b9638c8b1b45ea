"""Ranking metrics on scores (auroc, average_precision, top5_accuracy) against scikit-learn, the classification head's
scores and metric names, and scores carried from ``val_step`` through mmengine's evaluator to ``polymodal.evaluate``."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import average_precision_score, roc_auc_score, top_k_accuracy_score
from sklearn.preprocessing import label_binarize

import polymodal
from polymodal.core import metrics as core_metrics
from polymodal.core.heads import ClassificationHead, RegressionHead
from polymodal.data import ArrayDataset
from polymodal.train.metrics import MultiTaskMetric, compute_task_metrics

BINARY = {"num_classes": 2, "multi_label": False}
ENCODER = {"type": "vit", "embed_dim": 16, "depth": 1, "num_heads": 2}


def _metric(name: str):
    return polymodal.get("metric", name).compute


def _tied_scores(shape: tuple[int, ...], g: torch.Generator, levels: int = 6) -> torch.Tensor:
    """Scores on a coarse grid, so many of them tie (and ties must count one half, as in scikit-learn)."""
    return torch.randint(0, levels, shape, generator=g).float() / (levels - 1)


def _probabilities(n: int, c: int, g: torch.Generator) -> torch.Tensor:
    s = torch.randint(1, 5, (n, c), generator=g).float()  # ties within and across rows
    return s / s.sum(1, keepdim=True)


def test_the_new_metrics_are_registered_ranking_metrics() -> None:
    for name in ("auroc", "average_precision", "top5_accuracy"):
        cls = polymodal.get("metric", name)
        assert issubclass(cls, polymodal.Metric) and cls.uses_scores and cls.higher_is_better
    assert not any(
        polymodal.get("metric", n).uses_scores for n in ("accuracy", "macro_f1", "micro_f1", "mse")
    )
    assert polymodal.get("metric", "top5_accuracy").k == 5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_auroc_and_average_precision_match_sklearn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 2, (120,), generator=g)
    positive = (_tied_scores((120,), g) + 0.3 * target).clamp(max=1.0)
    scores = torch.stack([1 - positive, positive], dim=1)  # [N, 2]: class 1 is the positive one
    auroc, ap = _metric("auroc")(scores, target, BINARY), _metric("average_precision")(scores, target, BINARY)
    assert auroc == pytest.approx(roc_auc_score(target, positive), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(target, positive), abs=1e-12)
    assert 0.5 < auroc < 1.0 and ap not in (0.0, 1.0)
    # [N] scores are the positive class's column
    assert _metric("auroc")(positive, target, BINARY) == auroc
    assert _metric("average_precision")(positive, target, BINARY) == ap


def test_exact_values_on_a_small_case_with_ties() -> None:
    target = torch.tensor([0, 0, 1, 1, 0, 1])
    positive = torch.tensor([0.1, 0.5, 0.5, 0.9, 0.2, 0.5])
    # pairs (pos, neg): 0.5 beats 0.1, 0.2 and ties 0.5 (twice), 0.9 beats all: (2.5 + 2.5 + 3) / 9
    assert _metric("auroc")(positive, target, BINARY) == pytest.approx(8 / 9)
    # thresholds 0.9 (P 1/1, R 1/3), 0.5 (4 above: P 3/4, R 3/3): AP = 1/3 * 1 + 2/3 * 3/4
    assert _metric("average_precision")(positive, target, BINARY) == pytest.approx(1 / 3 + 1 / 2)
    assert average_precision_score(target, positive) == pytest.approx(1 / 3 + 1 / 2)
    assert roc_auc_score(target, positive) == pytest.approx(8 / 9)


@pytest.mark.parametrize("seed", [0, 1])
def test_multi_class_one_vs_rest_macro_matches_sklearn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    c = 4
    target = torch.randint(0, c, (150,), generator=g)
    scores = _probabilities(150, c, g)
    scores[torch.arange(150), target] += 0.2  # informative, still with ties
    scores = scores / scores.sum(1, keepdim=True)
    params = {"num_classes": c, "multi_label": False}
    assert sorted(target.unique().tolist()) == [0, 1, 2, 3]
    assert _metric("auroc")(scores, target, params) == pytest.approx(
        roc_auc_score(target, scores.double().numpy(), multi_class="ovr", average="macro"), abs=1e-12
    )
    onehot = label_binarize(target, classes=list(range(c)))
    assert _metric("average_precision")(scores, target, params) == pytest.approx(
        average_precision_score(onehot, scores.double().numpy(), average="macro"), abs=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_multi_label_macro_matches_sklearn(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 2, (90, 5), generator=g).float()
    scores = (_tied_scores((90, 5), g) + 0.25 * target) / 1.25
    params = {"num_classes": 5, "multi_label": True}
    assert _metric("auroc")(scores, target, params) == pytest.approx(
        roc_auc_score(target, scores, average="macro"), abs=1e-12
    )
    assert _metric("average_precision")(scores, target, params) == pytest.approx(
        average_precision_score(target, scores, average="macro"), abs=1e-12
    )
    # macro: the mean of the per-label values
    per_label = [roc_auc_score(target[:, j], scores[:, j]) for j in range(5)]
    assert _metric("auroc")(scores, target, params) == pytest.approx(float(np.mean(per_label)), abs=1e-12)


def test_a_column_without_both_kinds_of_target_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(4)
    target = torch.randint(0, 2, (40, 4), generator=g).float()
    target[:, 1] = 0  # label 1 never present: AUROC and AP undefined for it
    target[:, 3] = 1  # label 3 always present: AUROC undefined, AP defined (1.0)
    scores = _tied_scores((40, 4), g)
    params = {"num_classes": 4, "multi_label": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        assert np.isnan(
            roc_auc_score(target, scores, average="macro")
        )  # scikit-learn: NaN for the whole mean
    assert _metric("auroc")(scores, target, params) == pytest.approx(
        roc_auc_score(target[:, [0, 2]], scores[:, [0, 2]], average="macro"), abs=1e-12
    )
    assert _metric("average_precision")(scores, target, params) == pytest.approx(
        average_precision_score(target[:, [0, 2, 3]], scores[:, [0, 2, 3]], average="macro"), abs=1e-12
    )
    # a class absent from multi-class targets: one-vs-rest over the classes present
    t = torch.tensor([0, 2, 2, 0, 2, 0, 0])
    s = _probabilities(7, 3, g)
    present = roc_auc_score(label_binarize(t, classes=[0, 1, 2])[:, [0, 2]], s[:, [0, 2]], average="macro")
    assert _metric("auroc")(s, t, {"num_classes": 3, "multi_label": False}) == pytest.approx(
        present, abs=1e-12
    )
    # nothing defined: NaN
    assert np.isnan(_metric("auroc")(torch.rand(5), torch.ones(5, dtype=torch.long), BINARY))
    assert np.isnan(_metric("average_precision")(torch.rand(5), torch.zeros(5, dtype=torch.long), BINARY))
    # blocks of columns (bounded memory) give the same numbers
    full = _metric("auroc")(scores, target, params), _metric("average_precision")(scores, target, params)
    monkeypatch.setattr(core_metrics, "_CHUNK", 40)  # one column per block
    assert (
        _metric("auroc")(scores, target, params),
        _metric("average_precision")(scores, target, params),
    ) == full


def test_ignored_targets_are_dropped() -> None:
    g = torch.Generator().manual_seed(5)
    target = torch.randint(0, 2, (60,), generator=g)
    target[::7] = -100
    positive = _tied_scores((60,), g)
    keep = target != -100
    assert _metric("auroc")(positive, target, BINARY) == pytest.approx(
        roc_auc_score(target[keep], positive[keep]), abs=1e-12
    )
    assert _metric("average_precision")(positive, target, BINARY) == pytest.approx(
        average_precision_score(target[keep], positive[keep]), abs=1e-12
    )
    scores = _probabilities(60, 8, g)
    t8 = torch.randint(0, 8, (60,), generator=g)
    t8[::5] = -100
    keep = t8 != -100
    assert _metric("top5_accuracy")(scores, t8, {"num_classes": 8}) == pytest.approx(
        top_k_accuracy_score(t8[keep], scores[keep].numpy(), k=5, labels=list(range(8)))
    )
    # multi-label entries marked -100 are left out of their label only
    ml = torch.randint(0, 2, (50, 3), generator=g)
    ml[::4, 1] = -100
    s = _tied_scores((50, 3), g)
    per_label = []
    for j in range(3):
        k = ml[:, j] != -100
        per_label.append(roc_auc_score(ml[k, j], s[k, j]))
    assert _metric("auroc")(s, ml, {"multi_label": True}) == pytest.approx(
        float(np.mean(per_label)), abs=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top5_accuracy_matches_sklearn_ties_included(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    scores = _probabilities(200, 9, g)  # values 1..4 out of 9 columns: many ties at the 5th place
    target = torch.randint(0, 9, (200,), generator=g)
    got = _metric("top5_accuracy")(scores, target, {"num_classes": 9})
    assert got == pytest.approx(top_k_accuracy_score(target, scores.numpy(), k=5, labels=list(range(9))))
    assert 0.3 < got < 0.9
    # exact: the own class outranks the rest
    s = torch.eye(7)[[0, 3, 6]]
    assert _metric("top5_accuracy")(s, torch.tensor([0, 3, 6]), {}) == 1.0
    # ties with the own class: the larger class index ranks first (scikit-learn's order)
    flat = torch.full((2, 7), 1 / 7)
    assert _metric("top5_accuracy")(flat, torch.tensor([1, 2]), {}) == 0.5  # class 2 is 5th, class 1 is 6th
    assert _metric("top5_accuracy")(torch.rand(4, 3, generator=g), torch.tensor([0, 1, 2, 0]), {}) == 1.0


def test_errors_name_the_metric_and_what_came() -> None:
    with pytest.raises(ValueError, match=r"metric 'auroc': expected finite scores, got NaN/Inf"):
        _metric("auroc")(torch.tensor([0.1, float("nan")]), torch.tensor([0, 1]), BINARY)
    with pytest.raises(
        ValueError, match=r"metric 'auroc': expected scores \[N\] or \[N, C\] for 3 targets, got \(2, 2\)"
    ):
        _metric("auroc")(torch.rand(2, 2), torch.tensor([0, 1, 1]), BINARY)
    with pytest.raises(
        ValueError, match=r"'average_precision': multi-label scores \(4, 3\) and targets \(4, 2\) differ"
    ):
        _metric("average_precision")(torch.rand(4, 3), torch.ones(4, 2), {"multi_label": True})
    with pytest.raises(
        ValueError, match=r"'top5_accuracy': defined for one class per sample, not for multi-label"
    ):
        _metric("top5_accuracy")(torch.rand(4, 3), torch.ones(4, 3), {"multi_label": True})
    with pytest.raises(
        ValueError, match=r"'top5_accuracy': expected scores \[N, C\] for 4 targets, got \(4,\)"
    ):
        _metric("top5_accuracy")(torch.rand(4), torch.ones(4), {})
    with pytest.raises(
        ValueError, match=r"metrics \['auroc'\] rank the head's scores \(Head.scores\), but 1 of 2 batches"
    ):
        compute_task_metrics(
            [torch.tensor([0]), torch.tensor([1])],
            [torch.tensor([0]), torch.tensor([1])],
            ["accuracy", "auroc"],
            BINARY,
            scores=[torch.rand(1, 2), None],
        )


# -- the classification head ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("num_classes", "multi_label", "expected"),
    [
        (2, False, ("accuracy", "macro_f1", "auroc")),
        (3, False, ("accuracy", "macro_f1")),
        (5, False, ("accuracy", "macro_f1")),
        (6, False, ("accuracy", "macro_f1", "top5_accuracy")),
        (1000, False, ("accuracy", "macro_f1", "top5_accuracy")),
        (2, True, ("micro_f1", "macro_f1", "accuracy", "auroc", "average_precision")),
        (7, True, ("micro_f1", "macro_f1", "accuracy", "auroc", "average_precision")),
    ],
)
def test_classification_head_metrics_keep_the_main_one_first(
    num_classes: int, multi_label: bool, expected: tuple[str, ...]
) -> None:
    head = ClassificationHead({"embed_dim": 8, "num_classes": num_classes, "multi_label": multi_label})
    assert head.metrics == expected == ClassificationHead.metrics_for(num_classes, multi_label)
    assert head.metrics[0] == ("micro_f1" if multi_label else "accuracy")  # the main metric is unchanged
    assert set(head.metrics) <= set(polymodal.list_metrics())


def test_classification_head_scores_are_probabilities() -> None:
    g = torch.Generator().manual_seed(0)
    out = torch.randn(4, 3, generator=g)
    single = ClassificationHead({"embed_dim": 8, "num_classes": 3})
    multi = ClassificationHead({"embed_dim": 8, "num_classes": 3, "multi_label": True})
    assert torch.equal(single.scores(out), out.softmax(-1))
    assert torch.equal(multi.scores(out), out.sigmoid())
    assert single.scores(out.bfloat16()).dtype == torch.float32
    # the predictions are the scores' decisions
    assert torch.equal(single.predict(out), single.scores(out).argmax(-1))
    assert torch.equal(multi.predict(out), (multi.scores(out) > 0.5).long())
    assert RegressionHead({"embed_dim": 8}).scores(out) is None  # the base class: no scores


# -- through the model and mmengine's evaluator -----------------------------------------------------------------------
def _binary_model(num_classes: int = 2) -> polymodal.MultimodalModel:
    torch.manual_seed(0)
    return polymodal.build_model(
        encoder=ENCODER,
        tokenizers={"tabular": {"type": "tabular", "numeric": [{"name": f"x{i}"} for i in range(3)]}},
        heads={"sick": {"type": "classification", "num_classes": num_classes, "modality": "tabular"}},
    ).eval()


def test_val_step_records_carry_the_scores() -> None:
    model = _binary_model()
    x = torch.randn(5, 3)
    batch = {"inputs": {"tabular": {"numeric": x}}, "data_samples": {"sick": torch.tensor([0, 1, 1, 0, 1])}}
    (records,) = model.val_step(batch)
    r = records["sick"]
    with torch.no_grad():
        logits = model({"tabular": {"numeric": x}})["sick"]
    assert r["metrics"] == ("accuracy", "macro_f1", "auroc")
    assert (
        r["score"].shape == (5, 2) and r["score"].dtype == torch.float32 and r["score"].device.type == "cpu"
    )
    assert torch.allclose(r["score"], logits.softmax(-1))
    assert torch.equal(r["pred"], logits.argmax(-1))
    assert len(pickle.dumps(records)) < 4096  # small enough to gather across processes
    # no ranking metric named: no scores in the records
    (three,) = _binary_model(3).val_step(
        {"inputs": {"tabular": {"numeric": x}}, "data_samples": {"sick": torch.tensor([0, 1, 2, 0, 1])}}
    )
    assert three["sick"]["score"] is None and three["sick"]["metrics"] == ("accuracy", "macro_f1")


def test_multitask_metric_merges_scores_of_several_processes() -> None:
    model = _binary_model()
    g = torch.Generator().manual_seed(1)
    batches = []
    for n in (7, 5, 6, 4):
        x = torch.randn(n, 3, generator=g)
        y = (x[:, 0] > 0).long()
        batches.append({"inputs": {"tabular": {"numeric": x}}, "data_samples": {"sick": y}})
    # two "processes" each evaluate half the batches; mmengine's collect_results concatenates their results lists
    ranks = [MultiTaskMetric(), MultiTaskMetric()]
    for i, b in enumerate(batches):
        ranks[i % 2].process(b, model.val_step(b))
    merged = MultiTaskMetric()
    got = merged.compute_metrics(ranks[0].results + ranks[1].results)
    records = [model.val_step(b)[0]["sick"] for b in batches]
    score = torch.cat([r["score"] for r in records])[:, 1]
    target = torch.cat([r["target"] for r in records])
    assert list(got) == ["sick/accuracy", "sick/macro_f1", "sick/auroc"]
    assert got["sick/auroc"] == pytest.approx(roc_auc_score(target, score), abs=1e-12)
    # the order of merging does not change the metric
    assert merged.compute_metrics(ranks[1].results + ranks[0].results)["sick/auroc"] == got["sick/auroc"]
    # the evaluator's own path (process, then evaluate on one process) gives the same
    one = MultiTaskMetric()
    for b in batches:
        one.process(b, model.val_step(b))
    assert one.evaluate(size=len(target)) == got


def test_evaluate_reports_auroc_of_a_binary_array_dataset() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = rng.standard_normal((40, 3))
    x[:, 0] += 1.0 * y
    data = ArrayDataset("tabular", x, y)
    model = polymodal.build_model(
        encoder=ENCODER, tokenizers={"tabular": data.tokenizer_config}, heads={"tabular": data.head_config()}
    )
    metrics = polymodal.evaluate(model, data, batch_size=8)  # five batches
    assert list(metrics) == ["tabular/accuracy", "tabular/macro_f1", "tabular/auroc"]
    batch = data.tokenizer.collate([data.sample(i) for i in range(len(data))])
    with torch.no_grad():
        prob = model.eval()({"tabular": batch})["tabular"].softmax(-1)[:, 1]
    assert metrics["tabular/auroc"] == pytest.approx(roc_auc_score(y, prob.numpy()), abs=1e-6)
    assert metrics["tabular/accuracy"] == pytest.approx(float(((prob > 0.5).long().numpy() == y).mean()))
