"""Two real processes on one sweep's kept writes (analysis/outbox.py), against a real sqlite MLflow store: drivers
that keep writing while another writes what is kept lose no write and create one run per trial, and `samat
frontier sync` refuses while a live driver owns the sweep, and not once that driver is killed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from analysis.outbox import PENDING_FILE, Outbox
from analysis.tracking import SweepStore
from sweeps.cli import main

EPOCHS = 3
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there
REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def store_errors_fail_at_once(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the unreachable store: refused, not retried


@pytest.fixture(scope="module")
def empty_database(tmp_path_factory) -> Path:
    """An MLflow sqlite database with its tables, made once (MLflow's migrations take seconds)."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    SweepStore(f"sqlite:///{path}").client.search_experiments()
    return path


def write_trials(outbox: Outbox, trials: list[str]) -> None:
    """What a driver writes of each trial: its run, EPOCHS epochs, its end."""
    for trial in trials:
        outbox.trial(trial, {"lr": 0.1}, {"method": "sgd", "lr": 0.1}, {})
        for epoch in range(1, EPOCHS + 1):
            outbox.epoch(trial, {"epoch": epoch, "clean_acc": epoch / 10}, epoch, {})
        outbox.finish(trial, "FINISHED", None)


def drive(uri: str, sweep: str, parent_run_id: str, pending: str, trials: list[str], folder: str) -> None:
    """A driver, in its own process: says it is ready, writes `trials` once `folder`/go exists, then what is left."""
    outbox = Outbox(uri, sweep, parent_run_id, pending)
    (Path(folder) / f"ready-{os.getpid()}").touch()
    while not (Path(folder) / "go").exists():
        time.sleep(0.005)
    write_trials(outbox, trials)
    while outbox.retry(now=True):
        time.sleep(0.1)


def hold(sweep: str, parent_run_id: str, pending: str, trials: list[str], folder: str) -> None:
    """A driver whose store never answers, in its own process: keeps every write of `trials`, then lives on."""
    outbox = Outbox(UNREACHABLE, sweep, parent_run_id, pending)
    write_trials(outbox, trials)
    (Path(folder) / "ready").touch()
    time.sleep(600)


def start(function: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", f"from tests.test_outbox_processes import {function}; {function}(*{args!r})"],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen, count: int = 1) -> None:
    deadline = time.monotonic() + 120
    while len(list(path.parent.glob(path.name))) < count:
        assert process.poll() is None, process.stdout.read()[-3000:]
        assert time.monotonic() < deadline, f"no {path} after 120 s"
        time.sleep(0.05)


def assert_one_finished_run_per_trial_with_every_epoch_once(uri: str, sweep: str, trials: list[str]) -> None:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(sweep)
    runs = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'trial'", max_results=1000)
    assert sorted(r.data.tags["ray_trial_id"] for r in runs) == sorted(trials)  # one run per trial, no more
    for run in runs:
        assert run.info.status == "FINISHED", run.data.tags["ray_trial_id"]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), (run.data.tags["ray_trial_id"], steps)


def new_sweep(tmp_path: Path, database: Path, name: str) -> tuple[str, str, Path]:
    """A sweep's parent run in a sqlite store, and where its driver keeps what the store does not take."""
    shutil.copy(database, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = SweepStore(uri).open_sweep(name, {"name": name}, {"clean_acc": "max"}, [0.0], str(tmp_path))
    return uri, parent, tmp_path / "results" / name / PENDING_FILE


def test_two_drivers_writing_while_each_writes_what_is_kept_lose_nothing_and_make_one_run_per_trial(
    tmp_path, empty_database
):
    """A driver that lost its store kept four trials; then two drivers (a sweep resumed and its reseed) start at
    once, each writing four trials of its own: each finds the kept writes, appends its own after them and writes
    the file out, while the other does the same."""
    uri, parent, pending = new_sweep(tmp_path, empty_database, "shared")
    kept = [f"kept-{i}" for i in range(4)]
    write_trials(Outbox(UNREACHABLE, "shared", parent, pending), kept)
    assert pending.read_text().count("\n") == len(kept) * (EPOCHS + 2)
    own = {name: [f"{name}-{i}" for i in range(4)] for name in ("sweep", "reseed")}
    drivers = [start("drive", uri, "shared", parent, str(pending), trials, str(tmp_path)) for trials in own.values()]
    wait_for(tmp_path / "ready-*", drivers[0], count=2)
    (tmp_path / "go").touch()
    for driver in drivers:
        output, _ = driver.communicate(timeout=300)
        assert driver.returncode == 0, output[-3000:]
    assert not pending.exists()
    assert_one_finished_run_per_trial_with_every_epoch_once(uri, "shared", kept + own["sweep"] + own["reseed"])


def test_sync_refuses_while_the_driver_lives_and_writes_everything_once_it_was_killed(tmp_path, empty_database, capsys):
    uri, parent, pending = new_sweep(tmp_path, empty_database, "held")
    trials = ["a", "b"]
    sync = ["frontier", "sync", "held", "--results", str(tmp_path / "results"), "--tracking-uri", uri]
    driver = start("hold", "held", parent, str(pending), trials, str(tmp_path))
    try:
        wait_for(tmp_path / "ready", driver)
        kept = pending.read_bytes()
        files = sorted(p.name for p in pending.parent.iterdir())
        capsys.readouterr()
        assert main(sync) == 2
        refused = capsys.readouterr().err.strip()
        assert len(refused.splitlines()) == 1 and "held" in refused and "itself when the store answers" in refused
        assert pending.read_bytes() == kept and sorted(p.name for p in pending.parent.iterdir()) == files
        assert not MlflowClient(uri).search_runs([SweepStore(uri).experiment_of(parent)], "tags.`samat.role` = 'trial'")
    finally:
        os.kill(driver.pid, signal.SIGKILL)  # no chance to let go of anything
        driver.wait(timeout=30)
    assert main(sync) == 0
    assert f"wrote the {len(trials) * (EPOCHS + 2)} kept writes" in capsys.readouterr().err
    assert not pending.exists()
    assert_one_finished_run_per_trial_with_every_epoch_once(uri, "held", trials)
