"""polymodal.data.readers / points: every format read back to the values written, and missing extras named."""

from __future__ import annotations

import struct
import sys
import wave
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from polymodal.data.readers import MissingExtraError, read_table
from polymodal.plugins._grid import read_image
from polymodal.plugins.audio import AudioTokenizer, read_audio
from polymodal.plugins.graph import smiles_to_graph
from polymodal.plugins.hyperspectral import read_cube
from polymodal.plugins.imu import read_imu
from polymodal.plugins.point_cloud import read_ply, read_points, sample_surface
from polymodal.plugins.text import read_text
from polymodal.plugins.time_series import read_series
from polymodal.plugins.video import read_video, uniform_frame_indices

RNG = np.random.default_rng(0)


# -- images -------------------------------------------------------------------------------------------------------
def test_png_reads_back_the_written_pixels(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and np.array_equal(out, rgb)
    grey = read_image(tmp_path / "a.png", mode="gray")
    assert grey.shape == (5, 7) and np.array_equal(grey, np.asarray(Image.fromarray(rgb).convert("L")))
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 128, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "b.png")
    assert np.array_equal(read_image(tmp_path / "b.png"), rgb)  # alpha dropped


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16_bit_greyscale_keeps_its_depth(tmp_path: Path, suffix: str) -> None:
    values = np.array([[0, 255, 256, 4095], [30000, 65535, 1, 1000]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / f"x{suffix}")
    out = read_image(tmp_path / f"x{suffix}")
    assert out.dtype == np.uint16 and np.array_equal(out, values)
    assert np.array_equal(read_image(tmp_path / f"x{suffix}", mode="gray"), values)
    rgb = read_image(tmp_path / f"x{suffix}", mode="rgb")  # scaled to 8 bits, not clipped at 255
    expected = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert rgb.shape == (2, 4, 3) and np.array_equal(rgb[..., 1], expected)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "r.png", exif=exif)
    assert np.array_equal(read_image(tmp_path / "r.png"), np.rot90(pixels, k=-1))


def test_cube_formats(tmp_path: Path) -> None:
    cube = RNG.random((4, 5, 6)).astype(np.float32)
    np.save(tmp_path / "c.npy", cube)
    np.savez(tmp_path / "c.npz", labels=np.zeros(3), cube=cube)
    assert np.array_equal(read_cube(tmp_path / "c.npy"), cube)
    assert np.array_equal(read_cube(tmp_path / "c.npz"), cube)
    scipy_io = pytest.importorskip("scipy.io")
    scipy_io.savemat(tmp_path / "c.mat", {"indian_pines": cube})
    assert np.array_equal(read_cube(tmp_path / "c.mat"), cube)
    np.save(tmp_path / "flat.npy", cube[0])
    with pytest.raises(ValueError, match=r"expected a numeric cube \(H, W, bands\), got float32 \(5, 6\)"):
        read_cube(tmp_path / "flat.npy")


# -- audio --------------------------------------------------------------------------------------------------------
def _write_wav(path: Path, frames: bytes, width: int, channels: int, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)


def test_wav_pcm_widths_and_mixdown(tmp_path: Path) -> None:
    stereo = np.array([[1000, -3000], [32767, -32768], [0, 2]], dtype="<i2")
    _write_wav(tmp_path / "s16.wav", stereo.tobytes(), 2, 2, 8000)
    x, rate = read_audio(tmp_path / "s16.wav")
    assert rate == 8000 and x.dtype == np.float32
    np.testing.assert_allclose(x, stereo.astype(np.float64).mean(1) / 2**15, atol=1e-7)

    _write_wav(tmp_path / "u8.wav", bytes([0, 128, 255]), 1, 1, 8000)
    np.testing.assert_allclose(read_audio(tmp_path / "u8.wav")[0], [-1.0, 0.0, 127 / 128])

    ints = [-(2**23), -1, 0, 2**23 - 1]
    packed = b"".join(struct.pack("<i", v)[:3] for v in ints)
    _write_wav(tmp_path / "s24.wav", packed, 3, 1, 8000)
    np.testing.assert_allclose(read_audio(tmp_path / "s24.wav")[0], np.array(ints) / 2**23)

    s32 = np.array([-(2**31), 2**30, 5], dtype="<i4")
    _write_wav(tmp_path / "s32.wav", s32.tobytes(), 4, 1, 8000)
    np.testing.assert_allclose(read_audio(tmp_path / "s32.wav")[0], s32 / 2**31, rtol=1e-6)


def test_resampled_sine_peaks_at_its_frequency(tmp_path: Path) -> None:
    rate, freq = 44100, 1000.0
    t = np.arange(rate // 2) / rate
    pcm = np.round(0.5 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    _write_wav(tmp_path / "sine.wav", pcm.tobytes(), 2, 1, rate)
    tok = AudioTokenizer({"sample_rate": 16000})
    y = tok.preprocess(read_audio(tmp_path / "sine.wav")).numpy()
    assert len(y) == int(np.ceil(len(pcm) * 16000 / rate))
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak = np.fft.rfftfreq(len(y), 1 / 16000)[spectrum.argmax()]
    assert abs(peak - freq) <= 2.0  # bins of 2 Hz
    assert abs(np.sqrt(np.mean(y[1000:-1000] ** 2)) - 0.5 / np.sqrt(2)) < 0.01  # amplitude kept


def test_soundfile_formats_and_float_wav(tmp_path: Path) -> None:
    sf = pytest.importorskip("soundfile")
    x = (0.25 * np.sin(np.arange(800) / 7)).astype(np.float32)
    sf.write(tmp_path / "a.flac", np.stack([x, -x], 1), 8000, subtype="PCM_16")
    y, rate = read_audio(tmp_path / "a.flac")
    assert rate == 8000 and np.abs(y).max() < 1e-4  # the channels cancel in the mixdown
    sf.write(tmp_path / "f.wav", x, 22050, subtype="FLOAT")  # the wave module cannot read float WAV
    y, rate = read_audio(tmp_path / "f.wav")
    assert rate == 22050 and np.array_equal(y, x)


def test_bad_wav_header_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(ValueError, match="bad WAV file"):
        read_audio(tmp_path / "bad.wav")
    (tmp_path / "short.wav").write_bytes(b"RIFF")
    with pytest.raises(ValueError, match="bad WAV file"):
        read_audio(tmp_path / "short.wav")


# -- video --------------------------------------------------------------------------------------------------------
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


# -- point clouds and meshes --------------------------------------------------------------------------------------
def _ply(points: np.ndarray, names: list[str], fmt: str, faces: np.ndarray | None = None) -> bytes:
    head = [f"ply\nformat {fmt} 1.0\ncomment made by a test\nelement vertex {len(points)}\n"]
    head += [f"property float {n}\n" for n in names]
    if faces is not None:
        head.append(f"element face {len(faces)}\nproperty list uchar int vertex_indices\n")
    head.append("end_header\n")
    if fmt == "ascii":
        body = "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in points)
        if faces is not None:
            body += "".join(f"{len(f)} " + " ".join(map(str, f)) + "\n" for f in faces)
        return ("".join(head) + body).encode()
    end = "<" if fmt == "binary_little_endian" else ">"
    body = points.astype(end + "f4").tobytes()
    for f in faces if faces is not None else []:
        body += struct.pack(end + "B" + "i" * len(f), len(f), *f)
    return "".join(head).encode() + body


@pytest.mark.parametrize("fmt", ["ascii", "binary_little_endian", "binary_big_endian"])
def test_ply_points_and_features_read_back_equal(tmp_path: Path, fmt: str) -> None:
    pts = RNG.standard_normal((50, 5)).astype(np.float32)
    (tmp_path / "p.ply").write_bytes(_ply(pts, ["x", "y", "z", "intensity", "label"], fmt))
    assert np.array_equal(read_points(tmp_path / "p.ply"), pts[:, :3])
    assert np.array_equal(read_points(tmp_path / "p.ply", features="all"), pts)
    assert np.array_equal(read_points(tmp_path / "p.ply", features=["label"]), pts[:, [0, 1, 2, 4]])
    with pytest.raises(KeyError, match=r"no vertex properties \['nx'\]"):
        read_points(tmp_path / "p.ply", features=["nx"])


def test_text_and_npy_clouds(tmp_path: Path) -> None:
    pts = np.round(RNG.standard_normal((20, 4)), 4).astype(np.float32)
    np.savetxt(tmp_path / "a.xyz", pts, fmt="%.4f")
    np.savetxt(tmp_path / "b.csv", pts, fmt="%.4f", delimiter=",", header="x,y,z,i", comments="")
    np.save(tmp_path / "c.npy", pts)
    for name in ("a.xyz", "b.csv", "c.npy"):
        assert np.array_equal(read_points(tmp_path / name), pts[:, :3]), name
        assert np.array_equal(read_points(tmp_path / name, features="all"), pts), name


CUBE_V = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float64)
CUBE_F = np.array(
    [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
     [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
)  # fmt: skip


def _on_cube_surface(p: np.ndarray) -> bool:
    inside = ((p >= -1e-9) & (p <= 1 + 1e-9)).all()
    on_face = (np.minimum(np.abs(p), np.abs(p - 1)).min(axis=1) < 1e-6).all()
    return bool(inside and on_face)


def test_mesh_sampling_lies_on_the_surface_and_weights_area(tmp_path: Path) -> None:
    pts = sample_surface(CUBE_V, CUBE_F, 2000, seed=1)
    assert pts.shape == (2000, 3) and _on_cube_surface(pts)
    faces_hit = np.stack([np.isclose(pts[:, a], v) for a in range(3) for v in (0, 1)], 1).sum(0)
    assert faces_hit.min() > 250 and faces_hit.max() < 420  # ~333 per face of equal area
    big_small = np.array([[0, 0, 0], [3, 0, 0], [0, 2, 0], [10, 0, 0], [11, 0, 0], [10, 2, 0]], float)
    p = sample_surface(big_small, np.array([[0, 1, 2], [3, 4, 5]]), 4000)  # areas 3 and 1
    assert abs((p[:, 0] < 5).mean() - 0.75) < 0.03
    (tmp_path / "cube.ply").write_bytes(
        _ply(CUBE_V.astype(np.float32), ["x", "y", "z"], "binary_little_endian", CUBE_F)
    )
    assert read_ply(tmp_path / "cube.ply")[1].tolist() == CUBE_F.tolist()
    cloud = read_points(tmp_path / "cube.ply", num_points=300)
    assert cloud.shape == (300, 3) and _on_cube_surface(cloud)
    quads = np.array([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
    (tmp_path / "quads.ply").write_bytes(_ply(CUBE_V.astype(np.float32), ["x", "y", "z"], "ascii", quads))
    assert len(read_ply(tmp_path / "quads.ply")[1]) == 12  # fan-triangulated
    pytest.importorskip("trimesh")
    obj = "".join(f"v {x} {y} {z}\n" for x, y, z in CUBE_V) + "".join(
        f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in CUBE_F
    )
    (tmp_path / "cube.obj").write_text(obj)
    cloud = read_points(tmp_path / "cube.obj", num_points=500)
    assert cloud.shape == (500, 3) and _on_cube_surface(cloud)


def test_empty_and_truncated_ply_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.ply").write_bytes(_ply(np.zeros((0, 3)), ["x", "y", "z"], "ascii"))
    with pytest.raises(ValueError, match=r"empty\.ply: the file has no points"):
        read_points(tmp_path / "empty.ply")
    data = _ply(RNG.standard_normal((10, 3)), ["x", "y", "z"], "binary_little_endian")
    (tmp_path / "cut.ply").write_bytes(data[:-7])
    with pytest.raises(ValueError, match="expected 10 rows, the file ends early"):
        read_points(tmp_path / "cut.ply")
    (tmp_path / "no.ply").write_bytes(b"solid cube\n")
    with pytest.raises(ValueError, match="not a PLY file"):
        read_points(tmp_path / "no.ply")


# -- tables, series, IMU, text, SMILES ----------------------------------------------------------------------------
def test_tables_series_and_imu(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"time": np.arange(6) * 0.01, "acc_x": np.arange(6.0), "acc_y": -np.arange(6.0), "p": 1.0}
    )
    frame.to_csv(tmp_path / "r.csv", index=False)
    frame.to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    pd.testing.assert_frame_equal(
        read_table(tmp_path / "r.jsonl"), read_table(tmp_path / "r.csv"), check_dtype=False
    )
    series = read_series(tmp_path / "r.csv")
    assert series.shape == (3, 6) and np.array_equal(series[1], -np.arange(6.0))  # the time column left out
    assert np.array_equal(read_series(tmp_path / "r.csv", columns=["p"]), np.ones((1, 6), np.float32))
    imu = read_imu(tmp_path / "r.csv", columns=["acc_y", "acc_x"], time_column="time")
    assert imu["sample_rate"] == 100 and np.array_equal(imu["values"][1], np.arange(6.0))
    with pytest.raises(KeyError, match=r"r.csv: no columns \['acc_z', 'gyr_x', 'gyr_y', 'gyr_z'\]"):
        read_imu(tmp_path / "r.csv")
    (tmp_path / "t.txt").write_text("  héllo\nworld \n", encoding="utf-8")
    assert read_text(tmp_path / "t.txt") == "héllo\nworld"


def test_smiles_to_graph() -> None:
    pytest.importorskip("rdkit")
    g = smiles_to_graph("CCO")
    assert g.num_nodes == 3 and g.edge_index.shape == (2, 4) and g.x.shape == (3, 9)
    assert g.x.dtype == torch.float32 and g.edge_attr.shape == (4, 3)
    assert g.x[:, 0].tolist() == [6.0, 6.0, 8.0]  # atomic numbers
    with pytest.raises(ValueError, match="invalid SMILES 'C1CC'"):
        smiles_to_graph("C1CC")


@pytest.mark.parametrize(
    ("module", "call", "extra"),
    [
        ("soundfile", lambda p: read_audio(p / "a.flac"), "audio"),
        ("av", lambda p: read_video(p / "v.mp4"), "video"),
        ("trimesh", lambda p: read_points(p / "m.obj"), "mesh"),
        ("rdkit.Chem", lambda p: smiles_to_graph("CCO"), "chem"),
        ("pyarrow", lambda p: read_table(p / "t.parquet"), "parquet"),
    ],
)
def test_missing_extra_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, call: object, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(MissingExtraError, match=rf"pip install 'polymodal\[{extra}\]'") as info:
        call(tmp_path)  # type: ignore[operator]
    assert isinstance(info.value, ImportError)
