"""The allowed import directions of docs/architecture.md, checked on every import statement of the package (module
level and inside functions alike), and no import cycles between modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import polymodal

ROOT = Path(polymodal.__file__).parent

# part -> the parts it may import (besides itself); a part is the first name below `polymodal`
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "registry": {"core"},
    "model": {"core", "registry"},
    "plugins": {"core", "registry", "data"},
    "data": {"core", "registry", "model"},
    "train": {"core", "registry", "model", "data", "configs"},
    "testing": {"core", "registry"},
    "demo": {"core", "registry", "model", "data", "train"},
    "cli": {"core", "registry", "model", "data", "train", "demo", "testing", "configs", "__init__"},
    "configs": set(),
    "__init__": {"core", "registry", "model", "data", "train", "testing"},
    "__main__": {"cli"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines |= set(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def _imports(path: Path, runtime_only: bool = False) -> list[tuple[int, str]]:
    """``(line, module)`` of every ``polymodal`` import in the file, submodules resolved (``from a import b`` where
    ``a.b`` is a module gives ``a.b``); with ``runtime_only``, without those under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree) if runtime_only else set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "polymodal"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], base]
                ).strip(".")
            if base.split(".")[0] != "polymodal":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = (ROOT.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                    ROOT.parent / Path(*sub.split(".")) / "__init__.py"
                ).is_file()
                out.append((node.lineno, sub if is_module else base))
    return out


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


FILES = sorted(ROOT.rglob("*.py"))


def test_every_part_is_known() -> None:
    assert {_part(_module_name(p)) for p in FILES} <= set(ALLOWED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_imports_go_only_in_the_allowed_directions(path: Path) -> None:
    here = _part(_module_name(path))
    wrong = [
        f"line {line}: {module}"
        for line, module in _imports(path)
        if _part(module) != here and _part(module) not in ALLOWED[here]
    ]
    assert not wrong, f"{here} may import only {sorted(ALLOWED[here])}: {wrong}"


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or through others (lazy imports count: they hide a cycle rather
    than remove it; imports for type checking only do not). A package's ``__init__`` re-exporting its own submodules
    is no edge back to itself."""
    graph: dict[str, set[str]] = {}
    for path in FILES:
        name = _module_name(path)
        is_package = path.name == "__init__.py"
        graph[name] = {
            m
            for _, m in _imports(path, runtime_only=True)
            if m != name
            and not (is_package and m.startswith(name + "."))
            and not (name.startswith(m + ".") and m.count(".") < 1)  # `import polymodal` for its lazy exports
        }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_checker_sees_a_wrong_direction(tmp_path: Path) -> None:
    """The rule itself: a core module importing the registry is reported (the checker is not vacuous)."""
    here = "core"
    bad = [(1, "polymodal.registry.lookup")]
    assert [m for _, m in bad if _part(m) != here and _part(m) not in ALLOWED[here]] == [
        "polymodal.registry.lookup"
    ]
    assert any(m.startswith("polymodal.core.") for _, m in _imports(ROOT / "registry" / "tables.py"))
