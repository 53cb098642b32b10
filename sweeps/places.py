"""Where a sweep lives: its name (never reusing an earlier sweep's folder), its Ray results, its Optuna study,
its MLflow store and its data folder, all decided before anything is written or started."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from analysis.stores import default_tracking_uri

OPTUNA_FILE = "optuna.db"


class SweepRefused(Exception):
    """The sweep cannot start as asked (nothing to resume, a name taken, no place to record); nothing was
    written or started."""


@dataclass(frozen=True)
class SweepPlace:
    name: str
    storage_root: str  # Ray's storage_path: a local folder (absolute) or a shared URI (s3://...)
    study_dir: Path  # the Optuna study's folder: beside local results; with remote results, on the driver's disk

    @property
    def remote(self) -> bool:
        return "://" in self.storage_root

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
    remote = "://" in root
    local = None if remote else Path(root).expanduser().resolve()
    if resume:
        name = name or (None if remote else latest_name(local, spec_name)) or spec_name
    else:
        name = name or (spec_name if remote else next_free_name(local, spec_name))
    place = SweepPlace(
        name, root if remote else str(local), Path.home() / ".samat" / "optuna" / name if remote else local / name
    )
    return place


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


def resolve_tracking_uri(tracking_uri: str | None, results_dir: str | Path) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else sqlite beside the local results (the embedded default)."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    if "://" in str(results_dir):
        raise SweepRefused(
            f"results at {results_dir} are remote: give an MLflow tracking URI too "
            f"(--tracking-uri or MLFLOW_TRACKING_URI)"
        )
    return default_tracking_uri(results_dir)


def resolve_data_dir(data_dir: str) -> str:
    """Trials run in their own folders on any node, so a relative data_dir becomes absolute here: against
    SAMAT_DATA_ROOT where set (a cluster's nodes each hold the data there), else the driver's folder."""
    path = Path(data_dir).expanduser()
    if path.is_absolute():
        return str(path)
    return str(Path(os.environ.get("SAMAT_DATA_ROOT", Path.cwd())).expanduser() / path)
