"""Text files: one ``.txt`` file holds one sample.

Shapes: one file -> ``str`` (decoded, surrounding whitespace stripped), the raw form
:meth:`TextTokenizer.preprocess <polymodal.plugins.text.TextTokenizer.preprocess>` takes.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TEXT_EXTENSIONS", "read_text"]

#: Suffixes of the text files ``polymodal.data.from_folder`` takes by default.
TEXT_EXTENSIONS = (".txt",)


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The text of one file (one sample), decoded with ``encoding``; surrounding whitespace stripped."""
    return Path(path).read_text(encoding=encoding).strip()
