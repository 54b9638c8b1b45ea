"""Malformed and giant inputs at the tokenizers: each refused with a clear error naming the modality (or accepted
with a warning where accepting is documented), never a raw error, never a silent wrong value; and the battery of
benchmarks/trust_battery.py over every registered modality finds nothing unclear, silent or crashing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch, Data

import polymodal
from polymodal import ModalityInputError
from polymodal.core.tokenizer import MAX_INPUT_MAGNITUDE

ROOT = Path(__file__).resolve().parents[1]


def tok(name: str, **overrides: object) -> polymodal.Tokenizer:
    return polymodal.get("tokenizer", name).from_config(embed_dim=16, **overrides)


@pytest.mark.parametrize("name", polymodal.list_tokenizers())
def test_every_tokenizer_has_a_documented_token_cap(name: str) -> None:
    cls = polymodal.get("tokenizer", name)
    field = cls.config_class.model_fields["max_tokens"]
    assert field.default == 8192 and "max_tokens" not in cls.default_config().model_fields_set
    small = tok(name, max_tokens=1)
    with pytest.raises(ModalityInputError, match=rf"^{cls.modality}: expected at most 1 tokens per sample"):
        small(
            small.example_input(2, generator=torch.Generator().manual_seed(0))
        )  # graphs: refused in collate


def test_huge_finite_values_are_refused_before_they_overflow() -> None:
    x = torch.randn(1, 3, 32, 32)
    x[0, 0, 0, 0] = 1e38
    with pytest.raises(
        ModalityInputError,
        match=r"^image: expected values of magnitude at most 1e\+15, got \|x\| up to 1e\+38",
    ):
        tok("image")(x)
    ok = torch.full((1, 3, 32, 32), MAX_INPUT_MAGNITUDE / 10)
    assert torch.isfinite(tok("image")(ok).embeddings).all()  # large but representable: accepted


def test_series_of_a_million_steps_are_refused_with_the_count() -> None:
    with pytest.raises(
        ModalityInputError,
        match=r"^time_series: expected at most 8192 tokens per sample .* got 125000 tokens",
    ):
        tok("time_series")(torch.randn(1, 1, 1_000_000))


def test_a_giant_graph_is_refused_before_its_encoding_is_computed() -> None:
    n = 100_000
    src = torch.arange(n - 1)
    graph = Data(edge_index=torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])]), num_nodes=n)
    start = time.perf_counter()
    with pytest.raises(
        ModalityInputError,
        match=r"^graph: expected at most 8192 tokens per sample .* a graph of 100000 nodes",
    ):
        tok("graph").collate([graph])
    assert time.perf_counter() - start < 5.0  # refused before any eigen solve


def test_an_empty_pyg_batch_is_a_clear_error() -> None:
    with pytest.raises(
        ModalityInputError, match=r"^graph: expected a non-empty batch of graphs, got a Batch of 0 graphs"
    ):
        tok("graph")(Batch())


def test_laplacian_encoding_of_a_long_path_is_fast_and_exact() -> None:
    """A path's smallest Laplacian eigenvalues cluster near 0, where Lanczos stalls: shift-invert takes over."""
    from polymodal.plugins.graph.encodings import DENSE_EIGEN_LIMIT, laplacian_pe

    n = DENSE_EIGEN_LIMIT + 1000
    src = torch.arange(n - 1)
    ei = torch.stack([torch.cat([src, src + 1]), torch.cat([src + 1, src])])
    start = time.perf_counter()
    pe = laplacian_pe(ei, n, 4)
    assert time.perf_counter() - start < 10.0
    # the path's normalised-Laplacian eigenvectors are cosines: v_j(i) ∝ cos(pi j (i + 1/2) / n)-like; check the
    # defining equation L v = lambda v instead of a closed form
    a = torch.zeros(n, n, dtype=torch.float64)
    a[ei[0], ei[1]] = 1.0
    dinv = a.sum(1).rsqrt()
    lap = torch.eye(n, dtype=torch.float64) - dinv[:, None] * a * dinv[None, :]
    v = pe.double()
    lam = (v * (lap @ v)).sum(0) / (v * v).sum(0)
    assert torch.allclose(lap @ v, v * lam, atol=1e-4)
    assert bool((lam[1:] >= lam[:-1] - 1e-9).all()) and float(lam[0]) > 0  # smallest non-trivial, in order


def test_random_walk_encoding_matches_pyg() -> None:
    from torch_geometric.transforms import AddRandomWalkPE

    from polymodal.plugins.graph.encodings import random_walk_pe

    g = torch.Generator().manual_seed(0)
    ei = torch.unique(torch.randint(0, 60, (2, 240), generator=g), dim=1)  # with self-loops, no duplicates
    ref = AddRandomWalkPE(walk_length=6, attr_name="pe")(Data(edge_index=ei, num_nodes=60)).pe
    assert torch.allclose(random_walk_pe(ei, 60, 6, block=16), ref, atol=1e-6)


def test_a_lone_surrogate_in_a_text_is_named() -> None:
    with pytest.raises(
        ModalityInputError,
        match=r"^text: expected valid Unicode text .* got text 1: an unpaired surrogate '\\ud800' at position 2",
    ):
        tok("text")(["fine", "ab\ud800c"])


def test_a_table_row_with_an_unknown_column_warns_and_names_it() -> None:
    from polymodal.plugins.tabular import TabularTokenizerConfig

    cfg = TabularTokenizerConfig.from_arrays(np.array([[1.0, 2.0], [3.0, 4.0]]), numeric_names=["a", "b"])
    t = polymodal.get("tokenizer", "tabular")(cfg.model_copy(update={"embed_dim": 8}))
    with pytest.warns(UserWarning, match=r"tabular: the schema has no column 'zzz'; its values are dropped"):
        row = t.preprocess({"a": 1.0, "b": 2.0, "zzz": 9.0})
    assert torch.equal(row["numeric"], t.preprocess({"a": 1.0, "b": 2.0})["numeric"])


def test_float_pixels_on_the_0_255_scale_are_refused() -> None:
    img = np.full((8, 8, 3), 200.0, np.float32)
    with pytest.raises(
        ModalityInputError, match=r"^image: expected float pixels in \[0, 1\] .*\(divide 0-255 values by 255"
    ):
        tok("image", patch_size=8).preprocess(img)
    clip = np.full((4, 8, 8, 3), 200.0, np.float32)
    with pytest.raises(ModalityInputError, match=r"^video: expected float pixels in \[0, 1\]"):
        tok("video", num_frames=4).preprocess(clip)
    slight = np.clip(np.random.default_rng(0).normal(0.5, 0.3, (8, 8, 3)), -0.05, 1.05).astype(np.float32)
    assert tok("image", patch_size=8).preprocess(slight).shape == (3, 8, 8)  # resampling overshoot is fine


def test_a_short_clip_stretched_to_num_frames_is_said() -> None:
    clip = np.zeros((3, 8, 8, 3), np.uint8)
    with pytest.warns(UserWarning, match=r"video: a clip of 3 frames is stretched to num_frames=8"):
        out = tok("video", num_frames=8).preprocess(clip)
    assert out.shape[0] == 8


def test_the_battery_finds_nothing_unclear_silent_or_crashing() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "trust_battery.py"), "--strict"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    total = next(line for line in out.stdout.splitlines() if line.startswith("total"))
    clear, unclear, silent, crash = map(int, total.split()[1:5])
    assert (unclear, silent, crash) == (0, 0, 0) and clear >= 12 * 8
