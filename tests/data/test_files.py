"""Datasets from files for every modality: written to a temp dir, built, fine-tuned a few steps and evaluated;
corrupt files reported by path; the ``files`` data source trained from a config file."""

from __future__ import annotations

import json
import logging
import sys
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import polymodal
from polymodal.data import MissingExtraError, SampleInputError, SampleReadError
from polymodal.data.builders import from_folder, from_table
from polymodal.data.dataset import SampleDataset
from polymodal.plugins._sequence import resample
from polymodal.plugins.graph import from_smiles
from polymodal.plugins.imu import read_imu
from polymodal.train.multitask import MultiTaskDataset

from .test_arrays import ENCODER
from .test_arrays import MODALITIES as ALL_MODALITIES

CLASSES = ("a", "b")
PER_CLASS = 6
IMU = ["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"]


def _folders(root: Path, suffix: str, write: Callable[[Path, int, np.random.Generator], None]) -> Path:
    """``root/<class>/<i><suffix>`` for two classes; ``write(path, class index, rng)`` writes one file."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            write(root / name / f"{i}{suffix}", label, rng)
    return root


def _wav(path: Path, label: int, rng: np.random.Generator, rate: int = 8000) -> None:
    t = np.arange(rate // 4) / rate
    x = 0.3 * np.sin(2 * np.pi * (300 if label == 0 else 1200) * t) + 0.01 * rng.standard_normal(len(t))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.round(x * 32767).astype("<i2").tobytes())


def _ply(path: Path, label: int, rng: np.random.Generator) -> None:
    pts = rng.standard_normal((64, 3)) * (1.0 if label == 0 else (1.0, 0.2, 0.2))
    head = "ply\nformat binary_little_endian 1.0\nelement vertex 64\nproperty float x\nproperty float y\n"
    path.write_bytes((head + "property float z\nend_header\n").encode() + pts.astype("<f4").tobytes())


def _video(path: Path, label: int, rng: np.random.Generator) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        for k in range(8):
            level = 40 + 20 * k if label == 0 else 200 - 20 * k  # brightening vs darkening clips
            frame = np.clip(level + rng.normal(0, 5, (16, 16, 3)), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _image_8bit(path: Path, label: int, rng: np.random.Generator) -> None:
    Image.fromarray(np.clip(rng.normal(60 + 130 * label, 20, (16, 16, 3)), 0, 255).astype(np.uint8)).save(
        path
    )


def _image_16bit(path: Path, label: int, rng: np.random.Generator) -> None:
    img = rng.normal(1000, 50, (16, 16))
    if label:
        img[4:9, 4:9] += 2000  # a bright blob
    Image.fromarray(np.clip(img, 0, 65535).astype(np.uint16)).save(path)


def _csv_table(columns: list[str], steps: int) -> Callable[[Path, int, np.random.Generator], None]:
    def write(path: Path, label: int, rng: np.random.Generator) -> None:
        t = np.arange(steps)
        freq = 0.1 if label == 0 else 0.4
        values = np.sin(freq * t[:, None] + rng.uniform(0, 6, len(columns))) + 0.05 * rng.standard_normal(
            (steps, len(columns))
        )
        frame = pd.DataFrame(values, columns=columns)
        frame.insert(0, "time", t / 100.0)
        frame.to_csv(path, index=False)

    return write


def _folder_dataset(modality: str, suffix: str, write: Callable, tokenizer: dict | None = None, **options):  # type: ignore[no-untyped-def]
    def build(tmp: Path) -> SampleDataset:
        return from_folder(_folders(tmp / modality, suffix, write), modality, tokenizer=tokenizer, **options)

    return build


def _tabular(tmp: Path) -> SampleDataset:
    rng = np.random.default_rng(0)
    n = 2 * PER_CLASS
    frame = pd.DataFrame({"size": rng.standard_normal(n), "colour": rng.choice(["red", "blue"], n)})
    frame["kind"] = np.where(frame["size"] > 0, "big", "small")
    frame.to_parquet(tmp / "table.parquet")
    return from_table(tmp / "table.parquet", "tabular", target="kind")


def _graph(tmp: Path) -> SampleDataset:
    pytest.importorskip("rdkit")
    smiles = [
        "CCO",
        "CCCO",
        "CCCCO",
        "OCCO",
        "CC(O)C",
        "OC(C)CO",
        "c1ccccc1",
        "c1ccncc1",
        "Cc1ccccc1",
        "c1ccoc1",
    ]
    pd.DataFrame({"smiles": smiles, "aromatic": [0] * 6 + [1] * 4}).to_csv(tmp / "mols.csv", index=False)
    return from_table(tmp / "mols.csv", "graph", target="aromatic")


def _text(tmp: Path) -> SampleDataset:
    topics = {0: "the match ended with a late goal", 1: "the new chip doubles the memory bandwidth"}
    write = lambda p, label, rng: p.write_text(f"{topics[label]} ({rng.integers(100)})")  # noqa: E731
    return from_folder(_folders(tmp / "text", ".txt", write), "text")


MODALITIES: dict[str, Callable[[Path], SampleDataset]] = {
    "image": _folder_dataset("image", ".png", _image_8bit, {"img_size": 16, "patch_size": 8}),
    "infrared": _folder_dataset("infrared", ".tiff", _image_16bit, {"img_size": 16, "patch_size": 8}),
    "xray": _folder_dataset("xray", ".png", _image_16bit, {"img_size": 16, "patch_size": 8, "resize": None}),
    "hyperspectral": _folder_dataset(
        "hyperspectral",
        ".npy",
        lambda p, label, rng: np.save(
            p, (rng.random((8, 8, 8)) + label * np.linspace(0, 1, 8)).astype(np.float32)
        ),
        {"bands": 8, "img_size": 8, "patch_size": 4},
    ),
    "audio": _folder_dataset("audio", ".wav", _wav, {"num_mel_bins": 32}),
    "video": _folder_dataset("video", ".mp4", _video, {"img_size": 16, "patch_size": 8, "num_frames": 4}),
    "point_cloud": _folder_dataset(
        "point_cloud", ".ply", _ply, {"num_groups": 8, "group_size": 8, "hidden_dim": 32, "mid_dim": 32}
    ),
    "imu": _folder_dataset("imu", ".csv", _csv_table(IMU, 64), None, time_column="time"),
    "time_series": _folder_dataset("time_series", ".csv", _csv_table(["u", "v"], 64)),
    "text": _text,
    "tabular": _tabular,
    "graph": _graph,
}


def _model(data: SampleDataset) -> polymodal.MultimodalModel:
    return polymodal.build_model(
        encoder=ENCODER,
        tokenizers={data.modality: data.tokenizer_config},
        heads={data.modality: data.head_config()},
    )


@pytest.mark.parametrize("modality", ALL_MODALITIES)
def test_every_modality_from_files_fits_and_evaluates(tmp_path: Path, modality: str) -> None:
    if modality == "video":
        pytest.importorskip("av")
    if modality not in MODALITIES:
        pytest.skip(f"{modality}: no files written for it here (its plugin's own tests read its files)")
    data = MODALITIES[modality](tmp_path)
    assert data.modality == modality and len(data) in (2 * PER_CLASS, 10)
    assert data.task.kind == "classification" and data.task.num_classes == 2
    model = _model(data)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = polymodal.fit(model, data, epochs=1, batch_size=4, summary=False, log_interval=1)
    assert result.epochs_run == 1
    changed = [
        k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert any(k.startswith("heads.") for k in changed) and any(k.startswith("encoder.") for k in changed)
    metrics = polymodal.evaluate(model, data)
    assert set(metrics) == {f"{modality}/accuracy", f"{modality}/macro_f1", f"{modality}/auroc"}  # 2 classes
    model.eval()
    with torch.no_grad():  # the reference: every file read, collated and predicted in one batch
        batch = data.tokenizer.collate([data[i][0] for i in range(len(data))])
        pred = model({modality: batch}, mode="predict")[modality]
    assert metrics[f"{modality}/accuracy"] == pytest.approx(float((pred == data.targets).float().mean()))


def test_sampled_frames_and_channels_come_from_the_files(tmp_path: Path) -> None:
    imu = MODALITIES["imu"](tmp_path)
    sample, target = imu[0]
    raw = read_imu(imu.items[0], time_column="time")  # the time column steps by 0.01 s: recorded at 100 Hz
    assert raw["sample_rate"] == 100 and imu.tokenizer.config.sample_rate == 50 and int(target) == 0
    assert sample.shape == (6, 64 * 50 // 100)  # resampled to the tokenizer's 50 Hz
    torch.testing.assert_close(sample, resample(torch.as_tensor(raw["values"]), 100, 50))
    audio = MODALITIES["audio"](tmp_path)
    assert audio[0][0].shape == (2 * 8000 // 4,)  # 8 kHz -> 16 kHz


def test_forecasting_windows_from_a_csv(tmp_path: Path) -> None:
    t = np.arange(200)
    frame = pd.DataFrame({"date": t, "load": np.sin(2 * np.pi * t / 24), "temp": np.cos(2 * np.pi * t / 24)})
    frame.to_csv(tmp_path / "load.csv", index=False)
    data = from_table(tmp_path / "load.csv", "time_series", target="load", window=48, horizon=12, stride=6)
    assert len(data) == (200 - 48 - 12) // 6 + 1 and data.task.kind == "forecasting"
    x, y = data[3]
    assert x.shape == (1, 48) and y.shape == (1, 12)  # the target channel's past in, its future out
    np.testing.assert_allclose(x[0].numpy(), frame["load"].to_numpy()[18 : 18 + 48], rtol=1e-6)
    np.testing.assert_allclose(y[0].numpy(), frame["load"].to_numpy()[18 + 48 : 18 + 60], rtol=1e-6)
    result = polymodal.fit(_model(data), data, epochs=1, batch_size=8, summary=False)
    assert result.epochs_run == 1 and set(polymodal.evaluate(result.model, data)) == {
        "time_series/mse",
        "time_series/mae",
    }
    both = from_table(tmp_path / "load.csv", "time_series", window=48, horizon=12, stride=6)
    assert both[3][0].shape == (2, 48) and both[3][1].shape == (2, 12)  # every channel but the date
    with pytest.raises(
        ValueError, match=r"forecasting predicts every input channel; columns \['load', 'temp'\]"
    ):
        from_table(
            tmp_path / "load.csv",
            "time_series",
            columns=["load", "temp"],
            target="load",
            window=48,
            horizon=12,
        )


def test_text_and_paths_from_tables(tmp_path: Path) -> None:
    rows = [
        {"review": f"{w} film, {i}", "stars": s}
        for i, (w, s) in enumerate([("great", "5"), ("awful", "1")] * 4)
    ]
    pd.DataFrame(rows).to_json(tmp_path / "reviews.jsonl", orient="records", lines=True)
    texts = from_table(tmp_path / "reviews.jsonl", "text", columns="review", target="stars")
    assert len(texts) == 8 and texts.class_names == ["1", "5"] and texts.targets.tolist() == [1, 0] * 4
    _folders(tmp_path / "pics", ".png", _image_8bit)
    files = sorted((tmp_path / "pics").rglob("*.png"))
    table = pd.DataFrame(
        {"file": [str(p.relative_to(tmp_path)) for p in files], "y": [p.parent.name for p in files]}
    )
    table.to_csv(tmp_path / "labels.csv", index=False)
    images = from_table(
        tmp_path / "labels.csv",
        "image",
        columns="file",
        target="y",
        tokenizer={"patch_size": 8, "img_size": 32},
    )
    assert len(images) == 12 and images.items[0] == files[0] and images[0][0].shape == (3, 32, 32)
    assert images.tokenizer_config["resize"] == 32  # files come in many sizes: resized to img_size


def test_images_of_many_sizes_are_resized_unless_resize_is_set(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for label, sizes in enumerate([[(20, 30), (16, 16)], [(48, 24), (33, 17)]]):
        (tmp_path / CLASSES[label]).mkdir()
        for i, (h, w) in enumerate(sizes):
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                tmp_path / CLASSES[label] / f"{i}.png"
            )
    data = from_folder(tmp_path, "image", tokenizer={"patch_size": 8, "img_size": 16})
    assert [tuple(data[i][0].shape) for i in range(4)] == [(3, 16, 16)] * 4
    assert polymodal.evaluate(_model(data), data)["image/accuracy"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    with pytest.raises(
        SampleInputError, match=r"image: samples \[0, 1\]: expected samples of one shape to stack"
    ):
        from_folder(tmp_path, "image", tokenizer={"patch_size": 8, "resize": None})  # kept at their sizes


# -- corrupt files ------------------------------------------------------------------------------------------------
def _corrupt(root: Path, modality: str) -> Path:
    if modality == "image":
        _folders(root, ".png", _image_8bit)
        bad = root / "b" / "broken.png"
        bad.write_bytes((root / "a" / "0.png").read_bytes()[:60])  # truncated PNG
    elif modality == "audio":
        _folders(root, ".wav", _wav)
        bad = root / "b" / "broken.wav"
        bad.write_bytes(
            b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x07\x00"
        )  # header cut in the fmt chunk
    else:
        _folders(root, ".ply", _ply)
        bad = root / "b" / "broken.ply"
        bad.write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                       "property float z\nend_header\n")  # fmt: skip
    return bad


@pytest.mark.parametrize("modality", ["image", "audio", "point_cloud"])
def test_corrupt_files_raise_with_their_path_or_are_skipped_and_counted(
    tmp_path: Path, modality: str, caplog: pytest.LogCaptureFixture
) -> None:
    tokenizer = {
        "image": {"img_size": 16, "patch_size": 8},
        "point_cloud": {"num_groups": 8, "group_size": 8},
    }
    bad = _corrupt(tmp_path / modality, modality)
    strict = from_folder(tmp_path / modality, modality, tokenizer=tokenizer.get(modality))
    assert len(strict) == 2 * PER_CLASS + 1
    index = strict.items.index(bad)
    with pytest.raises(SampleReadError, match=rf"cannot read sample {index} from .*broken") as info:
        strict[index]
    assert info.value.path == str(bad)
    loader = DataLoader(strict, batch_size=len(strict), num_workers=1, collate_fn=list)
    with pytest.raises(Exception, match=r"broken\.(png|wav|ply)"):  # named even from a worker process
        next(iter(loader))
    with caplog.at_level(logging.WARNING, logger="polymodal.data"):
        lenient = from_folder(
            tmp_path / modality, modality, tokenizer=tokenizer.get(modality), on_error="skip"
        )
    assert len(lenient) == 2 * PER_CLASS and bad not in lenient.items
    assert [p for p, _ in lenient.skipped] == [str(bad)]
    assert f"skipped 1 of {2 * PER_CLASS + 1} files" in caplog.text and str(bad) in caplog.text
    assert lenient.targets.tolist() == [0] * PER_CLASS + [1] * PER_CLASS


@pytest.mark.parametrize("on_error", ["raise", "skip"])
def test_a_missing_extra_is_named_when_the_dataset_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_error: str
) -> None:
    _folders(tmp_path / "clips", ".mp4", lambda path, label, rng: path.write_bytes(b"not read"))
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    with pytest.raises(
        MissingExtraError, match=r"reading video needs the 'av' package: pip install 'polymodal\[video\]'"
    ):
        from_folder(tmp_path / "clips", "video", on_error=on_error)  # not skipped as unreadable files


def test_invalid_smiles_are_named(tmp_path: Path) -> None:
    pytest.importorskip("rdkit")
    with pytest.raises(SampleReadError, match=r"cannot read sample 1 from C1CC: ValueError: invalid SMILES"):
        from_smiles(["CCO", "C1CC", "CCN"], [0, 1, 0])
    data = from_smiles(["CCO", "C1CC", "CCN", "CC"], [0, 1, 0, 1], on_error="skip")
    assert len(data) == 3 and data.skipped[0][0] == "C1CC"


def test_folder_errors_say_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "flat" / "x.png")
    with pytest.raises(ValueError, match=r"one sub-folder per class .* \(1 files lie directly in it"):
        from_folder(tmp_path / "flat", "image")
    with pytest.raises(FileNotFoundError, match=r"image: folder .*missing does not exist"):
        from_folder(tmp_path / "missing", "image")
    with pytest.raises(ValueError, match=r"tabular: no file reader .* tables go through from_table"):
        from_folder(tmp_path / "flat", "tabular", extensions=[".csv"])


def test_hidden_files_and_folders_in_class_folders_are_not_samples(tmp_path: Path) -> None:
    pixels = np.zeros((4, 4), np.uint8)
    for label in ("a", "b"):
        (tmp_path / label / "sub").mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / label / "x.png")
        Image.fromarray(pixels).save(tmp_path / label / "sub" / "y.png")  # nested folders count
    (tmp_path / "a" / ".ipynb_checkpoints").mkdir()
    Image.fromarray(pixels).save(tmp_path / "a" / ".ipynb_checkpoints" / "x-checkpoint.png")
    Image.fromarray(pixels).save(tmp_path / "a" / "._x.png")
    (tmp_path / ".hidden_class").mkdir()
    Image.fromarray(pixels).save(tmp_path / ".hidden_class" / "z.png")
    data = from_folder(tmp_path, "image", tokenizer={"img_size": 16})
    assert len(data) == 4 and list(data.task.class_names) == ["a", "b"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in map(data.source, range(4))) == [
        "a/sub/y.png",
        "a/x.png",
        "b/sub/y.png",
        "b/x.png",
    ]


# -- the files data source in a config file -----------------------------------------------------------------------
@pytest.fixture
def files_source() -> Iterator[None]:
    """The ``files`` data source, registered through its plugin when the entry point is not installed."""
    from polymodal.registry import plugins, tables

    added = "files" not in polymodal.list_data_sources()
    if added:
        import polymodal.data.plugin as data_plugin

        plugins.load_plugin(data_plugin, "data")
    yield
    if added:
        tables.unregister("data source", "files")
        plugins.plugin_manager().unregister(name="data")


def test_cli_trains_a_config_on_a_folder_of_images(
    tmp_path: Path, files_source: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from polymodal.cli import main

    monkeypatch.chdir(tmp_path)  # paths in the config are relative to the working directory
    _folders(tmp_path / "pics", ".png", _image_8bit)
    base = Path(__file__).resolve().parents[2] / "polymodal" / "configs" / "_base_"
    (tmp_path / "pics.py").write_text(
        f"_base_ = ['{base}/default_runtime.py', '{base}/schedules/adamw.py', '{base}/data/multitask.py']\n"
        "tokenizers = dict(image=dict(type='image', img_size=16, patch_size=8, resize=16))\n"
        "source = dict(type='files', modality='image', root='pics', val_fraction=0.25, tokenizer=tokenizers['image'])\n"
        "streams = dict(image=dict(source=source))\n"
        f"model = dict(type='MultimodalModel', encoder={ENCODER!r}, tokenizers=tokenizers,\n"
        "             heads=dict(image=dict(type='classification', num_classes=2)))\n"
        "train_dataloader = dict(batch_size=4, num_workers=0, dataset=dict(streams=streams, tokenizers=tokenizers))\n"
        "val_dataloader = dict(num_workers=0, dataset=dict(streams=streams, tokenizers=tokenizers))\n"
        "test_dataloader = val_dataloader\n"
        "train_cfg = dict(max_epochs=1)\n"
    )
    assert main(["train", "pics.py", "--work-dir", "work"]) == 0
    out = capsys.readouterr().out
    assert "final validation metrics:" in out and "image/accuracy" in out and "image/macro_f1" in out
    metrics = json.loads((tmp_path / "work" / "metrics.json").read_text())["last_val"]
    assert metrics["epoch"] == 1 and 0.0 <= metrics["image/accuracy"] <= 1.0
    assert (tmp_path / "work" / "pretrained" / "model.safetensors").is_file()
    source = polymodal.get("data source", "files").from_config(
        {
            "modality": "image",
            "root": str(tmp_path / "pics"),
            "val_fraction": 0.25,
            "tokenizer": {"patch_size": 8},
        }
    )
    splits = source.splits()
    assert (len(splits["train"]), len(splits["test"])) == (8, 4)  # stratified: 2 of 6 per class held out
    assert sorted(splits["test"].targets.tolist()) == [0, 0, 1, 1]
    assert source.task() == {"type": "classification", "num_classes": 2} and source.baseline() == 0.5
    with pytest.raises(ValueError, match="give exactly one of root"):
        source.config_class(modality="image")
    # the source's images are resized to img_size (resize=16), the model's tokenizer says nothing of it
    unsized = {"type": "image", "img_size": 16, "patch_size": 8}
    streams = {
        "image": {"source": {"type": "files", "modality": "image", "root": "pics", "tokenizer": unsized}}
    }
    with pytest.raises(
        ValueError, match=r"\(resize: data 16, model None\); give the model's tokenizers\['image'\]"
    ):
        MultiTaskDataset(streams, tokenizers={"image": unsized})
