"""Where MLflow stores live, without importing MLflow: the embedded default is sqlite beside the results, with
artifacts beside it; a tracking server (http://...) decides for itself. Beside a sqlite store, indexes of what
`samat frontier list` and `show` print, and where a closed sweep's export table is, each valid only for the
database as it was read: while it is current, those commands need no MLflow (its import and store set-up are ~3 s
of a 5 s `show` on 10,000 trials)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

from analysis.trials import LISTED_STOPPED, SweepRecord, SweepSummary, TrialRow
from trainables.usage import UsageError

FRONT_TABLE, TRIALS_TABLE = "front/front.parquet", "trials/trials.parquet"  # parent artifacts: export rows
CLOSED = ("finished", "interrupted")  # a sweep's status once closed (its export tables written)
SQLITE_HEADER = 28  # bytes of a sqlite file's header up to its file change counter (sqlite.org/fileformat.html)


class TrackingError(UsageError):
    """The tracking store cannot be reached or does not hold what was asked for."""


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
    the database, so that listing needs no MLflow."""
    database = sqlite_database(tracking_uri)
    return database and database.with_name(database.name + ".samat-sweeps.json")


def front_index(tracking_uri: str, name: str) -> Path | None:
    """For a sqlite store, the file beside the database that holds what `samat frontier show NAME` prints; None for
    a name that is not a plain file name."""
    database = sqlite_database(tracking_uri)
    if not database or Path(name).name != name or name.startswith("."):
        return None
    return database.with_name(database.name + ".samat-fronts") / f"{name}.json"


def sqlite_database(tracking_uri: str) -> Path | None:
    return Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///") else None


def database_version(tracking_uri: str) -> str | None:
    """The sqlite database's modification time (ns) and its header's file change counter: any write to it changes
    them (the counter also when two writes fall within one tick of the file system's clock)."""
    database = sqlite_database(tracking_uri)
    if database is None:
        return None
    try:
        with open(database, "rb") as file:
            counter = int.from_bytes(file.read(SQLITE_HEADER)[24:], "big")
            return f"{os.fstat(file.fileno()).st_mtime_ns}:{counter}"
    except OSError:
        return None


def read_index(path: Path | None, tracking_uri: str) -> dict | None:
    """The index at `path`, if it was taken from the database as it is now; else None (read MLflow)."""
    try:
        index = json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("database_version") != database_version(tracking_uri):
        return None
    return index


def write_index(path: Path | None, tracking_uri: str, content: dict, version: str | None) -> None:
    """Keep `content`, read from the database at `version`, unless it was written since (then the index would be
    stale as soon as written); replaced atomically, so a reader never sees half of it."""
    if path is None or version is None or database_version(tracking_uri) != version:
        return
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # its own: processes may write at once
    try:
        path.parent.mkdir(exist_ok=True)
        temporary.write_text(json.dumps({"database_version": version, **content}))
        os.replace(temporary, path)
    except OSError:  # a read-only folder: the commands still work, through MLflow
        temporary.unlink(missing_ok=True)


def read_sweep_index(tracking_uri: str) -> list[dict] | None:
    """The listed sweeps, if the index was taken from the database as it is now; else None (read MLflow)."""
    index = read_index(sweep_index(tracking_uri), tracking_uri)
    return None if index is None else index["sweeps"]


def write_sweep_index(tracking_uri: str, sweeps: list[dict], version: str | None) -> None:
    write_index(sweep_index(tracking_uri), tracking_uri, {"sweeps": sweeps}, version)


def write_front_index(
    tracking_uri: str, record: SweepRecord, summary: SweepSummary, artifact_uri: str, version: str | None
) -> None:
    """Keep what `samat frontier show` prints of the sweep, read from the database at `version`: its front rows
    with their reseeds, its stopped rows where they are few enough to be named, its summary; and where its
    parent run's artifacts are (see kept_table)."""
    shown = [r for r in record.rows if r.rank == 1 or (r.status == "stopped" and summary.stopped <= LISTED_STOPPED)]
    content = {
        "record": dataclasses.asdict(dataclasses.replace(record, rows=shown)),
        "summary": dataclasses.asdict(summary),
        "artifact_uri": artifact_uri,
    }
    write_index(front_index(tracking_uri, record.name), tracking_uri, content, version)


def read_front_index(tracking_uri: str, name: str) -> tuple[SweepRecord, SweepSummary] | None:
    """The sweep's front record and summary as `SweepStore.load_front` reads them, if the index was taken from the
    database as it is now; else None (read MLflow)."""
    index = read_index(front_index(tracking_uri, name), tracking_uri)
    if index is None:
        return None
    try:
        record = index["record"]
        rows = [exactly(TrialRow, row) for row in record["rows"]]
        reseeds = {trial: [exactly(TrialRow, row) for row in runs] for trial, runs in record["reseeds"].items()}
        return exactly(SweepRecord, record, rows=rows, reseeds=reseeds), exactly(SweepSummary, index["summary"])
    except (KeyError, TypeError, ValueError, AttributeError):  # another samat's index: MLflow decides
        return None


def exactly(cls, values: dict, **replaced):
    """The dataclass `cls` from `values` holding exactly its fields: an index written by a samat whose fields
    differ is not read (a field it lacked would silently take its default)."""
    if set(values) != {f.name for f in dataclasses.fields(cls)}:
        raise ValueError(f"the index's {cls.__name__} has other fields")
    return cls(**(values | replaced))


def kept_table(tracking_uri: str, name: str, front_only: bool) -> Path | None:
    """A closed sweep's export table (`front/front.parquet` or `trials/trials.parquet`) in its sqlite store's own
    artifact folder, read with no MLflow: only while the front index is current (the database has not changed
    since the sweep was closed and read, so neither have its artifacts: samat writes them only with the database)
    and says the sweep is closed, and the artifacts are a local folder. Else None (ask MLflow)."""
    index = read_index(front_index(tracking_uri, name), tracking_uri)
    if index is None:
        return None
    try:
        closed, location = index["record"]["status"] in CLOSED, urllib.parse.urlparse(index["artifact_uri"])
    except (KeyError, TypeError, ValueError):  # another samat's index
        return None
    if not closed or location.scheme != "file" or location.netloc not in ("", "localhost"):
        return None
    path = Path(urllib.request.url2pathname(location.path)) / (FRONT_TABLE if front_only else TRIALS_TABLE)
    return path if path.is_absolute() and path.is_file() else None
