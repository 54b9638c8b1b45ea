"""polymodal.model.export: the tensor forward of a built model as a torch.export program and as an ONNX file,
equal to the eager model, with a dynamic batch, its checks as assertions, and clear refusals."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F

import polymodal
from polymodal.core.tokens import Tokens
from polymodal.model.export import TensorForward, export_onnx, export_program, onnx_input_names, onnx_inputs
from polymodal.registry.tables import unregister

from .conftest import SeqTokenizer

SMALL = {"type": "vit", "embed_dim": 32, "depth": 2, "num_heads": 2}
TEXT_N = 16  # text padded to a fixed length for a fixed-shape program


class HostCheckTokenizer(SeqTokenizer):
    """The same, with a check that reads a value in Python (``bool(...)``), as older plugins do."""

    name: ClassVar[str] = "test_export_host_check"

    def forward(self, batch: dict[str, torch.Tensor]) -> Tokens:
        if bool((batch["values"] > 100).any()):
            raise self.fail("values at most 100", "larger values")
        return super().forward(batch)


@pytest.fixture(scope="module", autouse=True)
def _tokenizers() -> Iterator[None]:
    polymodal.register(HostCheckTokenizer)
    yield
    unregister("tokenizer", "test_export_host_check")


def _model(second: str = "test_seq", **tok: Any) -> polymodal.MultimodalModel:
    return polymodal.build_model(
        encoder=SMALL,
        tokenizers={
            "image": {"type": "image", "patch_size": 8, "img_size": 32},
            "seq": {"type": second, **tok},
        },
        heads={
            "image": {"type": "classification", "num_classes": 3},
            "seq": {"type": "classification", "num_classes": 2},
        },
    ).eval()


def _seq(lengths: list[int], n: int = 10) -> dict[str, torch.Tensor]:
    return {
        "values": torch.randn(len(lengths), n),
        "mask": torch.arange(n)[None] < torch.tensor(lengths)[:, None],
    }


def _batch(images: int, lengths: list[int]) -> dict[str, Any]:
    return {"image": torch.randn(images, 3, 32, 32), "seq": _seq(lengths)}


def _max_diff(out: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> float:
    assert set(out) == set(ref)
    return max((torch.as_tensor(out[k]) - ref[k]).abs().max().item() for k in ref)


def test_exported_program_equals_eager_with_a_dynamic_batch() -> None:
    model = _model()
    program = export_program(model, _batch(3, [10, 4, 1]))
    with torch.no_grad():
        for batch in (_batch(3, [10, 4, 1]), _batch(5, [2, 7]), _batch(2, [1, 1, 9, 3, 10, 6])):
            out, ref = program.module()(batch), model(batch)
            assert {k: tuple(v.shape) for k, v in out.items()} == {k: tuple(v.shape) for k, v in ref.items()}
            assert _max_diff(out, ref) < 1e-5
    assert model.training is False


def test_export_traces_in_eval_mode_and_restores_the_mode() -> None:
    model = _model()
    model.train()
    program = model.export(_batch(2, [3, 5]))
    assert model.training is True
    batch = _batch(2, [3, 5])
    model.eval()
    with torch.no_grad():
        assert _max_diff(program.module()(batch), model(batch)) < 1e-5


def test_image_and_text_export_equals_eager() -> None:
    model = polymodal.build_model(
        encoder=SMALL,
        tokenizers={
            "image": {"type": "image", "patch_size": 8, "img_size": 32},
            "text": {"type": "text", "max_length": TEXT_N},
        },
        heads={
            "image": {"type": "classification", "num_classes": 3},
            "text": {"type": "classification", "num_classes": 2},
        },
    ).eval()

    def batch(texts: list[str]) -> dict[str, Any]:
        c = model.tokenizers["text"].collate(texts)
        pad = TEXT_N - c["input_ids"].shape[1]
        text = {"input_ids": F.pad(c["input_ids"], (0, pad)), "mask": F.pad(c["mask"], (0, pad))}
        return {"image": torch.randn(len(texts), 3, 32, 32), "text": text}

    example = batch(["a short one", "x", "sixteen bytes.."])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        program = export_program(model, example)
    # the text and image plugins check values with check_values: a sound export, no draft_export fallback
    assert not [w for w in caught if "draft_export" in str(w.message)]
    bad = batch(["a", "b", "c"])
    bad["text"]["input_ids"][0, 0] = 300  # outside the byte vocabulary: the in-graph check fires
    with pytest.raises(RuntimeError, match=r"text: expected \(B, N\) token ids in \[0, 259\)"):
        program.module()(bad)
    other = batch(["other words", "y", "z z z"])
    with torch.no_grad():
        for b in (example, other):
            assert _max_diff(program.module()(b), model(b)) < 1e-5


def test_export_checks_are_assertions_in_the_program() -> None:
    program = export_program(_model(), _batch(2, [3, 5]))
    with pytest.raises(RuntimeError, match=r"^test_seq: expected at least one real value per row"):
        program.module()({"image": torch.randn(2, 3, 32, 32), "seq": _seq([3, 0])})
    with pytest.raises(RuntimeError, match=r"^image: expected finite values"):
        program.module()({"image": torch.full((2, 3, 32, 32), float("nan")), "seq": _seq([3, 5])})


def test_a_check_reading_values_in_python_exports_through_draft_export_with_a_warning() -> None:
    model = _model("test_export_host_check")
    example = _batch(2, [3, 5])
    with pytest.warns(
        UserWarning, match=r"export: a check reads tensor values in Python \(.*test_export\.py"
    ):
        program = export_program(model, example)
    with torch.no_grad():
        assert _max_diff(program.module()(example), model(example)) < 1e-5
    big = {"image": example["image"], "seq": {**example["seq"], "values": example["seq"]["values"] + 1000}}
    with pytest.raises(RuntimeError):  # the check, as a run-time assertion of the example's outcome
        program.module()(big)


def test_export_refuses_raw_samples_and_unknown_inputs() -> None:
    model = _model()
    with pytest.raises(TypeError, match=r"export: seq: expected the tokenizer's batch tensors .* got str"):
        export_program(model, {"seq": ["not", "tensors"]})
    with pytest.raises(
        KeyError, match=r"expected input keys among \['image', 'seq'\], got unknown \['audio'\]"
    ):
        export_program(model, {"audio": torch.zeros(1)})
    with pytest.raises(TypeError, match=r"expected example inputs as a non-empty dict"):
        export_program(model, torch.zeros(1, 3, 32, 32))


def test_tensor_forward_is_the_model_in_tensor_mode() -> None:
    model = _model()
    batch = _batch(2, [3, 5])
    with torch.no_grad():
        assert _max_diff(TensorForward(model)(batch), model(batch)) == 0.0


def test_onnx_input_names_follow_the_nested_keys() -> None:
    batch = {"image": torch.zeros(1), "text": {"input_ids": torch.zeros(1), "mask": torch.zeros(1)}}
    assert onnx_input_names(batch) == ["image", "text.input_ids", "text.mask"]
    assert list(onnx_inputs(batch)) == ["image", "text.input_ids", "text.mask"]


def test_onnx_file_equals_eager_in_onnx_runtime(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    model = _model()
    path = export_onnx(model, _batch(3, [10, 4, 1]), tmp_path / "model.onnx")
    assert path == tmp_path / "model.onnx" and path.stat().st_size > 0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "seq.values", "seq.mask"]
    assert [o.name for o in session.get_outputs()] == ["image.output", "seq.output"]
    with torch.no_grad():
        for batch in (_batch(3, [10, 4, 1]), _batch(4, [2, 9])):  # the batch is dynamic in ONNX too
            outs = dict(zip(["image", "seq"], session.run(None, onnx_inputs(batch))))
            assert _max_diff(outs, model(batch)) < 1e-5


def test_export_onnx_names_the_missing_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import polymodal.model.export as export_module

    monkeypatch.setattr(export_module, "_importable", lambda name: name != "onnxscript")
    with pytest.raises(
        ImportError, match=r"export_onnx needs onnxscript .* pip install 'polymodal\[export\]'"
    ):
        export_onnx(_model(), _batch(2, [3, 5]), tmp_path / "m.onnx")


def test_the_cli_exports_a_saved_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime")
    from polymodal.cli import main

    model = _model()
    model.save_pretrained(tmp_path / "model")
    example = _batch(3, [10, 4, 1])
    torch.save(example, tmp_path / "example.pt")
    assert (
        main(
            [
                "export",
                str(tmp_path / "model"),
                str(tmp_path / "m.pt2"),
                "--example",
                str(tmp_path / "example.pt"),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    program = torch.export.load(str(tmp_path / "m.pt2"))
    loaded = polymodal.from_pretrained(tmp_path / "model").eval()
    with torch.no_grad():
        other = _batch(5, [3, 8])  # another batch size: the batch is dynamic
        assert _max_diff(program.module()(other), loaded(other)) < 1e-5
    # generated examples, one input, ONNX; the note says where the shapes came from
    assert main(["export", str(tmp_path / "model"), str(tmp_path / "m.onnx"), "--inputs", "image"]) == 0
    captured = capsys.readouterr()
    assert "inputs image [2, 3, " in captured.out and "example_input" in captured.err
    assert (tmp_path / "m.onnx").stat().st_size > 0
    # one clean line for what cannot run
    assert main(["export", str(tmp_path / "model"), str(tmp_path / "m.txt")]) == 2
    assert "expected a file name ending in .onnx" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "model"), str(tmp_path / "m.pt2"), "--inputs", "audio"]) == 2
    assert "the model has no such input" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_text("not a torch file")
    assert (
        main(
            [
                "export",
                str(tmp_path / "model"),
                str(tmp_path / "m.pt2"),
                "--example",
                str(tmp_path / "bad.pt"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--example" in err and "weights_only=False" not in err
