"""``polymodal demo``: the quick preset end to end through the CLI, and the pieces it is built from."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

import polymodal
from polymodal.cli import main
from polymodal.demo import (
    DemoResult,
    DemoRow,
    beats_baseline,
    demo_streams,
    format_table,
    run_demo,
    select_device,
)
from polymodal.train.multitask import build_source

# every registered modality that has a data source, in the registry's order (no hand-kept list)
MODALITIES = [
    m
    for m in polymodal.list_modalities()
    if any(polymodal.get("data source", n).modality == m for n in polymodal.list_data_sources())
]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    """``polymodal demo --quick`` run once (in this process): exit status, printed output, output folder."""
    out = tmp_path_factory.mktemp("demo") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        status = main(["demo", "--quick", "--device", "cpu", "--out", str(out)])
    return status, printed.getvalue(), out


def _table(printed: str) -> list[list[str]]:
    lines = printed.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("modality "))
    assert set(lines[start + 1]) <= {"-", " "}
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.strip():
            break
        rows.append(ln.split())
    return rows


def test_quick_demo(quick: tuple[int, str, Path]) -> None:
    # one test for everything the run shows: under `pytest -n`, each test that used the module fixture could run
    # on another worker and train again
    _check_table(*quick)
    _check_figure_and_model(*quick)
    _check_saved_model_reproduces_the_evaluation(*quick)


def _check_table(status: int, printed: str, out: Path) -> None:
    assert status == 0, printed[-3000:]
    rows = _table(printed)
    assert [r[0] for r in rows] == MODALITIES and len(rows) >= 12  # a row per modality, none hidden
    assert "(!)" not in printed
    assert "tuned: trained in" in printed and "every task beats its baseline" in printed
    assert "step   72/72" in printed  # progress while training
    saved = json.loads((out / "results.json").read_text())
    (result,) = saved["results"]
    assert result["flavour"] == "tuned" and result["encoder_changed"] > 0
    assert [r["modality"] for r in result["rows"]] == MODALITIES
    for row in result["rows"]:
        assert row["beats"], row
        assert beats_baseline(row["value"], row["baseline"], row["metric"]), row
        assert row["tokens"] >= 1
        assert row["value"] == result["metrics"][f"test/{row['modality']}/{row['metric']}"]
    by_name = {r["modality"]: r for r in result["rows"]}
    assert by_name["time_series"]["metric"] == "mse"
    assert by_name["image"]["metric"] == "accuracy" and by_name["image"]["baseline"] == pytest.approx(0.1)
    assert by_name["text"]["tokens"] < 20  # words of the fitted vocabulary, not bytes


def _check_figure_and_model(status: int, printed: str, out: Path) -> None:
    figure = out / "demo.png"
    assert f"figure: {figure}" in printed
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and figure.stat().st_size > 20_000
    assert (out / "model" / "config.json").is_file() and (out / "model" / "model.safetensors").is_file()
    assert (out / "model" / "text_vocab.txt").is_file()


def _check_saved_model_reproduces_the_evaluation(status: int, printed: str, out: Path) -> None:
    (result,) = json.loads((out / "results.json").read_text())["results"]
    model = polymodal.from_pretrained(out / "model")
    assert sorted(model.tokenizers) == sorted(MODALITIES)
    data = {r["modality"]: build_source(r["source_config"]).splits()["test"] for r in result["rows"]}
    metrics = polymodal.evaluate(model, data)  # another path than the demo's: fit.py's loader, batches of 64
    for row in result["rows"]:
        key = f"{row['modality']}/{row['metric']}"
        assert metrics[key] == pytest.approx(row["value"], abs=1e-4), key


def test_frozen_flavour_keeps_the_encoder(tmp_path: Path) -> None:
    lines: list[str] = []
    threads = torch.get_num_threads()
    (res,) = run_demo(
        tmp_path,
        preset="quick",
        modalities=["tabular", "time_series"],
        frozen=True,
        device="cpu",
        epochs=1,
        log=lines.append,
    )
    assert torch.get_num_threads() == threads  # restored
    assert res.flavour == "frozen" and res.encoder_changed == 0.0
    assert not any(p.requires_grad for p in res.model.encoder.parameters())
    assert [r.modality for r in res.rows] == ["tabular", "time_series"]
    assert any("(4 blocks of 64, frozen)" in ln for ln in lines)
    printed = "\n".join(lines)
    assert [r[0] for r in _table(printed)] == ["tabular", "time_series"]
    header = next(ln for ln in printed.splitlines() if ln.startswith("modality "))
    assert header.split()[5:] == ["frozen", "baseline", "tokens"]


def test_beats_baseline() -> None:
    assert beats_baseline(0.45, 0.25, "accuracy")  # needs max(0.25 + 0.2, 1.5 * 0.25) = 0.45
    assert not beats_baseline(0.44, 0.25, "accuracy")
    assert beats_baseline(0.75, 0.5, "accuracy") and not beats_baseline(0.74, 0.5, "accuracy")
    assert beats_baseline(0.3, 0.1, "accuracy") and not beats_baseline(0.29, 0.1, "accuracy")
    assert beats_baseline(0.5, 1.0, "mse") and not beats_baseline(0.51, 1.0, "mse")  # half the naive error
    assert not beats_baseline(math.nan, 0.1, "accuracy") and not beats_baseline(math.inf, 1.0, "mse")


def _result(flavour: str, values: list[float]) -> DemoResult:
    rows = [
        DemoRow(
            "image",
            "digits",
            "classification (10 classes)",
            "accuracy",
            values[0],
            0.1,
            4.0,
            values[0] >= 0.3,
        ),
        DemoRow(
            "time_series", "seasonal_series", "forecasting (24 steps)", "mse", values[1], 1.5, 12.0, True
        ),
    ]
    return DemoResult(flavour, rows, {}, {}, 1.0, Path("m"), 0.0)


def test_format_table_one_and_two_flavours() -> None:
    one = format_table([_result("tuned", [0.8125, 0.04])]).splitlines()
    assert one[0].split() == ["modality", "data", "source", "task", "metric", "tuned", "baseline", "tokens"]
    assert set(one[1]) == {"-", " "}
    assert one[2].split() == [
        "image", "digits", "classification", "(10", "classes)", "accuracy", "0.812", "0.100", "chance", "4"
    ]  # fmt: skip
    assert one[3].split()[-5:] == ["mse", "0.040", "1.500", "naive", "12"]
    assert len({len(ln) for ln in one[:2]}) == 1  # the rule spans the header
    two = format_table([_result("tuned", [0.8, 0.04]), _result("frozen", [0.2, 0.05])]).splitlines()
    assert two[0].split()[5:7] == ["tuned", "frozen"]
    assert two[2].split()[6:9] == ["0.800", "0.200", "(!)"]  # the frozen value does not beat chance clearly
    assert two[0].index("tuned") < two[0].index("frozen") < two[0].index("baseline")


def test_demo_streams_and_errors() -> None:
    streams = demo_streams()
    assert list(streams) == MODALITIES
    for modality, stream in streams.items():  # each plugin declares the demo settings of one of its sources
        cls = polymodal.get("data source", stream.source["type"])
        assert cls.modality == modality and cls.demo is not None, modality
        assert dict(stream.tokenizer) == dict(cls.demo.tokenizer) and dict(stream.head) == dict(cls.demo.head)
    assert list(demo_streams(["graph", "text"])) == ["graph", "text"]
    with pytest.raises(
        ValueError, match=r"demo: no data source for modality 'smell'; modalities with data: .*image"
    ):
        demo_streams(["smell"])
    with pytest.raises(ValueError, match=r"demo: device must be 'auto', 'cpu' or 'cuda\[:i\]', got 'tpu'"):
        select_device("tpu")
    assert select_device("cpu") == "cpu"
    with pytest.raises(ValueError, match=r"demo: unknown preset 'fast'; presets: default, quick"):
        run_demo(preset="fast")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_demo_cuda_without_gpu_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "demo: --device cuda asked for, but torch sees no CUDA device on this machine" in err


def test_demo_unknown_modality_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--quick", "--modalities", "image", "smell"]) == 2
    assert "polymodal: demo: no data source for modality 'smell'" in capsys.readouterr().err
