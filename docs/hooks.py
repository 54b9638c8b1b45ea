"""mkdocs hooks (``hooks:`` in mkdocs.yml): reference pages generated at build time, so they cannot drift.

A page holding ``<!-- polymodal:configs -->`` gets, in its place, one table per registered component (every
tokenizer, encoder, head and data source, plugins installed in the building environment included) built from its
pydantic config's ``model_json_schema()``, and one for ``ModelConfig``. A page holding ``<!-- polymodal:cli -->``
gets the help of ``polymodal`` and of every subcommand of ``polymodal.cli.build_parser()``. The navigation's
``Modalities`` section lists every page in ``docs/modalities/`` (a new modality's page needs no edit of
mkdocs.yml).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["cli_reference", "config_reference", "on_config", "on_page_markdown"]

CONFIGS_MARKER = "<!-- polymodal:configs -->"
CLI_MARKER = "<!-- polymodal:cli -->"
KINDS = (
    ("tokenizer", "Tokenizers"),
    ("encoder", "Encoders"),
    ("head", "Heads"),
    ("metric", "Metrics"),
    ("data source", "Data sources"),
)
MODALITIES_SECTION = "Modalities"
_CONSTRAINTS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "length ≥ {}"),
    ("maxLength", "length ≤ {}"),
    ("minItems", "≥ {} items"),
    ("maxItems", "≤ {} items"),
    ("minProperties", "≥ {} entries"),
    ("pattern", "matches `{}`"),
)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(schema: dict[str, Any]) -> str:
    """A JSON-schema type in Python's words: ``int``, ``'cls' | 'mean'``, ``tuple[int, int] | None``."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_type(s) for s in schema[key])
    kind = schema.get("type")
    if kind == "array":
        if "prefixItems" in schema:
            return f"tuple[{', '.join(_type(s) for s in schema['prefixItems'])}]"
        items = schema.get("items")
        if items and schema.get("maxItems") is None and schema.get("minItems") is None:
            return f"list[{_type(items)}]"
        return f"tuple[{_type(items)}, ...]" if items else "list"
    if kind == "object":
        values = schema.get("additionalProperties")
        return f"dict[str, {_type(values)}]" if isinstance(values, dict) else "dict"
    names = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "None"}
    return names.get(kind, "any")


def _constraints(schema: dict[str, Any]) -> str:
    found = [text.format(schema[key]) for key, text in _CONSTRAINTS if key in schema]
    for sub in schema.get("anyOf", ()):
        found += [text.format(sub[key]) for key, text in _CONSTRAINTS if key in sub]
    return ", ".join(found)


def _default(config_class: type, name: str, field: dict[str, Any]) -> str:
    if "default" in field:
        return f"`{json.dumps(field['default'])}`"
    value = config_class.model_fields[name].get_default(call_default_factory=True)  # a default_factory
    return f"`{json.dumps(getattr(value, 'type', value), default=str)}`"


def schema_table(config_class: type, skip: tuple[str, ...] = ("type",)) -> str:
    """A Markdown table of a config's fields from its JSON schema: name, type, default, constraints, description."""
    schema = config_class.model_json_schema()
    required = set(schema.get("required", ()))
    rows = ["| field | type | default | constraints | description |", "|---|---|---|---|---|"]
    for name, field in schema.get("properties", {}).items():
        if name in skip:
            continue
        default = "*required*" if name in required else _default(config_class, name, field)
        rows.append(
            f"| `{name}` | `{_cell(_type(field))}` | {_cell(default)} | {_cell(_constraints(field))} "
            f"| {_cell(field.get('description', ''))} |"
        )
    return "\n".join(rows) if len(rows) > 2 else "No fields besides `type`."


def config_reference() -> str:
    """The Markdown of every registered component's config, grouped by kind, then ``ModelConfig``."""
    from polymodal import ModelConfig, registry
    from polymodal.registry import tables

    parts = []
    for kind, title in KINDS:
        names = registry.list_names(kind)
        parts.append(f"## {title}\n\n{len(names)} registered: {', '.join(f'`{n}`' for n in names)}.\n")
        for name in names:
            cls = registry.get(kind, name)
            doc = (cls.__doc__ or "").strip().splitlines()
            source = tables.SOURCES.get((kind, name), f"{cls.__module__}.{cls.__qualname__}")
            extra = f" · modality `{cls.modality}`" if getattr(cls, "modality", "") else ""
            parts.append(
                f"### `{name}`\n\n{_cell(doc[0]) if doc else ''}\n\n"
                f"Config `{cls.config_class.__name__}` · from {_cell(source)}{extra}\n\n"
                f"{schema_table(cls.config_class)}\n"
            )
    parts.append(
        "## The model\n\n### `ModelConfig`\n\n"
        f"{_cell((ModelConfig.__doc__ or '').strip().split(chr(10) + chr(10))[0])}\n\n"
        f"{schema_table(ModelConfig, skip=())}\n"
    )
    return "\n".join(parts)


def cli_reference() -> str:
    """The help of ``polymodal`` and of each subcommand, in the parser's order, formatted 100 columns wide."""
    from polymodal.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; make the page independent of it
    try:
        parser = build_parser()
        parts = [f"```text\n{parser.format_help().rstrip()}\n```\n"]
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        helps = {a.dest: a.help for a in sub._choices_actions}
        for name, p in sub.choices.items():
            parts.append(
                f"## `polymodal {name}`\n\n{_cell(helps.get(name) or '')}\n\n```text\n{p.format_help().rstrip()}\n```\n"
            )
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(parts)


def on_config(config: Any, **kwargs: Any) -> Any:
    """Fill the nav's ``Modalities`` section with every page in ``docs/modalities/``, titled by its first heading."""
    folder = Path(config["docs_dir"]) / "modalities"
    pages = []
    for path in sorted(folder.glob("*.md")):
        first = next((ln for ln in path.read_text().splitlines() if ln.startswith("# ")), f"# {path.stem}")
        pages.append({first[2:].strip(): f"modalities/{path.name}"})
    for entry in config["nav"]:
        if isinstance(entry, dict) and MODALITIES_SECTION in entry:
            entry[MODALITIES_SECTION] = pages
    return config


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """mkdocs event: replace the markers of a page with the generated reference."""
    if CONFIGS_MARKER in markdown:
        markdown = markdown.replace(CONFIGS_MARKER, config_reference())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return markdown
