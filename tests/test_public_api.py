"""The lazy public face of ``polymodal``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import polymodal


def test_every_listed_name_resolves() -> None:
    for name in polymodal.__all__:
        assert getattr(polymodal, name) is not None, name


def test_subpackages_are_attributes_after_a_plain_import() -> None:
    code = "import polymodal, sys; assert 'polymodal.data' not in sys.modules; print(polymodal.data.from_folder.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "from_folder"
    assert {"data", "testing", "train"} <= set(dir(polymodal))


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        polymodal.nope  # noqa: B018
