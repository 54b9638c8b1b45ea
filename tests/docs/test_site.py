"""The documentation site builds with ``mkdocs build --strict``, and its generated pages cover the code.

docs/hooks.py generates the config reference (docs/configs.md) from every registered component's pydantic schema
and the CLI reference (docs/cli.md) from ``polymodal.cli.build_parser()``; pymdownx.snippets includes README and
example-plugin source sections. The build runs the same environment as this test, so the registered names below
are the ones the hook saw.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from polymodal import registry
from polymodal.cli import build_parser

pytest.importorskip(
    "mkdocs", reason="mkdocs is not installed (the 'docs' extra: pip install 'polymodal[docs]')"
)
pytest.importorskip("material", reason="mkdocs-material is not installed (the 'docs' extra)")

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("tokenizer", "encoder", "head", "data source")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, (
        f"mkdocs build --strict failed:\n{build.stdout[-3000:]}\n{build.stderr[-6000:]}"
    )
    return out


def page(site: Path, name: str) -> str:
    return (site / name).read_text(encoding="utf-8")


def test_every_page_is_built(site: Path) -> None:
    built = {str(p.relative_to(site)) for p in site.rglob("*.html")}
    pages = {str(p.relative_to(ROOT / "docs").with_suffix(".html")) for p in (ROOT / "docs").rglob("*.md")}
    assert pages <= built
    assert {"index.html", "concepts.html", "plugins.html", "configs.html", "cli.html"} <= pages
    assert len([p for p in built if p.startswith("modalities/")]) == 12


def test_config_reference_lists_every_registered_component(site: Path) -> None:
    text = page(site, "configs.html")
    headings = set(re.findall(r"<h3 id=\"[^\"]*\"><code>([a-z0-9_]+)</code>", text))
    for kind in KINDS:
        names = set(registry.list_names(kind))
        assert names and names <= headings, f"{kind}: missing from configs.html: {sorted(names - headings)}"
    assert "ModelConfig" in text
    # a field of a config, with its type, default, constraint and description, from the JSON schema
    row = re.search(
        r"<td><code>patch_size</code></td>\s*<td><code>int</code></td>\s*<td><code>16</code></td>\s*<td>&gt; 0</td>",
        text,
    )
    assert row, "the image tokenizer's patch_size row is missing"


def test_cli_reference_lists_every_subcommand(site: Path) -> None:
    text = html.unescape(page(site, "cli.html"))
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {"list", "info", "train", "eval"} <= set(sub.choices)
    for name, parser in sub.choices.items():
        assert f"usage: polymodal {name}" in text, name
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text, f"polymodal {name} {flag}"


def test_included_sections_and_no_network(site: Path) -> None:
    plugins = html.unescape(re.sub(r"<[^>]+>", "", page(site, "plugins.html")))
    assert "def polymodal_components() -> list[type]:" in plugins  # from examples/polymodal-eeg
    assert "class EegTokenizerConfig(TokenizerConfig):" in plugins
    assert "--8<--" not in plugins
    index = html.unescape(re.sub(r"<[^>]+>", "", page(site, "index.html")))
    assert "nodule_phantoms" in index and "make demo" in index  # README sections
    for path in site.rglob("*.html"):
        assert "fonts.googleapis" not in path.read_text(encoding="utf-8"), path


def test_api_reference_is_generated_from_docstrings(site: Path) -> None:
    text = page(site, "api.html")
    for name in (
        "polymodal.model.build_model",
        "polymodal.train.fit.fit",
        "polymodal.core.tokenizer.Tokenizer.read_file",
        "polymodal.testing.check_head",
    ):
        assert f'id="{name}"' in text, name
    assert "Tokenizer settings implied by a dataset" in html.unescape(text)  # a docstring's own words


def test_figures_are_on_the_site(site: Path) -> None:
    assert 'src="figures/demo.png"' in page(site, "index.html")
    assert 'src="figures/packing.png"' in page(site, "concepts.html")
    assert (site / "figures" / "packing.png").stat().st_size > 10_000
