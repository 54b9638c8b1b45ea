"""Tests of the EEG plugin: polymodal's conformance checks, then the plugin's own numbers.

Run after ``pip install ./examples/polymodal-eeg``: the plugin is found through its entry point, like any user's.
"""

from __future__ import annotations

import math

import polymodal
import pytest
import torch
from polymodal import ModalityInputError
from polymodal.testing import check_data_source, check_tokenizer
from pydantic import ValidationError

from polymodal_eeg import (
    MONTAGE_10_20,
    RHYTHMS,
    EegRhythmsDataSource,
    EegTokenizer,
    electrode_positions,
    resample_fft,
)


def test_found_through_the_entry_point() -> None:
    plugin = {p.name: p for p in polymodal.list_plugins()}["eeg"]
    assert plugin.status == "loaded" and plugin.distribution == "polymodal-eeg"
    assert plugin.components == ["eeg", "eeg_rhythms"]
    assert polymodal.get("tokenizer", "eeg") is EegTokenizer


def test_conformance() -> None:
    out = check_tokenizer(
        "eeg"
    )  # polymodal.testing: config JSON round trip, shapes, mask, gradients, bad input
    assert out.embeddings.shape == (2, 19 * 4, 32)
    assert out.lengths.tolist() == [19 * 4, 17 * 4]  # the example's second epoch has two bad channels


@pytest.mark.parametrize(("features", "width"), [("spectrum", 33), ("waveform", 64)])
def test_features(features: str, width: int) -> None:
    tok = EegTokenizer.from_config(embed_dim=16, features=features)
    assert tok.patch_embed.in_features == width
    assert tok(tok.example_input(3)).embeddings.shape == (3, 76, 16)


def test_data_source_conformance() -> None:
    check_data_source("eeg_rhythms")


def test_token_count_and_order() -> None:
    tok = EegTokenizer.from_config(embed_dim=8, stride=32)
    x = torch.randn(2, 19, 3 * 128)  # 3 s at 128 Hz: (384 - 64) // 32 + 1 = 11 patches per channel
    out = tok(x)
    assert out.embeddings.shape == (2, 19 * 11, 8) and tok.num_tokens(384) == 209
    assert out.meta["patches_per_channel"] == 11
    # channel-major: changing channel 5 changes exactly tokens 5*11 .. 6*11-1
    y = x.clone()
    y[:, 5] += torch.randn(384)
    changed = (tok(y).embeddings - out.embeddings).abs().amax(dim=(0, 2)) > 1e-6
    assert changed.nonzero().flatten().tolist() == list(range(55, 66))


def test_bad_channels_are_padding_and_ignored() -> None:
    tok = EegTokenizer.from_config(embed_dim=8)
    values = 20 * torch.randn(2, 19, 256)
    channel_mask = torch.ones(2, 19, dtype=torch.bool)
    channel_mask[0, [3, 7]] = False
    out = tok({"values": values, "channel_mask": channel_mask})
    assert out.lengths.tolist() == [17 * 4, 19 * 4]
    assert not out.mask[0, 3 * 4 : 4 * 4].any() and (out.embeddings[0, 3 * 4 : 4 * 4] == 0).all()
    broken = values.clone()
    broken[0, 3] = float("nan")  # a dead electrode: ignored, not an error
    again = tok({"values": broken, "channel_mask": channel_mask})
    torch.testing.assert_close(again.embeddings, out.embeddings)


def test_electrode_positions() -> None:
    xyz = electrode_positions(["Cz", "Fp1", "Fp2", "T7", "T3", "Oz"])
    torch.testing.assert_close(xyz.norm(dim=1), torch.ones(6))
    torch.testing.assert_close(xyz[0], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(xyz[1] * torch.tensor([1.0, -1.0, 1.0]), xyz[2])  # left/right mirror
    torch.testing.assert_close(xyz[3], xyz[4])  # 10-10 alias
    assert xyz[1, 0] > 0.9 and xyz[5, 0] < -0.9  # front, back


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ValidationError, match=r"unknown 10-20 electrodes \['Xy1'\]"):
        EegTokenizer.from_config(montage=("Fp1", "Xy1"))
    with pytest.raises(ValidationError, match=r"listed twice: \['T3'\]"):
        EegTokenizer.from_config(montage=("T3", "T7"))
    tok = EegTokenizer.from_config(montage=("c3", "CZ", "T8"))
    assert tok.config.montage == ("C3", "Cz", "T4")


def test_input_errors_name_the_modality() -> None:
    tok = EegTokenizer.from_config(embed_dim=8)
    with pytest.raises(
        ModalityInputError,
        match=r"^eeg: expected a tensor \(B, 19, T\) .* got tensor of shape \(2, 18, 256\)",
    ):
        tok(torch.randn(2, 18, 256))
    with pytest.raises(ModalityInputError, match=r"epochs of one length .* lengths \[256, 300\]"):
        tok.collate([torch.randn(19, 256), torch.randn(19, 300)])


def test_preprocess_matches_channels_by_name_and_resamples() -> None:
    tok = EegTokenizer.from_config(embed_dim=8)
    names = ["EOG", *reversed([n for n in MONTAGE_10_20 if n != "O2"])]
    names = ["T8" if n == "T4" else n for n in names]  # a 10-10 name
    t = torch.arange(512) / 256
    rows = torch.stack([torch.sin(2 * math.pi * (3 + i) * t) for i in range(len(names))])
    out = tok.preprocess({"values": rows, "channels": names, "sample_rate": 256})
    assert out["values"].shape == (19, 256) and out["values"].dtype == torch.float32
    assert out["channel_mask"].tolist() == [n != "O2" for n in MONTAGE_10_20]
    fz = names.index("Fz")  # its row: a sine of 3 + fz Hz, now sampled at 128 Hz
    expected = torch.sin(2 * math.pi * (3 + fz) * torch.arange(256) / 128)
    torch.testing.assert_close(out["values"][MONTAGE_10_20.index("Fz")], expected, atol=1e-4, rtol=0)
    assert (out["values"][MONTAGE_10_20.index("O2")] == 0).all()
    batch = tok.collate([out, torch.randn(19, 256)])
    assert batch["channel_mask"].sum().item() == 37


def test_preprocess_errors_name_the_problem() -> None:
    tok = EegTokenizer.from_config(embed_dim=8)
    x = torch.randn(3, 256)
    with pytest.raises(ModalityInputError, match=r"^eeg: expected each electrode once .* got \['T3'\] twice"):
        tok.preprocess({"values": x, "channels": ["T3", "Cz", "T7"]})
    with pytest.raises(
        ModalityInputError,
        match=r"^eeg: expected at least one channel of the montage .* got channels \['EOG', 'ECG', 'X'\]",
    ):
        tok.preprocess({"values": x, "channels": ["EOG", "ECG", "X"]})
    with pytest.raises(
        ModalityInputError, match=r"^eeg: expected one channel name per row \(3\), got 2 names"
    ):
        tok.preprocess({"values": x, "channels": ["Cz", "Pz"]})
    with pytest.raises(
        ModalityInputError, match=r"^eeg: expected a positive integer sample rate \(Hz\), got 250.0"
    ):
        tok.preprocess({"values": x, "channels": ["Cz", "Pz", "Oz"], "sample_rate": 250.0})
    with pytest.raises(
        ModalityInputError,
        match=r"^eeg: expected \(19, T\) with channels Fp1, .* got tensor of shape \(3, 256\)",
    ):
        tok.preprocess(x)


def test_resample_fft_keeps_a_sine() -> None:
    t = torch.arange(1000, dtype=torch.float64) / 500
    y = resample_fft(torch.sin(2 * math.pi * 7 * t), 500, 128)
    assert y.shape == (256,) and y.dtype == torch.float64
    expected = torch.sin(2 * math.pi * 7 * torch.arange(256, dtype=torch.float64) / 128)
    torch.testing.assert_close(y, expected, atol=1e-9, rtol=0)


def _band_power(x: torch.Tensor, lo: float, hi: float, rate: int = 128) -> torch.Tensor:
    spec = torch.fft.rfft(x - x.mean(-1, keepdim=True)).abs() ** 2
    f = torch.fft.rfftfreq(x.shape[-1], 1 / rate)
    return spec[..., (f >= lo) & (f <= hi)].mean(-1)


def test_rhythms_are_where_and_what_they_claim() -> None:
    source = EegRhythmsDataSource.from_config(num_train=400, num_test=8)
    values, labels = source.splits()["train"].tensors
    assert values.shape == (400, 19, 256) and torch.bincount(labels).tolist() == [100] * 4
    again = EegRhythmsDataSource.from_config(num_train=400, num_test=8).splits()["train"].tensors[0]
    assert torch.equal(values, again)  # seeded
    names = [name for name, _, _ in RHYTHMS]
    alpha = _band_power(values, 8, 12)
    occipital = [MONTAGE_10_20.index(n) for n in ("O1", "O2")]
    frontal = [MONTAGE_10_20.index(n) for n in ("F3", "F4")]

    def ratio(cls: str) -> float:  # occipital / frontal alpha power, median over the class
        a = alpha[labels == names.index(cls)]
        return float((a[:, occipital].mean(1) / a[:, frontal].mean(1)).median())

    assert ratio("posterior_alpha") > 3 and ratio("frontal_alpha") < 1 / 3
    beta, theta = _band_power(values, 16, 24).mean(1), _band_power(values, 4, 7).mean(1)
    assert (
        beta[labels == names.index("central_beta")].median()
        > 3 * beta[labels != names.index("central_beta")].median()
    )
    assert (
        theta[labels == names.index("frontal_theta")].median()
        > 2 * theta[labels != names.index("frontal_theta")].median()
    )
    assert source.task() == {"type": "classification", "num_classes": 4} and source.baseline() == 0.25
