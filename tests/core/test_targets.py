"""Bad targets and non-finite values at the model level: every head checks its targets in training and in evaluation
(errors name the task, what was expected and what came), and the model never returns NaN/Inf without an error
(tokens, outputs and losses are checked unless ``check_finite`` is off)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.core.heads import (
    ClassificationHead,
    EmbeddingHead,
    RegressionHead,
    TargetError,
    TokenClassificationHead,
    check_class_indices,
)
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig
from polymodal.core.tokens import Tokens
from polymodal.model.multimodal import NonFiniteError
from polymodal.registry.tables import unregister

SMALL = {"type": "vit", "embed_dim": 16, "depth": 1, "num_heads": 2}


class ScaledConfig(TokenizerConfig):
    type: str = "test_scaled"
    scale: float = Field(1.0, description="Multiplies the tokens (1e30: finite tokens that overflow later).")


class ScaledTokenizer(Tokenizer):
    """``[B, N]`` values -> one token per value, times ``scale``; no checks of its own (``nn.Module.__call__``), as a
    third-party tokenizer might, so the model's checks are what is tested."""

    name: ClassVar[str] = "test_scaled"
    config_class: ClassVar[type[ScaledConfig]] = ScaledConfig
    __call__ = nn.Module.__call__

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.proj = nn.Linear(1, self.config.embed_dim)

    def forward(self, batch: torch.Tensor) -> Tokens:
        return Tokens.full(self.proj(batch.unsqueeze(-1)) * self.config.scale, self.modality)


@pytest.fixture(scope="module", autouse=True)
def _scaled_tokenizer() -> Iterator[None]:
    polymodal.register(ScaledTokenizer)
    yield
    unregister("tokenizer", "test_scaled")


def _model(head: dict[str, Any], scale: float = 1.0, **fields: Any) -> polymodal.MultimodalModel:
    torch.manual_seed(0)
    return polymodal.build_model(
        encoder=SMALL,
        tokenizers={"seq": {"type": "test_scaled", "scale": scale}},
        heads={"digits": {"modality": "seq", **head}},
        **fields,
    )


CLF = {"type": "classification", "num_classes": 3}
X = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))


# -- class targets -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["loss", "evaluate"])
@pytest.mark.parametrize(
    ("target", "message"),
    [
        (torch.tensor([7, 0]), "digits: expected class indices in [0, 3) (or -100 to ignore), got 7"),
        (torch.tensor([-1, 0]), "digits: expected class indices in [0, 3) (or -100 to ignore), got -1"),
        (torch.tensor([3, 9]), "digits: expected class indices in [0, 3) (or -100 to ignore), got [3, 9]"),
        (
            torch.tensor([0.7, 1.9]),
            "digits: expected integer class indices in [0, 3) (or -100 to ignore), got non-integer values [0.7, 1.9]",
        ),
        (
            torch.tensor([float("nan"), 1.0]),
            "digits: expected integer class indices in [0, 3) (or -100 to ignore), got non-integer values nan",
        ),
        (
            [0, 1],
            "digits: expected a tensor of class indices in [0, 3) (or -100 to ignore) of shape (2,), got list of 2 "
            "items (convert it with torch.as_tensor)",
        ),
        (torch.tensor([0, 1, 2]), "digits: expected class indices of shape (2,), got (3,)"),
        (torch.zeros(2, 1, dtype=torch.long), "digits: expected class indices of shape (2,), got (2, 1)"),
    ],
)
def test_bad_class_targets_are_refused_naming_the_task(mode: str, target: Any, message: str) -> None:
    model = _model(CLF)
    with pytest.raises(TargetError) as exc:
        model({"seq": X}, {"digits": target}, mode=mode)
    assert str(exc.value) == message
    assert exc.value.task == "digits" and isinstance(exc.value, ValueError)


def test_good_class_targets_integral_floats_bools_and_ignored_rows() -> None:
    model = _model(CLF).eval()
    logits = model({"seq": X})["digits"]
    as_long = model({"seq": X}, {"digits": torch.tensor([1, 2])}, mode="loss")["loss_digits"]
    assert torch.allclose(as_long, F.cross_entropy(logits, torch.tensor([1, 2])))
    as_float = model({"seq": X}, {"digits": torch.tensor([1.0, 2.0])}, mode="loss")["loss_digits"]
    assert torch.equal(as_float, as_long)  # integral floats are class indices
    ignored = model({"seq": X}, {"digits": torch.tensor([-100, 2])}, mode="loss")["loss_digits"]
    assert torch.allclose(ignored, F.cross_entropy(logits[1:], torch.tensor([2])))
    as_bool = model({"seq": X}, {"digits": torch.tensor([True, False])}, mode="loss")["loss_digits"]
    assert torch.allclose(as_bool, F.cross_entropy(logits, torch.tensor([1, 0])))
    (record,) = model({"seq": X}, {"digits": torch.tensor([1.0, 2.0])}, mode="evaluate")
    assert record["digits"]["target"].tolist() == [1, 2] and record["digits"]["target"].dtype == torch.long


def test_multi_label_targets_must_be_zero_or_one() -> None:
    model = _model({**CLF, "multi_label": True})
    with pytest.raises(
        TargetError, match=r"^digits: expected multi-hot targets of 0 and 1, got values \[0\.5, 2\]$"
    ):
        model({"seq": X}, {"digits": torch.tensor([[0.0, 0.5, 1.0], [2.0, 1.0, 0.0]])}, mode="loss")
    with pytest.raises(
        TargetError, match=r"^digits: expected multi-hot targets of shape \(2, 3\), got \(2,\)$"
    ):
        model({"seq": X}, {"digits": torch.tensor([0, 1])}, mode="evaluate")
    loss = model({"seq": X}, {"digits": torch.tensor([[0, 1, 1], [1, 0, 0]])}, mode="loss")["loss_digits"]
    assert torch.isfinite(loss)


# -- value targets -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["loss", "evaluate"])
def test_non_finite_regression_targets_are_refused(mode: str) -> None:
    model = _model({"type": "regression"})
    with pytest.raises(TargetError, match=r"^digits: expected finite targets, got 1 NaN/Inf of 2 values$"):
        model({"seq": X}, {"digits": torch.tensor([float("nan"), 1.0])}, mode=mode)
    with pytest.raises(TargetError, match=r"^digits: expected finite targets, got 2 NaN/Inf of 2 values$"):
        model({"seq": X}, {"digits": torch.tensor([float("inf"), -float("inf")])}, mode=mode)
    with pytest.raises(TargetError, match=r"^digits: expected targets of shape \(2, 1\), got \(3, 1\)$"):
        model({"seq": X}, {"digits": torch.zeros(3)}, mode=mode)


def test_integer_regression_targets_become_float() -> None:
    model = _model({"type": "regression"}).eval()
    out = model({"seq": X})["digits"]
    loss = model({"seq": X}, {"digits": torch.tensor([1, 2])}, mode="loss")["loss_digits"]
    assert torch.allclose(loss, F.mse_loss(out, torch.tensor([[1.0], [2.0]])))


def test_token_classification_targets_are_checked_after_alignment() -> None:
    model = _model({"type": "token_classification", "num_classes": 3})
    with pytest.raises(
        TargetError, match=r"^digits: expected class indices in \[0, 3\) \(or -100 to ignore\), got 5$"
    ):
        model({"seq": X}, {"digits": torch.tensor([[0, 1, 2, 5, 0], [0, 0, 0, 0, 0]])}, mode="evaluate")
    with pytest.raises(
        TargetError, match=r"^digits: expected integer class indices .*got non-integer values 0\.5$"
    ):
        model({"seq": X}, {"digits": torch.full((2, 5), 0.5)}, mode="loss")
    with pytest.raises(TargetError, match=r"^digits: expected targets of shape \(2, 5\) .*got \(2, 4\)$"):
        model({"seq": X}, {"digits": torch.zeros(2, 4, dtype=torch.long)}, mode="loss")


def test_embedding_labels_are_checked_when_positives_are_labels() -> None:
    torch.manual_seed(0)
    model = polymodal.build_model(
        encoder=SMALL,
        tokenizers={"a": "test_scaled", "b": "test_scaled"},
        heads={"match": {"type": "embedding", "modality": "a", "pair": "b", "positives": "label"}},
    )
    batch = {"a": X, "b": X.flip(0)}
    with pytest.raises(
        TargetError, match=r"^match: expected target labels \[2\] \(positives='label'\), got None$"
    ):
        model(batch, {}, mode="loss")
    with pytest.raises(
        TargetError, match=r"^match: expected integer labels of shape \(2,\) .*got non-integer"
    ):
        model(batch, {"match": torch.tensor([0.5, 1.0])}, mode="loss")
    assert torch.isfinite(model(batch, {"match": torch.tensor([1.0, 1.0])}, mode="loss")["loss_match"])


def test_heads_used_alone_name_themselves() -> None:
    t = Tokens.full(torch.randn(2, 4, 8), "x").replace(prefix=1)
    clf = ClassificationHead({"embed_dim": 8, "num_classes": 3})
    with pytest.raises(TargetError, match=r"^classification: expected class indices in \[0, 3\) .*got 7$"):
        clf.loss(clf(t), torch.tensor([7, 0]))
    reg = RegressionHead({"embed_dim": 8})
    with pytest.raises(
        TargetError, match=r"^regression: expected finite targets, got 1 NaN/Inf of 2 values$"
    ):
        reg.loss(reg(t), reg.align_target(t, torch.tensor([float("nan"), 0.0])))
    tok = TokenClassificationHead({"embed_dim": 8, "num_classes": 3})
    with pytest.raises(
        TargetError, match=r"^token_classification: expected a tensor of targets of shape \(2, 3\)"
    ):
        tok.align_target(t, [[0, 1, 2], [0, 1, 2]])
    emb = EmbeddingHead({"embed_dim": 8, "pair": "y"})
    assert emb.check_target(emb(t, t), "anything") == "anything"  # pair positives: targets are not used
    assert check_class_indices(torch.tensor([2.0]), "t", 3, (1,), ignore=False).tolist() == [2]
    with pytest.raises(TargetError, match=r"^t: expected class indices in \[0, 3\), got -100$"):
        check_class_indices(torch.tensor([-100]), "t", 3, (1,), ignore=False)


def test_target_error_pickles_with_its_parts() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(TargetError("digits", "class indices in [0, 3)", "7")))
    assert (err.task, err.expected, err.got, str(err)) == ("digits", "class indices in [0, 3)", "7", str(err))
    assert str(err) == "digits: expected class indices in [0, 3), got 7"


# -- NaN / Inf -------------------------------------------------------------------------------------------------------
def test_non_finite_tokens_are_refused_naming_the_input() -> None:
    model = _model(CLF, scale=float("inf"))
    with pytest.raises(ModalityInputError) as exc:
        model({"seq": X})
    assert str(exc.value).startswith("seq: expected finite tokens, got ")
    assert "NaN/Inf of 160 token values from the tokenizer 'test_scaled'" in str(exc.value)
    assert "too large to represent after the tokenizer's projection" in str(exc.value)


def test_finite_tokens_that_overflow_give_an_error_naming_the_task() -> None:
    model = _model(
        CLF, scale=1e30
    )  # finite tokens; their squares overflow float32 in the encoder's LayerNorm
    with pytest.raises(
        NonFiniteError, match=r"^digits: expected finite outputs, got 6 NaN/Inf of 6 values in the "
    ):
        model({"seq": X})
    with pytest.raises(NonFiniteError, match=r"^digits: expected finite outputs"):
        model({"seq": X}, {"digits": torch.tensor([0, 1])}, mode="loss")


def test_a_loss_that_overflows_is_an_error_naming_the_task() -> None:
    model = _model({"type": "regression"})
    with pytest.raises(NonFiniteError, match=r"^digits: expected a finite loss, got inf from finite outputs"):
        model({"seq": X}, {"digits": torch.tensor([1e30, -1e30])}, mode="loss")


def test_check_finite_can_be_switched_off() -> None:
    model = _model(CLF, scale=1e30, check_finite=False)
    assert model.check_finite is False and model.config.check_finite is False
    assert not bool(torch.isfinite(model({"seq": X})["digits"]).all())  # the documented opt-out: no check
    on = _model(CLF, scale=1e30)
    assert on.check_finite is True
    on.check_finite = False
    assert not bool(torch.isfinite(on({"seq": X})["digits"]).all())
    data = polymodal.ModelConfig.model_validate_json(model.config_json())
    assert data.check_finite is False  # saved with the model


# -- building ----------------------------------------------------------------------------------------------------------
def test_build_model_refuses_a_string_of_modalities() -> None:
    with pytest.raises(TypeError) as exc:
        polymodal.build_model(modalities="image", encoder=SMALL)
    assert (
        str(exc.value)
        == "modalities: expected a list of names, got the string 'image'; did you mean ['image']?"
    )
    with pytest.raises(TypeError, match=r"^tokenizers: expected a dict \{key: name or config\}, got str$"):
        polymodal.build_model(tokenizers="image", encoder=SMALL)


def test_fusion_refuses_tokens_of_several_rows_per_sample() -> None:
    class TwoRows(ScaledTokenizer):
        def forward(self, batch: torch.Tensor) -> Tokens:
            x = self.proj(batch.unsqueeze(-1)).repeat_interleave(2, dim=0)
            return Tokens.full(x, self.modality).replace(rows_per_sample=2)

    torch.manual_seed(0)
    model = polymodal.build_model(
        encoder=SMALL,
        tokenizers={"a": "test_scaled", "b": "test_scaled"},
        fusion={"ab": ["a", "b"]},
        heads={"ab": CLF},
    )
    model.tokenizers["b"] = TwoRows(model.config.tokenizers["b"])
    with pytest.raises(
        ValueError, match=r"^fusion\.ab: members need one token sequence per sample, got \{'b': 2\}"
    ):
        model({"a": X, "b": X})
