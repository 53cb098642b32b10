"""Where a sweep lives: its name (never reusing an earlier sweep's folder), its Ray results and its Optuna study,
decided before anything is written or started, in the results location `trainables.settings` resolves."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from trainables.settings import is_uri
from trainables.usage import UsageError

OPTUNA_FILE = "optuna.db"


class SweepRefused(UsageError):
    """The sweep cannot start as asked (nothing to resume, a name taken, no place to record); nothing was
    written or started."""


@dataclass(frozen=True)
class SweepPlace:
    name: str
    storage_root: str  # Ray's storage_path: a local folder (absolute) or a shared URI (s3://...)
    study_dir: Path  # the Optuna study's folder: beside local results; with remote results, on the driver's disk

    @property
    def remote(self) -> bool:
        return is_uri(self.storage_root)

    @property
    def experiment_path(self) -> str:
        return f"{self.storage_root}/{self.name}"

    @property
    def optuna_storage(self) -> str:
        """An RDB URL for optuna.load_study and optuna-dashboard."""
        return f"sqlite:///{self.study_dir / OPTUNA_FILE}"


def place_sweep(spec_name: str, results_dir: str | Path, name: str | None, resume: bool) -> SweepPlace:
    """Name the sweep and find its folders: a new sweep gets the first free name (`quick`, `quick-2`, ...), a
    resumed one the latest of its spec unless named."""
    root = str(results_dir).rstrip("/")
    remote = is_uri(root)
    local = None if remote else Path(root).expanduser().resolve()
    if resume:
        name = name or (None if remote else latest_name(local, spec_name)) or spec_name
    else:
        name = name or (spec_name if remote else next_free_name(local, spec_name))
    return SweepPlace(
        name, root if remote else str(local), Path.home() / ".samat" / "optuna" / name if remote else local / name
    )


def next_free_name(results: Path, name: str) -> str:
    """`quick`, then `quick-2`, `quick-3`...: a new sweep never writes into an earlier one's folder."""
    if not (results / name).exists():
        return name
    taken = [int(m[1]) for p in results.iterdir() if (m := re.fullmatch(re.escape(name) + r"-(\d+)", p.name))]
    return f"{name}-{max(taken, default=1) + 1}"


def latest_name(results: Path, name: str) -> str | None:
    """The most recent sweep of this spec in `results` (for --resume without --name)."""
    pattern = re.escape(name) + r"(-\d+)?"
    candidates = [p for p in results.glob(f"{name}*") if p.is_dir() and re.fullmatch(pattern, p.name)]
    return max(candidates, key=lambda p: p.stat().st_mtime).name if candidates else None
