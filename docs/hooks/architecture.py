"""MkDocs hook: the architecture page's tables, generated at build time from the code, so they list exactly the
modules that exist and the contracts `uv run lint-imports` checks.

- `<!-- modules: PACKAGE -->` becomes a table of the package's modules, each with the first sentence of its
  docstring (read without importing it); a module without a docstring fails the build.
- `<!-- contracts -->` becomes a table of pyproject.toml's [tool.importlinter] contracts: each one's name, what it
  requires and why. The why comes from WHY below; a contract without one, or a why for a contract pyproject.toml no
  longer has, fails the build."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: pytest brings tomli into the dev environment
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
CONTRACTS_MARKER = "<!-- contracts -->"
MODULES_MARKER = re.compile(r"^<!-- modules: (\w+) -->$", re.MULTILINE)
SENTENCE_END = re.compile(r"(?<!\bal)\.(\s|$)")  # a full stop, not the one of "et al."

WHY = {
    "Layers: sweeps above analysis above trainables": "the training core runs wherever torch does (a trial "
    "process, `samat train`, a benchmark on a bare GPU image), and the records can be read without Ray",
    "Sweep layer: command, runner, Tune parts, search space, spec": "the spec and the search space are plain data "
    "any part can use; every private part of Ray sits in one module under everything that calls Tune",
    "Analysis: the command above the records, plots and exports, above the rows and numbers": "the numbers (ranks, "
    "hypervolume) and the typed rows know nothing of MLflow or plotting",
    "The training core runs with torch alone": "a trial's work runs and is tested without a cluster or a store",
    "Vocabulary, CLI plumbing, configs and fronts import no torch": "`samat --help`, spec validation and every "
    "`samat frontier` read start without torch's seconds of import",
    "Training core: command, run loop, evaluation, step/data/models, config, vocabulary and plumbing": "each part "
    "of a run uses only the parts below it",
    "No import cycles among the modules of any package": "every module can be read, tested and imported on its own",
}


def modules(names: list[str]) -> str:
    return ", ".join(f"`{name.strip()}`" for name in names)


def requirement(contract: dict) -> str:
    """What a contract requires, in words: layers top to bottom, forbidden imports, or no cycles."""
    kind = contract["type"]
    if kind == "layers":
        return "top to bottom, each imports only those below it: " + " → ".join(
            modules(layer.split("|")) for layer in contract["layers"]
        )
    if kind == "forbidden":
        return f"{modules(contract['source_modules'])} may not import {modules(contract['forbidden_modules'])}"
    if kind == "acyclic_siblings":
        return f"no cycles among the modules of each of {modules(contract['ancestors'])}"
    raise PluginError(f"docs/hooks/contracts.py: no words for an import-linter contract of type {kind!r}")


def contracts_table() -> str:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    names = [c["name"] for c in contracts]
    missing = [n for n in names if n not in WHY]
    stale = [n for n in WHY if n not in names]
    if missing or stale:
        raise PluginError(
            "docs/hooks/contracts.py: "
            + "; ".join(
                [*(f"no why for the contract {n!r}" for n in missing), *(f"no contract {n!r} any more" for n in stale)]
            )
        )
    rows = ["| contract | what it requires | why |", "|---|---|---|"]
    rows += [f"| {c['name']} | {requirement(c)} | {WHY[c['name']]} |" for c in contracts]
    return "\n".join(rows)


def first_sentence(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    if not docstring:
        raise PluginError(f"{path.relative_to(ROOT)}: no module docstring to describe it by")
    paragraph = " ".join(docstring.split("\n\n")[0].split())
    end = SENTENCE_END.search(paragraph)
    return paragraph[: end.start() + 1] if end else paragraph


def modules_table(package: str) -> str:
    folder = ROOT / package
    if not (folder / "__init__.py").is_file():
        raise PluginError(f"<!-- modules: {package} -->: no package {package} in {ROOT}")
    rows = ["| module | what |", "|---|---|"]
    for path in sorted(folder.glob("*.py")):
        if path.name != "__init__.py":
            what = first_sentence(path).replace("|", "\\|")  # a pipe in a docstring is no column
            rows.append(f"| `{package}/{path.name}` | {what} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = MODULES_MARKER.sub(lambda match: modules_table(match[1]), markdown)
    return markdown.replace(CONTRACTS_MARKER, contracts_table()) if CONTRACTS_MARKER in markdown else markdown
