"""MkDocs hook: field tables generated from the pydantic models at build time, so the docs cannot drift from the
code. A page line `<!-- fields: SweepSpec -->` becomes a table of every field of that model: name, type, default,
limits and description, from the field's own `Field(description=...)`; a field without one, or a marker naming
an unknown model, fails the build."""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path

import yaml
from mkdocs.exceptions import PluginError
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: sweeps/, trainables/

from sweeps.spec import Choice, Objective, PerNorm, Range, Resources, Scheduler, Search, SweepSpec  # noqa: E402
from trainables.config import TrainConfig  # noqa: E402

MODELS: dict[str, type[BaseModel]] = {
    m.__name__: m for m in (SweepSpec, TrainConfig, Objective, Search, Scheduler, Resources, Range, Choice, PerNorm)
}
MARKER = re.compile(r"^<!-- fields: (\w+) -->$", re.MULTILINE)
FIELDS_PAGE = "specs.md"  # where every model's table lives, so a nested model's name links to its section

SCALAR_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
LIMITS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "at least", "pattern": "matches"}


def type_name(annotation) -> str:
    """A type as a spec writer reads it: `"a" or "b"`, `list of ...`, `mapping of ... to ...`, nested models
    linked to their own table."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        if {bool, int, float, str} <= set(args):  # a Scalar: any constant
            rest = [a for a in args if a not in (bool, int, float, str)]
            return " or ".join([*(type_name(a) for a in rest), "a constant"])
        return " or ".join(type_name(a) for a in args)
    if origin in (list, tuple):
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}]({FIELDS_PAGE}#{annotation.__name__.lower()})"
    if annotation in SCALAR_TYPES:
        return SCALAR_TYPES[annotation]
    raise PluginError(f"docs/hooks/fields.py: no name for the type {annotation!r}")


def default_text(field) -> str:
    if field.default_factory is not None:
        return f"`{yaml_text(field.default_factory())}`"
    if field.default is PydanticUndefined:
        return "required"
    if isinstance(field.default, BaseModel):
        return "its fields' defaults"
    return f"`{yaml_text(field.default)}`"


def yaml_text(value) -> str:
    """A default as a spec would write it: `null`, `false`, `[]`, `0.0314`."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).removesuffix("\n...\n").strip()


def limits_text(field) -> str:
    found = []
    for constraint in field.metadata:
        for attribute, word in LIMITS.items():
            value = getattr(constraint, attribute, None)
            if value is not None:
                found.append(f"{word} `{value}`")
    return ", ".join(found)


def cell(text: str) -> str:
    """Text safe in a Markdown table cell: outside code spans, pipes, emphasis stars and tag brackets escaped."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # the even parts lie outside code spans
        parts[i] = parts[i].replace("|", "\\|").replace("*", "\\*").replace("<", "&lt;")
    return "`".join(parts)


def field_table(model_name: str) -> str:
    model = MODELS.get(model_name)
    if model is None:
        raise PluginError(f"<!-- fields: {model_name} -->: no such model (known: {', '.join(MODELS)})")
    rows = ["| field | type | default | limits | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        description = field.description
        if not description:
            raise PluginError(f"{model_name}.{name}: no description (give the field one in the model)")
        rows.append(
            f"| `{name}` | {type_name(field.annotation)} | {default_text(field)} | {limits_text(field)} | "
            f"{cell(description)} |"
        )
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return MARKER.sub(lambda match: field_table(match[1]), markdown)
