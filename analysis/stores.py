"""Where MLflow stores live, without importing MLflow: the embedded default is sqlite beside the results, with
artifacts beside it; a tracking server (http://...) decides for itself."""

from __future__ import annotations

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
