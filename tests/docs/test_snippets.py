"""Every ```python block of the documentation (``docs/*.md``, ``docs/**/*.md``) and of ``README.md`` runs.

One test per page. The blocks of a page run in page order in one fresh interpreter whose working directory is a
fresh temporary folder; each block is its own script (a new ``__main__`` module: it makes its own imports and sees
no variable of an earlier block), and a block may read the files an earlier block of the page wrote. Tracebacks
name the page and its line numbers. ``examples/polymodal-eeg`` is installed on the path, as after
``pip install ./examples/polymodal-eeg`` (docs/plugins.md uses it). A block that only includes source files
(``--8<-- "path:section"`` lines, pymdownx.snippets) is shown, not run: that source is tested where it lives; the
site build checks that the files and sections exist.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted({ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "docs").glob("**/*.md")})
PAGE_TIMEOUT_S = 300  # pages take a few seconds; the margin is for a loaded CI machine
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^\n]*)$")
INCLUDE = re.compile(r"^\s*--8<--")

# Runs the blocks of one page: reads [page, [[first_line, code], ...]] as JSON from stdin.
DRIVER = r"""
import json, sys, traceback, types
page, blocks = json.load(sys.stdin)
for line, code in blocks:
    print(f"[snippets] {page}:{line}", flush=True)
    module = types.ModuleType("__main__")
    module.__file__ = page
    sys.modules["__main__"] = module
    try:
        exec(compile("\n" * (line - 1) + code, page, "exec"), module.__dict__)
    except BaseException:
        traceback.print_exc()
        print(f"[snippets] FAILED {page}:{line}", flush=True)
        sys.exit(1)
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line of the block's first code line, code)`` of every ```python fence, in page order (1-based lines)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent = m["fence"], len(m["indent"])
        start, j = i + 1, i + 1
        while j < len(lines) and not re.match(rf"^ {{0,{indent}}}{fence[0]}{{{len(fence)},}}\s*$", lines[j]):
            j += 1
        language = m["info"].split()[0].lstrip(".{").rstrip("}") if m["info"].split() else ""
        body = [ln[indent:] for ln in lines[start:j]]
        if language in ("python", "py") and not all(INCLUDE.match(ln) or not ln.strip() for ln in body):
            blocks.append((start + 1, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def run_page(name: str, blocks: list[tuple[int, str]], cwd: Path, path: Sequence[str] = ()) -> str | None:
    """Run a page's blocks in one fresh interpreter in ``cwd`` (``path`` prepended to ``PYTHONPATH``); ``None`` if
    all ran, else what failed where: ``"docs/x.md:57: the python block failed"`` and the traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYMODAL_")}
    env["PYTHONPATH"] = os.pathsep.join([*path, env.get("PYTHONPATH", "")])
    env["MPLBACKEND"] = "Agg"
    try:
        out = subprocess.run(
            [sys.executable, "-c", DRIVER],
            input=json.dumps([name, blocks]),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=PAGE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        started = re.findall(r"\[snippets\] (\S+)", stdout)
        return f"{started[-1] if started else name}: the block did not finish within {PAGE_TIMEOUT_S} s"
    if out.returncode != 0:
        failed = re.findall(r"\[snippets\] FAILED (\S+)", out.stdout)
        where = failed[-1] if failed else name
        return f"{where}: the python block failed\n{out.stderr[-4000:]}\n{out.stdout[-2000:]}"
    return None


# Pages with at least one block to run, by name.
RUNNABLE = {
    str(p.relative_to(ROOT)): blocks
    for p in PAGES
    if (blocks := python_blocks(p.read_text(encoding="utf-8")))
}


def test_python_blocks_are_found() -> None:
    text = "# t\n\n```python\nx = 1\n```\n\n```bash\nls\n```\n\n````python\n```\ny = 2\n````\n"
    text += '```python\n--8<-- "a.py:b"\n```\n  ```py\n  z = 3\n  ```\n'
    assert python_blocks(text) == [(4, "x = 1\n"), (12, "```\ny = 2\n"), (19, "z = 3\n")]
    names = {str(p.relative_to(ROOT)) for p in PAGES}
    assert {"README.md", "docs/index.md", "docs/plugins.md", "docs/modalities/image.md"} <= names
    assert {"README.md", "docs/concepts.md", "docs/plugins.md", "docs/encoder.md"} <= set(RUNNABLE)


def test_blocks_are_scripts_sharing_a_folder(tmp_path: Path) -> None:
    page = "# p\n\n```python\nx = 41\nopen('x.txt', 'w').write(str(x + 1))\n```\n\n"
    page += "```python\nassert open('x.txt').read() == '42'\nassert __name__ == '__main__'\nprint(x)\n```\n"
    blocks = python_blocks(page)
    assert [line for line, _ in blocks] == [4, 9]
    problem = run_page("docs/p.md", blocks, tmp_path)
    assert problem is not None and problem.startswith("docs/p.md:9: the python block failed")
    assert 'File "docs/p.md", line 11' in problem and "NameError: name 'x' is not defined" in problem
    assert (tmp_path / "x.txt").read_text() == "42"
    assert run_page("docs/p.md", blocks[:1], tmp_path) is None


@pytest.mark.parametrize("name", sorted(RUNNABLE))
def test_page_runs(name: str, tmp_path: Path, example_plugin_site: Path) -> None:
    problem = run_page(name, RUNNABLE[name], tmp_path, [str(example_plugin_site)])
    if problem:
        pytest.fail(problem, pytrace=False)
