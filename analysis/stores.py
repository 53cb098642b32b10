"""Where MLflow stores live, without importing MLflow: the embedded default is sqlite beside the results, with
artifacts beside it; a tracking server (http://...) decides for itself."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path


class TrackingError(Exception):
    """The tracking store cannot be reached or does not hold what was asked for."""


def default_tracking_uri(results_dir: str | Path) -> str:
    return f"sqlite:///{Path(results_dir).expanduser().resolve() / 'mlflow.db'}"


def artifact_root(tracking_uri: str) -> str | None:
    """For a local sqlite store, keep artifacts beside the database (MLflow would use ./mlruns of wherever the
    command ran); a tracking server decides for itself."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


def set_quiet_mlflow_env() -> None:
    """MLflow's HTTP client retries a dead server for minutes; a sweep should learn that in seconds. And its
    set-up logging is quieted."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bar for spec.yaml's download
    # with a server URI, ending a run prints "🏃 View run ... / 🧪 View experiment ..." to stdout, in the middle
    # of samat's progress output; `samat sweep` prints the one link that matters (the front's page) at the end
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    for name in ("mlflow", "alembic"):  # "Creating initial MLflow database tables..." is noise on every new store
        logging.getLogger(name).setLevel(logging.WARNING)
    # a failed write to a sqlite store is logged with its whole traceback before it is raised; samat reports the
    # raised error in one line (a full disk stops the sweep and names its folder)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def sweep_index(tracking_uri: str) -> Path | None:
    """For a sqlite store, the file beside the database that holds `samat frontier list`'s rows as of one state of
    the database, so that listing needs no MLflow (its import and store set-up are ~2 s of a 3.5 s list)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    return database.with_name(database.name + ".samat-sweeps.json")


def database_version(tracking_uri: str) -> int | None:
    """The sqlite database's modification time (ns): any write to it changes it."""
    try:
        return Path(tracking_uri.removeprefix("sqlite:///")).stat().st_mtime_ns
    except OSError:
        return None


def read_sweep_index(tracking_uri: str) -> list[dict] | None:
    """The listed sweeps, if the index was taken from the database as it is now; else None (read MLflow)."""
    path = sweep_index(tracking_uri)
    try:
        index = json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        return None
    if not index or index.get("database_version") != database_version(tracking_uri):
        return None
    return index["sweeps"]


def write_sweep_index(tracking_uri: str, sweeps: list[dict], version: int | None) -> None:
    """Keep `sweeps`, read from the database at `version`, unless it was written since (then the index would be
    stale as soon as written); replaced atomically, so a reader never sees half of it."""
    path = sweep_index(tracking_uri)
    if path is None or version is None or database_version(tracking_uri) != version:
        return
    temporary = path.with_suffix(".tmp")
    try:
        temporary.write_text(json.dumps({"database_version": version, "sweeps": sweeps}))
        os.replace(temporary, path)
    except OSError:  # a read-only folder: listing still works, through MLflow
        temporary.unlink(missing_ok=True)
