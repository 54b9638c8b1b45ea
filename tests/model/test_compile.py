"""The padded encoder path that torch.compile and torch.export trace (masked SDPA per input instead of packing),
checks as in-graph assertions, and torch.compile(model) equal to the eager model on the CPU."""

from __future__ import annotations

import pytest
import torch

import polymodal
from polymodal.core.encoders import TransformerEncoder
from polymodal.core.encoders.packing import pack, unpack
from polymodal.core.tokenizer import check_values
from polymodal.core.tokens import Tokens

SMALL = {"type": "vit", "embed_dim": 32, "depth": 2, "num_heads": 2}


def _masked(b: int, n: int, lengths: list[int], name: str, d: int = 32) -> Tokens:
    mask = torch.arange(n)[None] < torch.tensor(lengths)[:, None]
    return Tokens(torch.randn(b, n, d), mask, name)


def _seq(lengths: list[int], n: int | None = None) -> dict[str, torch.Tensor]:
    n = n or max(lengths)
    return {
        "values": torch.randn(len(lengths), n),
        "mask": torch.arange(n)[None] < torch.tensor(lengths)[:, None],
    }


def _model() -> polymodal.MultimodalModel:
    return polymodal.build_model(
        encoder=SMALL,
        tokenizers={"image": {"type": "image", "patch_size": 8, "img_size": 32}, "seq": "test_seq"},
        heads={
            "image": {"type": "classification", "num_classes": 3},
            "seq": {"type": "classification", "num_classes": 2},
        },
    ).eval()


# -- the padded layout ---------------------------------------------------------------------------------------------
def test_padded_pack_keeps_every_position_in_order_and_unpacks_zeros_at_padding() -> None:
    a = _masked(3, 6, [2, 6, 0], "a", d=4)
    b = Tokens.full(torch.randn(2, 5, 4), "b")
    stream, layout = pack([a, b], padded=True)
    assert torch.equal(stream, torch.cat([a.embeddings.reshape(-1, 4), b.embeddings.reshape(-1, 4)]))
    assert layout.padded and layout.lengths == () and layout.index is None
    assert layout.runs == ((0, 3, 6), (18, 2, 5))
    assert (layout.num_tokens, layout.num_segments, layout.max_length) == (28, 5, 6)
    assert layout.segment_ids().tolist() == [0] * 6 + [1] * 6 + [2] * 6 + [3] * 5 + [4] * 5
    out_a, out_b = unpack(stream, layout)
    assert torch.equal(out_a, a.embeddings * a.mask.unsqueeze(-1))  # zeros at padding, the rest as it was
    assert torch.equal(out_b, b.embeddings)
    with pytest.raises(ValueError, match=r"a padded stream .* has no varlen segments"):
        layout.cu_seqlens()


def test_padded_encoder_equals_packed_encoder_with_zeros_at_padding() -> None:
    enc = TransformerEncoder({k: v for k, v in SMALL.items() if k != "type"}).eval()
    tokens = [
        _masked(3, 7, [7, 3, 1], "text"),
        _masked(2, 5, [5, 0], "seq"),  # a sequence without a real token: zeros out, no NaN
        Tokens.full(torch.randn(2, 9, 32), "image"),
    ]
    with torch.no_grad():
        packed = enc(tokens)
        enc.padded = True
        padded = enc(tokens)
    for t, p, q in zip(tokens, packed, padded):
        assert (p.embeddings - q.embeddings).abs().max().item() < 1e-5
        assert torch.equal(q.embeddings[~t.mask], torch.zeros_like(q.embeddings[~t.mask]))
        assert torch.equal(q.mask, t.mask)


def test_padded_drop_path_drops_whole_sequences() -> None:
    enc = TransformerEncoder({**{k: v for k, v in SMALL.items() if k != "type"}, "drop_path_rate": 0.99})
    enc.padded = True
    enc.train()
    x = _masked(4, 6, [6, 4, 2, 1], "a")
    torch.manual_seed(3)
    y = enc([x])[0].embeddings
    enc.eval()
    with torch.no_grad():
        ref = enc([x])[0].embeddings
    assert torch.isfinite(y).all() and not torch.allclose(y, ref)  # stochastic depth was active


# -- checks under tracing --------------------------------------------------------------------------------------------
def test_check_values_raises_a_modality_error_in_eager_mode_and_describes_only_failures() -> None:
    calls = []

    def got() -> str:
        calls.append(1)
        return "ids from -1 to 40"

    check_values(torch.tensor([True, True]), "text", "ids in [0, 259)", got)
    assert calls == []
    with pytest.raises(
        polymodal.ModalityInputError, match=r"^text: expected ids in \[0, 259\), got ids from -1 to 40$"
    ):
        check_values(torch.tensor([[True, False]]), "text", "ids in [0, 259)", got)
    assert calls == [1]


def test_eager_checks_raise_modality_errors_and_traced_checks_are_assertions() -> None:
    model = _model()
    bad = {"image": torch.full((1, 3, 32, 32), float("nan"))}
    with pytest.raises(polymodal.ModalityInputError, match=r"^image: expected finite values"):
        model(bad)
    program = torch.export.export(
        polymodal.model.TensorForward(model), ({"image": torch.randn(2, 3, 32, 32)},), strict=False
    )
    text = program.graph_module.code
    assert "_assert_async" in text and "_local_scalar_dense" not in text and ".item(" not in text
    with pytest.raises(RuntimeError, match=r"image: expected finite values of magnitude at most 1e\+15"):
        program.module()({"image": torch.full((2, 3, 32, 32), float("nan"))})
    with pytest.raises(RuntimeError, match=r"image: expected finite values"):
        program.module()({"image": torch.full((2, 3, 32, 32), 1e30)})


def test_core_and_model_trace_without_graph_breaks() -> None:
    torch._dynamo.reset()
    model = _model()
    batch = {"image": torch.randn(2, 3, 32, 32), "seq": _seq([5, 2, 7])}
    explanation = torch._dynamo.explain(model)(batch)
    reasons = [
        f"{r.reason} at {r.user_stack[-1] if r.user_stack else '?'}" for r in explanation.break_reasons
    ]
    assert explanation.graph_break_count == 0, reasons
    assert explanation.graph_count == 1


# -- torch.compile -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compiler() -> None:
    """Skip when inductor cannot build a CPU kernel here (no C++ compiler, or headers missing)."""
    torch._dynamo.reset()
    try:
        torch.compile(lambda x: x.sin() + 1)(torch.ones(3))
    except Exception as exc:  # InductorError / CppCompileError / a missing compiler
        pytest.skip(f"torch.compile cannot build CPU kernels here: {type(exc).__name__}: {str(exc)[:200]}")


def test_compiled_model_equals_eager_and_new_lengths_compile_nothing(compiler: None) -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model()
    compiled = torch.compile(model)
    batches = [
        {"image": torch.randn(2, 3, 32, 32), "seq": _seq([5, 2, 7])},
        {"image": torch.randn(3, 3, 32, 32), "seq": _seq([3, 9, 1, 4])},  # new shapes: one recompile, dynamic
        {"image": torch.randn(4, 3, 32, 32), "seq": _seq([11, 6])},  # new lengths, sizes: nothing to compile
        {"image": torch.randn(2, 3, 32, 32), "seq": _seq([2, 2, 8], n=12)},
    ]
    with torch.no_grad():
        for i, batch in enumerate(batches):
            if i == 2:
                graphs = counters["stats"]["unique_graphs"]
            out, ref = compiled(batch), model(batch)
            assert set(out) == set(ref) == {"image", "seq"}
            for task in ref:
                assert out[task].shape == ref[task].shape
                assert (out[task] - ref[task]).abs().max().item() < 1e-5, (i, task)
    assert counters["stats"]["unique_graphs"] == graphs  # no recompile for new lengths and batch sizes
    assert sum(counters["graph_break"].values()) == 0
    # checks hold in the compiled model too: an in-graph assertion naming the input
    with pytest.raises(RuntimeError, match=r"image: expected finite values"), torch.no_grad():
        compiled({"image": torch.full((2, 3, 32, 32), float("inf")), "seq": _seq([5, 2, 7])})
