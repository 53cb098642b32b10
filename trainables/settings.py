"""Where samat reads and writes, worked out in one place for every command: the results folder, the MLflow
tracking store and the data root, each from its flag, else its environment variable, else the embedded default.

    setting        flag              environment            default
    results        --results         SAMAT_RESULTS          results (a folder here, or a shared URI: s3://...)
    tracking URI   --tracking-uri    MLFLOW_TRACKING_URI    sqlite:///<results>/mlflow.db (local results only)
    data root      --data-dir        SAMAT_DATA_ROOT        the current folder (a relative data folder is taken
                                                            against it: trials run in folders of their own)

Pure Python (no torch, no MLflow): `samat --help` and `samat frontier list` stay quick."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainables.usage import UsageError

RESULTS_ENV, TRACKING_ENV, DATA_ROOT_ENV = "SAMAT_RESULTS", "MLFLOW_TRACKING_URI", "SAMAT_DATA_ROOT"
DEFAULT_RESULTS = "results"
DATABASE = "mlflow.db"


class SettingsError(UsageError):
    """A combination of settings that cannot work; the message names the flag and what to give instead."""


def is_uri(location: str) -> bool:
    return "://" in location


def results_location(given: str | Path | None = None) -> str:
    """The results folder (absolute) or shared URI: --results, else SAMAT_RESULTS, else ./results."""
    location = str(given or os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS).rstrip("/") or "/"
    return location if is_uri(location) else str(Path(location).expanduser().resolve())


def local_tracking_uri(results: str | Path) -> str:
    """The embedded default store: sqlite in the local results folder."""
    return f"sqlite:///{Path(results).expanduser().resolve() / DATABASE}"


def tracking_uri(given: str | None = None, results: str | Path | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the sqlite store in the local results folder."""
    uri = given or os.environ.get(TRACKING_ENV)
    if uri:
        return uri
    results = results_location(results)
    if is_uri(results):
        raise SettingsError(
            f"--tracking-uri: results at {results} are remote, so the sweep's MLflow store cannot default to sqlite "
            f"beside them: give an MLflow tracking URI (--tracking-uri or {TRACKING_ENV})"
        )
    return local_tracking_uri(results)


def data_dir(given: str | Path) -> str:
    """A data folder as an absolute path: a relative one against SAMAT_DATA_ROOT where set (a cluster's nodes each
    hold the data there), else against the current folder."""
    path = Path(given).expanduser()
    if path.is_absolute():
        return str(path)
    return str(Path(os.environ.get(DATA_ROOT_ENV) or Path.cwd()).expanduser().resolve() / path)


def data_folders(data_dir_given: str | Path, corruption_dir: str | Path | None) -> dict[str, str]:
    """A run's data folders, absolute (see data_dir): `data_dir`, and `corruption_dir` where given."""
    folders = {"data_dir": data_dir(data_dir_given)}
    if corruption_dir:
        folders["corruption_dir"] = data_dir(corruption_dir)
    return folders


@dataclass(frozen=True)
class Settings:
    """The places one command works with, resolved once from its flags and the environment."""

    results: str  # an absolute folder, or a shared URI
    tracking_uri: str
    results_from: str | None = "--results"  # the flag or variable that named the results folder; None: the default

    @classmethod
    def resolve(cls, results: str | Path | None = None, tracking: str | None = None) -> Settings:
        location = results_location(results)
        origin = "--results" if results else RESULTS_ENV if os.environ.get(RESULTS_ENV) else None
        return cls(location, tracking_uri(tracking, location), origin)

    @property
    def results_named(self) -> str:
        """The results folder as the user gave it (`--results=DIR`, `SAMAT_RESULTS=DIR`, or the default), so a
        message names the setting to change."""
        return (
            f"{self.results_from}={self.results}" if self.results_from else f"the default results folder {self.results}"
        )

    @property
    def remote_results(self) -> bool:
        return is_uri(self.results)
