"""The documentation site builds with MkDocs in strict mode, so a dead link or anchor fails the suite, and its
generated tables list what the code has: every field of the spec models (docs/hooks/fields.py), every module and
every import contract (docs/hooks/architecture.py)."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, Field

from sweeps.spec import SweepSpec
from trainables.config import TrainConfig

ROOT = Path(__file__).parent.parent
HOOKS = ROOT / "docs" / "hooks"


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's notice about its successor, not a warning
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    result = mkdocs_build(ROOT / "mkdocs.yml", site)
    assert result.returncode == 0, result.stderr[-3000:]
    return site


def throwaway_site(tmp_path: Path, index: str) -> subprocess.CompletedProcess:
    """The project's own mkdocs.yml (strictness, validation, hooks), over a two-page docs folder whose index page
    is `index`."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text(index)
    (docs / "other.md").write_text("# Other\n\n## A section\n\nText.\n")
    config |= {"docs_dir": str(docs), "nav": [{"Home": "index.md"}, {"Other": "other.md"}]}
    config["hooks"] = [str(HOOKS / Path(hook).name) for hook in config["hooks"]]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config, allow_unicode=True))
    return mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")


def test_the_site_builds_in_strict_mode(site):
    assert (site / "index.html").is_file()
    assert (site / "specs" / "index.html").is_file()


def test_a_sound_throwaway_site_builds(tmp_path):
    """The reference case of the two below: the same pages with good links build."""
    result = throwaway_site(tmp_path, "# Home\n\nSee [the section](other.md#a-section).\n")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.parametrize(
    "link, complaint",
    [("missing.md", "missing.md"), ("other.md#no-such-section", "no-such-section")],
    ids=["dead link", "dead anchor"],
)
def test_a_dead_link_or_anchor_fails_the_build(tmp_path, link, complaint):
    result = throwaway_site(tmp_path, f"# Home\n\nSee [this]({link}).\n")
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr[-3000:]


def test_a_marker_naming_no_model_fails_the_build(tmp_path):
    result = throwaway_site(tmp_path, "# Home\n\n<!-- fields: NoSuchSpec -->\n")
    assert result.returncode != 0
    assert "NoSuchSpec" in result.stderr, result.stderr[-3000:]


def load_hook(name: str):
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", HOOKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_field_without_a_description_fails_the_hook():
    """Every field documents itself in its model; one that does not stops the build."""
    hook = load_hook("fields")

    class Undocumented(BaseModel):
        documented: int = Field(0, description="said")
        silent: int = 0

    hook.MODELS["Undocumented"] = Undocumented
    with pytest.raises(hook.PluginError, match=r"Undocumented\.silent: no description"):
        hook.field_table("Undocumented")


def table_fields(html: str, anchor: str) -> list[str]:
    """The first column's field names of the first table after the heading `anchor`."""
    after = html[html.index(f'id="{anchor}"') :]
    table = after[: after.index("</table>")]
    return re.findall(r"<tr>\s*<td><code>(\w+)</code></td>", table)


@pytest.mark.parametrize("model", [SweepSpec, TrainConfig], ids=lambda m: m.__name__)
def test_the_field_tables_list_every_field(site, model):
    html = (site / "specs" / "index.html").read_text()
    assert table_fields(html, model.__name__.lower()) == list(model.model_fields)


def test_the_architecture_page_lists_every_module(site):
    html = (site / "architecture" / "index.html").read_text()
    listed = set(re.findall(r"<td><code>(\w+/\w+\.py)</code></td>", html))
    modules = {
        f"{p.parent.name}/{p.name}" for pkg in ("trainables", "analysis", "sweeps") for p in (ROOT / pkg).glob("*.py")
    }
    assert listed == modules - {"trainables/__init__.py", "analysis/__init__.py", "sweeps/__init__.py"}


def test_the_architecture_page_lists_every_import_contract(site):
    html = (site / "architecture" / "index.html").read_text()
    hook = load_hook("architecture")  # its TOML reader, on Python 3.10 as on 3.11
    contracts = hook.tomllib.loads(hook.PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    assert contracts and all(f"<td>{c['name']}</td>" in html for c in contracts)


def test_a_contract_without_a_why_fails_the_hook(monkeypatch):
    hook = load_hook("architecture")
    name = next(iter(hook.WHY))
    monkeypatch.delitem(hook.WHY, name)
    with pytest.raises(hook.PluginError, match="no why for the contract"):
        hook.contracts_table()
