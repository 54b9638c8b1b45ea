"""The distributions a pip user gets: the sdist (the package, the whole test suite, docs, examples, benchmarks) and the
wheel built from it (the modules, the shipped configs, ``py.typed``, the license), installed into a fresh virtual
environment and run from a folder without the checkout.

Built as ``python -m build`` builds (the sdist from the source tree, the wheel from the unpacked sdist) through
setuptools' PEP 517 backend in a fresh interpreter, offline: no build isolation, the installed setuptools. The fresh
environment reuses this one's packages (torch, mmengine, …) through a ``.pth`` file and gets only polymodal from
the wheel.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import polymodal

ROOT = Path(__file__).resolve().parents[1]
VERSION = polymodal.__version__
SOURCES = (
    "pyproject.toml",
    "MANIFEST.in",
    "LICENSE",
    "README.md",
    "Makefile",
    "mkdocs.yml",
    "polymodal",
    "tests",
    "docs",
    "examples",
    "benchmarks",
)
SHIPPED = [
    "polymodal/configs/image_digits.py",
    "polymodal/configs/multimodal_all.py",
    "polymodal/configs/multimodal_small.py",
    "polymodal/configs/multimodal_small_fsdp.py",
    "polymodal/configs/_base_/default_runtime.py",
    "polymodal/configs/_base_/data/multitask.py",
    "polymodal/configs/_base_/schedules/adamw.py",
]
BUILD = "import sys; from setuptools import build_meta; print(build_meta.build_{kind}(sys.argv[1]))"
JUNK = shutil.ignore_patterns(
    "__pycache__", "*.py[cod]", ".*cache", ".hypothesis", "build", "dist", "*.egg-info"
)


def _setuptools_version() -> tuple[int, ...]:
    from importlib.metadata import version

    return tuple(int(p) for p in version("setuptools").split(".")[:2] if p.isdigit())


pytestmark = pytest.mark.skipif(
    _setuptools_version() < (77,),
    reason="building needs setuptools >= 77 (SPDX license; the 'dev' extra has it)",
)


def _run(
    args: list[str], cwd: Path, timeout: float = 300, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    assert out.returncode == 0, (
        f"{args} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    )
    return out


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("dists")
    src, out = work / "src", work / "dist"
    src.mkdir()
    for name in SOURCES:  # a copy: setuptools writes egg-info and build/ into the tree it builds
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=JUNK)
        else:
            shutil.copy2(path, src / name)
    sdist = out / _run([sys.executable, "-c", BUILD.format(kind="sdist"), str(out)], src).stdout.split()[-1]
    unpacked = work / "unpacked"
    with tarfile.open(sdist) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12 / 3.11.4
        tar.extractall(unpacked, **safe)  # our own sdist
    wheel = (
        out
        / _run(
            [sys.executable, "-c", BUILD.format(kind="wheel"), str(out)], unpacked / f"polymodal-{VERSION}"
        ).stdout.split()[-1]
    )
    return {"sdist": sdist, "wheel": wheel, "work": work}


def test_the_wheel_holds_the_configs_py_typed_and_the_license(dists: dict[str, Path]) -> None:
    assert dists["wheel"].name == f"polymodal-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(dists["wheel"]) as wheel:
        names = set(wheel.namelist())
        info = f"polymodal-{VERSION}.dist-info"
        metadata = wheel.read(f"{info}/METADATA").decode()
        license_text = wheel.read(f"{info}/licenses/LICENSE")
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert set(SHIPPED) <= names
    assert {"polymodal/py.typed", "polymodal/__main__.py", "polymodal/cli.py"} <= names
    assert not any(n.startswith(("tests/", "docs/", "examples/", "benchmarks/")) for n in names)
    assert license_text == (ROOT / "LICENSE").read_bytes()
    assert license_text.startswith(b"\n                                 Apache License\n")
    headers = metadata.split("\n\n", 1)[0].splitlines()
    assert f"Version: {VERSION}" in headers  # from polymodal.__version__, the one place it is written
    assert "License-Expression: Apache-2.0" in headers and "License-File: LICENSE" in headers
    assert "Classifier: Typing :: Typed" in headers
    assert "Classifier: Programming Language :: Python :: 3.10" in headers
    assert {h.split(",")[0] for h in headers if h.startswith("Project-URL: ")} == {
        "Project-URL: Homepage",
        "Project-URL: Documentation",
        "Project-URL: Repository",
        "Project-URL: Issues",
    }
    assert "polymodal = polymodal.cli:main" in entry_points
    assert "image = polymodal.plugins.image" in entry_points


def test_the_sdist_holds_the_test_suite_docs_and_examples(dists: dict[str, Path]) -> None:
    prefix = f"polymodal-{VERSION}/"
    with tarfile.open(dists["sdist"]) as tar:
        names = {n.removeprefix(prefix) for n in tar.getnames()}
    tests = {str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("*.py") if "__pycache__" not in p.parts}
    assert "tests/test_packaging.py" in tests and "tests/conftest.py" in tests
    assert tests <= names, sorted(tests - names)
    docs = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "docs").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }
    assert {"docs/install.md", "docs/hooks.py"} <= docs <= names
    assert {
        "LICENSE",
        "README.md",
        "MANIFEST.in",
        "pyproject.toml",
        "mkdocs.yml",
        "Makefile",
        "examples/polymodal-eeg/pyproject.toml",
        "benchmarks/encoder.py",
        "polymodal/py.typed",
        *SHIPPED,
    } <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or ".ruff_cache" in n]


def test_the_installed_wheel_trains_a_shipped_config_outside_the_checkout(dists: dict[str, Path]) -> None:
    work = dists["work"]
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    python, wheel = venv / "bin" / "python", str(dists["wheel"])
    purelib = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work
        ).stdout.strip()
    )
    # this environment's packages (torch, mmengine, …), after the venv's own: polymodal comes from the wheel
    (purelib / "_polymodal_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            wheel,
        ],
        work,
    )
    outside = work / "elsewhere"  # no checkout here, nor above
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("POLYMODAL_")}
    env["OMP_NUM_THREADS"] = "1"
    where = _run([str(python), "-c", "import polymodal; print(polymodal.__file__)"], outside, env=env).stdout
    assert Path(where.strip()).is_relative_to(purelib), where
    version = _run([str(python), "-m", "polymodal", "--version"], outside, env=env).stdout
    assert version == f"polymodal {VERSION}\n"
    small = [f"{split}_dataloader.dataset.streams.image.max_samples=48" for split in ("train", "val", "test")]
    workers = [f"{split}_dataloader.num_workers=0" for split in ("train", "val", "test")]
    options = ["--cfg-options", "train_cfg.max_epochs=1", *small, *workers]
    trained = _run(
        [
            str(venv / "bin" / "polymodal"),
            "train",
            "polymodal::image_digits.py",
            "--work-dir",
            "run",
            *options,
        ],
        outside,
        env=env,
    )
    assert "final validation metrics:\n  image/accuracy" in trained.stdout
    assert (outside / "run" / "pretrained" / "config.json").is_file()
    assert (outside / "run" / "epoch_1.pth").is_file()
