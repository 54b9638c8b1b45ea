"""Heads: shapes, pooling, losses against reference computations, masks, error messages, registration."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import polymodal
from polymodal.core.heads import (
    ClassificationHead,
    EmbeddingHead,
    RegressionHead,
    TokenClassificationHead,
    info_nce,
    pool_tokens,
)
from polymodal.core.tokens import Tokens

D = 16


def _tokens(lengths: list[int], n: int = 6, prefix: int = 1, name: str = "x") -> Tokens:
    """Encoded tokens with a [CLS] prefix and per-row real lengths (prefix included)."""
    mask = torch.arange(n)[None] < torch.tensor(lengths)[:, None]
    return Tokens(torch.randn(len(lengths), n, D), mask, name, prefix=prefix)


def test_registered_heads() -> None:
    assert {"classification", "regression", "token_classification", "embedding"} <= set(
        polymodal.list_heads()
    )
    assert polymodal.get("head", "token_classification") is TokenClassificationHead


def test_mean_pool_ignores_padding_and_prefix() -> None:
    t = _tokens([3, 6])
    pooled = pool_tokens(t, "mean")
    assert torch.allclose(pooled[0], t.embeddings[0, 1:3].mean(0))
    assert torch.allclose(pooled[1], t.embeddings[1, 1:6].mean(0))
    assert torch.equal(pool_tokens(t, "cls"), t.embeddings[:, 0])
    with pytest.raises(ValueError, match="x: pool='cls' needs a \\[CLS\\] token"):
        pool_tokens(_tokens([3], prefix=0), "cls")


def test_classification_single_and_multi_label() -> None:
    head = ClassificationHead({"embed_dim": D, "num_classes": 4, "pool": "mean"})
    t = _tokens([3, 5, 6])
    out = head(t)
    assert out.shape == (3, 4)
    target = torch.tensor([0, 3, 1])
    assert torch.allclose(head.loss(out, target), F.cross_entropy(out, target))
    assert torch.equal(head.predict(out), out.argmax(-1))
    assert head.metric_params() == {"num_classes": 4, "multi_label": False}
    with pytest.raises(
        ValueError, match=r"classification: expected class indices of shape \(3,\), got \(3, 4\)"
    ):
        head.loss(out, torch.zeros(3, 4))
    multi = ClassificationHead({"embed_dim": D, "num_classes": 4, "multi_label": True})
    out = multi(t)
    hot = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]])
    manual = -(hot * F.logsigmoid(out) + (1 - hot) * F.logsigmoid(-out)).mean()
    assert torch.allclose(multi.loss(out, hot), manual, atol=1e-6)
    assert torch.equal(multi.predict(out), (out > 0).long())


def test_regression_head() -> None:
    head = RegressionHead({"embed_dim": D, "out_dim": 2})
    t = _tokens([2, 6])
    out = head(t)
    assert out.shape == (2, 2) and head.metrics == ("mse", "rmse", "mae")
    target = torch.randn(2, 2)
    assert torch.allclose(head.loss(out, target), ((out - target) ** 2).mean())
    with pytest.raises(ValueError, match=r"regression: expected targets of shape \(2, 2\), got \(2,\)"):
        head.loss(out, torch.randn(2))
    one = RegressionHead({"embed_dim": D})
    out1 = one(t)
    y = torch.randn(2)
    assert one.align_target(t, y).shape == (2, 1)  # [B] targets of a 1-D regression are accepted
    assert torch.allclose(one.loss(out1, one.align_target(t, y)), ((out1[:, 0] - y) ** 2).mean())


def test_token_classification_respects_the_mask() -> None:
    head = TokenClassificationHead({"embed_dim": D, "num_classes": 3})
    t = _tokens([4, 6])  # 1 prefix + 3 / 5 real tokens of 5
    out = head(t)
    assert out.shape == (2, 5, 3)  # per token the tokenizer made, prefix excluded
    assert torch.allclose(out[1, 0], head.fc(head.norm(t.embeddings[1, 1])))
    target = torch.tensor([[0, 2, -100, 1, 1], [1, 1, 0, 2, 2]])  # row 0: positions 3, 4 are padding
    aligned = head.align_target(t, target)
    assert aligned.tolist() == [[0, 2, -100, -100, -100], [1, 1, 0, 2, 2]]
    terms = [
        F.cross_entropy(out[b, i][None], aligned[b, i][None])
        for b in range(2)
        for i in range(5)
        if aligned[b, i] >= 0
    ]
    assert torch.allclose(head.loss(out, aligned), torch.stack(terms).mean())
    assert head.predict(out).shape == (2, 5)
    with pytest.raises(
        ValueError, match=r"token_classification: expected targets of shape \(2, 5\) .* got \(2, 6\)"
    ):
        head.align_target(t, torch.zeros(2, 6, dtype=torch.long))
    nothing = head.loss(out, torch.full((2, 5), -100))
    assert nothing.item() == 0.0 and nothing.requires_grad  # keeps the graph when a batch has no labels


def _reference_info_nce(
    a: torch.Tensor, b: torch.Tensor, scale: float, labels: torch.Tensor | None
) -> torch.Tensor:
    a, b = a.detach(), b.detach()
    total = 0.0
    n = a.shape[0]
    for x, y in ((a, b), (b, a)):
        for i in range(n):
            logits = [scale * float(x[i] @ y[j]) for j in range(n)]
            log_z = math.log(sum(math.exp(v) for v in logits))
            pos = [
                j
                for j in range(n)
                if (labels is None and j == i) or (labels is not None and labels[j] == labels[i])
            ]
            total += -sum(logits[j] - log_z for j in pos) / len(pos)
    return torch.tensor(total / (2 * n))


def test_embedding_head_paired_contrastive_loss() -> None:
    head = EmbeddingHead({"embed_dim": D, "out_dim": 8, "pair": "y", "temperature": 0.5})
    assert head.config.inputs("task") == ("task", "y") and not head.requires_target
    a, b = _tokens([6, 6, 6, 6], name="x"), _tokens([3, 4, 5, 6], name="y")
    out = head(a, b)
    assert out.shape == (4, 2, 8)
    assert torch.allclose(out.norm(dim=-1), torch.ones(4, 2))
    assert not torch.allclose(out[:, 0], head._embed(b, second=False))  # one projection per input
    loss = head.loss(out)
    assert torch.allclose(loss, _reference_info_nce(out[:, 0], out[:, 1], 2.0, None), atol=1e-5)
    labels = torch.tensor([0, 1, 0, 2])
    assert torch.allclose(
        info_nce(out[:, 0], out[:, 1], 2.0, labels),
        _reference_info_nce(out[:, 0], out[:, 1], 2.0, labels),
        atol=1e-5,
    )
    loss.backward()
    assert head.logit_scale.grad is not None and head.pair_proj.weight.grad is not None


def test_embedding_head_errors_and_options() -> None:
    single = EmbeddingHead({"embed_dim": D, "out_dim": 8})
    out = single(_tokens([6, 6]))
    assert out.shape == (2, 8)
    with pytest.raises(ValueError, match="embedding: the contrastive loss needs paired embeddings"):
        single.loss(out)
    shared = EmbeddingHead(
        {"embed_dim": D, "pair": "y", "shared_projection": True, "learnable_temperature": False}
    )
    assert not hasattr(shared, "pair_proj") and "logit_scale" in dict(shared.named_buffers())
    with pytest.raises(ValueError, match="embedding: paired inputs 'x' and 'y' need one row per sample"):
        shared(_tokens([6, 6], name="x"), _tokens([6], name="y"))
    by_label = EmbeddingHead({"embed_dim": D, "pair": "y", "positives": "label"})
    with pytest.raises(
        ValueError, match=r"^embedding: expected target labels \[2\] \(positives='label'\), got None$"
    ):
        by_label.loss(by_label(_tokens([6, 6]), _tokens([6, 6])))


def test_pooling_averages_the_rows_of_a_sample() -> None:
    # 2 samples x 3 rows (one per channel, say): rows 3b .. 3b + 2 are sample b
    t = _tokens([3, 6, 4, 5, 6, 2]).replace(rows_per_sample=3)
    assert t.num_samples == 2 and t.batch_size == 6
    per_row = pool_tokens(t.replace(rows_per_sample=1), "mean")
    pooled = pool_tokens(t, "mean")
    assert pooled.shape == (2, D)
    assert torch.allclose(pooled[0], per_row[:3].mean(0)) and torch.allclose(pooled[1], per_row[3:].mean(0))
    assert torch.allclose(pool_tokens(t, "cls")[1], t.embeddings[3:, 0].mean(0))
    clf = ClassificationHead({"embed_dim": D, "num_classes": 4})
    assert clf(t).shape == (2, 4) and clf.predict(clf(t)).shape == (2,)
    assert RegressionHead({"embed_dim": D, "out_dim": 2})(t).shape == (2, 2)
    assert EmbeddingHead({"embed_dim": D, "out_dim": 8})(t).shape == (2, 8)
    with pytest.raises(
        ValueError, match=r"^x: token_classification expects one token sequence per sample, got 3 rows"
    ):
        TokenClassificationHead({"embed_dim": D, "num_classes": 3})(t)
    with pytest.raises(
        ValueError, match=r"^x: Tokens.rows_per_sample must be a positive integer dividing the 6 rows"
    ):
        t.replace(rows_per_sample=4)
    with pytest.raises(ValueError, match=r"rows_per_sample must be a positive integer .*got True"):
        t.replace(rows_per_sample=True)


# -- regression heads standardise their targets -------------------------------------------------------------------
def test_regression_head_predicts_in_the_targets_units_and_trains_on_standardised_residuals() -> None:
    from polymodal.core.heads.regression import RegressionHeadConfig

    torch.manual_seed(0)
    plain = RegressionHead({"embed_dim": D, "out_dim": 2})
    fitted = RegressionHead(
        {"embed_dim": D, "out_dim": 2, "target_mean": [1000.0, -5.0], "target_std": [300.0, 0.5]}
    )
    fitted.load_state_dict(plain.state_dict())  # statistics live in the config, not in the weights
    assert set(fitted.state_dict()) == set(plain.state_dict())
    t = _tokens([2, 6, 4])
    z = plain(t)  # a head without statistics: the raw linear output, its plain MSE
    mean, std = torch.tensor([1000.0, -5.0]), torch.tensor([300.0, 0.5])
    out = fitted(t)
    assert torch.allclose(out, z * std + mean)
    assert torch.equal(fitted.predict(out), out)
    target = torch.tensor([[1300.0, -5.5], [700.0, -4.0], [1000.0, -5.0]])
    assert torch.allclose(fitted.loss(out, target), (((out - target) / std) ** 2).mean())
    assert torch.allclose(fitted.loss(out, target), F.mse_loss(z, (target - mean) / std), atol=1e-5)
    assert torch.allclose(plain.loss(z, target), F.mse_loss(z, target))
    with torch.no_grad():  # zero weights: the training mean, whatever the tokens
        fitted.fc.weight.zero_()
        fitted.fc.bias.zero_()
    assert torch.equal(fitted(t), mean.expand(3, 2))
    config = RegressionHeadConfig.model_validate_json(fitted.config.model_dump_json())  # JSON round-trip
    assert (config.target_mean, config.target_std) == ([1000.0, -5.0], [300.0, 0.5])
    assert RegressionHeadConfig().has_target_stats is False and config.has_target_stats


def test_regression_statistics_are_validated_and_set_in_place() -> None:
    from polymodal.core.heads.regression import target_stats

    with pytest.raises(ValueError, match=r"target_mean: expected 2 values \(out_dim\), got 1"):
        RegressionHead({"embed_dim": D, "out_dim": 2, "target_mean": [0.0]})
    with pytest.raises(ValueError, match=r"target_std: expected values > 0, got \[1.0, 0.0\]"):
        RegressionHead({"embed_dim": D, "out_dim": 2, "target_std": [1.0, 0.0]})
    with pytest.raises(ValueError, match=r"target_mean: expected finite values"):
        RegressionHead({"embed_dim": D, "target_mean": [math.nan]})
    head = RegressionHead({"embed_dim": D, "out_dim": 2})
    config = head.config
    head.set_target_stats([1.0, 2.0], [3.0, 4.0])
    assert head.config is config and (config.target_mean, config.target_std) == ([1.0, 2.0], [3.0, 4.0])
    with pytest.raises(ValueError, match=r"target_std: expected 2 values"):
        head.set_target_stats([1.0, 2.0], [3.0])
    assert config.target_std == [3.0, 4.0]  # a refused update changes nothing
    mean, std = target_stats(torch.tensor([[1.0, 7.0], [3.0, 7.0], [5.0, 7.0]]))
    assert mean == [3.0, 7.0] and std == [pytest.approx(math.sqrt(8 / 3)), 1.0]  # a constant output: std 1
    assert target_stats(torch.tensor([2.0, 4.0])) == ([3.0], [1.0])
    with pytest.raises(ValueError, match=r"target_stats: expected finite targets, got 1 NaN/Inf"):
        target_stats(torch.tensor([1.0, math.inf]))
