"""MultimodalModel: forward modes, loss weights, one encoder call per step, early fusion, the data preprocessor,
evaluation steps, and save_pretrained / from_pretrained."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from pydantic import Field, ValidationError
from torch import nn

import polymodal
from polymodal.core.tokenizer import Tokenizer, TokenizerConfig
from polymodal.core.tokens import Tokens
from polymodal.model.multimodal import MultimodalDataPreprocessor
from polymodal.registry.tables import unregister

SMALL = {"type": "vit", "embed_dim": 32, "depth": 2, "num_heads": 2}


class SeqConfig(TokenizerConfig):
    type: str = "test_seq"
    max_len: int = Field(8, gt=0)


class SeqTokenizer(Tokenizer):
    """``{"values": [B, N], "mask": [B, N]}`` -> one token per value."""

    name: ClassVar[str] = "test_seq"
    config_class: ClassVar[type[SeqConfig]] = SeqConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.proj = nn.Linear(1, self.config.embed_dim)

    def forward(self, batch: dict) -> Tokens:
        return Tokens(self.proj(batch["values"].unsqueeze(-1)), batch["mask"], self.modality)


@pytest.fixture(scope="module", autouse=True)
def _seq_tokenizer() -> Iterator[None]:
    polymodal.register(SeqTokenizer)
    yield
    unregister("tokenizer", "test_seq")


def _seq(b: int, lengths: list[int] | None = None, n: int = 5) -> dict[str, torch.Tensor]:
    lengths = lengths or [n] * b
    return {"values": torch.randn(b, n), "mask": torch.arange(n)[None] < torch.tensor(lengths)[:, None]}


def _model(**fields: Any) -> polymodal.MultimodalModel:
    config = {
        "encoder": SMALL,
        "tokenizers": {"image": {"type": "image", "patch_size": 8}, "seq": "test_seq"},
        "heads": {
            "image": {"type": "classification", "num_classes": 3, "loss_weight": 0.5},
            "level": {"type": "regression", "modality": "seq"},
        },
        **fields,
    }
    return polymodal.build_model(config).eval()


def test_forward_modes_and_loss_weights() -> None:
    model = _model()
    inputs = {"image": torch.randn(2, 3, 16, 16), "seq": _seq(2, [3, 5])}
    out = model(inputs)
    assert set(out) == {"image", "level"} and out["image"].shape == (2, 3) and out["level"].shape == (2, 1)
    pred = model(inputs, mode="predict")
    assert torch.equal(pred["image"], out["image"].argmax(-1))
    targets = {"image": torch.tensor([0, 2]), "level": torch.tensor([0.5, -1.0])}
    losses = model(inputs, targets, mode="loss")
    assert set(losses) == {"loss_image", "loss_level"}
    assert torch.allclose(losses["loss_image"], 0.5 * F.cross_entropy(out["image"], targets["image"]))
    assert torch.allclose(losses["loss_level"], F.mse_loss(out["level"][:, 0], targets["level"]))
    # only the heads whose input is present answer
    assert set(model({"seq": _seq(3)})) == {"level"}
    with pytest.raises(
        KeyError, match=r"mode='loss' needs targets for tasks \['level'\]; got targets for \[\]"
    ):
        model({"seq": _seq(2)}, {}, mode="loss")
    with pytest.raises(
        ValueError, match="mode must be 'tensor', 'predict', 'loss' or 'evaluate', got 'train'"
    ):
        model(inputs, mode="train")
    with pytest.raises(KeyError, match=r"inputs: expected keys among \['image', 'seq'\] .*got unknown \['audio'\]"):
        model({"audio": torch.zeros(1)})


def test_all_inputs_of_a_step_go_through_the_encoder_in_one_call() -> None:
    model = _model()
    calls: list[list[str]] = []
    model.encoder.register_forward_pre_hook(lambda m, args: calls.append([t.modality for t in args[0]]))
    model({"image": torch.randn(2, 3, 16, 16), "seq": _seq(4)})
    assert calls == [["image", "seq"]]


def test_early_fusion_concatenates_the_members_behind_one_cls() -> None:
    model = _model(
        fusion={"pair": ["image", "seq"]},
        heads={"pair": {"type": "classification", "num_classes": 2, "modality": "pair"}},
    )
    image, seq = torch.randn(2, 3, 16, 16), _seq(2, [2, 5])
    tokens = model.tokenize({"image": image, "seq": seq})
    assert list(tokens) == ["pair"]  # members read by no head are not encoded on their own
    fused = tokens["pair"]
    assert fused.embeddings.shape == (2, 1 + 4 + 5, 32) and fused.prefix == 1 and fused.modality == "pair"
    me, cls = model.modality_embeddings, model.cls_tokens
    expected = torch.cat(
        [
            (cls["pair"] + me["pair"]).expand(2, 1, 32),
            model.tokenizers["image"](image).embeddings + me["image"],
            model.tokenizers["seq"](seq).embeddings + me["seq"],
        ],
        dim=1,
    )
    assert torch.allclose(fused.embeddings, expected)
    assert fused.mask.tolist() == [[True] * 7 + [False] * 3, [True] * 10]
    assert set(fused.meta) == {"image", "seq"}
    assert model({"image": image, "seq": seq})["pair"].shape == (2, 2)
    assert set(model({"image": image})) == set()  # an incomplete group fuses nothing
    with pytest.raises(ValueError, match=r"fusion.pair: members need one row per sample, got batch sizes"):
        model.tokenize({"image": image, "seq": _seq(3)})
    both = _model(
        fusion={"pair": ["image", "seq"]},
        heads={
            "pair": {"type": "classification", "num_classes": 2, "modality": "pair"},
            "image": {"type": "classification", "num_classes": 3},
        },
    )
    assert list(both.tokenize({"image": image, "seq": seq})) == ["image", "pair"]


def test_fusion_and_head_config_errors() -> None:
    with pytest.raises(
        ValidationError, match=r"fusion.image: expected a new key fusing two or more distinct inputs"
    ):
        _model(fusion={"image": ["image", "seq"]})
    with pytest.raises(ValidationError, match=r"fusion.pair: inputs \['audio'\] have no tokenizer"):
        _model(fusion={"pair": ["image", "audio"]})
    with pytest.raises(
        ValueError, match=r"heads.emb reads inputs \['nothing'\], which have no tokenizer"
    ):
        _model(heads={"emb": {"type": "embedding", "modality": "image", "pair": "nothing"}})


def test_paired_embedding_head_trains_without_targets() -> None:
    model = _model(heads={"emb": {"type": "embedding", "modality": "image", "pair": "seq", "out_dim": 8}})
    inputs = {"image": torch.randn(4, 3, 16, 16), "seq": _seq(4)}
    out = model(inputs)["emb"]
    assert out.shape == (4, 2, 8)
    loss = model(inputs, {}, mode="loss")["loss_emb"]
    assert loss.item() > 0 and loss.requires_grad


class _Movable:
    def __init__(self) -> None:
        self.moved_to: torch.device | None = None

    def to(self, device: torch.device) -> _Movable:
        self.moved_to = device
        return self


def test_data_preprocessor_moves_nested_batches() -> None:
    pre = MultimodalDataPreprocessor()
    graph = _Movable()
    batch = {
        "inputs": {"a": torch.zeros(2), "g": graph, "t": (torch.ones(1), "name")},
        "data_samples": {"a": None},
    }
    out = pre(batch)
    assert out["inputs"]["g"] is graph and graph.moved_to == torch.device("cpu")
    assert torch.equal(out["inputs"]["t"][0], torch.ones(1)) and out["inputs"]["t"][1] == "name"
    assert out["data_samples"] == {"a": None}
    assert isinstance(_model().data_preprocessor, MultimodalDataPreprocessor)


def test_val_step_gives_predictions_targets_and_metric_names() -> None:
    model = _model()
    batch = {
        "inputs": {"image": torch.randn(2, 3, 16, 16), "seq": _seq(2)},
        "data_samples": {"image": torch.tensor([1, 2]), "level": torch.tensor([0.0, 1.0])},
    }
    (result,) = model.val_step(batch)
    assert set(result) == {"image", "level"}
    assert result["image"]["metrics"] == ("accuracy", "macro_f1")
    assert result["image"]["params"] == {"num_classes": 3, "multi_label": False}
    assert result["image"]["target"].tolist() == [1, 2] and result["image"]["pred"].shape == (2,)
    assert result["level"]["target"].shape == (2, 1)  # aligned to the head's output
    assert model.test_step(batch)[0]["level"]["metrics"] == ("mse", "rmse", "mae")


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = _model(
        fusion={"pair": ["image", "seq"]},
        heads={
            "image": {"type": "classification", "num_classes": 3},
            "level": {"type": "regression", "modality": "seq"},
            "pair": {"type": "classification", "num_classes": 2, "modality": "pair"},
        },
    )
    inputs = {"image": torch.randn(2, 3, 16, 16), "seq": _seq(2, [4, 5])}
    expected = model(inputs)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    again = polymodal.from_pretrained(tmp_path)
    assert not again.training
    out = again(inputs)
    assert set(out) == set(expected) and all(torch.equal(out[k], expected[k]) for k in expected)

    only_image = polymodal.from_pretrained(tmp_path, modalities=["image"])
    assert list(only_image.tokenizers) == ["image"] and list(only_image.heads) == ["image"]
    assert only_image.config.fusion == {}  # the pair needs both members
    # same weights; the encoder now packs the image alone, so equal up to float rounding
    torch.testing.assert_close(
        only_image({"image": inputs["image"]})["image"], expected["image"], atol=1e-5, rtol=0
    )
    assert not any(k.startswith(("tokenizers.seq", "heads.level")) for k in only_image.state_dict())

    with pytest.raises(KeyError, match=r"modalities \['audio'\] are not in the model"):
        polymodal.from_pretrained(tmp_path, modalities=["audio"])
    with pytest.raises(FileNotFoundError, match=r"no such folder"):
        polymodal.from_pretrained(tmp_path / "missing")
    # a config.json from another save than the weights is refused
    config = json.loads((tmp_path / "config.json").read_text())
    config["heads"]["image"]["dropout"] = 0.5  # weights of the same shapes, another config
    (tmp_path / "config.json").write_text(json.dumps(config, indent=2))
    with pytest.raises(ValueError, match=r"config\.json and model\.safetensors come from different saves"):
        polymodal.from_pretrained(tmp_path)


def test_runner_builds_the_model_with_fusion() -> None:
    from mmengine.registry import MODELS, DefaultScope

    with DefaultScope.overwrite_default_scope("polymodal"):
        model = MODELS.build(
            dict(
                type="MultimodalModel",
                encoder=SMALL,
                tokenizers={"a": "image", "b": "image"},
                fusion={"ab": ["a", "b"]},
                heads={"ab": {"type": "classification", "num_classes": 2}},
            )
        )
    out = model({"a": torch.randn(1, 3, 16, 16), "b": torch.randn(1, 3, 32, 16)})
    assert out["ab"].shape == (1, 2)
