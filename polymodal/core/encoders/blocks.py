"""timm's ViT ``Block`` over a packed stream ``[T, D]`` (:mod:`polymodal.core.encoders.packing`), using the block's
own modules (``norm1``, ``attn.qkv``, ``q_norm``/``k_norm``, ``attn.proj``, ``ls1``, ``norm2``, ``mlp``, ``ls2``,
``drop_path1/2``), so timm state dicts apply unchanged; attention is restricted to each sequence of the stream
and stochastic depth drops whole sequences.
"""

from __future__ import annotations

from torch import Tensor, nn

from polymodal.core.encoders.packing import AttentionBackend, PackedLayout, varlen_attention

__all__ = ["drop_path_packed", "packed_attention", "packed_block_forward"]


def drop_path_packed(x: Tensor, module: nn.Module, layout: PackedLayout) -> Tensor:
    """Stochastic depth per *sequence* on a stream (timm's ``DropPath`` would drop per token here).

    ``module`` is the block's ``drop_path1``/``drop_path2`` (``DropPath`` or ``Identity``); its ``drop_prob``,
    ``scale_by_keep`` and training flag are honoured.
    """
    p = float(getattr(module, "drop_prob", 0.0))
    if p == 0.0 or not module.training:
        return x
    keep = 1.0 - p
    mask = x.new_empty(layout.num_segments).bernoulli_(keep)
    if keep > 0.0 and getattr(module, "scale_by_keep", True):
        mask.div_(keep)
    return x * mask.index_select(0, layout.segment_ids()).unsqueeze(-1)


def packed_attention(
    attn: nn.Module, x: Tensor, layout: PackedLayout, backend: AttentionBackend = "auto"
) -> Tensor:
    """timm ``Attention`` over a stream ``[T, D]`` using its own ``qkv``/``q_norm``/``k_norm``/``norm``/``proj``."""
    t = x.shape[0]
    heads, hd = attn.num_heads, attn.head_dim
    gate = getattr(attn, "gate", None)
    g = gate(x).sigmoid() if gate is not None else None
    q, k, v = attn.qkv(x).view(t, 3, heads, hd).unbind(1)
    q, k = attn.q_norm(q), attn.k_norm(k)
    dropout_p = attn.attn_drop.p if attn.training else 0.0
    o = varlen_attention(q, k, v, layout, dropout_p=dropout_p, backend=backend).reshape(t, heads * hd)
    o = attn.norm(o)
    if g is not None:
        o = o * g
    return attn.proj_drop(attn.proj(o))


def packed_block_forward(
    block: nn.Module, x: Tensor, layout: PackedLayout, backend: AttentionBackend = "auto"
) -> Tensor:
    """One timm ``Block`` (pre-norm attention + MLP, layer scale, drop path) over the stream ``[T, D]``.

    Equals ``block(x_s)`` for each sequence ``x_s`` alone (up to float rounding).
    """
    y = block.ls1(packed_attention(block.attn, block.norm1(x), layout, backend))
    x = x + drop_path_packed(y, block.drop_path1, layout)
    y = block.ls2(block.mlp(block.norm2(x)))
    return x + drop_path_packed(y, block.drop_path2, layout)
