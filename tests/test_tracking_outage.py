"""A real `mlflow server` on loopback, started as cluster.yaml starts it (MLflow's several workers), stops answering
mid-sweep: training goes on, what the server did not take is kept on the driver's disk and written when it answers
again (during the sweep, or by `samat frontier sync` once the sweep ended), and MLflow ends with every trial and
every epoch exactly once, agreeing with Ray's own results. A hung server (frozen, then thawed) also tests the
writes it took after the client had given up on them: none is repeated; and so does a server whose database was
locked while the outbox sent an epoch twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from analysis.outbox import PENDING_FILE, Outbox
from analysis.tracking import SweepStore
from analysis.ui import NO_JOB_WORKERS
from tests.conftest import SAMAT, last_result, random_sweep, trial_dirs, write_spec

EPOCHS = 3
TRIALS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` on 127.0.0.1 over a sqlite file that outlives it (so a restart finds every run), with MLflow's
    default workers and no job workers, as cluster.yaml starts it on the head."""

    def __init__(self, folder: Path):
        self.folder, self.port, self.process = folder, free_port(), None
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{self.folder / 'mlflow.db'}",
                "--artifacts-destination",
                str(self.folder / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends the server and every worker it started
            env={**os.environ, **NO_JOB_WORKERS},  # as `samat frontier ui` runs it
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                MlflowClient(self.uri).search_experiments(max_results=1)
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.5)
        raise RuntimeError("mlflow server did not start")

    def freeze(self) -> None:
        """A hung server: its processes stopped, so connections are accepted and never answered."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        with pytest.raises(Exception):  # noqa: B017, PT011 - gone: any client error will do
            MlflowClient(self.uri).search_experiments(max_results=1)


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    server = Server(tmp_path / "server")
    server.start()
    yield server
    if server.process.poll() is None:
        server.thaw()
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=30)


def sweep_with_outage(tmp_path: Path, server: Server, name: str, outage: str, while_running=None):
    """Run an 8-trial sweep against `server` and take the server away as the first trial finishes: `hang`
    freezes it (it accepts connections and answers nothing) until the third trial finished; `gone` stops it for
    good. `while_running(results folder)` is called as the second trial finished. Returns (exit code, output,
    results folder)."""
    spec_file = write_spec(tmp_path, **random_sweep(name, "small_cnn", EPOCHS, TRIALS, seed=5))
    results = tmp_path / "results"
    sweep = subprocess.Popen(
        [SAMAT, "sweep", str(spec_file), "--results", str(results), "--tracking-uri", server.uri],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, finished = [], 0
    for line in sweep.stdout:
        output.append(line)
        finished += line.lstrip().startswith("✓")
        if finished == 1 and line.lstrip().startswith("✓"):
            server.freeze() if outage == "hang" else server.stop()
        if finished == 2 and line.lstrip().startswith("✓") and while_running:
            while_running(results)
        if finished == 3 and line.lstrip().startswith("✓") and outage == "hang":
            server.thaw()
    return sweep.wait(timeout=600), "".join(output), results


def assert_mlflow_holds_every_trial_and_epoch_once(uri: str, name: str, experiment_dir: Path) -> None:
    """Every Ray trial has one FINISHED run in MLflow, with each epoch once and Ray's last values."""
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'trial'")
    trials = {last_result(d)["trial_id"]: last_result(d) for d in trial_dirs(experiment_dir)}
    assert len(trials) == TRIALS
    assert sorted(r.data.tags["ray_trial_id"] for r in runs) == sorted(trials)  # one run per trial, no more
    for run in runs:
        ray_result = trials[run.data.tags["ray_trial_id"]]
        assert run.info.status == "FINISHED", run.data.tags.get("error")
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), steps  # every epoch exactly once
        for metric in ("clean_acc", "robust_acc/pgd_linf_0.1"):
            assert len(client.get_metric_history(run.info.run_id, metric)) == EPOCHS
            assert run.data.metrics[metric] == pytest.approx(ray_result[metric])
    parent = client.search_runs([experiment.experiment_id], "tags.`samat.role` = 'sweep'")[0]
    assert parent.data.tags["samat.status"] == "finished"
    # the front the recorder tagged, re-ranked as the trials finished, is the front of the values MLflow holds
    record = SweepStore(uri).load_sweep(name)
    tagged = {r.data.tags["ray_trial_id"] for r in runs if r.data.tags["pareto_front"] == "true"}
    assert tagged == {row.trial_id for row in record.front} and tagged
    assert parent.data.metrics["hypervolume"] == pytest.approx(record.hypervolume())


def test_hung_server_back_during_the_sweep_gets_everything_once_and_training_never_stops(tmp_path, server):
    code, output, results = sweep_with_outage(tmp_path, server, "outage", "hang")
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    assert output.count("is not taking writes") == 1  # one warning line, not one per write
    assert "answers again" in output
    assert "View run" not in output and "View experiment" not in output  # MLflow's links stay out
    assert output.count("✓") == TRIALS  # no trial was lost to the outage
    assert not (results / "outage" / PENDING_FILE).exists()
    assert_mlflow_holds_every_trial_and_epoch_once(server.uri, "outage", results / "outage")


def test_server_that_never_comes_back_keeps_every_write_for_sync(tmp_path, server):
    def sync_refused_while_the_sweep_runs(results):
        pending = results / "gone" / PENDING_FILE
        deadline = time.monotonic() + 60
        while not pending.exists():
            assert time.monotonic() < deadline, "the sweep kept nothing 60 s after its store went"
            time.sleep(0.2)
        sync = [SAMAT, "frontier", "sync", "gone", "--results", str(results), "--tracking-uri", server.uri]
        refused = subprocess.run(sync, capture_output=True, text=True)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "sweep gone is running" in refused.stderr and "itself when the store answers" in refused.stderr

    code, output, results = sweep_with_outage(tmp_path, server, "gone", "gone", sync_refused_while_the_sweep_runs)
    assert code == 1, output[-3000:]
    assert "Traceback" not in output
    assert output.count("✓") == TRIALS  # training finished regardless
    pending = results / "gone" / PENDING_FILE
    kept = [json.loads(line)["op"] for line in pending.read_text().splitlines()]
    assert kept.count("finish") >= 3 and kept[-1] == "close"  # the later trials' ends and the sweep's close
    assert f"samat frontier sync gone --results {results}" in output

    refused = subprocess.run(
        [SAMAT, "frontier", "sync", "gone", "--results", str(results), "--tracking-uri", server.uri],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 2 and "not reachable" in refused.stderr  # still down: a usage error, one line
    assert pending.read_text().count("\n") == len(kept)  # and nothing was lost

    server.start()
    synced = subprocess.run(
        [SAMAT, "frontier", "sync", "gone", "--results", str(results), "--tracking-uri", server.uri],
        capture_output=True,
        text=True,
    )
    assert synced.returncode == 0, synced.stderr
    assert f"wrote the {len(kept)} kept writes" in synced.stderr
    assert not pending.exists()
    assert_mlflow_holds_every_trial_and_epoch_once(server.uri, "gone", results / "gone")


def test_epoch_the_store_takes_after_the_client_gave_up_and_again_after_its_retry_is_there_once(
    tmp_path, server, monkeypatch
):
    """The server's database is locked (by a long write of another process) while the outbox writes an epoch: the
    server holds the request, the client gives up on it, the outbox keeps it and, retrying, reads no such epoch
    and sends it again, which the server holds too. Once the database is free the server applies both."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    store = SweepStore(server.uri)
    parent = store.open_sweep("late", {"name": "late"}, {"clean_acc": "max"}, [0.0], str(tmp_path))
    outbox = Outbox(server.uri, "late", parent, tmp_path / PENDING_FILE)
    outbox.trial("t", {"lr": 0.1}, {"method": "sgd", "lr": 0.1}, {})
    outbox.epoch("t", {"epoch": 1, "clean_acc": 0.5}, 1, {})
    run_id = store.trial_runs(parent)["t"]

    database = sqlite3.connect(server.folder / "mlflow.db", isolation_level=None)
    database.execute("BEGIN IMMEDIATE")  # writes wait for it (MLflow's sqlite busy timeout is 20 s), reads do not
    try:
        outbox.epoch("t", {"epoch": 2, "clean_acc": 0.6}, 2, {})
        assert outbox.pending() == 1  # given up on after 2 s, and kept
        assert outbox.retry(now=True) == 1  # epoch 2 not in the history read: sent again, given up on again
    finally:
        database.rollback()
        database.close()

    def epochs():
        return sorted(m.step for m in store.client.get_metric_history(run_id, "epoch"))

    deadline = time.monotonic() + 30
    while 2 not in epochs():  # the first of the two held writes went in
        assert time.monotonic() < deadline, "the server never applied the held write"
        time.sleep(0.2)
    time.sleep(3)  # and the second
    assert outbox.retry(now=True) == 0
    assert epochs() == [1, 2]
    assert len(store.client.get_metric_history(run_id, "clean_acc")) == 2


def test_a_trial_run_the_store_creates_after_the_client_gave_up_is_not_a_second_run(tmp_path, server, monkeypatch):
    """As above, with a trial's first write: the server holds `create_run`, the client gives up, the outbox
    keeps it and, retrying, finds no run and creates one again, held too; once free, the server creates both.
    The sweep then records the trial in one run (the other, empty, deleted), with its params."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    store = SweepStore(server.uri)
    parent = store.open_sweep("twice", {"name": "twice"}, {"clean_acc": "max"}, [0.0], str(tmp_path))
    outbox = Outbox(server.uri, "twice", parent, tmp_path / PENDING_FILE)
    database = sqlite3.connect(server.folder / "mlflow.db", isolation_level=None)
    database.execute("BEGIN IMMEDIATE")
    try:
        outbox.trial("t", {"lr": 0.1}, {"method": "sgd", "lr": 0.1}, {})
        assert outbox.pending() == 1 and outbox.retry(now=True) == 1  # created twice, each given up on
    finally:
        database.rollback()
        database.close()

    def runs():
        return store.child_runs(store.experiment_of(parent))

    deadline = time.monotonic() + 30
    while len(runs()) < 2:  # the server applies both held creates
        assert time.monotonic() < deadline, f"the server applied {len(runs())} of the two held creates"
        time.sleep(0.2)
    assert outbox.retry(now=True) == 0
    outbox.epoch("t", {"epoch": 1, "clean_acc": 0.5}, 1, {})
    (run,) = runs()
    assert run.data.params["lr"] == "0.1" and run.data.metrics["clean_acc"] == 0.5
