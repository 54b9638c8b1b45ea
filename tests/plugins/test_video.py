"""video plugin: tubelets against a loop, separable positions, uniform frame sampling, preprocessing,
inflation from an image tokenizer, errors, the moving-shapes data and its demo settings, reading video files."""

from __future__ import annotations

import functools
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import polymodal
from polymodal.core.component import ModalityInputError
from polymodal.core.extras import MissingExtraError
from polymodal.plugins import video
from polymodal.plugins._grid import IMAGENET_MEAN, IMAGENET_STD, resample_pos_embed_2d
from polymodal.plugins.image import ImageTokenizer
from polymodal.plugins.video import (
    MovingShapesDataSource,
    VideoTokenizer,
    inflate_patch_embed,
    read_video,
    uniform_frame_indices,
)
from polymodal.testing import check_data_source, check_tokenizer


def tokenizer(**overrides: object) -> VideoTokenizer:
    torch.manual_seed(0)
    return VideoTokenizer.from_config(**{"embed_dim": 8, **overrides}).eval()


def test_discovered_through_entry_point() -> None:
    assert "video" in polymodal.list_modalities()
    assert next(p for p in polymodal.list_plugins() if p.name == "video").status == "loaded"
    assert polymodal.get("tokenizer", "video") is VideoTokenizer
    assert polymodal.get("data source", "moving_shapes") is MovingShapesDataSource


def test_conformance() -> None:
    tokens = check_tokenizer("video")
    assert tuple(tokens.embeddings.shape) == (2, 8, 32) and tokens.mask.all()
    assert tokens.meta["grid"] == (2, 2, 2)
    check_data_source("moving_shapes")


def test_default_token_counts() -> None:
    tok = tokenizer()
    assert tok(torch.zeros(1, 16, 3, 224, 224)).num_tokens == 8 * 14 * 14 == 1568
    assert tok(torch.zeros(1, 8, 3, 32, 32)).num_tokens == 4 * 2 * 2


def test_forward_matches_loop_over_tubelets() -> None:
    tok = tokenizer(patch_size=4, img_size=8, num_frames=4, tubelet_size=2).double()
    x = torch.randn(
        2, 6, 3, 8, 12, dtype=torch.float64
    )  # 3 time steps (table: 2), a 2 x 3 grid (table: 2 x 2)
    out = tok(x)
    assert tuple(out.embeddings.shape) == (2, 3 * 2 * 3, 8) and out.meta["grid"] == (3, 2, 3)
    spatial = resample_pos_embed_2d(tok.pos_embed_spatial, (2, 3), (2, 2))[0]
    table = tok.pos_embed_temporal[0].detach().numpy()
    # linear interpolation with half-pixel centres, by hand: output step j sits at (j + 0.5) * 2 / 3 - 0.5
    temporal = np.stack(
        [np.interp((j + 0.5) * 2 / 3 - 0.5, [0, 1], table[:, d]) for d in range(8) for j in range(3)]
    )
    temporal = torch.from_numpy(temporal.reshape(8, 3).T)
    ref = torch.empty(2, 18, 8, dtype=torch.float64)
    w, b = tok.proj.weight, tok.proj.bias
    for n in range(2):
        for t in range(3):
            for i in range(2):
                for j in range(3):
                    block = x[n, 2 * t : 2 * t + 2, :, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].transpose(0, 1)
                    k = t * 6 + i * 3 + j  # time-major
                    ref[n, k] = (w * block).sum((1, 2, 3, 4)) + b + temporal[t] + spatial[i * 3 + j]
    assert torch.allclose(out.embeddings, ref, atol=1e-10)


def test_positions_are_the_tables_at_the_native_size() -> None:
    tok = tokenizer(patch_size=8, img_size=16, num_frames=4, tubelet_size=2)
    pos = tok.pos_embed_for(2, 2, 2).reshape(2, 4, 8)
    ref = tok.pos_embed_temporal[0][:, None] + tok.pos_embed_spatial[0][None]
    assert torch.equal(pos, ref)


def test_uniform_frame_indices_by_hand() -> None:
    assert uniform_frame_indices(10, 4).tolist() == [1, 3, 6, 8]  # floor((i + 0.5) * 2.5)
    assert uniform_frame_indices(16, 8).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert uniform_frame_indices(3, 5).tolist() == [0, 0, 1, 2, 2]  # fewer frames: repeats
    assert uniform_frame_indices(7, 7).tolist() == list(range(7))


def test_preprocess_samples_frames_and_normalises() -> None:
    from PIL import Image

    tok = tokenizer(num_frames=4)
    clip = np.random.default_rng(0).integers(0, 256, (10, 5, 6, 3), dtype=np.uint8)
    out = tok.preprocess(clip)
    assert tuple(out.shape) == (4, 3, 5, 6) and out.dtype == torch.float32
    for k, f in enumerate([1, 3, 6, 8]):
        for ch in range(3):
            ref = (clip[f, :, :, ch] / 255.0 - IMAGENET_MEAN[ch]) / IMAGENET_STD[ch]
            assert np.allclose(out[k, ch].numpy(), ref, atol=1e-5)
    assert torch.allclose(tok.preprocess(torch.from_numpy(clip)), out)
    assert torch.allclose(tok.preprocess(clip.astype(np.float32) / 255.0), out, atol=1e-6)
    assert torch.allclose(tok.preprocess([Image.fromarray(f) for f in clip]), out)
    resized = tokenizer(num_frames=4, resize=32).preprocess(clip)
    assert tuple(resized.shape) == (4, 3, 32, 32)
    assert tok(tok.collate([out[:, :, :4, :4], out[:, :, :4, :4]]).repeat(1, 1, 1, 4, 4)).num_tokens == 2


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            np.zeros((4, 8, 8), np.uint8),
            "video: expected a clip (T, H, W, 3) of uint8 or float pixels, or a list "
            "of frames, got ndarray of shape (4, 8, 8) and dtype uint8",
        ),
        (
            torch.zeros(4, 3, 8, 8, dtype=torch.uint8),
            "video: expected a clip (T, H, W, 3) of uint8 or float "
            "pixels, or a list of frames, got tensor of shape (4, 3, 8, 8) and dtype uint8",
        ),
        (
            np.zeros((4, 8, 8, 3), np.int32),
            "video: expected a clip (T, H, W, 3) of uint8 or float pixels, or a "
            "list of frames, got ndarray of shape (4, 8, 8, 3) and dtype int32",
        ),
        (
            np.full((2, 8, 8, 3), np.inf, np.float32),
            "video: expected finite pixel values, got 3072 NaN/Inf values in the 16 sampled frames",
        ),
        (
            [np.zeros((8, 8, 3), np.uint8), np.zeros((4, 8, 3), np.uint8)],
            "video: expected frames of one size and dtype, got 2 frames of different sizes",
        ),
        (
            "clip.mp4",
            "video: expected a clip (T, H, W, 3) of uint8 or float pixels, or a list of frames, got str",
        ),
    ],
)
def test_preprocess_errors(raw: object, message: str) -> None:
    with pytest.raises(ModalityInputError) as exc:
        tokenizer().preprocess(raw)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (
            torch.randn(2, 3, 32, 32),
            "video: expected a tensor (B, T, 3, H, W) with T divisible by 2 and H and W "
            "divisible by 16, got tensor of shape (2, 3, 32, 32) and dtype float32",
        ),
        (
            torch.randn(2, 3, 3, 32, 32),
            "video: expected (B, T, 3, H, W) with T divisible by 2 and H and W divisible "
            "by 16, got (2, 3, 3, 32, 32)",
        ),
        (
            torch.randn(2, 4, 32, 32, 3),
            "video: expected (B, T, 3, H, W) with T divisible by 2 and H and W divisible "
            "by 16, got (2, 4, 32, 32, 3)",
        ),
        (
            torch.randn(1, 2, 3, 24, 32),
            "video: expected (B, T, 3, H, W) with T divisible by 2 and H and W divisible "
            "by 16, got (1, 2, 3, 24, 32)",
        ),
        (
            torch.zeros(1, 2, 3, 16, 16, dtype=torch.uint8),
            "video: expected a floating-point tensor (B, T, 3, H, W) with T divisible by 2 and H and W divisible "
            "by 16, got tensor of shape (1, 2, 3, 16, 16) and dtype uint8",
        ),
        (
            42,
            "video: expected a tensor (B, T, 3, H, W) with T divisible by 2 and H and W divisible by 16, "
            "got int",
        ),
    ],
)
def test_forward_errors(batch: object, message: str) -> None:
    with pytest.raises(ModalityInputError) as exc:
        tokenizer()(batch)
    assert str(exc.value) == message


def test_inflate_patch_embed_values() -> None:
    w = torch.randn(4, 3, 2, 2)
    avg = inflate_patch_embed(w, 3, "average")
    assert tuple(avg.shape) == (4, 3, 3, 2, 2) and all(torch.equal(avg[:, :, t], w / 3) for t in range(3))
    centre = inflate_patch_embed(w, 4, "centre")
    assert torch.equal(centre[:, :, 2], w) and not centre[:, :, [0, 1, 3]].any()
    with pytest.raises(ValueError, match="mode must be 'average' or 'centre', got 'mean'"):
        inflate_patch_embed(w, 2, "mean")  # type: ignore[arg-type]


@pytest.mark.parametrize("inflation", ["average", "centre"])
def test_identical_frames_through_an_inflated_tubelet_give_the_image_tokens(inflation: str) -> None:
    image = ImageTokenizer.from_config(embed_dim=8, patch_size=8, img_size=32).eval()
    video = tokenizer(patch_size=8, img_size=32, num_frames=4, tubelet_size=2)
    video.load_patch_embed(image, inflation)  # type: ignore[arg-type]
    frame = torch.randn(2, 3, 16, 24)
    clip = frame[:, None].expand(-1, 6, -1, -1, -1)  # 3 time steps of identical frames
    out = video(clip).embeddings.reshape(2, 3, 6, 8)
    ref = image(frame).embeddings
    for t in range(3):
        assert torch.allclose(out[:, t], ref, atol=1e-5)
    if inflation == "centre":  # the centre filter reads frame t·2 + 1 of each tubelet only
        varied = torch.randn(1, 4, 3, 16, 24)
        toks = video(varied).embeddings.reshape(1, 2, 6, 8)
        assert torch.allclose(toks[:, 1], image(varied[:, 3]).embeddings, atol=1e-5)


def test_inflation_adapts_channels_and_uses_the_configured_mode() -> None:
    image = ImageTokenizer.from_config(embed_dim=8, patch_size=8, img_size=32).eval()
    grey_video = tokenizer(patch_size=8, img_size=32, in_chans=1, mean=(0.5,), std=(0.5,), inflation="centre")
    grey_video.load_patch_embed(image.state_dict())
    assert not grey_video.proj.weight[:, :, 0].any()  # 'centre' from the config
    assert not grey_video.pos_embed_temporal.any()
    frame = torch.randn(1, 1, 16, 16)
    out = grey_video(frame[:, None].expand(-1, 2, -1, -1, -1)).embeddings
    assert torch.allclose(out, image(frame.expand(-1, 3, -1, -1)).embeddings, atol=1e-5)


def test_moving_shapes_move_in_the_labelled_direction() -> None:
    source = MovingShapesDataSource.from_config(num_train=32, num_test=8)
    clips, labels = source.raw_clips(64, np.random.default_rng(3))
    assert clips.dtype == np.uint8 and clips.shape == (64, 8, 32, 32, 3)
    mask = clips.mean(-1) > 0.45 * 255  # shape colours are >= 0.55, backgrounds <= 0.35 (noise std 0.05)
    yy, xx = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    area = mask.sum((2, 3))
    cy, cx = (mask * yy).sum((2, 3)) / area, (mask * xx).sum((2, 3)) / area
    angle = np.arctan2(-(cy[:, -1] - cy[:, 0]), cx[:, -1] - cx[:, 0])  # image y points down
    error = np.angle(np.exp(1j * (angle - labels * 2 * math.pi / 8)))
    assert np.abs(error).max() < math.radians(10)
    assert set(labels.tolist()) == set(range(8))


def test_moving_shapes_splits() -> None:
    source = MovingShapesDataSource.from_config(num_train=20, num_test=10, num_frames=4, num_directions=4)
    splits = source.splits()
    x, y = splits["train"][0]
    assert tuple(x.shape) == (4, 3, 32, 32) and x.dtype == torch.float32 and 0 <= int(y) < 4
    assert len(splits["train"]) == 20 and len(splits["test"]) == 10
    again = MovingShapesDataSource.from_config(
        num_train=20, num_test=10, num_frames=4, num_directions=4
    ).splits()
    assert torch.equal(again["test"][3][0], splits["test"][3][0])  # seeded
    assert source.task() == {"type": "classification", "num_classes": 4} and source.baseline() == 0.25


def test_moving_shapes_splits_are_pinned() -> None:
    splits = MovingShapesDataSource.from_config(num_train=12, num_test=10, image_size=16).splits()
    assert [int(splits["train"][i][1]) for i in range(8)] == [6, 5, 4, 2, 2, 0, 0, 0]
    assert [int(splits["test"][i][1]) for i in range(8)] == [3, 4, 2, 4, 5, 3, 1, 4]
    assert float(splits["train"][0][0].double().sum()) == pytest.approx(-9281.769, abs=0.01)
    assert float(splits["test"][0][0].double().sum()) == pytest.approx(-6799.503, abs=0.01)


def test_moving_shapes_demo_settings() -> None:
    from polymodal.demo import DemoStream, demo_streams

    demo = MovingShapesDataSource.demo
    assert demo is not None and demo.fit is None
    assert dict(demo.source) == {"num_frames": 8, "image_size": 16}
    # 8 frames of 16 x 16 as 4 tubelets of all 8 frames
    assert dict(demo.tokenizer) == {"patch_size": 8, "img_size": 16, "num_frames": 8, "tubelet_size": 8}
    assert dict(demo.head) == {"pool": "mean"}
    assert demo_streams(["video"])["video"] == DemoStream(
        {"type": "moving_shapes", "num_frames": 8, "image_size": 16},
        {"patch_size": 8, "img_size": 16, "num_frames": 8, "tubelet_size": 8},
        {"pool": "mean"},
    )


def test_the_package_re_exports_its_parts() -> None:
    from polymodal.plugins.video import data, files, frames
    from polymodal.plugins.video import tokenizer as module

    for name in video.__all__:
        assert any(getattr(m, name, None) is getattr(video, name) for m in (data, files, frames, module)), (
            name
        )
    assert VideoTokenizer.__module__ == "polymodal.plugins.video.tokenizer"
    assert MovingShapesDataSource.__module__ == "polymodal.plugins.video.data"


# -- files ---------------------------------------------------------------------------------------------------
def _write_video(path: Path, frames: int, size: int = 32, gop: int = 5) -> None:
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.bit_rate = 20_000_000  # near-lossless: frame k reads back as grey 5k
        for k in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 5 * k, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_video_frames_are_sampled_uniformly_by_seeking(tmp_path: Path) -> None:
    _write_video(tmp_path / "v.mp4", 40)
    clip = read_video(tmp_path / "v.mp4", num_frames=6)
    assert clip.shape == (6, 32, 32, 3) and clip.dtype == np.uint8
    expected = 5.0 * uniform_frame_indices(40, 6).numpy()  # frame k is grey 5k
    np.testing.assert_allclose(clip.mean(axis=(1, 2, 3)), expected, atol=3.0)
    more = read_video(tmp_path / "v.mp4", num_frames=60)  # more than the file has: frames repeat
    np.testing.assert_allclose(
        more.mean(axis=(1, 2, 3)), 5.0 * uniform_frame_indices(40, 60).numpy(), atol=3.0
    )
    with pytest.raises(ValueError, match="read_video: num_frames must be positive, got 0"):
        read_video(tmp_path / "v.mp4", num_frames=0)


def test_file_extensions_and_read_file(tmp_path: Path) -> None:
    assert VideoTokenizer.file_extensions == (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
    _write_video(tmp_path / "v.mp4", 20, size=16)
    config = VideoTokenizer.config_class(num_frames=4, img_size=16, patch_size=8, tubelet_size=2)
    clip = VideoTokenizer.read_file(tmp_path / "v.mp4", config)  # the config's num_frames
    assert clip.shape == (4, 16, 16, 3) and np.array_equal(clip, read_video(tmp_path / "v.mp4", num_frames=4))
    np.testing.assert_allclose(clip.mean(axis=(1, 2, 3)), [10.0, 35.0, 60.0, 85.0], atol=3.0)
    assert VideoTokenizer.read_file(tmp_path / "v.mp4", config, num_frames=2).shape == (2, 16, 16, 3)
    worker = pickle.loads(pickle.dumps(functools.partial(VideoTokenizer.read_file, config=config)))
    assert np.array_equal(worker(tmp_path / "v.mp4"), clip)  # what a DataLoader worker runs
    tok = VideoTokenizer.from_config(config.model_dump() | {"embed_dim": 8})
    assert tok(tok.collate([tok.preprocess(clip)])).num_tokens == 2 * 2 * 2


def test_a_missing_pyav_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "v.mp4").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    with pytest.raises(
        MissingExtraError, match=r"reading video needs the 'av' package: pip install 'polymodal\[video\]'"
    ):
        VideoTokenizer.read_file(tmp_path / "v.mp4", VideoTokenizer.default_config())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda() -> None:
    tok = tokenizer(num_frames=4).cuda()
    out = tok(torch.randn(2, 6, 3, 32, 48, device="cuda"))
    assert out.embeddings.device.type == "cuda" and out.num_tokens == 3 * 2 * 3
