"""Building blocks shared by the sequence plugins (audio, imu, time_series; text for tables): variable-length
batches (collating ragged samples, example batches), sliding windows with masks, per-sequence positional tables,
windowed-sinc resampling, and reading channels and targets from tables. Not a plugin (no entry point).

Shapes: a variable-length batch is a zero-padded tensor ``[B, ..., T]`` plus ``lengths [B]`` (real steps per
sequence), what :func:`collate_ragged` makes of samples ``[T_i]`` or ``[C, T_i]``. A window ``w`` of size ``k`` and
stride ``s`` covers steps ``[w·s, w·s + k)`` and is real when those steps are inside the sequence, so padding never
changes a sequence's windows. A table's numeric columns give a signal ``(C, T)`` (:func:`numeric_columns`).

Resampling follows the band-limited (windowed-sinc, Hann window, polyphase) method of ``torchaudio.functional.
resample`` (Smith, "Digital Audio Resampling", https://ccrma.stanford.edu/~jos/resample/): the rates are reduced by
their gcd to ``orig`` and ``new``, and output sample ``j`` is ``sum_i x[i] · h(j/new - i/orig)`` with ``h`` a sinc
low-pass at ``rolloff · min(orig, new) / 2`` tapered by a Hann window of ``lowpass_filter_width`` zero crossings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polymodal.core.component import ModalityInputError
from polymodal.core.tokenizer import check_tensor, describe

__all__ = [
    "as_tensor",
    "collate_ragged",
    "mask_beyond",
    "num_windows",
    "numeric_columns",
    "pad_sequences",
    "parse_sequence_batch",
    "patch_sequences",
    "ragged_example",
    "resample",
    "resampled_length",
    "sequence_positions",
    "window_mask",
]


# -- variable-length batches ------------------------------------------------------------------------------------
def pad_sequences(samples: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Tensors ``[..., T_i]`` (same leading shape) -> zero-padded ``[B, ..., max T_i]`` and ``lengths [B]``."""
    lengths = torch.tensor([s.shape[-1] for s in samples], dtype=torch.long)
    total = int(lengths.max())
    values = torch.stack([F.pad(s, (0, total - s.shape[-1])) for s in samples])
    return values, lengths


def mask_beyond(x: Tensor, lengths: Tensor, fill: Tensor | float = 0.0) -> Tensor:
    """``x [B, ..., T]`` with every step at or after ``lengths[b]`` replaced by ``fill`` (broadcast)."""
    steps = torch.arange(x.shape[-1], device=x.device)
    real = steps < lengths.to(x.device).view(-1, *([1] * (x.dim() - 1)))
    return torch.where(real, x, torch.as_tensor(fill, dtype=x.dtype, device=x.device))


def num_windows(lengths: Tensor, size: int, stride: int) -> Tensor:
    """Number of whole windows of ``size`` steps every ``stride`` steps inside ``lengths`` (0 if shorter)."""
    return torch.where(lengths >= size, torch.div(lengths - size, stride, rounding_mode="floor") + 1, 0)


def window_mask(counts: Tensor, num: int) -> Tensor:
    """``[B, num]`` bool: window ``w`` of sequence ``b`` is real when ``w < counts[b]``."""
    return torch.arange(num, device=counts.device).unsqueeze(0) < counts.unsqueeze(1)


def patch_sequences(
    x: Tensor, lengths: Tensor, patch: int, stride: int, pad_end: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Cut ``x [B, C, T]`` (real lengths ``[B]``) into windows along time.

    Every sequence is extended past its last real step by repeating that step's value, for ``pad_end`` steps
    (PatchTST's ``padding_patch="end"``) and at least up to one whole window; the partial window at the end is
    dropped. Returns ``patches [B, N, C, patch]``, ``counts [B]`` (real windows per sequence:
    ``(max(L + pad_end, patch) - patch) // stride + 1``) and ``mask [B, N]``.
    """
    b, c, t = x.shape
    lengths = lengths.to(x.device)
    counts = num_windows((lengths + pad_end).clamp_min(patch), patch, stride)
    n = int(counts.max())
    total = (n - 1) * stride + patch
    last = x.gather(-1, (lengths - 1).view(b, 1, 1).expand(b, c, 1))  # [B, C, 1]
    x = F.pad(x, (0, total - t)) if total > t else x[..., :total]
    x = mask_beyond(x, lengths, last)
    patches = x.unfold(-1, patch, stride).transpose(1, 2)  # [B, N, C, patch]
    return patches, counts, window_mask(counts, n)


def sequence_positions(table: Tensor, lengths: Tensor, num: int) -> Tensor:
    """Positional embeddings of ``num`` positions for sequences of ``lengths [B]`` real positions.

    ``table [T0, *rest]`` is a learned table of ``T0`` positions. A sequence that fits (``lengths[b] <= T0``)
    takes rows ``0, 1, …`` as they are; a longer one takes the table linearly resampled to its own length (first
    and last rows kept, ``align_corners=True``). Each sequence's embeddings depend only on its own length, never on
    the batch's padded length. Positions past a sequence's end repeat the last row (they are padding).
    Returns ``[B, num, *rest]``.
    """
    t0 = table.shape[0]
    lengths = lengths.to(table.device)
    steps = torch.arange(num, device=table.device, dtype=torch.float32)
    scale = torch.where(
        lengths > t0, (t0 - 1) / (lengths - 1).clamp_min(1).float(), torch.ones_like(lengths).float()
    )
    pos = (steps.unsqueeze(0) * scale.unsqueeze(1)).clamp(max=t0 - 1)  # [B, num]
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=t0 - 1)
    w = (pos - lo.float()).to(table.dtype).view(*pos.shape, *([1] * (table.dim() - 1)))
    return table[lo] * (1 - w) + table[hi] * w


def parse_sequence_batch(
    batch: Any,
    modality: str,
    *,
    key: str,
    expected: str,
    ndim: int,
    collate: Callable[[Sequence[Any]], Mapping[str, Any]],
    check_shape: Callable[[Tensor], str | None] | None = None,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Read a batch of a variable-length 1-D modality: a tensor ``expected`` (every step real), a dict
    ``{key: tensor, "lengths": [B] integers, ...}`` (as ``collate`` makes), or a list of samples (collated with
    ``collate``). Returns ``(values, lengths, rest of the dict)``; raises :class:`ModalityInputError` otherwise.

    ``check_shape`` is called on the values tensor and returns a problem in words (or ``None``), e.g. a channel
    count that differs from the config.
    """
    if isinstance(batch, (list, tuple)):
        if len(batch) == 0:
            raise ModalityInputError(
                modality, f"a tensor {expected} or a non-empty list of samples", "an empty list"
            )
        batch = collate(batch)
    extra: dict[str, Any] = {}
    if isinstance(batch, Mapping):
        if key not in batch:
            raise ModalityInputError(
                modality,
                f"a tensor {expected} or a dict with {key!r} and 'lengths'",
                f"a dict with keys {sorted(batch)}",
            )
        values = check_tensor(batch[key], modality, expected, ndim)
        lengths = batch.get("lengths")
        extra = {k: v for k, v in batch.items() if k not in (key, "lengths")}
    else:
        values = check_tensor(batch, modality, expected, ndim)
        lengths = None
    if values.shape[-1] == 0:
        raise ModalityInputError(modality, f"at least one step per sequence {expected}", describe(values))
    if check_shape is not None:
        problem = check_shape(values)
        if problem is not None:
            raise ModalityInputError(modality, expected, problem)
    b, t = values.shape[0], values.shape[-1]
    if lengths is None:
        lengths = torch.full((b,), t, dtype=torch.long, device=values.device)
    else:
        if not isinstance(lengths, Tensor) or lengths.shape != (b,) or lengths.is_floating_point():
            raise ModalityInputError(modality, f"integer lengths of shape ({b},)", describe(lengths))
        if lengths.dtype == torch.bool or bool((lengths < 1).any()) or bool((lengths > t).any()):
            raise ModalityInputError(
                modality, f"lengths between 1 and {t} (the padded length)", f"lengths {lengths.tolist()}"
            )
        lengths = lengths.to(device=values.device, dtype=torch.long)
    return values, lengths, extra


def as_tensor(raw: Any) -> Tensor | None:
    """A numpy array or tensor as a tensor (numpy shares memory); anything else -> ``None``."""
    if isinstance(raw, Tensor):
        return raw
    if isinstance(raw, np.ndarray):
        if raw.dtype.kind not in "biuf":
            return None
        return torch.from_numpy(np.ascontiguousarray(raw))
    return None


def collate_ragged(
    samples: Sequence[Any],
    modality: str,
    *,
    noun: str,
    expected: str,
    ndim: int,
    channels: int | None = None,
    floating: str,
) -> tuple[Tensor, Tensor]:
    """Samples ``[T_i]`` (``ndim=1``) or ``[C, T_i]`` (``ndim=2``), numpy arrays or tensors, -> zero-padded float32
    ``[B, (C,) max T_i]`` and ``lengths [B]`` (:func:`pad_sequences`); what a 1-D modality's ``collate`` does.

    Every sample must be a non-empty numeric array of ``ndim`` dimensions, with ``channels`` rows when given (else
    one row count for all), and of a float dtype (preprocess converts integers). Errors name the modality and use
    its words: ``noun`` (one sample, e.g. ``"clip"``: "expected at least one clip to collate"), ``expected`` (the
    samples' form, e.g. ``"recordings (6, T_i)"``) and ``floating`` (e.g. ``"float recordings"``).
    """
    if len(samples) == 0:
        raise ModalityInputError(modality, f"at least one {noun} to collate", "an empty list")
    xs = [as_tensor(s) for s in samples]
    bad = [
        s
        for s, x in zip(samples, xs)
        if x is None
        or x.dim() != ndim
        or x.shape[-1] == 0
        or (channels is not None and x.shape[0] != channels)
    ]
    if bad:
        raise ModalityInputError(modality, expected, describe(bad[0]))
    if ndim == 2 and len(rows := {x.shape[0] for x in xs}) != 1:
        raise ModalityInputError(modality, expected, f"channel counts {sorted(rows)}")
    if not all(x.is_floating_point() for x in xs):
        raise ModalityInputError(
            modality, floating, describe(next(x for x in xs if not x.is_floating_point()))
        )
    return pad_sequences([x.float() for x in xs])


def ragged_example(
    batch_size: int,
    leading: tuple[int, ...],
    longest: int,
    shorter_by: int,
    generator: torch.Generator | None = None,
    *,
    scale: float = 1.0,
    offset: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """An example variable-length batch: ``offset + scale · N(0, 1)`` values ``[B, *leading, longest]``, every
    second sequence ``shorter_by`` steps shorter (so masks are exercised), zero past each end; and ``lengths [B]``."""
    lengths = torch.tensor([longest - (i % 2) * shorter_by for i in range(batch_size)])
    values = offset + scale * torch.randn(batch_size, *leading, longest, generator=generator)
    return mask_beyond(values, lengths), lengths


# -- tables -----------------------------------------------------------------------------------------------------
def numeric_columns(
    frame: Any, columns: Sequence[str] | None, exclude: Sequence[str], where: str
) -> np.ndarray:
    """A signal ``(C, T)`` float32 from a pandas DataFrame: the ``columns`` given (one channel each, in order), or
    every numeric column whose lower-cased name is not in ``exclude``; errors name ``where`` (e.g. the file)."""
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise KeyError(f"{where}: no columns {missing}; it has {list(frame.columns)}")
        picked = frame[list(columns)]
    else:
        keep = [c for c in frame.columns if str(c).lower() not in exclude]
        picked = frame[keep].select_dtypes("number")
        if picked.shape[1] == 0:
            raise ValueError(f"{where}: no numeric columns (columns: {list(frame.columns)})")
    values = picked.to_numpy(dtype=np.float32)
    if values.shape[0] == 0:
        raise ValueError(f"{where}: the file has no rows")
    return np.ascontiguousarray(values.T)


# -- resampling -------------------------------------------------------------------------------------------------
def _reduced(orig: int, new: int) -> tuple[int, int]:
    g = math.gcd(int(orig), int(new))
    return int(orig) // g, int(new) // g


def resampled_length(lengths: Tensor | int, orig: int, new: int) -> Any:
    """Length after resampling from ``orig`` to ``new`` Hz: ``ceil(L · new / orig)``."""
    o, n = _reduced(orig, new)
    if isinstance(lengths, Tensor):
        return torch.div(lengths * n + o - 1, o, rounding_mode="floor")
    return (int(lengths) * n + o - 1) // o


@lru_cache(maxsize=32)
def _sinc_kernel(orig: int, new: int, width: int, rolloff: float) -> tuple[Tensor, int]:
    """``[new, 1, K]`` polyphase filters (float64) and the left padding, for reduced rates ``orig`` -> ``new``."""
    base = min(orig, new) * rolloff
    pad = math.ceil(width * orig / base)
    idx = torch.arange(-pad, pad + orig, dtype=torch.float64)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + idx
    t = (t * base).clamp(-width, width)
    window = torch.cos(t * math.pi / width / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t) * window * (base / orig)
    return kernel, pad


def resample(x: Tensor, orig: int, new: int, lowpass_filter_width: int = 6, rolloff: float = 0.99) -> Tensor:
    """Resample ``x [..., T]`` from ``orig`` to ``new`` Hz along its last axis (windowed sinc, polyphase).

    Output length ``ceil(T · new / orig)``; same numbers as ``torchaudio.functional.resample`` with its default
    ``sinc_interp_hann`` method. Computed in ``x``'s dtype (float32 if ``x`` is not floating) on ``x``'s device.
    """
    if int(orig) <= 0 or int(new) <= 0:
        raise ValueError(f"resample: sample rates must be positive, got {orig} and {new}")
    if int(orig) == int(new):
        return x
    o, n = _reduced(orig, new)
    dtype = x.dtype if x.is_floating_point() else torch.float32
    kernel, pad = _sinc_kernel(o, n, int(lowpass_filter_width), float(rolloff))
    shape, t = x.shape[:-1], x.shape[-1]
    flat = F.pad(x.reshape(-1, 1, t).to(dtype), (pad, pad + o))
    out = F.conv1d(flat, kernel.to(device=x.device, dtype=dtype), stride=o)  # [M, new, frames]
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)[:, : resampled_length(t, o, n)]
    return out.reshape(*shape, -1)
