"""Plugin discovery through installed entry points: found, blocked, isolated when broken.

A throwaway distribution ``polymodal-fake-plugins`` is built and pip-installed into a temp folder; discovery
then runs in a fresh interpreter with that folder on ``PYTHONPATH``, exactly as for a user's installed plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import polymodal
from polymodal.registry import plugins

GOOD = '''
from typing import ClassVar
import torch
from polymodal import Tokenizer, TokenizerConfig, Tokens, hookimpl

class FakeConfig(TokenizerConfig):
    type: str = "fake_signal"

class FakeTokenizer(Tokenizer):
    """A third-party tokenizer: one token per value."""
    name: ClassVar[str] = "fake_signal"
    config_class = FakeConfig
    def __init__(self, config=None):
        super().__init__(config)
        self.proj = torch.nn.Linear(1, self.embed_dim)
    def forward(self, batch):
        if not isinstance(batch, torch.Tensor) or batch.dim() != 2:
            raise self.fail("a tensor (B, L)", batch)
        return Tokens.full(self.proj(batch[..., None]), self.modality)
    def example_input(self, batch_size=2, generator=None):
        return torch.randn(batch_size, 5, generator=generator)

@hookimpl
def polymodal_components():
    return [FakeTokenizer]
'''

BROKEN = "raise RuntimeError('boom at import')\n"

GARBAGE = """
from polymodal import hookimpl

@hookimpl
def polymodal_components():
    return ["not a class", 3]
"""

DUPLICATE = """
from typing import ClassVar
from polymodal import Tokenizer, TokenizerConfig, hookimpl

class ImageAgain(Tokenizer):
    name: ClassVar[str] = "image"
    config_class = TokenizerConfig

@hookimpl
def polymodal_components():
    return [ImageAgain]
"""

EXITS = "import sys\nsys.exit(3)\n"

RETURNS_NONE = """
from polymodal import hookimpl

@hookimpl
def polymodal_components():
    return None
"""

PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "polymodal-fake-plugins"
version = "0.3.1"

[project.entry-points."polymodal.plugins"]
fake = "fake_good"
fake_broken = "fake_broken"
fake_garbage = "fake_garbage"
fake_duplicate = "fake_duplicate"
fake_exit = "fake_exit"
fake_none = "fake_none"
image = "fake_image"

[tool.setuptools]
py-modules = ["fake_good", "fake_broken", "fake_garbage", "fake_duplicate", "fake_exit", "fake_none", "fake_image"]
"""

PROBE = """
import json, warnings
import polymodal
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    infos = {p.name: p.__dict__ for p in polymodal.list_plugins()}
print(json.dumps({
    "plugins": infos,
    "tokenizers": polymodal.list_tokenizers(),
    "warnings": [str(w.message) for w in caught],
}))
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("fake_src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    for module, text in [
        ("fake_good", GOOD),
        ("fake_broken", BROKEN),
        ("fake_garbage", GARBAGE),
        ("fake_duplicate", DUPLICATE),
        ("fake_exit", EXITS),
        ("fake_none", RETURNS_NONE),
        ("fake_image", GOOD.replace("fake_signal", "image_impostor")),
    ]:
        (src / f"{module}.py").write_text(textwrap.dedent(text))
    target = tmp_path_factory.mktemp("fake_site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    assert list(target.glob("polymodal_fake_plugins-0.3.1.dist-info/entry_points.txt"))
    return target


def discover(site: Path, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("POLYMODAL_")}
    environ["PYTHONPATH"] = os.pathsep.join([str(site), environ.get("PYTHONPATH", "")])
    environ.update(env)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_installed_plugin_is_discovered_and_usable(site: Path) -> None:
    result = discover(site)
    fake = result["plugins"]["fake"]
    assert fake["status"] == "loaded"
    assert fake["distribution"] == "polymodal-fake-plugins" and fake["version"] == "0.3.1"
    assert fake["entry_point"] == "fake = fake_good"
    assert fake["components"] == ["fake_signal"]
    assert "fake_signal" in result["tokenizers"]
    assert result["plugins"]["image"]["status"] == "loaded"


def test_broken_plugins_are_reported_and_isolated(site: Path) -> None:
    result = discover(site)
    infos = result["plugins"]
    broken = infos["fake_broken"]
    assert broken["status"] == "failed"
    assert broken["error"] == "importing fake_broken raised RuntimeError: boom at import"
    garbage = infos["fake_garbage"]
    assert garbage["status"] == "failed"
    assert (
        "expected a Tokenizer, Encoder, Head, DataSource or Metric subclass, got 'not a class'"
        in garbage["error"]
    )
    dup = infos["fake_duplicate"]
    assert dup["status"] == "failed"
    assert dup["error"] == "tokenizer name 'image' is reserved by polymodal's built-in plugin 'image'"
    exits = infos["fake_exit"]  # sys.exit in a plugin's import ends nothing
    assert exits["status"] == "failed" and exits["error"] == "importing fake_exit raised SystemExit: 3"
    none = infos["fake_none"]
    assert none["status"] == "failed" and "must return a list of classes, got NoneType" in none["error"]
    # the failing plugins registered nothing; the good ones work
    assert infos["fake"]["status"] == "loaded" and "fake_signal" in result["tokenizers"]
    warning = next(w for w in result["warnings"] if "'fake_broken'" in w)
    assert "entry point 'fake_broken = fake_broken' of distribution polymodal-fake-plugins 0.3.1" in warning
    assert "POLYMODAL_BLOCK_PLUGINS=fake_broken or POLYMODAL_BLOCK_PLUGINS=polymodal-fake-plugins" in warning


def test_a_third_party_never_takes_a_builtin_name(site: Path) -> None:
    result = discover(site)
    impostor = result["plugins"]["image (polymodal-fake-plugins)"]
    assert impostor["status"] == "failed" and "image_impostor" not in result["tokenizers"]
    assert impostor["error"] == "the name 'image' is already taken by polymodal's built-in plugin"
    assert result["plugins"]["image"]["status"] == "loaded"
    # the hint names the distribution, never the clashing name (which would block the built-in)
    warning = next(w for w in result["warnings"] if "'image'" in w and "fake_image" in w)
    assert "POLYMODAL_BLOCK_PLUGINS=polymodal-fake-plugins" in warning
    assert "POLYMODAL_BLOCK_PLUGINS=image" not in warning
    # blocking the built-in does not free its names
    blocked = discover(site, POLYMODAL_BLOCK_PLUGINS="image")
    assert blocked["plugins"]["image"]["status"] == "blocked"
    assert blocked["plugins"]["image (polymodal-fake-plugins)"]["status"] == "failed"
    dup = blocked["plugins"]["fake_duplicate"]
    assert (
        dup["status"] == "failed"
        and "reserved by polymodal's built-in plugin 'image' (blocked)" in dup["error"]
    )
    assert "image" not in blocked["tokenizers"]


def test_blocked_by_distribution_and_unknown_names_warn(site: Path) -> None:
    result = discover(site, POLYMODAL_BLOCK_PLUGINS="polymodal-fake-plugins,imgae")
    infos = result["plugins"]
    fakes = [i for i in infos.values() if i["distribution"] == "polymodal-fake-plugins"]
    assert len(fakes) == 7 and {i["status"] for i in fakes} == {"blocked"}
    assert infos["image"]["status"] == "loaded"  # a third party's name never blocks a built-in
    (warning,) = result["warnings"]
    assert "POLYMODAL_BLOCK_PLUGINS names 'imgae', which no installed plugin has" in warning


def test_cli_exits_nonzero_when_no_plugin_loads(site: Path) -> None:
    builtins = [p.name for p in polymodal.list_plugins() if p.distribution == "polymodal"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("POLYMODAL_")}
    environ["PYTHONPATH"] = os.pathsep.join([str(site), environ.get("PYTHONPATH", "")])
    environ["POLYMODAL_BLOCK_PLUGINS"] = ",".join([*builtins, "fake"])  # what is left fails
    out = subprocess.run(
        [sys.executable, "-m", "polymodal.cli", "list", "modalities"],
        env=environ,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1, out
    assert (
        "polymodal: no modalities registered: 6 plugin(s) failed to load, the first 'fake_broken'"
        in out.stderr
    )


def test_blocked_plugins_are_not_imported(site: Path) -> None:
    result = discover(
        site, POLYMODAL_BLOCK_PLUGINS="fake, fake_broken,fake_garbage,fake_duplicate,fake_exit,fake_none"
    )
    infos = result["plugins"]
    names = ("fake", "fake_broken", "fake_garbage", "fake_duplicate", "fake_exit", "fake_none")
    assert {infos[n]["status"] for n in names} == {"blocked"}
    assert "fake_signal" not in result["tokenizers"]
    assert not [
        w for w in result["warnings"] if "fake" in w and "fake_image" not in w
    ]  # (the impostor fails)


def test_autoload_disabled_loads_only_builtins(site: Path) -> None:
    result = discover(site, POLYMODAL_DISABLE_PLUGIN_AUTOLOAD="1")
    infos = result["plugins"]
    assert infos["fake"]["status"] == "not autoloaded"
    assert infos["fake_broken"]["status"] == "not autoloaded"
    assert infos["image"]["status"] == "loaded" and infos["core"]["status"] == "loaded"
    assert "fake_signal" not in result["tokenizers"] and "image" in result["tokenizers"]
    assert not result["warnings"]  # third parties are neither loaded nor warned about


def test_builtins_are_entry_points_of_polymodal() -> None:
    infos = {p.name: p for p in polymodal.list_plugins()}
    assert infos["image"].entry_point == "image = polymodal.plugins.image"
    assert infos["image"].distribution == "polymodal"
    assert infos["core"].components[:5] == ["vit", "vit_tiny", "vit_small", "vit_base", "vit_large"]


def test_load_plugin_object_without_installing() -> None:
    import types

    from polymodal.registry import tables

    module = types.ModuleType("notebook_plugin")
    exec(textwrap.dedent(GOOD).replace("fake_signal", "nb_signal"), module.__dict__)
    try:
        info = polymodal.load_plugin(module, name="notebook")
        assert info.status == "loaded" and info.components == ["nb_signal"]
        assert polymodal.get("tokenizer", "nb_signal").__name__ == "FakeTokenizer"
        from polymodal.testing import check_tokenizer

        check_tokenizer("nb_signal")
    finally:
        tables.unregister("tokenizer", "nb_signal")
        plugins._state.pm.unregister(name="notebook")
        plugins._state.infos.pop("notebook", None)


def test_load_plugin_with_garbage_raises() -> None:
    import types

    module = types.ModuleType("bad_plugin")
    exec(textwrap.dedent(GARBAGE), module.__dict__)
    with pytest.raises(
        RuntimeError, match="plugin 'bad' failed to load: InvalidComponentError: expected a Tokenizer"
    ):
        polymodal.load_plugin(module, name="bad")
    assert "bad" not in plugins.plugin_manager().list_name_plugin()[0]
