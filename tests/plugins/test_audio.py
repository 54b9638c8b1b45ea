"""audio plugin: Kaldi filter banks against a frame-by-frame numpy implementation of Kaldi's formulas (and
torchaudio when importable), resampling against the direct windowed-sinc sum, AST patches against a loop, masks
and padding invariance, token counts, preprocessing, errors, the synthetic sounds."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.plugins._sequence import resample, resampled_length, sequence_positions
from polymodal.plugins.audio import (
    AST_MEAN,
    AST_STD,
    AUDIO_EXTENSIONS,
    SOUND_CLASSES,
    AudioTokenizer,
    SyntheticSoundsDataSource,
    kaldi_fbank,
    read_audio,
)
from polymodal.testing import check_data_source, check_tokenizer

# AST's setting (128 mel bins, overlapping patches of stride 10): the numbers below follow AST's paper and code
AST = {"num_mel_bins": 128, "stride_time": 10, "stride_freq": 10}


def tokenizer(**overrides: object) -> AudioTokenizer:
    torch.manual_seed(0)
    return AudioTokenizer.from_config(**{"embed_dim": 8, **AST, **overrides}).eval()


# -- reference implementations (straight from Kaldi's formulas, one frame at a time) ------------------------------
def np_window(kind: str, n: int) -> np.ndarray:
    i = np.arange(n)
    a = 2 * np.pi / (n - 1)
    hann = 0.5 - 0.5 * np.cos(a * i)
    return {
        "povey": hann**0.85,
        "hanning": hann,
        "hamming": 0.54 - 0.46 * np.cos(a * i),
        "rectangular": np.ones(n),
        "blackman": 0.42 - 0.5 * np.cos(a * i) + 0.08 * np.cos(2 * a * i),
    }[kind]


def np_mel(f: float) -> float:
    return 1127.0 * math.log(1.0 + f / 700.0)


def np_fbank(
    x: np.ndarray,
    sr: int = 16000,
    bins: int = 128,
    window: str = "povey",
    low: float = 20.0,
    high: float = 0.0,
    preemph: float = 0.97,
) -> np.ndarray:
    """Kaldi compute-fbank-feats (snip_edges, no dither, power spectrum, no energy), one frame at a time."""
    win, shift = int(sr * 0.025), int(sr * 0.010)
    nfft = 1
    while nfft < win:
        nfft *= 2
    high = high + sr / 2 if high <= 0 else high
    mlow, mhigh = np_mel(low), np_mel(high)
    delta = (mhigh - mlow) / (bins + 1)
    banks = np.zeros((bins, nfft // 2 + 1))
    for m in range(bins):
        left, center, right = mlow + m * delta, mlow + (m + 1) * delta, mlow + (m + 2) * delta
        for k in range(nfft // 2):  # the Nyquist bin keeps weight 0, as in Kaldi
            mel = np_mel(k * sr / nfft)
            if left < mel < right:
                banks[m, k] = (
                    (mel - left) / (center - left) if mel <= center else (right - mel) / (right - center)
                )
    frames = 1 + (len(x) - win) // shift
    out = np.zeros((frames, bins))
    w = np_window(window, win)
    for i in range(frames):
        frame = x[i * shift : i * shift + win].astype(np.float64).copy()
        frame -= frame.mean()
        emph = frame.copy()
        emph[1:] -= preemph * frame[:-1]
        emph[0] -= preemph * frame[0]
        spec = np.fft.rfft(emph * w, n=nfft)
        power = spec.real**2 + spec.imag**2
        out[i] = np.log(np.maximum(banks @ power, np.finfo(np.float32).eps))
    return out


def np_resample(x: np.ndarray, orig: int, new: int, width: int = 6, rolloff: float = 0.99) -> np.ndarray:
    """Direct band-limited interpolation: out[j] = sum_i x[i] · (b/o) · sinc(b(i/o - j/n)) · hann window."""
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    base = min(o, n) * rolloff
    out = np.zeros(-(-len(x) * n // o))
    i = np.arange(len(x))
    for j in range(len(out)):
        t = np.clip(base * (i / o - j / n), -width, width)
        window = np.cos(np.pi * t / (2 * width)) ** 2
        out[j] = (x * window * np.sinc(t)).sum() * base / o
    return out


# -- tests --------------------------------------------------------------------------------------------------------
def test_discovered_through_entry_point() -> None:
    assert "audio" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "audio").status == "loaded"
    assert polymodal.get("tokenizer", "audio") is AudioTokenizer
    assert polymodal.get("data source", "synthetic_sounds") is SyntheticSoundsDataSource
    # the entry point names the package; its classes live in the package's modules
    assert AudioTokenizer.__module__ == "polymodal.plugins.audio.tokenizer"
    assert SyntheticSoundsDataSource.__module__ == "polymodal.plugins.audio.data"


def test_conformance() -> None:
    tokens = check_tokenizer("audio")
    # example: clips of 3 and 2 patch columns, 4 frequency rows each (64 mel bins, stride 16)
    assert tuple(tokens.embeddings.shape) == (2, 12, 32)
    assert tokens.mask.sum(1).tolist() == [12, 8]
    check_data_source("synthetic_sounds")


@pytest.mark.parametrize("window", ["povey", "hanning", "hamming", "rectangular", "blackman"])
def test_fbank_matches_numpy_kaldi_reference(window: str) -> None:
    x = np.random.default_rng(0).standard_normal(4000) * 0.3
    ref = np_fbank(x, window=window)
    out = kaldi_fbank(torch.from_numpy(x)[None], window_type=window)[0]
    assert out.dtype == torch.float64 and tuple(out.shape) == (23, 128)  # 1 + (4000 - 400) // 160
    assert np.abs(out.numpy() - ref).max() < 1e-9


def test_fbank_other_settings_and_batch_rows_are_independent() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2400))
    out = kaldi_fbank(
        torch.from_numpy(x), 8000, num_mel_bins=23, low_freq=64.0, high_freq=-400.0, preemphasis=0.5
    )
    for b in range(3):
        ref = np_fbank(x[b], sr=8000, bins=23, low=64.0, high=-400.0, preemph=0.5)
        assert np.abs(out[b].numpy() - ref).max() < 1e-9
    # silence is floored at float32 epsilon
    silent = kaldi_fbank(torch.zeros(1, 800, dtype=torch.float64))
    assert torch.allclose(silent, torch.full_like(silent, math.log(torch.finfo(torch.float32).eps)))


def test_fbank_matches_torchaudio_when_available() -> None:
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    x = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0)) * 0.1
    for window in ("povey", "hanning"):
        ref = kaldi.fbank(x, num_mel_bins=128, sample_frequency=16000, dither=0.0, window_type=window)
        out = kaldi_fbank(x, 16000, window_type=window)[0]
        assert out.shape == ref.shape == (98, 128)
        assert (out - ref).abs().max() < 1e-3


def test_resample_matches_direct_windowed_sinc_sum() -> None:
    x = np.random.default_rng(2).standard_normal(300)
    for orig, new in [(48000, 16000), (22050, 16000), (8000, 16000)]:
        out = resample(torch.from_numpy(x), orig, new)
        ref = np_resample(x, orig, new)
        assert out.shape[-1] == len(ref) == resampled_length(300, orig, new)
        assert np.abs(out.numpy() - ref).max() < 1e-10, (orig, new)
    assert resample(torch.from_numpy(x), 16000, 16000).data_ptr() == torch.from_numpy(x).data_ptr()


def test_resample_keeps_a_tone_and_matches_torchaudio_when_available() -> None:
    t48 = torch.arange(4800, dtype=torch.float64) / 48000
    out = resample(torch.sin(2 * math.pi * 1000 * t48), 48000, 16000)
    t16 = torch.arange(1600, dtype=torch.float64) / 16000
    inner = slice(100, 1500)  # away from the edges
    assert (out[inner] - torch.sin(2 * math.pi * 1000 * t16)[inner]).abs().max() < 1e-3
    functional = pytest.importorskip("torchaudio.functional")
    x = torch.randn(2, 1000, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(resample(x, 44100, 16000), functional.resample(x, 44100, 16000), atol=1e-5)


def test_default_token_counts() -> None:
    default = AudioTokenizer.from_config(embed_dim=8)  # 64 mel bins, non-overlapping 16 x 16 patches
    assert default.grid_size == (64, 4)  # (1024 - 16) // 16 + 1 columns
    assert default.num_tokens(16000) == 6 * 4 == 24  # 1 s: 98 frames, 6 columns
    assert default.num_tokens(160000) == 62 * 4 == 248
    assert default(torch.zeros(1, 16000)).num_tokens == 24
    tok = tokenizer()  # AST's setting
    assert tok.grid_size == (101, 12)  # AST's 1024 frames x 128 mel bins
    assert tok.num_tokens(16000) == 9 * 12 == 108  # 1 s: 98 frames, 9 columns
    assert tok.num_tokens(160000) == 99 * 12 == 1188  # 10 s: 998 frames, 99 columns
    for seconds, n in [(1, 108), (10, 1188)]:
        out = tok(torch.zeros(1, seconds * 16000))
        assert out.num_tokens == n and bool(out.mask.all())
        assert out.meta["frames"].tolist() == [1 + (seconds * 16000 - 400) // 160]


def test_patches_match_a_loop_over_patches() -> None:
    tok = tokenizer().double()
    wave = 0.1 * torch.randn(
        1, 16000 * 3 // 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    out = tok(wave)
    fb = (kaldi_fbank(wave)[0] - AST_MEAN) / (2 * AST_STD)  # [frames, 128]
    frames = fb.shape[0]
    cols = (frames - 16) // 10 + 1
    assert out.meta["grid"] == (cols, 12) and out.num_tokens == cols * 12
    pos = tok.pos_embed.detach()[0].view(101, 12, -1)
    for j in range(cols):
        for i in range(12):
            patch = fb[10 * j : 10 * j + 16, 10 * i : 10 * i + 16]
            ref = (tok.proj.weight[:, 0] * patch).sum((1, 2)) + tok.proj.bias + pos[j, i]
            assert torch.allclose(out.embeddings[0, j * 12 + i], ref, atol=1e-10)


def test_padding_never_changes_a_clip_and_masks_count_whole_columns() -> None:
    tok = tokenizer(max_frames=66)  # a table of 6 columns, so the longest clip resamples it
    rng = np.random.default_rng(3)
    clips = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (1000, 8000, 16000)]
    batch = tok(clips)
    # columns: 1000 samples < one patch -> padded to one column; 8000 -> 48 frames -> 4; 16000 -> 98 frames -> 9
    assert batch.meta["columns"].tolist() == [1, 4, 9]
    assert batch.mask.view(3, 9, 12).all(-1).sum(1).tolist() == [1, 4, 9]
    assert batch.mask.sum(1).tolist() == [12, 48, 108]
    for b, clip in enumerate(clips):
        alone = tok([clip])
        assert bool(alone.mask.all())
        diff = (alone.embeddings[0] - batch.embeddings[b][batch.mask[b]]).abs().max()
        assert diff <= 1e-5
    assert bool((batch.embeddings[~batch.mask] == 0).all())
    # garbage in the padding of a dict batch is ignored
    collated = tok.collate([torch.from_numpy(c) for c in clips])
    collated["waveform"][0, 1000:] = 5.0
    assert torch.allclose(tok(collated).embeddings, batch.embeddings, atol=1e-6)


def test_positional_table_is_cut_for_short_clips_and_resampled_per_clip_for_long_ones() -> None:
    tok = tokenizer(max_frames=66)
    table = tok.pos_embed.detach()[0].view(6, 12, -1)
    pos = sequence_positions(table, torch.tensor([4, 9]), 9)
    assert torch.equal(pos[0, :4], table[:4])  # fits: rows as they are
    ref = F.interpolate(table.permute(1, 2, 0), size=9, mode="linear", align_corners=True).permute(2, 0, 1)
    assert torch.allclose(pos[1], ref, atol=1e-6)  # longer: linear resampling to its own 9 columns


def test_other_sample_rates_are_resampled_in_forward() -> None:
    tok = tokenizer()
    clip = torch.randn(1, 4000, generator=torch.Generator().manual_seed(4)) * 0.1
    at_8k = tok({"waveform": clip, "sample_rate": 8000})
    direct = tok(resample(clip, 8000, 16000))
    assert at_8k.meta["frames"].tolist() == [1 + (8000 - 400) // 160]
    assert torch.allclose(at_8k.embeddings, direct.embeddings, atol=1e-5)
    # a short clip resampled inside a padded batch: the longer clip's filter tail does not leak into it
    short = torch.randn(500, generator=torch.Generator().manual_seed(5)) * 0.1
    batch = tok({**tok.collate([clip[0], short]), "sample_rate": 8000})
    alone = tok({"waveform": short[None], "sample_rate": 8000})
    assert batch.meta["columns"].tolist() == [4, 1] and int(alone.mask.sum()) == 12
    assert (batch.embeddings[1][batch.mask[1]] - alone.embeddings[0]).abs().max() <= 1e-5


def test_preprocess_forms() -> None:
    tok = tokenizer()
    pcm = np.array([0, 16384, -32768, 32767] * 100, dtype=np.int16)
    out = tok.preprocess(pcm)
    assert out.dtype == torch.float32 and out[:4].tolist() == [0.0, 0.5, -1.0, 32767 / 32768]
    assert torch.allclose(tok.preprocess(np.full(10, 192, np.uint8)), torch.full((10,), 0.5))
    stereo = torch.stack([torch.ones(50), -torch.ones(50) * 0.5])
    assert torch.allclose(tok.preprocess(stereo), torch.full((50,), 0.25))
    x = np.random.default_rng(5).standard_normal(441).astype(np.float32)
    expected = resample(torch.from_numpy(x), 44100, 16000)
    assert tok.preprocess((x, 44100)).shape == (160,)
    assert torch.allclose(tok.preprocess((x, 44100)), expected)
    assert torch.allclose(tok.preprocess({"array": x, "sampling_rate": 44100, "path": None}), expected)
    batch = tok.collate([tok.preprocess(x), tok.preprocess(x[:100])])
    assert tuple(batch["waveform"].shape) == (2, 441) and batch["lengths"].tolist() == [441, 100]
    assert bool((batch["waveform"][1, 100:] == 0).all())


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            np.zeros((100, 2), np.float32),
            "audio: expected one clip (samples,) or (channels, samples), optionally with "
            "its sample rate; transpose (samples, channels) arrays, got ndarray of shape (100, 2) and dtype float32",
        ),
        (
            np.zeros(10, np.int64),
            "audio: expected float, int16, int32 or uint8 samples, got "
            "ndarray of shape (10,) and dtype int64",
        ),
        ((np.zeros(10), -1), "audio: expected a positive sample rate, got -1"),
        ((np.zeros(10), 22050.5), "audio: expected an integer sample rate (Hz), got 22050.5"),
        (
            {"audio": np.zeros(10)},
            "audio: expected one clip (samples,) or (channels, samples), optionally with its "
            "sample rate: a dict with 'array' or 'waveform', got a dict with keys ['audio']",
        ),
        (
            np.array([0.0, np.nan]),
            "audio: expected finite samples, got 1 NaN/Inf values in ndarray of shape (2,) and dtype float64",
        ),
        (
            "clip.wav",
            "audio: expected one clip (samples,) or (channels, samples), optionally with its sample rate, "
            "got str",
        ),
    ],
)
def test_preprocess_errors(raw: object, message: str) -> None:
    with pytest.raises(ModalityInputError) as info:
        tokenizer().preprocess(raw)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            torch.zeros(3000),
            "audio: expected a tensor (B, samples), got tensor of shape (3000,) and dtype float32",
        ),
        (
            torch.zeros(2, 3000, dtype=torch.int16),
            "audio: expected a floating-point tensor (B, samples), got tensor "
            "of shape (2, 3000) and dtype int16",
        ),
        (
            {"waveform": torch.zeros(2, 10), "lengths": torch.tensor([10, 11])},
            "audio: expected lengths between 1 and 10 (the padded length), got lengths [10, 11]",
        ),
        (
            {"waveform": torch.zeros(2, 10), "sample_rate": 44100.5},
            "audio: expected a positive integer sample_rate, got 44100.5",
        ),
        ([], "audio: expected a tensor (B, samples) or a non-empty list of samples, got an empty list"),
        (None, "audio: expected a tensor (B, samples), got NoneType"),
    ],
)
def test_forward_errors(batch: object, message: str) -> None:
    with pytest.raises(ModalityInputError) as info:
        tokenizer()(batch)
    assert str(info.value) == message


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="num_mel_bins 8 is smaller than patch_size 16"):
        AudioTokenizer.default_config(num_mel_bins=8)
    with pytest.raises(ValueError, match="mel range must satisfy low_freq < high <= Nyquist"):
        AudioTokenizer.default_config(low_freq=9000.0)


def test_synthetic_sounds() -> None:
    source = SyntheticSoundsDataSource.from_config(num_train=60, num_test=12)
    splits = source.splits()
    assert (len(splits["train"]), len(splits["test"])) == (60, 12)
    labels = [y for _, y in splits["train"]]
    assert np.bincount(labels).tolist() == [10] * 6
    lengths = [x.numel() for x, _ in splits["train"]]
    assert 8000 <= min(lengths) and max(lengths) <= 16000
    again = SyntheticSoundsDataSource.from_config(num_train=60, num_test=12).splits()["train"]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(splits["train"].items, again.items))
    assert source.baseline() == pytest.approx(1 / 6)
    assert source.task() == {"type": "classification", "num_classes": 6}
    # chirps sweep the way their name says: the loudest mel bin moves up (rising) or down (falling)
    for x, y in splits["train"]:
        if SOUND_CLASSES[y] in ("rising_chirp", "falling_chirp"):
            peak = kaldi_fbank(x[None].double())[0].argmax(-1).double()
            q = len(peak) // 4
            rise = peak[-q:].median() - peak[:q].median()
            assert (rise > 5) if SOUND_CLASSES[y] == "rising_chirp" else (rise < -5)


def test_synthetic_sounds_splits_come_from_generate() -> None:
    source = SyntheticSoundsDataSource.from_config(num_train=12, num_test=6)
    splits = source.splits()
    assert [y for _, y in splits["train"]] == [3, 2, 1, 4, 5, 5, 0, 3, 0, 4, 2, 1]
    assert [y for _, y in splits["test"]] == [0, 3, 4, 2, 1, 5]
    assert [x.numel() for x, _ in splits["train"]][:4] == [14526, 11822, 8724, 9467]
    first = splits["train"][0][0]
    assert first.dtype == torch.float32
    assert first[:3].tolist() == pytest.approx([0.00161233, -0.01105469, -0.01185964], abs=1e-7)
    test = source.generate(6, 1_000_003)  # the test split: seed + TEST_SEED_OFFSET
    assert all(torch.equal(a, b) and y == t for (a, y), (b, t) in zip(splits["test"], test))
    assert "splits" not in SyntheticSoundsDataSource.__dict__  # the base class makes them


def test_demo_settings() -> None:
    demo = SyntheticSoundsDataSource.demo
    assert demo is not None and dict(demo.source) == {} and demo.fit is None
    assert dict(demo.tokenizer) == {
        "num_mel_bins": 64,
        "patch_size": 32,
        "stride_time": 32,
        "stride_freq": 32,
    }
    assert dict(demo.head) == {"pool": "mean"}
    tok = AudioTokenizer.from_config(embed_dim=8, **demo.tokenizer)
    assert tok.num_tokens(16000) == 3 * 2  # a 1 s clip: 98 frames -> 3 columns of 2 rows


def collate_messages(samples: list) -> str:
    with pytest.raises(ModalityInputError) as info:
        tokenizer().collate(samples)
    return str(info.value)


def test_collate_pads_clips_and_names_what_is_wrong() -> None:
    batch = tokenizer().collate([np.ones(3, np.float32), torch.full((5,), 0.5, dtype=torch.float64)])
    assert batch["lengths"].tolist() == [3, 5] and batch["waveform"].dtype == torch.float32
    assert batch["waveform"].tolist() == [[1, 1, 1, 0, 0], [0.5] * 5]
    assert collate_messages([]) == "audio: expected at least one clip to collate, got an empty list"
    assert collate_messages([torch.zeros(0)]) == (
        "audio: expected clips as 1-D float arrays (samples,), got tensor of shape (0,) and dtype float32"
    )
    assert collate_messages([torch.zeros(3, dtype=torch.int16)]) == (
        "audio: expected float clips (preprocess converts integer PCM), got tensor of shape (3,) and dtype int16"
    )


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return path


def test_files() -> None:
    assert (
        AudioTokenizer.file_extensions
        == AUDIO_EXTENSIONS
        == (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
    )


def test_read_file_is_read_audio(tmp_path: Path) -> None:
    # two channels, interleaved: (16384, -16384), (8192, 0), (-32768, 32767) -> their means / 2^15
    path = write_wav(
        tmp_path / "clip.wav", np.array([16384, -16384, 8192, 0, -32768, 32767]), 8000, channels=2
    )
    wave_, rate = AudioTokenizer.read_file(path, AudioTokenizer.default_config())
    assert rate == 8000 and wave_.dtype == np.float32
    assert wave_.tolist() == [0.0, 0.125, -0.5 / 32768]
    raw, raw_rate = read_audio(path)
    assert raw_rate == rate and np.array_equal(raw, wave_)
    x = AudioTokenizer.from_config(embed_dim=8).preprocess(
        AudioTokenizer.read_file(path, AudioTokenizer.default_config())
    )
    assert tuple(x.shape) == (6,)  # resampled from 8 kHz to the tokenizer's 16 kHz
    with pytest.raises(TypeError):  # read_audio takes no options
        AudioTokenizer.read_file(path, AudioTokenizer.default_config(), mode="rgb")
