"""Trust battery (not a test): feeds malformed inputs to every modality in the registry and to the model and counts
how each is answered. Rerunnable and deterministic (every case builds its inputs from a fixed seed).

    python benchmarks/trust_battery.py                      # the table: one row per modality + model/targets
    python benchmarks/trust_battery.py --verbose            # every case, its outcome and message
    python benchmarks/trust_battery.py --only graph         # one modality (or --only model)
    python benchmarks/trust_battery.py --json out.json      # per-case results
    python benchmarks/trust_battery.py --strict             # exit 1 unless 0 unclear, 0 silent, 0 crash

Only polymodal's public API is used (``polymodal.list_modalities``, ``polymodal.get("tokenizer", name)``,
``polymodal.build_model``, ``polymodal.ArrayDataset``, ``polymodal.fit``/``evaluate`` and the tokenizer methods
``from_config``, ``preprocess``, ``collate``, ``forward``, ``example_input``), so it survives internal refactors.

Outcomes (one per case):

* ``clear``: an exception (any ``Exception``) whose message passes the CLEAR-MESSAGE RULE below; or, for a case
  whose definition says that accepting the input is correct behaviour, acceptance with a result that passes the
  case's check (e.g. a documented truncation that warns).
* ``unclear``: any other exception: raw torch / numpy / PyG errors, ``IndexError``, ``AttributeError``, messages
  that do not name the modality or do not say what was expected.
* ``silent``: no exception, but the input should have been refused, or the result is wrong (NaN/Inf outputs, the
  wrong number of rows, data dropped / repeated / accepted at an unusable size without a warning). The message
  column then says what is wrong.
* ``crash``: a process-level failure: ``SystemExit`` / ``KeyboardInterrupt`` (any non-``Exception``), the worker
  process dying (a segfault: negative exit code), or a case running past the time limit (``--timeout``, 20 s;
  three times that for the one case whose run time varies most, the graph of 10^5 nodes).

CLEAR-MESSAGE RULE: ``str(exception)`` contains (case-insensitive, as a whole word) one of the case's subject
names - the modality for tokenizer cases; the task, head field or argument name for model cases - AND one of
the words ``expected`` / ``expects`` / ``expect`` / ``must`` / ``need`` / ``needs``.

A warning counts (where a case accepts with a warning) when its message names the modality, as a whole word.
A sample "much too large" is accepted correctly only with a warning or within LARGE_TOKENS (16,384) tokens per
sample; otherwise it is ``silent`` (the shared encoder's attention is quadratic in the tokens: 10^5 tokens of one
sample is a step that runs out of memory or time later, far from its cause).

Cases run one at a time in a worker process (spawned; ``torch.set_num_threads(1)``); a worker that times out or
dies is replaced. Small tokenizer configs (``embed_dim`` 32) and a one-block encoder keep the battery to about
a minute on two CPU cores, plus the time limit for each case that hangs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

OUTCOMES = ("clear", "unclear", "silent", "crash")
MODEL_ROW = "model/targets"
DIM = 32
ENCODER = {"type": "vit", "embed_dim": DIM, "depth": 1, "num_heads": 2}
LARGE_TOKENS = 16384
SEED = 0
HUGE = 1e38
CUE = re.compile(r"\b(expected|expects|expect|must|needs|need)\b", re.IGNORECASE)

Check = Callable[[Any, list[str]], "str | None"]


@dataclass
class Case:
    """One malformed input.

    ``run`` builds the input and feeds it through the public API. ``correct`` says what the right answer is.
    ``accept`` is ``None`` when the only right answer is a clear error (any acceptance is ``silent``); otherwise
    accepting can be right and ``accept(result, warnings)`` returns what is wrong with the result, or ``None``.
    ``subjects`` are the names a clear message must contain (default: the modality). ``time_factor`` multiplies
    the time limit (for a case whose run time varies a lot from run to run, so that its outcome does not).
    """

    name: str
    run: Callable[[], Any]
    correct: str = "a clear error"
    accept: Check | None = None
    subjects: tuple[str, ...] = ()
    time_factor: float = 1.0


# ============================================================================================================
# checks (run in the worker)
# ============================================================================================================
def is_clear(message: str, subjects: tuple[str, ...]) -> bool:
    """The clear-message rule (see the module docstring)."""
    named = any(re.search(rf"\b{re.escape(s)}\b", message, re.IGNORECASE) for s in subjects)
    return named and CUE.search(message) is not None


def _finite(x: Any) -> bool:
    import torch

    if isinstance(x, torch.Tensor):
        return not x.is_floating_point() or bool(torch.isfinite(x).all())
    if isinstance(x, dict):
        return all(_finite(v) for v in x.values())
    if isinstance(x, (list, tuple)):
        return all(_finite(v) for v in x)
    if hasattr(x, "embeddings") and hasattr(x, "mask"):  # Tokens
        return _finite(x.embeddings)
    return True


def summarize(x: Any) -> str:
    """A short description of a result, for the message column of a silent case."""
    import torch

    if hasattr(x, "embeddings") and hasattr(x, "mask"):
        shape = list(x.embeddings.shape)
        return f"Tokens {shape}" + ("" if _finite(x) else " with NaN/Inf")
    if isinstance(x, torch.Tensor):
        return f"tensor {list(x.shape)} {str(x.dtype).removeprefix('torch.')}" + (
            "" if _finite(x) else " with NaN/Inf"
        )
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {summarize(v)}" for k, v in list(x.items())[:4]) + "}"
    return type(x).__name__


def with_nan(a: np.ndarray) -> np.ndarray:
    """A float copy of ``a`` with one NaN in the middle."""
    a = np.array(a, dtype=np.float32)
    a.flat[a.size // 2] = np.nan
    return a


def warned(ws: list[str], word: str) -> bool:
    return any(re.search(rf"\b{re.escape(word)}\b", w, re.IGNORECASE) for w in ws)


def tokens_ok(rows: int | None = None) -> Check:
    """Accepting is right when the result is finite Tokens with ``rows`` rows, each with a real token."""

    def check(result: Any, ws: list[str]) -> str | None:
        if not (hasattr(result, "embeddings") and hasattr(result, "mask")):
            return f"returned {summarize(result)}, not Tokens"
        if not _finite(result):
            return f"accepted; {summarize(result)}"
        if rows is not None and result.embeddings.shape[0] != rows:
            return f"accepted; {result.embeddings.shape[0]} rows for {rows} samples"
        if not bool(result.mask.any(1).all()):
            return "accepted; a row without a real token"
        return None

    return check


def finite_ok(result: Any, ws: list[str]) -> str | None:
    """Accepting is right when every output is finite."""
    return None if _finite(result) else f"accepted; {summarize(result)}"


def huge_ok(result: Any, ws: list[str]) -> str | None:
    """For ``huge_run``: the tokenizer's tokens and the model's outputs must both be finite."""
    if not _finite(result["tokens"]):
        return "accepted; NaN/Inf already in the tokenizer's tokens"
    if not _finite(result["model"]):
        return "accepted; tokens finite but NaN/Inf in the model's outputs"
    return None


def large_ok(modality: str) -> Check:
    """A much too large sample: a warning, or at most LARGE_TOKENS finite tokens per sample."""

    def check(result: Any, ws: list[str]) -> str | None:
        problem = tokens_ok()(result, ws)
        if problem:
            return problem
        n = int(result.mask.sum(1).max())
        if n > LARGE_TOKENS and not warned(ws, modality):
            return f"accepted {n} tokens for one sample without a warning (battery limit {LARGE_TOKENS})"
        return None

    return check


def warned_ok(modality: str, what: str) -> Check:
    """Accepting is right only with a warning naming the modality; ``what`` says what happened silently."""

    def check(result: Any, ws: list[str]) -> str | None:
        if not _finite(result):
            return f"accepted; {summarize(result)}"
        return None if warned(ws, modality) else f"{what} without a warning"

    return check


# ============================================================================================================
# the cases (built in the worker; inputs are made lazily, inside ``run``)
# ============================================================================================================
class Env:
    """Tokenizers and tiny models, built once per worker and cached."""

    def __init__(self) -> None:
        import torch

        import polymodal

        self.pm, self.torch = polymodal, torch
        self._cache: dict[str, Any] = {}

    def tok(self, modality: str, **over: Any) -> Any:
        key = f"tok:{modality}:{sorted(over.items())!r}"
        if key not in self._cache:
            cls = self.pm.get("tokenizer", modality)
            self._cache[key] = cls.from_config({"embed_dim": DIM, **over}).eval()
        return self._cache[key]

    def model(self, modality: str, head: dict[str, Any] | None = None, **over: Any) -> Any:
        head = head or {"type": "classification", "num_classes": 3}
        key = f"model:{modality}:{sorted(over.items())!r}:{sorted(head.items())!r}"
        if key not in self._cache:
            self.torch.manual_seed(SEED)
            self._cache[key] = self.pm.build_model(
                tokenizers={modality: {"type": modality, **over}}, encoder=ENCODER, heads={modality: head}
            ).eval()
        return self._cache[key]

    def gen(self) -> Any:
        return self.torch.Generator().manual_seed(SEED)


def huge_run(env: Env, m: str, batch: Callable[[], Any], **over: Any) -> Case:
    """Finite values of 1e38: through the tokenizer alone and through a tiny model."""

    def run() -> Any:
        return {"tokens": env.tok(m, **over)(batch()), "model": env.model(m, **over)({m: batch()})}

    return Case(
        "huge_1e38",
        run,
        correct="a clear error (values out of range), or finite tokens and finite model outputs",
        accept=huge_ok,
    )


def tensor_cases(
    env: Env,
    m: str,
    make: Callable[[], Any],
    *,
    channel_dim: int | None,
    over: dict[str, Any] | None = None,
) -> list[Case]:
    """Malformed variants of a valid float batch tensor ``make()`` (batch first): rank, dtype, NaN/Inf, huge
    values, empty batch, numpy / list instead of a tensor, wrong channel count."""
    torch = env.torch
    over = over or {}

    def fwd(build: Callable[[Any], Any]) -> Callable[[], Any]:
        return lambda: env.tok(m, **over)(build(make()))

    def with_value(x: Any, value: float) -> Any:
        x = x.clone()
        x.view(-1)[x.numel() // 2] = value
        return x

    def more_channels(x: Any) -> Any:
        return torch.cat([x, x.narrow(channel_dim, 0, 1)], dim=channel_dim)

    cases = [
        Case("rank_no_batch_dim", fwd(lambda x: x[0])),
        Case("rank_extra_dim", fwd(lambda x: x.unsqueeze(1))),
        Case("dtype_int64", fwd(lambda x: (x * 100).long())),
        Case("dtype_bool", fwd(lambda x: x > 0)),
        Case("dtype_complex64", fwd(lambda x: x.to(torch.complex64))),
        Case("nan_one_value", fwd(lambda x: with_value(x, float("nan")))),
        Case("inf_one_value", fwd(lambda x: with_value(x, float("-inf")))),
        huge_run(env, m, lambda: torch.where(make() >= 0, HUGE, -HUGE), **over),
        Case("empty_batch", fwd(lambda x: x[:0])),
        Case("numpy_array", fwd(lambda x: x.numpy())),
        Case("python_list", fwd(lambda x: x.tolist())),
    ]
    if channel_dim is not None:
        cases.append(Case("wrong_channel_count", fwd(more_channels)))
    return cases


def image_like_cases(env: Env, m: str, chans: int, over: dict[str, Any] | None = None) -> list[Case]:
    """image, infrared, xray: the generic tensor cases plus preprocess / collate / size cases."""
    torch = env.torch
    over = over or {}
    tok = lambda: env.tok(m, **over)  # noqa: E731
    make = lambda: torch.randn(2, chans, 32, 32, generator=env.gen())  # noqa: E731
    rng = np.random.default_rng(SEED)
    hwc = rng.random((32, 32, chans), dtype=np.float32)
    cases = tensor_cases(env, m, make, channel_dim=1, over=over)
    cases += [
        Case("channels_last_batch", lambda: tok()(make().permute(0, 2, 3, 1).contiguous())),
        Case("size_not_divisible_33x32", lambda: tok()(torch.randn(2, chans, 33, 32, generator=env.gen()))),
        Case("preprocess_bool_array", lambda: tok().preprocess(hwc > 0.5)),
        Case("preprocess_complex_array", lambda: tok().preprocess(hwc.astype(np.complex64))),
        Case("preprocess_nan_pixel", lambda: tok().preprocess(with_nan(hwc))),
        Case("preprocess_rank4_array", lambda: tok().preprocess(hwc[None])),
        Case("collate_mixed_sizes", lambda: tok().collate([make()[0], torch.zeros(chans, 48, 32)])),
        Case(
            "too_large_4096x4096",
            lambda: tok()(torch.zeros(1, chans, 4096, 4096)),
            correct="a clear error (size limit), or a warning (65,536 tokens for one image)",
            accept=large_ok(m),
        ),
    ]
    if m == "image":
        cases += [
            Case(
                "preprocess_float_pixels_0_255",
                lambda: tok().preprocess(hwc * 255.0),
                correct="float pixels are documented as in [0, 1]: a clear error or a warning for values far "
                "outside (255 is a uint8 image cast to float)",
                accept=warned_ok(m, "float pixels up to 255 taken as [0, 1] (normalised values ~1100)"),
            ),
            Case(
                "preprocess_huge_1e38",
                lambda: tok().preprocess(np.full((32, 32, 3), HUGE, dtype=np.float32)),
                correct="a clear error (finite values expected after normalisation), or finite output",
                accept=finite_ok,
            ),
        ]
    else:
        cases.append(
            Case(
                "preprocess_huge_counts_1e38",
                lambda: tok().preprocess((hwc[..., 0] * 2 - 1) * HUGE),
                correct="per-image normalisation: finite output in range, or a clear error",
                accept=finite_ok,
            )
        )
    return cases


def cases_image(env: Env) -> list[Case]:
    return image_like_cases(env, "image", 3)


def cases_infrared(env: Env) -> list[Case]:
    return image_like_cases(env, "infrared", 1)


def cases_xray(env: Env) -> list[Case]:
    return image_like_cases(env, "xray", 1, {"resize": None})


def cases_video(env: Env) -> list[Case]:
    torch = env.torch
    over = {"num_frames": 8}
    tok = lambda: env.tok("video", **over)  # noqa: E731
    make = lambda: torch.randn(2, 4, 3, 32, 32, generator=env.gen())  # noqa: E731
    rng = np.random.default_rng(SEED)
    clip = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    return [
        *tensor_cases(env, "video", make, channel_dim=2, over=over),
        Case(
            "preprocess_fewer_frames_than_num_frames",
            lambda: tok().preprocess(clip[:3]),
            correct="a clear error, or a warning that 3 frames are repeated to num_frames=8",
            accept=warned_ok("video", "3 frames repeated to num_frames=8"),
        ),
        Case("odd_frames_not_divisible_by_tubelet", lambda: tok()(make()[:, :3])),
        Case("preprocess_channels_first_clip", lambda: tok().preprocess(clip.transpose(0, 3, 1, 2))),
        Case("preprocess_int64_clip", lambda: tok().preprocess(clip.astype(np.int64))),
        Case("preprocess_nan_clip", lambda: tok().preprocess(with_nan(clip / 255.0))),
        Case(
            "preprocess_frames_of_two_sizes",
            lambda: tok().preprocess([clip[0], clip[1, :16], clip[2], clip[3]] * 2),
        ),
        Case(
            "preprocess_float_pixels_0_255",
            lambda: tok().preprocess(clip.astype(np.float32)),
            correct="float pixels are documented as in [0, 1]: a clear error or a warning for values up to 255",
            accept=warned_ok("video", "float pixels up to 255 taken as [0, 1]"),
        ),
        Case(
            "too_large_64x448x448",
            lambda: tok()(torch.zeros(1, 64, 3, 448, 448)),
            correct="a clear error (size limit), or a warning (25,088 tokens for one clip)",
            accept=large_ok("video"),
        ),
    ]


def cases_hyperspectral(env: Env) -> list[Case]:
    torch = env.torch
    tok = lambda: env.tok("hyperspectral")  # noqa: E731
    make = lambda: torch.randn(2, 128, 7, 7, generator=env.gen())  # noqa: E731
    cube = np.random.default_rng(SEED).random((14, 14, 128), dtype=np.float32)
    return [
        *tensor_cases(env, "hyperspectral", make, channel_dim=1),
        Case("channels_last_batch", lambda: tok()(make().permute(0, 2, 3, 1).contiguous())),
        Case("preprocess_bands_first_cube", lambda: tok().preprocess(cube.transpose(2, 0, 1).copy())),
        Case("preprocess_complex_cube", lambda: tok().preprocess(cube.astype(np.complex64))),
        Case("preprocess_pixel_outside_cube", lambda: tok().preprocess((cube, (100, 3)))),
        Case("preprocess_pixel_float_coords", lambda: tok().preprocess((cube, (1.5, 2.0)))),
        Case("preprocess_nan_cube", lambda: tok().preprocess(with_nan(cube))),
        Case(
            "too_large_350x350",
            lambda: tok()(torch.zeros(1, 128, 350, 350)),
            correct="a clear error (size limit), or a warning (40,000 tokens for one cube)",
            accept=large_ok("hyperspectral"),
        ),
    ]


def cases_point_cloud(env: Env) -> list[Case]:
    torch = env.torch
    over = {"num_groups": 16, "group_size": 8}
    tok = lambda: env.tok("point_cloud", **over)  # noqa: E731
    make = lambda: torch.randn(2, 64, 3, generator=env.gen())  # noqa: E731
    cloud = np.random.default_rng(SEED).standard_normal((64, 3)).astype(np.float32)
    return [
        *tensor_cases(env, "point_cloud", make, channel_dim=2, over=over),
        Case("channels_first_batch", lambda: tok()(make().transpose(1, 2).contiguous())),
        Case(
            "fewer_points_than_group_size",
            lambda: tok()(torch.randn(2, 4, 3, generator=env.gen())),
            correct="a clear error, or finite tokens (points repeated)",
            accept=tokens_ok(2),
        ),
        Case(
            "all_points_identical",
            lambda: tok()(torch.ones(2, 64, 3)),
            correct="a clear error, or finite tokens",
            accept=tokens_ok(2),
        ),
        Case("dict_mask_not_bool", lambda: tok()({"points": make(), "mask": torch.ones(2, 64)})),
        Case("preprocess_bool_cloud", lambda: tok().preprocess(cloud > 0)),
        Case("preprocess_nan_cloud", lambda: tok().preprocess(with_nan(cloud))),
        Case(
            "preprocess_huge_1e38_cloud",
            lambda: tok().preprocess(np.sign(cloud) * np.float32(HUGE)),
            correct="a clear error, or a finite cloud in the unit sphere",
            accept=finite_ok,
        ),
        Case(
            "too_large_1e6_points",
            lambda: tok()(torch.randn(1, 10**6, 3, generator=env.gen())),
            correct="FPS subsamples any cloud to num_groups tokens: finite tokens within the time limit",
            accept=large_ok("point_cloud"),
        ),
    ]


def cases_audio(env: Env) -> list[Case]:
    torch = env.torch
    tok = lambda: env.tok("audio")  # noqa: E731
    make = lambda: 0.1 * torch.randn(2, 6000, generator=env.gen())  # noqa: E731
    wave = (0.1 * np.random.default_rng(SEED).standard_normal(6000)).astype(np.float32)
    return [
        *tensor_cases(env, "audio", make, channel_dim=None),
        Case("stereo_batch_b_2_s", lambda: tok()(torch.stack([make(), make()], 1))),
        Case("preprocess_samples_by_channels", lambda: tok().preprocess(np.stack([wave, wave], 1))),
        Case("preprocess_int64_pcm", lambda: tok().preprocess((wave * 3e4).astype(np.int64))),
        Case("preprocess_rate_not_integer", lambda: tok().preprocess((wave, 16000.5))),
        Case("preprocess_rate_string", lambda: tok().preprocess((wave, "16000"))),
        Case("dict_sample_rate_negative", lambda: tok()({"waveform": make(), "sample_rate": -8000})),
        Case("collate_int16_clips", lambda: tok()(tok().collate([(wave * 3e4).astype(np.int16)] * 2))),
        Case(
            "too_large_1e7_samples",
            lambda: tok()(torch.zeros(1, 10**7)),
            correct="a clear error (length limit), or a warning (75,000 tokens for 625 s of audio)",
            accept=large_ok("audio"),
        ),
    ]


def cases_imu(env: Env) -> list[Case]:
    torch = env.torch
    tok = lambda: env.tok("imu")  # noqa: E731
    make = lambda: torch.randn(2, 6, 40, generator=env.gen())  # noqa: E731
    rec = np.random.default_rng(SEED).standard_normal((6, 40)).astype(np.float32)
    return [
        *tensor_cases(env, "imu", make, channel_dim=1),
        Case("preprocess_time_by_channels", lambda: tok().preprocess(rec.T.copy())),
        Case("preprocess_rate_not_integer", lambda: tok().preprocess((rec, 49.5))),
        Case("list_with_int_recording", lambda: tok()([rec, (rec * 10).astype(np.int64)])),
        Case(
            "dict_lengths_beyond_padding",
            lambda: tok()({"values": make(), "lengths": torch.tensor([40, 41])}),
        ),
        Case(
            "too_large_1e6_steps",
            lambda: tok()(torch.zeros(1, 6, 10**6)),
            correct="a clear error (length limit), or a warning (124,999 tokens for one recording)",
            accept=large_ok("imu"),
        ),
    ]


def cases_time_series(env: Env) -> list[Case]:
    torch = env.torch
    tok = lambda **o: env.tok("time_series", **o)  # noqa: E731
    make = lambda: torch.randn(2, 1, 64, generator=env.gen())  # noqa: E731
    series = np.random.default_rng(SEED).standard_normal((1, 64)).astype(np.float32)
    return [
        *tensor_cases(env, "time_series", make, channel_dim=None),
        Case("wrong_channel_count_config_2", lambda: tok(channels=2)(torch.randn(2, 3, 64))),
        Case(
            "constant_series",
            lambda: tok()(torch.full((2, 1, 64), 5.0)),
            correct="RevIN of a constant series: finite tokens (or a clear error)",
            accept=tokens_ok(2),
        ),
        Case("preprocess_rank3", lambda: tok().preprocess(series[None])),
        Case("preprocess_bool", lambda: tok().preprocess(series > 0)),
        Case("list_of_series_mixed_channels", lambda: tok()([series, np.vstack([series, series])])),
        Case(
            "too_large_1e6_steps",
            lambda: tok()(torch.zeros(1, 1, 10**6)),
            correct="a clear error (length limit), or a warning (125,000 tokens for one series)",
            accept=large_ok("time_series"),
        ),
    ]


TABULAR_SCHEMA = {
    "numeric": [{"name": "a"}, {"name": "b", "mean": 1.0, "std": 2.0}],
    "categorical": [{"name": "c", "categories": ["x", "y"]}],
}


def cases_tabular(env: Env) -> list[Case]:
    torch = env.torch
    tok = lambda: env.tok("tabular")  # noqa: E731
    schema = lambda: env.tok("tabular", **TABULAR_SCHEMA)  # noqa: E731

    def batch(numeric: Any = None, categorical: Any = None) -> dict[str, Any]:
        num = torch.randn(2, 5, generator=env.gen()) if numeric is None else numeric
        cat = torch.zeros(2, 0, dtype=torch.long) if categorical is None else categorical
        return {"numeric": num, "categorical": cat}

    good = lambda: batch()["numeric"]  # noqa: E731
    row = {"a": 1.0, "b": 3.0, "c": "x"}
    return [
        Case("rank3_numeric", lambda: tok()(batch(torch.randn(2, 3, 5)))),
        Case("numeric_int64", lambda: tok()(batch((good() * 10).long()))),
        Case("numeric_bool", lambda: tok()(batch(good() > 0))),
        Case("numeric_complex64", lambda: tok()(batch(good().to(torch.complex64)))),
        Case(
            "numeric_nan_is_missing",
            lambda: tok()(batch(torch.tensor([[float("nan"), 1.0], [0.5, 2.0]]))),
            correct="NaN is a documented missing value: finite tokens (missing-value embedding)",
            accept=tokens_ok(2),
        ),
        Case("numeric_inf", lambda: tok()(batch(torch.tensor([[float("inf"), 1.0], [0.5, 2.0]])))),
        huge_run(env, "tabular", lambda: batch(torch.where(good() >= 0, HUGE, -HUGE))),
        Case("empty_batch", lambda: tok()(batch(good()[:0], torch.zeros(0, 0, dtype=torch.long)))),
        Case("numeric_numpy_array", lambda: tok()(batch(good().numpy()))),
        Case("numeric_python_list", lambda: tok()(batch(good().tolist()))),
        Case("bare_tensor_not_dict", lambda: tok()(good())),
        Case("too_many_columns_1e5", lambda: tok()(batch(torch.zeros(2, 10**5)))),
        Case(
            "schema_wrong_column_count",
            lambda: schema()(batch(torch.zeros(2, 3), torch.full((2, 1), 2))),
        ),
        Case("schema_categorical_float", lambda: schema()(batch(torch.zeros(2, 2), torch.full((2, 1), 2.0)))),
        Case(
            "schema_categorical_out_of_range",
            lambda: schema()(batch(torch.zeros(2, 2), torch.full((2, 1), 9))),
        ),
        Case(
            "preprocess_row_unknown_column",
            lambda: schema().preprocess({**row, "zzz": 5.0}),
            correct="a clear error, or a warning naming the unknown column (it is dropped)",
            accept=warned_ok("tabular", "unknown column 'zzz' dropped"),
        ),
        Case("preprocess_row_missing_column", lambda: schema().preprocess({"a": 1.0, "c": "x"})),
        Case("preprocess_row_string_in_numeric", lambda: schema().preprocess({**row, "a": "high"})),
        Case("preprocess_row_inf", lambda: schema().preprocess({**row, "b": float("inf")})),
        Case("preprocess_row_list_wrong_length", lambda: schema().preprocess([1.0, 2.0])),
    ]


def cases_text(env: Env) -> list[Case]:
    torch = env.torch
    tok = lambda: env.tok("text")  # noqa: E731
    ids = lambda: torch.randint(3, 200, (2, 6), generator=env.gen())  # noqa: E731
    return [
        Case("lone_surrogate_string", lambda: tok()(["fine", "\ud800"])),
        Case("preprocess_lone_surrogate", lambda: tok().preprocess("bad \udfff")),
        Case("list_with_int", lambda: tok()(["fine", 3])),
        Case("list_of_bytes", lambda: tok()([b"abc", b"def"])),
        Case("nested_list_of_strings", lambda: tok()([["a", "b"], ["c"]])),
        Case("numpy_array_of_strings", lambda: tok()(np.array(["a goal", "a cake"]))),
        Case("empty_list", lambda: tok()([])),
        Case("ids_float", lambda: tok()(ids().float())),
        Case("ids_float_nan", lambda: tok()(torch.full((2, 4), float("nan")))),
        Case("ids_bool", lambda: tok()(ids() > 100)),
        Case("ids_complex", lambda: tok()(ids().to(torch.complex64))),
        Case("ids_rank1", lambda: tok()(ids()[0])),
        Case("ids_out_of_range_1e12", lambda: tok()(torch.full((2, 4), 10**12))),
        Case("ids_numpy", lambda: tok()(ids().numpy())),
        Case("ids_python_nested_list", lambda: tok()(ids().tolist())),
        Case("ids_empty_batch", lambda: tok()(ids()[:0])),
        Case(
            "dict_mask_float",
            lambda: tok()({"input_ids": ids(), "mask": torch.ones(2, 6)}),
        ),
        Case(
            "too_large_1e6_chars",
            lambda: tok()(["a" * 10**6]),
            correct="documented: truncated to max_length (512) with a TextTruncationWarning",
            accept=lambda r, ws: (
                tokens_ok(1)(r, ws) or warned_ok("text", "10^6 characters truncated to 512 tokens")(r, ws)
            ),
        ),
    ]


def cases_graph(env: Env) -> list[Case]:
    torch = env.torch
    from torch_geometric.data import Batch, Data

    tok = lambda **o: env.tok("graph", **o)  # noqa: E731
    ring = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]])

    def feat(x: Any) -> Any:
        return tok(in_channels=4)(Data(x=x, edge_index=ring, num_nodes=4))

    def big() -> Any:
        n = 10**5
        g = env.gen()
        ei = torch.stack(
            [torch.randint(0, n, (4 * n,), generator=g), torch.randint(0, n, (4 * n,), generator=g)]
        )
        return tok()(Data(edge_index=ei, num_nodes=n))

    x = lambda: torch.randn(4, 4, generator=env.gen())  # noqa: E731
    return [
        Case("empty_pyg_batch", lambda: tok()(Batch())),
        Case("empty_list", lambda: tok()([])),
        Case("edge_index_python_list", lambda: tok()(Data(edge_index=ring.tolist(), num_nodes=4))),
        Case("edge_index_numpy", lambda: tok()(Data(edge_index=ring.numpy(), num_nodes=4))),
        Case("edge_index_float", lambda: tok()(Data(edge_index=ring.float(), num_nodes=4))),
        Case("edge_index_rank1", lambda: tok()(Data(edge_index=ring[0], num_nodes=4))),
        Case("edge_index_out_of_range", lambda: tok()(Data(edge_index=ring + 2, num_nodes=4))),
        Case("no_num_nodes_no_edges", lambda: tok()(Data(edge_index=torch.zeros(2, 0, dtype=torch.long)))),
        Case("tensor_adjacency_matrix", lambda: tok()(torch.eye(4))),
        Case("list_of_dicts", lambda: tok()([{"edge_index": ring, "num_nodes": 4}])),
        Case("x_nan", lambda: feat(torch.from_numpy(with_nan(x().numpy())))),
        Case("x_int64", lambda: feat((x() * 10).long())),
        Case("x_wrong_channel_count", lambda: feat(torch.randn(4, 5, generator=env.gen()))),
        Case("x_python_list", lambda: feat(x().tolist())),
        huge_run(
            env,
            "graph",
            lambda: Data(x=torch.where(x() >= 0, HUGE, -HUGE), edge_index=ring, num_nodes=4),
            in_channels=4,
        ),
        Case(
            "too_large_1e5_nodes",
            big,
            correct="a clear error (size limit), or a warning (100,000 node tokens), within the time limit",
            accept=large_ok("graph"),
            time_factor=3.0,  # scipy's eigsh (Laplacian encoding) takes 10-30 s here, varying from run to run
        ),
    ]


def model_cases(env: Env) -> list[Case]:
    torch, pm = env.torch, env.pm
    img = lambda: torch.randn(2, 3, 32, 32, generator=env.gen())  # noqa: E731
    clf = lambda: env.model("image")  # noqa: E731
    reg = lambda: env.model("image", {"type": "regression"})  # noqa: E731
    subj = ("image", "classification", "target", "targets")

    def loss(model: Any, target: Any) -> Any:
        return model()({"image": img()}, {"image": target}, mode="loss")

    def rows_ok(result: Any, ws: list[str]) -> str | None:
        out = result["time_series"]
        return None if out.shape[0] == 2 else f"{out.shape[0]} rows of logits for 2 series of 3 channels"

    def head_ok(result: Any, ws: list[str]) -> str | None:
        return f"num_classes=True accepted as {result.config.heads['x'].num_classes!r}"

    images = lambda: torch.rand(4, 3, 32, 32, generator=env.gen())  # noqa: E731

    def fit_beyond_head(evaluate: bool) -> Any:
        data = pm.ArrayDataset("image", images(), [0, 1, 2, 7])  # 8 classes inferred
        if evaluate:
            return pm.evaluate(clf(), data)
        return pm.fit(clf(), data, epochs=1, batch_size=4, summary=False, device="cpu")

    return [
        Case(
            "build_model_modalities_string",
            lambda: pm.build_model(modalities="image", encoder=ENCODER),
            correct="a clear error: modalities must be a list of names (a string is iterated letter by letter)",
            subjects=("modalities",),
        ),
        Case(
            "head_num_classes_bool",
            lambda: pm.build_model(
                tokenizers={"x": "image"},
                encoder=ENCODER,
                heads={"x": {"type": "classification", "num_classes": True}},
            ),
            correct="a clear error: num_classes must be an integer, not a bool",
            accept=head_ok,
            subjects=("num_classes",),
        ),
        Case("loss_class_target_7_of_3", lambda: loss(clf, torch.tensor([7, 0])), subjects=subj),
        Case("loss_class_target_negative", lambda: loss(clf, torch.tensor([-1, 0])), subjects=subj),
        Case(
            "loss_class_target_float",
            lambda: loss(clf, torch.tensor([0.7, 1.9])),
            correct="a clear error: class targets must be integers (0.7 and 1.9 are truncated to 0 and 1)",
            subjects=subj,
        ),
        Case("loss_class_target_python_list", lambda: loss(clf, [0, 1]), subjects=subj),
        Case("loss_class_target_batch_mismatch", lambda: loss(clf, torch.tensor([0, 1, 2])), subjects=subj),
        Case(
            "loss_regression_target_nan",
            lambda: loss(reg, torch.tensor([float("nan"), 1.0])),
            correct="a clear error (finite targets expected), or a finite loss",
            accept=finite_ok,
            subjects=("image", "regression", "target", "targets"),
        ),
        Case("loss_without_targets", lambda: clf()({"image": img()}, mode="loss"), subjects=subj),
        Case("inputs_not_a_dict", lambda: clf()(img()), subjects=("inputs",)),
        Case("inputs_unknown_key", lambda: clf()({"imag": img()}), subjects=("inputs", "imag")),
        Case(
            "time_series_default_classification_rows",
            lambda: env.model("time_series")({"time_series": torch.randn(2, 3, 64, generator=env.gen())}),
            correct="a clear error (channel-independent tokens give B*C rows; a classification head needs "
            "channel_mode='mixing'), or B rows",
            accept=rows_ok,
            subjects=("time_series", "classification", "channel_mode"),
        ),
        Case(
            "arraydataset_label_7_of_3_classes",
            lambda: pm.ArrayDataset(
                "image", images(), [0, 1, 2, 7], task={"kind": "classification", "num_classes": 3}
            ),
            subjects=subj,
        ),
        Case(
            "arraydataset_label_negative",
            lambda: pm.ArrayDataset("image", images(), [0, 1, 2, -1]),
            subjects=subj,
        ),
        Case(
            "arraydataset_float_class_targets",
            lambda: pm.ArrayDataset("image", images(), [0.7, 1.9, 0.2, 1.0], task="classification"),
            subjects=subj,
        ),
        Case(
            "arraydataset_nan_regression_targets",
            lambda: pm.ArrayDataset("image", images(), [float("nan"), 1.0, 2.0, 0.5]),
            subjects=("image", "regression", "target", "targets"),
        ),
        Case(
            "fit_labels_beyond_head",
            lambda: fit_beyond_head(evaluate=False),
            subjects=("fit", "num_classes", "image"),
        ),
        Case(
            "evaluate_labels_beyond_head",
            lambda: fit_beyond_head(evaluate=True),
            subjects=("evaluate", "fit", "num_classes", "image"),
        ),
    ]


def generic_cases(env: Env, m: str) -> list[Case]:
    """Cases for a modality without its own list here (a third-party plugin): wrong types, and the tensor cases
    when its example input is a tensor."""
    torch = env.torch
    tok = lambda: env.tok(m)  # noqa: E731
    cases = [
        Case("none", lambda: tok()(None)),
        Case("a_string", lambda: tok()("not a batch")),
        Case("empty_list", lambda: tok()([])),
        Case("empty_dict", lambda: tok()({})),
        Case("an_object", lambda: tok()(object())),
    ]
    example = tok().example_input(2, env.gen())
    if isinstance(example, torch.Tensor) and example.is_floating_point():
        cases += tensor_cases(env, m, lambda: tok().example_input(2, env.gen()), channel_dim=None)
    return cases


BUILTIN = {
    "audio": cases_audio,
    "graph": cases_graph,
    "hyperspectral": cases_hyperspectral,
    "image": cases_image,
    "imu": cases_imu,
    "infrared": cases_infrared,
    "point_cloud": cases_point_cloud,
    "tabular": cases_tabular,
    "text": cases_text,
    "time_series": cases_time_series,
    "video": cases_video,
    "xray": cases_xray,
}


def all_cases(env: Env, only: str | None) -> dict[str, list[Case]]:
    """``{row: cases}``: every modality of the registry, then the model-level row."""
    rows: dict[str, list[Case]] = {}
    for m in env.pm.list_modalities():
        if only in (None, m):
            rows[m] = BUILTIN[m](env) if m in BUILTIN else generic_cases(env, m)
    if only in (None, MODEL_ROW, "model"):
        rows[MODEL_ROW] = model_cases(env)
    return rows


# ============================================================================================================
# the worker process
# ============================================================================================================
def run_case(env: Env, row: str, case: Case) -> dict[str, Any]:
    torch = env.torch
    subjects = case.subjects or (row,)
    torch.manual_seed(SEED)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = case.run()
        except Exception as exc:  # the input was refused: clear or unclear
            message = f"{type(exc).__name__}: {exc}"
            outcome = "clear" if is_clear(str(exc), subjects) else "unclear"
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, ...: a process-level failure
            message, outcome = f"{type(exc).__name__}: {exc}", "crash"
        else:
            ws = [str(w.message) for w in caught]
            if case.accept is None:
                problem = f"accepted without an error; returned {summarize(result)}"
            else:
                problem = case.accept(result, ws)
            outcome = "silent" if problem else "clear"
            relevant = [w for w in ws if warned([w], row)]
            message = problem or ("accepted correctly" + (f"; warned: {relevant[0]}" if relevant else ""))
    return {
        "modality": row,
        "case": case.name,
        "outcome": outcome,
        "message": " ".join(message.split())[:1000],
        "correct": case.correct,
        "subjects": list(subjects),
        "seconds": round(time.perf_counter() - start, 3),
    }


def worker(conn: Any) -> None:
    """Answer ``("list", only)`` with the case names and ``("run", row, name)`` with a result dict."""
    devnull = os.open(os.devnull, os.O_WRONLY)  # fit's summaries and logs would garble the table
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    try:
        env = Env()
    except Exception as exc:
        conn.recv()
        conn.send({"__error__": f"{type(exc).__name__}: {exc}"})
        return
    rows: dict[str, list[Case]] = {}
    while True:
        msg = conn.recv()
        if msg[0] == "list":
            try:
                rows = all_cases(env, msg[1])
            except Exception as exc:  # e.g. polymodal does not import: say so instead of dying
                conn.send({"__error__": f"{type(exc).__name__}: {exc}"})
                continue
            try:  # warm up (imports, first model build) outside any case's time limit
                env.model("image")({"image": env.torch.zeros(1, 3, 16, 16)})
            except Exception:
                pass
            conn.send({row: [(c.name, c.time_factor) for c in cases] for row, cases in rows.items()})
        elif msg[0] == "run":
            if not rows:
                rows = all_cases(env, msg[3])
            case = next(c for c in rows[msg[1]] if c.name == msg[2])
            conn.send(run_case(env, msg[1], case))
        else:
            return


class Worker:
    """A spawned worker process and its pipe; replaced after a timeout or a death."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker, args=(child,), daemon=True)
        self.proc.start()
        child.close()

    def ask(self, msg: tuple[Any, ...], timeout: float) -> tuple[str, Any]:
        """``("ok", answer)``, ``("timeout", None)`` or ``("died", exitcode)``."""
        try:
            self.conn.send(msg)
            if not self.conn.poll(timeout):
                return "timeout", None
            return "ok", self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self.proc.join(5)
            return "died", self.proc.exitcode

    def stop(self, force: bool = False) -> None:
        if not force:
            try:
                self.conn.send(("stop",))
                self.proc.join(10)
            except (BrokenPipeError, OSError):
                pass
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


# ============================================================================================================
# the report
# ============================================================================================================
def table(results: list[dict[str, Any]], rows: list[str]) -> str:
    width = max(len("modality"), *(len(r) for r in rows), len("total"))
    head = f"{'modality':<{width}}  " + "  ".join(f"{o:>7}" for o in OUTCOMES) + f"  {'cases':>5}"
    lines = [head, "-" * len(head)]
    totals = dict.fromkeys(OUTCOMES, 0)
    for row in rows:
        counts = dict.fromkeys(OUTCOMES, 0)
        for r in results:
            if r["modality"] == row:
                counts[r["outcome"]] += 1
                totals[r["outcome"]] += 1
        cells = "  ".join(f"{counts[o]:>7}" for o in OUTCOMES)
        lines.append(f"{row:<{width}}  {cells}  {sum(counts.values()):>5}")
    lines.append("-" * len(head))
    cells = "  ".join(f"{totals[o]:>7}" for o in OUTCOMES)
    lines.append(f"{'total':<{width}}  {cells}  {sum(totals.values()):>5}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run one modality (or 'model' for the model/targets row)")
    parser.add_argument("--verbose", action="store_true", help="print every case, its outcome and message")
    parser.add_argument("--json", metavar="PATH", help="write the per-case results to PATH")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it is a crash")
    parser.add_argument("--strict", action="store_true", help="exit 1 when unclear + silent + crash > 0")
    args = parser.parse_args(argv)
    only = MODEL_ROW if args.only == "model" else args.only

    start = time.perf_counter()
    w = Worker()
    status, listing = w.ask(("list", only), timeout=300)
    if status != "ok":
        w.stop(force=True)
        print(f"trust battery: the worker could not list the cases ({status}, {listing})", file=sys.stderr)
        return 1
    if "__error__" in listing:
        w.stop(force=True)
        print(f"trust battery: the cases could not be built: {listing['__error__']}", file=sys.stderr)
        return 1
    if not listing:
        w.stop()
        print(f"trust battery: no modality named {args.only!r}", file=sys.stderr)
        return 1
    results: list[dict[str, Any]] = []
    for row, names in listing.items():
        for name, factor in names:
            t0 = time.perf_counter()
            limit = args.timeout * factor
            status, answer = w.ask(("run", row, name, only), timeout=limit)
            if status == "ok":
                result = answer
            else:
                w.stop(force=True)
                w = Worker()
                w.ask(("list", only), timeout=300)  # started and warmed up before the next case's clock
                why = (
                    f"no answer within {limit:g} s (killed)"
                    if status == "timeout"
                    else f"worker process died (exit code {answer})"
                )
                result = {
                    "modality": row,
                    "case": name,
                    "outcome": "crash",
                    "message": why,
                    "correct": "",
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            results.append(result)
            if args.verbose:
                print(f"{row:<14} {name:<42} {result['outcome']:<8} {result['message'][:150]}", flush=True)
    w.stop()

    if args.verbose:
        print()
    print(table(results, list(listing)))
    print(
        f"\n{len(results)} cases in {time.perf_counter() - start:.0f} s (time limit {args.timeout:g} s per case)"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
    bad = sum(r["outcome"] != "clear" for r in results)
    return 1 if args.strict and bad else 0


if __name__ == "__main__":
    sys.exit(main())
