"""The polymodal command line: list, info, --version and ``python -m polymodal``; train and eval refusing what a user
can fix in one line (exit status 2); ``--cfg-options train_cfg.max_epochs`` resizing the schedule; predict."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import polymodal
from polymodal.cli import main
from polymodal.configs import CONFIG_DIR
from polymodal.train import load_config


def test_list_plugins_shows_entry_point_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "plugins"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("image "))
    assert line.split()[:4] == ["image", "loaded", "polymodal", "0.1.0"]
    assert "image, digits" in line


def test_list_encoders_with_filter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "encoders", "vit_*"]) == 0
    names = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()]
    assert names == ["vit_base", "vit_large", "vit_small", "vit_tiny"]


def test_list_modalities_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["modality", "tokenizers", "data", "sources"]
    assert any(ln.split()[:3] == ["image", "image", "digits"] for ln in out)


def test_info_prints_fields_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "image"]) == 0
    out = capsys.readouterr().out
    assert "tokenizer 'image': polymodal.plugins.image.ImageTokenizer" in out
    row = next(ln for ln in out.splitlines() if ln.strip().startswith("patch_size"))
    assert row.split()[:3] == ["patch_size", "int", "16"]


def test_info_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "vit_tiny", "--kind", "encoders", "--json"]) == 0
    out = capsys.readouterr().out
    schema = json.loads(out[out.index("{") :])
    assert schema["properties"]["embed_dim"]["default"] == 192
    assert schema["additionalProperties"] is False


def test_info_unknown_name_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "imge"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal: unknown component 'imge'; did you mean 'image'?")
    assert main(["info", "vit_tiny", "--kind", "heads"]) == 2
    assert "unknown head 'vit_tiny' Registered" in capsys.readouterr().err


# -- version, python -m polymodal ---------------------------------------------------------------------------------
def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"polymodal {polymodal.__version__}\n"


def test_python_dash_m_polymodal_is_the_cli(tmp_path: Path) -> None:
    version = subprocess.run(
        [sys.executable, "-m", "polymodal", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert (version.returncode, version.stdout) == (0, f"polymodal {polymodal.__version__}\n")
    listing = subprocess.run(
        [sys.executable, "-m", "polymodal", "list", "configs"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert [ln.split()[0] for ln in listing.stdout.splitlines()] == [f"polymodal::{n}" for n in SHIPPED]


# -- list ---------------------------------------------------------------------------------------------------------
SHIPPED = ["image_digits.py", "multimodal_all.py", "multimodal_small.py", "multimodal_small_fsdp.py"]


def test_list_configs_names_the_shipped_ones_with_their_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == [f"polymodal::{n}" for n in SHIPPED]
    assert lines[0].split(None, 1)[1] == (
        "One modality: scikit-learn's digits through the image tokenizer and a small shared encoder."
    )
    assert main(["list", "configs", "multimodal_small*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [
        "polymodal::multimodal_small.py",
        "polymodal::multimodal_small_fsdp.py",
    ]
    assert all(Path(r["path"]).is_file() and Path(r["path"]).parent == CONFIG_DIR for r in rows)


def test_list_json_of_each_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "encoders", "vit_*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["vit_base", "vit_large", "vit_small", "vit_tiny"]
    assert rows[0] == {
        "name": "vit_base",
        "summary": "vit_base: 12 blocks of width 768 with 12 heads (timm's sizes).",
        "class": "polymodal.core.encoders.vit.VitBaseEncoder",
    }
    assert main(["list", "tokenizers", "image", "--json"]) == 0
    (image,) = json.loads(capsys.readouterr().out)
    assert (image["name"], image["modality"], image["class"]) == (
        "image",
        "image",
        "polymodal.plugins.image.ImageTokenizer",
    )
    assert main(["list", "modalities", "im*", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["modality"] for r in rows] == ["image", "imu"]
    assert rows[0] == {"modality": "image", "tokenizers": ["image"], "data_sources": ["digits"]}
    assert main(["list", "plugins", "image", "--json"]) == 0
    (plugin,) = json.loads(capsys.readouterr().out)
    assert (plugin["status"], plugin["distribution"], plugin["version"]) == (
        "loaded",
        "polymodal",
        polymodal.__version__,
    )
    assert plugin["components"] == ["image", "digits"]


def test_list_says_when_a_pattern_matches_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "encoders", "zzz*"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("polymodal: no encoders match 'zzz*'; registered (")
    assert "vit_tiny" in captured.err
    assert main(["list", "configs", "nope*", "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == []
    assert captured.err == (
        "polymodal: no configs match 'nope*'; registered (4): "
        + ", ".join(f"polymodal::{n}" for n in SHIPPED)
        + "\n"
    )
    assert main(["list", "plugins", "zzz"]) == 1
    assert capsys.readouterr().err.startswith("polymodal: no plugins match 'zzz'; registered (")
    assert main(["list", "modalities", "--markdown", "--json"]) == 2


# -- train / eval: one line and exit status 2 for what the user can fix -------------------------------------------
def _one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("polymodal: ")
    return captured.err.rstrip("\n").removeprefix("polymodal: ")


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., int]:
    """``polymodal train|eval ARGS`` in-process, with a work dir in ``tmp_path`` (eval gets an existing checkpoint
    file, so that what is checked is the config)."""
    checkpoint = tmp_path / "epoch_1.pth"
    checkpoint.write_bytes(b"")

    def run_(command: str, *args: str) -> int:
        extra = ["--checkpoint", str(checkpoint)] if command == "eval" else []
        return main([command, *args, "--work-dir", str(tmp_path / "work"), *extra])

    return run_


COMMANDS = pytest.mark.parametrize("command", ["train", "eval"])


@COMMANDS
def test_a_missing_config_file(
    command: str,
    run: Callable[..., int],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    message = _one_line_error(capsys, run(command, "nope.py"))
    assert message == (
        f"config file 'nope.py' not found (relative to {tmp_path}); give a config file's path, or a shipped config "
        "as polymodal::NAME (shipped (4): " + ", ".join(f"polymodal::{n}" for n in SHIPPED) + ")"
    )
    message = _one_line_error(capsys, run(command, "configs/image_digits.py"))  # the path in a clone, before
    assert message.endswith("; the shipped config of that name is polymodal::image_digits.py")


@COMMANDS
def test_an_unknown_shipped_config(
    command: str, run: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    message = _one_line_error(capsys, run(command, "polymodal::multimodal_smal.py"))
    assert message.startswith(
        "unknown config 'polymodal::multimodal_smal.py'; did you mean 'polymodal::multimodal_small.py'? Shipped (4): "
        "polymodal::image_digits.py, "
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="--amp is refused only without CUDA")
def test_amp_without_cuda(run: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    assert _one_line_error(capsys, run("train", "polymodal::image_digits.py", "--amp")) == (
        "--amp needs CUDA (bf16 autocast on the GPU), and this machine has none; drop --amp to train in float32 on "
        "the CPU"
    )


@COMMANDS
def test_a_cfg_options_typo_names_the_key_meant(
    command: str, run: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    message = _one_line_error(
        capsys, run(command, "polymodal::image_digits.py", "--cfg-options", "train_cfg.max_epoch=2")
    )
    assert message == (
        "--cfg-options train_cfg.max_epoch=2: the config has no 'train_cfg.max_epoch'; did you mean "
        "'train_cfg.max_epochs'? (keys of 'train_cfg': by_epoch, max_epochs, val_interval)"
    )
    message = _one_line_error(
        capsys, run(command, "polymodal::image_digits.py", "--cfg-options", "train_cfgg.max_epochs=2")
    )
    assert message.startswith(
        "--cfg-options train_cfgg.max_epochs=2: the config has no 'train_cfgg'; did you mean 'train_cfg.max_epochs'?"
    )


@COMMANDS
def test_text_for_a_number(command: str, run: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    message = _one_line_error(
        capsys, run(command, "polymodal::image_digits.py", "--cfg-options", "train_cfg.max_epochs=abc")
    )
    assert (
        message
        == "--cfg-options train_cfg.max_epochs=abc: expected an integer (the config has 10), got 'abc'"
    )


@COMMANDS
def test_a_config_without_a_model(
    command: str, run: Callable[..., int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "no_model.py"
    config.write_text('_base_ = ["polymodal::_base_/default_runtime.py"]\n')
    assert _one_line_error(capsys, run(command, str(config))) == (
        f"{config}: expected a 'model' section (model = dict(type=\"MultimodalModel\", encoder=..., tokenizers=..., "
        "heads=...)), got none; start from a shipped config, e.g. polymodal::image_digits.py (polymodal list configs)"
    )


def test_a_base_from_the_old_clone_layout_names_the_shipped_part(
    run: Callable[..., int], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = tmp_path / "mine.py"
    config.write_text(
        '_base_ = ["./configs/_base_/default_runtime.py"]\nmodel = dict(type="MultimodalModel")\n'
    )
    assert _one_line_error(capsys, run("train", str(config))) == (
        f"{config}: _base_ file './configs/_base_/default_runtime.py' not found; the shipped one is "
        "polymodal::_base_/default_runtime.py"
    )


# -- --cfg-options train_cfg.max_epochs: the schedule follows ------------------------------------------------------
TINY_CONFIG = """
_base_ = ["polymodal::_base_/default_runtime.py", "polymodal::_base_/schedules/adamw.py",
          "polymodal::_base_/data/multitask.py"]
max_epochs = 4
source = dict(type="digits", image_size=16, num_train=64, num_test=32, seed=0)
tokenizers = dict(image=dict(type="image", patch_size=8, img_size=16))
streams = dict(image=dict(source=source))
model = dict(type="MultimodalModel", encoder=dict(type="vit", embed_dim=32, depth=1, num_heads=2),
             tokenizers=tokenizers, heads=dict(image=dict(type="classification", num_classes=10)))
train_dataloader = dict(batch_size=16, num_workers=0, dataset=dict(streams=streams, tokenizers=tokenizers))
val_dataloader = dict(batch_size=32, num_workers=0, dataset=dict(streams=streams, tokenizers=tokenizers))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=100))
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=1, end=max_epochs, T_max=max_epochs - 1, eta_min=1e-5,
         convert_to_iter_based=True),
]
"""


def test_max_epochs_from_the_command_line_resizes_the_schedule() -> None:
    cfg = load_config("polymodal::image_digits.py", cfg_options={"train_cfg.max_epochs": 3})
    assert cfg.train_cfg.max_epochs == 3 and cfg.max_epochs == 3
    warmup, cosine = cfg.param_scheduler
    assert (warmup.begin, warmup.end) == (0, 1)  # ends before training does: untouched
    assert (cosine.begin, cosine.end, cosine.T_max, cosine.eta_min) == (1, 3, 2, 1e-5)
    (only,) = load_config(
        "polymodal::image_digits.py", cfg_options={"train_cfg.max_epochs": 1}
    ).param_scheduler
    assert only.type == "LinearLR"  # the cosine after a one-epoch warm-up has no epoch left: dropped
    untouched = load_config("polymodal::image_digits.py").param_scheduler
    assert (untouched[1].end, untouched[1].T_max) == (10, 9)
    mine = load_config(
        "polymodal::image_digits.py",
        cfg_options={"train_cfg.max_epochs": 3, "param_scheduler.1.T_max": 7},
    ).param_scheduler
    assert (mine[1].end, mine[1].T_max) == (10, 7)  # the user set the schedule too: left as they said


def test_a_shortened_run_decays_to_eta_min_within_its_epochs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 epochs in the file, 2 on the command line: the cosine spans epoch 2 (its 4 steps fall from the base lr
    towards eta_min as cos(pi k / 4)); unresized it would still be at 0.97 of the base lr at the end."""
    torch.set_num_threads(1)
    config = tmp_path / "tiny.py"
    config.write_text(TINY_CONFIG)
    work = tmp_path / "work"
    code = main(["train", str(config), "--work-dir", str(work), "--cfg-options", "train_cfg.max_epochs=2"])
    assert code == 0, capsys.readouterr().err[-3000:]
    (scalars,) = work.glob("*/vis_data/scalars.json")
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    lrs = [r["lr"] for r in rows if "lr" in r and r["epoch"] == 2]
    base, eta_min = 1e-3, 1e-5
    expected = [eta_min + (base - eta_min) * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    assert lrs == pytest.approx(expected, rel=1e-6)
    assert max(r["epoch"] for r in rows if "lr" in r) == 2


# -- predict ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny saved models (an image model with a class head and a 2-value regression head on the same input; an
    image + tabular model; a tabular model), 5 PNG files (two in a sub-folder) and a table of rows."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    encoder = {"type": "vit", "embed_dim": 32, "depth": 1, "num_heads": 2}
    image = {"type": "image", "img_size": 16, "patch_size": 8}
    polymodal.build_model(
        tokenizers={"image": image},
        encoder=encoder,
        heads={
            "digit": {"type": "classification", "num_classes": 3, "modality": "image"},
            "brightness": {"type": "regression", "out_dim": 2, "modality": "image"},
        },
    ).save_pretrained(root / "image_model")
    polymodal.build_model(
        tokenizers={"image": image, "tabular": "tabular"},
        encoder=encoder,
        heads={"image": {"type": "classification", "num_classes": 3}},
    ).save_pretrained(root / "two_inputs")
    rng = np.random.default_rng(0)
    (root / "pics" / "more").mkdir(parents=True)
    for i in range(5):
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "pics" / ("more" if i >= 3 else ".") / f"p{i}.png")
    frame = pd.DataFrame(
        {
            "width": rng.standard_normal(12),
            "depth": rng.standard_normal(12),
            "colour": rng.choice(["red", "blue"], 12),
            "label": rng.integers(0, 2, 12),
        }
    )
    frame.to_csv(root / "rows.csv", index=False)
    rows = polymodal.data.from_table(root / "rows.csv", "tabular", target="label")
    polymodal.build_model(
        tokenizers={"tabular": rows.tokenizer_config},
        encoder=encoder,
        heads={"label": {**rows.head_config(), "modality": "tabular"}},
    ).save_pretrained(root / "tabular_model")
    return {"root": root, "pics": root / "pics", "rows": root / "rows.csv"}


def _reference_image(model_dir: Path, paths: list[Path]) -> dict[str, torch.Tensor]:
    """Predictions computed without the CLI: Pillow -> the model's own tokenizer -> the model."""
    import numpy as np
    from PIL import Image

    model = polymodal.from_pretrained(model_dir)
    tokenizer = model.tokenizers["image"]
    batch = torch.stack([tokenizer.preprocess(np.asarray(Image.open(p).convert("RGB"))) for p in paths])
    with torch.no_grad():
        return model({"image": batch}, mode="predict")


def test_predict_files_and_folders_to_csv(saved: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    pics = saved["pics"]
    files = [pics / "p1.png", pics / "p0.png"]
    assert main(["predict", str(saved["root"] / "image_model"), *map(str, files), str(pics / "more")]) == 0
    lines = capsys.readouterr().out.splitlines()
    order = [*files, pics / "more" / "p3.png", pics / "more" / "p4.png"]
    reference = _reference_image(saved["root"] / "image_model", order)
    table = list(csv.reader(lines))
    assert table[0] == ["source", "digit", "brightness"]
    assert [row[0] for row in table[1:]] == [str(p) for p in order]
    assert [int(row[1]) for row in table[1:]] == reference["digit"].tolist()
    values = torch.tensor([json.loads(row[2]) for row in table[1:]])
    assert values.shape == (4, 2)
    torch.testing.assert_close(values, reference["brightness"], rtol=1e-5, atol=1e-6)
    assert (
        len({tuple(v) for v in values.tolist()}) == 4
    )  # distinct images, distinct values: the order is checked


def test_predict_to_a_json_file(
    saved: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "predictions.json"
    model = saved["root"] / "image_model"
    assert main(["predict", str(model), str(saved["pics"]), "--out", str(out), "--batch-size", "2"]) == 0
    assert capsys.readouterr().err == (
        f"polymodal: 5 predictions of digit, brightness (input 'image') written to {out}\n"
    )
    rows = json.loads(out.read_text())
    paths = sorted(p for p in saved["pics"].rglob("*.png"))
    assert [r["source"] for r in rows] == [str(p) for p in paths]
    reference = _reference_image(model, paths)
    assert [r["digit"] for r in rows] == reference["digit"].tolist()
    torch.testing.assert_close(torch.tensor([r["brightness"] for r in rows]), reference["brightness"])


def test_predict_a_table_of_rows_and_a_table_of_paths(
    saved: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import pandas as pd

    model_dir = saved["root"] / "tabular_model"
    assert main(["predict", str(model_dir), "--table", str(saved["rows"]), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert "no column 'label'" not in captured.err  # only the schema's columns are read
    rows = json.loads(captured.out)
    model = polymodal.from_pretrained(model_dir)
    frame = pd.read_csv(saved["rows"])
    with torch.no_grad():
        expected = model(
            {"tabular": model.tokenizers["tabular"].encode(frame[["width", "depth", "colour"]])},
            mode="predict",
        )
    assert [r["source"] for r in rows] == list(range(12))
    assert [r["label"] for r in rows] == expected["label"].tolist()

    table = tmp_path / "files.csv"
    pd.DataFrame({"file": ["p0.png", "more/p4.png"]}).to_csv(table, index=False)
    (tmp_path / "p0.png").write_bytes((saved["pics"] / "p0.png").read_bytes())
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "p4.png").write_bytes((saved["pics"] / "more" / "p4.png").read_bytes())
    image_model = saved["root"] / "image_model"
    assert (
        main(["predict", str(image_model), "--table", str(table), "--column", "file", "--format", "json"])
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["source"] for r in rows] == [str(tmp_path / "p0.png"), str(tmp_path / "more" / "p4.png")]
    reference = _reference_image(image_model, [saved["pics"] / "p0.png", saved["pics"] / "more" / "p4.png"])
    assert [r["digit"] for r in rows] == reference["digit"].tolist()


def test_predict_refuses_with_one_line(
    saved: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    two = str(saved["root"] / "two_inputs")
    pics = str(saved["pics"])
    assert _one_line_error(capsys, main(["predict", two, pics])) == (
        "the model has 2 inputs (image, tabular); pass --input KEY (one per call)"
    )
    assert _one_line_error(capsys, main(["predict", two, pics, "--input", "imgae"])) == (
        "--input 'imgae': the model has no such input; its inputs: image, tabular"
    )
    assert _one_line_error(capsys, main(["predict", two, pics, "--input", "tabular"])) == (
        "--input 'tabular': no head of the model reads this input alone (image reads image)"
    )
    image_model = str(saved["root"] / "image_model")
    assert _one_line_error(capsys, main(["predict", image_model, str(tmp_path / "nope.png")])) == (
        f"{tmp_path / 'nope.png'}: no such file or folder"
    )
    assert (
        _one_line_error(capsys, main(["predict", image_model]))
        == "give input files (or folders), or --table TABLE"
    )
    assert _one_line_error(capsys, main(["predict", str(tmp_path), pics])) == (
        f"{tmp_path}: no config.json (expected a folder written by save_pretrained)"
    )
    assert main(["predict", two, pics, "--input", "image"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "source,image"
