"""Packing token sequences into one stream, and attention restricted to each sequence (block-diagonal).

The shared encoder sees every sequence of every input of a training step at once. Instead of padding them to a
common length (which wastes FLOPs on padding and needs a mask in every attention call), :func:`pack` gathers the
real tokens (mask ``True``) of every sequence of every :class:`Tokens` into one stream ``[T, D]``, where ``T`` is
the total number of real tokens. Token-wise layers (LayerNorm, QKV, projections, MLP) run once over the stream;
attention runs per sequence (:func:`varlen_attention`): equal-length sequences are made adjacent when packing,
so each run of equal lengths is a single batched ``scaled_dot_product_attention`` call, and on CUDA with half
precision one variable-length flash kernel covers the whole stream. :func:`unpack` puts the stream back into each
input's padded ``[B, N, D]`` with zeros at padded positions.

Packing needs every sequence's length on the host (one sync), and a graph traced for one set of lengths holds only
for that set. Under ``torch.compile`` and ``torch.export`` the encoder packs *padded* instead
(``pack(tokens, padded=True)``): each input keeps its ``[B, N]`` positions, padding included, the stream is the
inputs' flattened positions ``[sum B·N, D]`` (no gather, no host sync), and attention runs per input as one masked
SDPA call whose key mask is the input's mask. Token-wise layers then spend FLOPs on padding, but the graph depends
on shapes only, so it can be compiled once for dynamic shapes, exported, and run by ONNX Runtime; its numbers
equal the packed forward's within float rounding, with zeros at padded positions as well.

This follows the "packing" of NaViT (Dehghani et al., arXiv 2307.06304) and the varlen interface of
FlashAttention-2 (Dao, arXiv 2307.08691): ``cu_seqlens`` (cumulative lengths, ``int32``) and ``max_seqlen``.

Shapes: inputs ``[B_m, N_m, D]`` + mask ``[B_m, N_m]``; stream ``[T, D]``; per-head ``q``/``k``/``v``
``[T, H, d]``. This module knows no block type: :mod:`polymodal.core.encoders.blocks` runs timm's ``Block`` over a
stream, and an encoder with other blocks brings its own (the :class:`~polymodal.core.encoders.base.Encoder` base
class packs and unpacks for every encoder).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.core.tokens import Tokens

__all__ = [
    "AttentionBackend",
    "PackedLayout",
    "available_backends",
    "pack",
    "resolve_backend",
    "unpack",
    "varlen_attention",
]

AttentionBackend = Literal["auto", "sdpa", "sdpa_per_segment", "torch_varlen", "flash_attn"]


@dataclass(eq=False)
class PackedLayout:
    """Where every token of the stream came from, and how the stream splits into sequences.

    Attributes:
        shapes: ``(B, N)`` of each input, in the caller's order.
        lengths: length of each sequence (segment) in stream order (zero-length sequences are kept, they own no
            tokens).
        runs: ``(start, count, length)``: maximal runs of ``count`` adjacent segments of the same non-zero
            ``length`` starting at stream position ``start``; one batched attention call per run.
        index: ``[T]`` position of each stream token in the concatenation of the inputs' flattened
            ``[B*N]`` positions, or ``None`` when no input has padding (the stream is then the inputs, whole,
            concatenated in ``input_order``).
        input_order: order of the inputs in the stream when ``index`` is ``None``.
        masks: the inputs' ``[B, N]`` masks when the stream is *padded* (``pack(tokens, padded=True)``): the
            stream holds every position of every input, in order, ``lengths`` is empty (no length is read on the
            host), ``runs`` has one ``(start, B, N)`` per input, and attention masks the padded keys. ``None``
            for a packed stream.
    """

    shapes: tuple[tuple[int, int], ...]
    lengths: tuple[int, ...]
    runs: tuple[tuple[int, int, int], ...]
    index: Tensor | None
    input_order: tuple[int, ...]
    device: torch.device
    masks: tuple[Tensor, ...] | None = None
    _cache: dict[str, Tensor] = field(default_factory=dict, repr=False)

    @property
    def padded(self) -> bool:
        """Whether the stream holds padded positions too (see ``masks``)."""
        return self.masks is not None

    @property
    def num_tokens(self) -> int:
        """``T``: tokens in the stream (real ones; every position of every input when ``padded``)."""
        if self.masks is not None:
            return sum(b * n for b, n in self.shapes)
        return sum(self.lengths)

    @property
    def num_segments(self) -> int:
        if self.masks is not None:
            return sum(b for b, _ in self.shapes)
        return len(self.lengths)

    @property
    def max_length(self) -> int:
        if self.masks is not None:
            return max((n for _, n in self.shapes), default=0)
        return max(self.lengths, default=0)

    def cu_seqlens(self) -> Tensor:
        """``[S' + 1]`` ``int32`` cumulative lengths of the non-empty segments (FlashAttention's varlen
        convention), on the stream's device. A padded stream has none (its segments hold padding)."""
        if self.masks is not None:
            raise ValueError("cu_seqlens: a padded stream (pack(..., padded=True)) has no varlen segments")
        if "cu" not in self._cache:
            lengths = [n for n in self.lengths if n > 0]
            cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
            cu[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
            self._cache["cu"] = cu.to(self.device, non_blocking=True)
        return self._cache["cu"]

    def segment_ids(self) -> Tensor:
        """``[T]`` ``long``: the segment each stream token belongs to."""
        if self.masks is not None:  # no cache: under tracing a cached tensor would outlive its graph
            parts = [torch.arange(b, device=self.device).repeat_interleave(n) for b, n in self.shapes]
            offsets = [sum(b for b, _ in self.shapes[:i]) for i in range(len(self.shapes))]
            return torch.cat([p + o for p, o in zip(parts, offsets)])
        if "seg" not in self._cache:
            lengths = torch.tensor(self.lengths, dtype=torch.long)
            seg = torch.repeat_interleave(torch.arange(len(self.lengths)), lengths)
            self._cache["seg"] = seg.to(self.device, non_blocking=True)
        return self._cache["seg"]


def _runs(lengths: Sequence[int]) -> tuple[tuple[int, int, int], ...]:
    runs: list[list[int]] = []
    start = 0
    for n in lengths:
        if n > 0:
            if runs and runs[-1][2] == n and runs[-1][0] + runs[-1][1] * n == start:
                runs[-1][1] += 1
            else:
                runs.append([start, 1, n])
        start += n
    return tuple((s, c, n) for s, c, n in runs)


def pack(tokens: Sequence[Tokens], padded: bool = False) -> tuple[Tensor, PackedLayout]:
    """Gather the real tokens of every sequence of every input into one stream ``[T, D]``.

    Sequences of equal length are made adjacent (sorted by decreasing length) so attention can batch them.
    Inputs without padding are concatenated whole (no gather). Returns the stream and its layout.

    ``padded=True``: the stream is every position of every input, in order (``[sum B·N, D]``), and the layout
    holds the masks (:attr:`PackedLayout.masks`): no length is read on the host, so ``torch.compile`` and
    ``torch.export`` trace it for shapes, not lengths.
    """
    if not tokens:
        raise ValueError("pack: expected at least one Tokens, got an empty list")
    dims = {t.dim for t in tokens}
    if len(dims) != 1:
        widths = ", ".join(f"{t.modality}: {t.dim}" for t in tokens)
        raise ValueError(f"pack: expected tokens of one width D, got {widths}")
    devices = {t.embeddings.device for t in tokens}
    if len(devices) != 1:
        raise ValueError(f"pack: expected tokens on one device, got {sorted(map(str, devices))}")
    (d,) = dims
    (device,) = devices
    dtype = tokens[0].embeddings.dtype
    for t in tokens[1:]:
        dtype = torch.promote_types(dtype, t.embeddings.dtype)
    shapes = tuple((t.batch_size, t.num_tokens) for t in tokens)
    if padded:
        flats = [t.embeddings.reshape(-1, d).to(dtype) for t in tokens]
        runs, start = [], 0
        for b, n in shapes:
            runs.append((start, b, n))
            start = start + b * n
        order = tuple(range(len(tokens)))
        masks = tuple(t.mask for t in tokens)
        layout = PackedLayout(shapes, (), tuple(runs), None, order, device, masks)
        return (flats[0] if len(flats) == 1 else torch.cat(flats)), layout
    # One host sync for all lengths (needed to split attention into segments).
    sums = [t.mask.sum(dim=1) for t in tokens]
    lengths = (sums[0] if len(sums) == 1 else torch.cat(sums)).tolist()
    full, start = True, 0
    for b, n in shapes:
        full = full and all(x == n for x in lengths[start : start + b])
        start += b
    flats = [t.embeddings.reshape(-1, d).to(dtype) for t in tokens]
    if full:
        order = tuple(sorted(range(len(tokens)), key=lambda i: -shapes[i][1]))
        stream = flats[0] if len(flats) == 1 else torch.cat([flats[i] for i in order])
        seg_lengths = tuple(shapes[i][1] for i in order for _ in range(shapes[i][0]))
        layout = PackedLayout(shapes, seg_lengths, _runs(seg_lengths), None, order, device)
        return stream, layout
    # General case: positions of real tokens in sequence-major order, then sequences sorted by length.
    flat = flats[0] if len(flats) == 1 else torch.cat(flats)
    total = sum(lengths)
    mask = torch.cat([t.mask.reshape(-1) for t in tokens])
    # T is known on the host already: nonzero_static needs no second sync.
    real = torch.nonzero_static(mask, size=total).squeeze(1)  # [T] positions, sequence-major
    order = sorted(range(len(lengths)), key=lambda s: -lengths[s])
    if order != sorted(order):
        starts = [0] * len(lengths)
        acc = 0
        for s, n in enumerate(lengths):
            starts[s], acc = acc, acc + n
        sorted_lengths = torch.tensor([lengths[s] for s in order], dtype=torch.long)
        src_start = torch.tensor([starts[s] for s in order], dtype=torch.long)
        dst_start = torch.cumsum(sorted_lengths, 0) - sorted_lengths
        offset = torch.repeat_interleave(src_start - dst_start, sorted_lengths, output_size=total)
        src = torch.arange(total) + offset
        real = real.index_select(0, src.to(device, non_blocking=True))
    seg_lengths = tuple(lengths[s] for s in order)
    layout = PackedLayout(shapes, seg_lengths, _runs(seg_lengths), real, tuple(range(len(tokens))), device)
    return flat.index_select(0, real), layout


def unpack(stream: Tensor, layout: PackedLayout) -> list[Tensor]:
    """Scatter the stream ``[T, D]`` back to each input's ``[B, N, D]``; padded positions are zero."""
    d = stream.shape[-1]
    sizes = [b * n for b, n in layout.shapes]
    if layout.masks is not None:
        chunks = stream.split(sizes) if len(sizes) > 1 else [stream]
        return [
            chunk.view(b, n, d).masked_fill(~mask.unsqueeze(-1), 0)
            for chunk, (b, n), mask in zip(chunks, layout.shapes, layout.masks)
        ]
    if layout.index is None:
        chunks = stream.split([sizes[i] for i in layout.input_order])
        out: list[Tensor] = [stream] * len(sizes)
        for i, chunk in zip(layout.input_order, chunks):
            out[i] = chunk.view(*layout.shapes[i], d)
        return out
    flat = stream.new_zeros(sum(sizes), d).index_copy(0, layout.index, stream)
    return [chunk.view(b, n, d) for chunk, (b, n) in zip(flat.split(sizes), layout.shapes)]


# -- attention over the stream ---------------------------------------------------------------------------------


@functools.cache
def _flash_attn_varlen() -> object | None:
    try:
        from flash_attn import flash_attn_varlen_func
    except Exception:  # not installed, or built for another torch/CUDA
        return None
    return flash_attn_varlen_func


@functools.cache
def _torch_varlen() -> object | None:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except Exception:  # torch < 2.9
        return None
    return varlen_attn


def available_backends() -> list[str]:
    """Attention backends usable in this environment (``sdpa`` variants always; varlen kernels need CUDA)."""
    out = ["sdpa", "sdpa_per_segment"]
    if torch.cuda.is_available():
        if _torch_varlen() is not None:
            out.append("torch_varlen")
        if _flash_attn_varlen() is not None:
            out.append("flash_attn")
    return out


def resolve_backend(
    backend: AttentionBackend, q: Tensor, dropout_p: float = 0.0, layout: PackedLayout | None = None
) -> str:
    """The backend ``auto`` picks for these inputs.

    ``auto``: on CUDA with fp16/bf16, no attention dropout and more than one run of equal lengths, flash-attn's
    varlen kernel when installed, else torch's built-in ``varlen_attn`` (flash/cuDNN); otherwise ``sdpa`` (one
    batched SDPA call per run of equal lengths: a single run, e.g. a batch of images, is exactly timm's call,
    with less dispatch overhead than the varlen custom op). The varlen kernels support half precision only and
    no dropout, so those cases fall back to ``sdpa`` too.
    """
    if backend != "auto":
        return backend
    single_run = layout is not None and len(layout.runs) <= 1
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16) and dropout_p == 0.0 and not single_run:
        if _flash_attn_varlen() is not None:
            return "flash_attn"
        if _torch_varlen() is not None:
            return "torch_varlen"
    return "sdpa"


def varlen_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    layout: PackedLayout,
    *,
    dropout_p: float = 0.0,
    backend: AttentionBackend = "auto",
) -> Tensor:
    """Softmax attention of ``q``/``k``/``v`` ``[T, H, d]`` restricted to each segment of ``layout``.

    Returns ``[T, H, d]``. Scale ``d ** -0.5`` (as ``scaled_dot_product_attention`` and timm). Never builds a
    ``T x T`` mask. A padded layout (:attr:`PackedLayout.masks`) takes one masked SDPA call per input whatever
    ``backend`` says (the varlen kernels need a packed stream); its rows at padded positions are not meaningful.
    """
    t, h, hd = q.shape
    if layout.masks is not None:
        return _padded_attention(q, k, v, layout, dropout_p)
    if t == 0:
        return q.new_zeros(0, h, hd)
    name = resolve_backend(backend, q, dropout_p, layout)
    if name in ("torch_varlen", "flash_attn"):
        if dropout_p:
            raise ValueError(f"varlen_attention: backend {name!r} does not support attention dropout")
        if not q.is_cuda or q.dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(
                f"varlen_attention: backend {name!r} needs fp16/bf16 CUDA tensors, got {q.dtype} on {q.device}"
            )
        cu, max_len = layout.cu_seqlens(), layout.max_length
        if name == "flash_attn":
            fn = _flash_attn_varlen()
            if fn is None:
                raise ValueError("varlen_attention: backend 'flash_attn' needs the flash-attn package")
            return fn(q, k, v, cu, cu, max_len, max_len)  # type: ignore[operator]
        fn = _torch_varlen()
        if fn is None:
            raise ValueError("varlen_attention: backend 'torch_varlen' needs torch >= 2.9")
        return fn(q, k, v, cu, cu, max_len, max_len)  # type: ignore[operator]
    if name == "sdpa":
        runs = layout.runs
    elif name == "sdpa_per_segment":
        runs = tuple((s + i * n, 1, n) for s, c, n in layout.runs for i in range(c))
    else:
        raise ValueError(f"varlen_attention: unknown backend {backend!r}; expected one of {AttentionBackend}")
    outs = []
    covered = 0
    for start, count, n in runs:
        end = start + count * n
        if start != covered:  # zero-length segments own no tokens; runs are contiguous otherwise
            raise AssertionError("packed runs must tile the stream")
        covered = end
        qs, ks, vs = (x[start:end].view(count, n, h, hd).transpose(1, 2) for x in (q, k, v))
        o = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=dropout_p)  # [count, H, n, d]
        outs.append(o.transpose(1, 2).reshape(count * n, h, hd))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def _padded_attention(q: Tensor, k: Tensor, v: Tensor, layout: PackedLayout, dropout_p: float) -> Tensor:
    """One SDPA call per input of a padded stream, padded keys masked out. A sequence without a real token
    attends to all its positions (its rows are zeroed by :func:`unpack`) instead of giving NaN."""
    h, hd = q.shape[1], q.shape[2]
    outs = []
    for (start, count, n), mask in zip(layout.runs, layout.masks or ()):
        end = start + count * n
        qs, ks, vs = (x[start:end].view(count, n, h, hd).transpose(1, 2) for x in (q, k, v))
        keys = mask | ~mask.any(dim=1, keepdim=True)  # [count, n]
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=keys[:, None, None, :], dropout_p=dropout_p)
        outs.append(o.transpose(1, 2).reshape(count * n, h, hd))
    return outs[0] if len(outs) == 1 else torch.cat(outs)
