"""Packing, unpacking and block-diagonal attention over a packed stream."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models.vision_transformer import Block

from polymodal.core.encoders.blocks import drop_path_packed, packed_block_forward
from polymodal.core.encoders.packing import pack, resolve_backend, unpack, varlen_attention
from polymodal.core.tokens import Tokens


def _tokens(b: int, n: int, d: int, lengths: list[int] | None = None, name: str = "m") -> Tokens:
    x = torch.randn(b, n, d)
    if lengths is None:
        return Tokens.full(x, name)
    mask = torch.arange(n)[None] < torch.tensor(lengths)[:, None]
    return Tokens(x, mask, name)


def _naive_stream(tokens: list[Tokens]) -> list[torch.Tensor]:
    """Real tokens of each sequence, sequences stably sorted by decreasing length (the packing order)."""
    seqs = [t.embeddings[b][t.mask[b]] for t in tokens for b in range(t.batch_size)]
    return sorted(seqs, key=lambda s: -len(s))


def test_pack_gathers_real_tokens_sorted_by_length_and_unpacks_with_zero_padding() -> None:
    a = _tokens(3, 6, 4, [2, 6, 0])
    b = Tokens(torch.randn(2, 5, 4), torch.tensor([[1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool), "b")
    stream, layout = pack([a, b])
    expected = torch.cat(_naive_stream([a, b]))
    assert stream.shape == (int(a.mask.sum() + b.mask.sum()), 4) == (16, 4)
    assert torch.equal(stream, expected)
    assert layout.lengths == (6, 5, 3, 2, 0)
    assert layout.runs == ((0, 1, 6), (6, 1, 5), (11, 1, 3), (14, 1, 2))
    assert layout.shapes == ((3, 6), (2, 5))
    out = unpack(stream, layout)
    assert torch.equal(out[0], a.embeddings * a.mask[..., None])
    assert torch.equal(out[1], b.embeddings * b.mask[..., None])


def test_layout_groups_equal_lengths_and_gives_cu_seqlens_and_segment_ids() -> None:
    t = _tokens(6, 5, 2, [3, 5, 3, 5, 0, 2])
    stream, layout = pack([t])
    assert layout.lengths == (5, 5, 3, 3, 2, 0)
    assert layout.runs == ((0, 2, 5), (10, 2, 3), (16, 1, 2))
    assert layout.cu_seqlens().tolist() == [0, 5, 10, 13, 16, 18]  # the empty segment owns no tokens
    assert layout.cu_seqlens().dtype == torch.int32
    assert layout.segment_ids().tolist() == [0] * 5 + [1] * 5 + [2] * 3 + [3] * 3 + [4] * 2
    assert layout.num_tokens == 18 and layout.max_length == 5 and layout.num_segments == 6
    assert torch.equal(stream[:5], t.embeddings[1]) and torch.equal(stream[5:10], t.embeddings[3])


def test_unpadded_inputs_are_concatenated_whole_longest_first() -> None:
    a, b, c = _tokens(2, 3, 4), _tokens(1, 7, 4), _tokens(3, 3, 4)
    stream, layout = pack([a, b, c])
    assert layout.index is None
    assert layout.input_order == (1, 0, 2)
    assert layout.runs == ((0, 1, 7), (7, 5, 3))  # a and c merge into one run of five length-3 sequences
    assert torch.equal(
        stream, torch.cat([b.embeddings[0], a.embeddings.flatten(0, 1), c.embeddings.flatten(0, 1)])
    )
    out = unpack(stream, layout)
    for t, o in zip((a, b, c), out):
        assert torch.equal(o, t.embeddings)


def test_single_unpadded_input_is_not_copied() -> None:
    t = _tokens(2, 3, 4)
    stream, _ = pack([t])
    assert stream.data_ptr() == t.embeddings.data_ptr()


def test_pack_rejects_mixed_widths_and_empty_list() -> None:
    with pytest.raises(ValueError, match=r"pack: expected tokens of one width D, got a: 4, b: 5"):
        pack([_tokens(1, 2, 4, name="a"), _tokens(1, 2, 5, name="b")])
    with pytest.raises(ValueError, match="pack: expected at least one Tokens"):
        pack([])


def _block_diagonal_reference(q, k, v, lengths):  # dense T x T mask: fine in a test, never on the hot path
    seg = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)).to(q.device)
    allowed = seg[:, None] == seg[None, :]
    o = F.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=allowed
    )
    return o.transpose(0, 1)


@pytest.mark.parametrize("backend", ["sdpa", "sdpa_per_segment", "auto"])
def test_varlen_attention_equals_dense_block_diagonal_attention(backend: str) -> None:
    t = _tokens(7, 9, 1, [9, 1, 4, 4, 9, 2, 4])
    _, layout = pack([t])
    q, k, v = (torch.randn(layout.num_tokens, 3, 8) for _ in range(3))
    out = varlen_attention(q, k, v, layout, backend=backend)
    ref = _block_diagonal_reference(q, k, v, list(layout.lengths))
    assert out.shape == (33, 3, 8)
    assert (out - ref).abs().max().item() <= 1e-5


def test_varlen_attention_with_no_tokens_and_zero_length_sequences() -> None:
    t = _tokens(2, 3, 1, [0, 0])
    _, layout = pack([t])
    q = torch.randn(0, 2, 4)
    assert varlen_attention(q, q, q, layout).shape == (0, 2, 4)


def test_resolve_backend_on_cpu_and_varlen_kernels_refuse_cpu_tensors() -> None:
    q = torch.randn(4, 2, 8)
    assert resolve_backend("auto", q) == "sdpa"
    assert resolve_backend("sdpa_per_segment", q) == "sdpa_per_segment"
    _, layout = pack([_tokens(1, 4, 1)])
    with pytest.raises(ValueError, match=r"backend 'torch_varlen' needs fp16/bf16 CUDA tensors"):
        varlen_attention(q, q, q, layout, backend="torch_varlen")
    with pytest.raises(ValueError, match="unknown backend 'dense'"):
        varlen_attention(q, q, q, layout, backend="dense")  # type: ignore[arg-type]


def test_drop_path_is_per_sequence_on_the_stream() -> None:
    t = _tokens(40, 5, 1, [5, 3, 1, 4, 2] * 8)
    _, layout = pack([t])
    module = DropPath(0.5).train()
    x = torch.ones(layout.num_tokens, 3)
    out = drop_path_packed(x, module, layout)
    values = set()
    for i, (start, end) in enumerate(
        zip(layout.cu_seqlens()[:-1].tolist(), layout.cu_seqlens()[1:].tolist())
    ):
        seg = out[start:end].unique().tolist()
        assert len(seg) == 1 and seg[0] in (0.0, 2.0), f"segment {i} mixes kept and dropped tokens: {seg}"
        values.add(seg[0])
    assert values == {0.0, 2.0}
    assert torch.equal(drop_path_packed(x, module.eval(), layout), x)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_packed_block_forward_equals_block_on_each_sequence(qk_norm: bool) -> None:
    block = Block(16, 4, qkv_bias=True, qk_norm=qk_norm, init_values=0.5).eval()
    a, b = _tokens(3, 7, 16, [7, 2, 5]), _tokens(2, 4, 16)
    stream, layout = pack([a, b])
    out = unpack(packed_block_forward(block, stream, layout), layout)
    for t, o in zip((a, b), out):
        for i in range(t.batch_size):
            ref = block(t.embeddings[i : i + 1, t.mask[i]])[0]
            assert (o[i, t.mask[i]] - ref).abs().max().item() <= 1e-5
            assert not o[i, ~t.mask[i]].any()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_varlen_kernels_match_sdpa_on_cuda() -> None:  # pragma: no cover - GPU only
    from polymodal.core.encoders.packing import available_backends

    t = _tokens(5, 70, 1, [70, 3, 33, 70, 9]).to("cuda")
    _, layout = pack([t])
    q, k, v = (torch.randn(layout.num_tokens, 4, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    assert resolve_backend("auto", q, 0.0, layout) in ("torch_varlen", "flash_attn")
    ref = _block_diagonal_reference(q.float(), k.float(), v.float(), list(layout.lengths))
    for backend in ["sdpa", *(b for b in available_backends() if b in ("torch_varlen", "flash_attn"))]:
        out = varlen_attention(q, k, v, layout, backend=backend)
        assert (out.float() - ref).abs().max().item() < 2e-2, backend
