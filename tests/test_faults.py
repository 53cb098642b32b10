"""Faults, really caused: a killed trial worker, a diverging trial, a trial that fails and then ends well, an
unreachable MLflow, and bad input of every kind. Ctrl-C is in test_sweep.py (interrupt, then --resume); a killed
driver in test_random_kills.py, a lost tracking server in test_tracking_outage.py, a lost node in test_cluster.py,
a full or read-only results folder in test_storage_faults.py."""

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml

from analysis.outbox import PENDING_FILE, Outbox
from analysis.tracking import SweepStore
from sweeps.cli import main
from tests.conftest import (
    epochs_by_process,
    epochs_of,
    last_result,
    results_of,
    start_sweep,
    tiny_spec,
    trial_dirs,
    write_spec,
)

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def wait_for(condition, process, seconds=240, what="condition"):
    deadline = time.time() + seconds
    while not condition():
        assert process.poll() is None, f"the sweep ended before {what}: " + (process.stdout.read() or "")[-3000:]
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_killed_trial_worker_is_retried_from_its_last_checkpoint(tmp_path):
    spec = write_spec(
        tmp_path,
        name="retry",
        models=["small_cnn"],
        methods={"sgd": {}},
        train={"epochs": 6},
        search={"sampler": "random", "trials": 1, "concurrency": 1},
    )
    results = tmp_path / "results"
    sweep = start_sweep(spec, results)
    sweep_dir = results / "retry"
    wait_for(lambda: any(len(epochs_of(p)) >= 2 for p in trial_dirs(sweep_dir)), sweep, what="epoch 2")
    (trial,) = trial_dirs(sweep_dir)
    worker = last_result(trial)["pid"]
    os.kill(worker, signal.SIGKILL)  # the trial's worker process dies mid-training
    out, _ = sweep.communicate(timeout=300)
    assert sweep.returncode == 0, out[-3000:]

    reported = results_of(trial)
    assert len(epochs_by_process(reported, 6)) == 2  # one retry, continued from the last checkpoint (see there)
    assert reported[0]["pid"] == worker
    store = SweepStore(f"sqlite:///{results / 'mlflow.db'}")
    (row,) = store.load_sweep("retry").rows  # one MLflow run, not two
    assert row.status == "complete" and row.metrics["epoch"] == 6
    assert sorted(m.step for m in store.client.get_metric_history(row.run_id, "epoch")) == [1, 2, 3, 4, 5, 6]


def test_diverging_trial_fails_alone_and_the_front_ignores_it(tmp_path):
    from sweeps.run import run_sweep
    from sweeps.spec import validate_spec

    spec = validate_spec(
        tiny_spec(
            name="diverge",
            models=["mlp"],
            methods={"sgd": {}},
            train={"epochs": 2, "momentum": 0.0, "lr": {"choices": [0.05, 1.0e7]}},
            search={"sampler": "random", "seed": 0, "trials": 4, "concurrency": 2},
        )
    )
    result = run_sweep(spec, results_dir=tmp_path, num_cpus=2)
    diverged = [r for r in result.trials if r.params["lr"] == 1.0e7]
    healthy = [r for r in result.trials if r.params["lr"] == 0.05]
    assert diverged and healthy, "the seed must draw both learning rates"
    assert result.finished and all(r.status == "error" and "lower the learning rate" in r.error for r in diverged)
    assert all(r.status == "complete" and r.rank for r in healthy)  # the sweep went on
    assert {r.trial_id for r in result.front} <= {r.trial_id for r in healthy}

    study = optuna.load_study(study_name="diverge", storage=result.optuna_storage)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == len(diverged) and all(t.params["lr"] == 1.0e7 for t in failed)
    record = SweepStore(result.tracking_uri).load_sweep("diverge")
    failed_runs = [r for r in record.rows if r.status == "error"]
    assert len(failed_runs) == len(diverged) and all("lower the learning rate" in r.error for r in failed_runs)
    assert all(r.rank is None for r in failed_runs)


def test_trial_that_ends_well_after_it_failed_keeps_no_error(tmp_path):
    """A trial's run ended FAILED with its error (a crash past its retries); the sweep resumed, the trial trained on
    and ended well, or was stopped by the scheduler: its run no longer says it failed."""
    store = SweepStore(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = store.open_sweep("again", {"name": "again"}, {"clean_acc": "max"}, [0.0], str(tmp_path))
    first = Outbox(store.tracking_uri, "again", parent, tmp_path / PENDING_FILE)
    for trial in ("finished", "stopped"):
        first.trial(trial, {"lr": 0.1}, {"method": "sgd", "lr": 0.1}, {})
        first.epoch(trial, {"epoch": 1, "clean_acc": 0.5}, 1, {})
        first.finish(trial, "FAILED", "RayActorError: the worker died")
    resumed = Outbox(store.tracking_uri, "again", parent, tmp_path / PENDING_FILE)
    for trial in ("finished", "stopped"):
        resumed.trial(trial, {"lr": 0.1}, {"method": "sgd", "lr": 0.1}, {})
        resumed.epoch(trial, {"epoch": 2, "clean_acc": 0.6}, 2, {})
    resumed.finish("finished", "FINISHED", None)
    resumed.stop("stopped", 2, "MO-ASHA")

    rows = {row.trial_id: row for row in store.load_sweep("again").rows}
    assert (rows["finished"].status, rows["stopped"].status) == ("complete", "stopped")
    assert all(row.error is None and "error" not in store.client.get_run(row.run_id).data.tags for row in rows.values())


def test_unreachable_tracking_server_exits_2_before_anything_starts(tmp_path, capsys, monkeypatch):
    import ray

    monkeypatch.chdir(tmp_path)
    uri = "http://127.0.0.1:9"  # the discard port: nothing listens there
    start = time.time()
    assert main(["sweep", "quick", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and uri in err and "not reachable" in err
    assert time.time() - start < 60 and list(tmp_path.iterdir()) == [] and not ray.is_initialized()


GOOD = tiny_spec()
BAD_SPECS = [
    ({"colour": "red"}, "colour"),
    ({"search": {"trials": "many"}}, "search.trials=many"),
    ({"eval_n": [1, 2]}, "eval_n=[1, 2]"),
    ({"methods": {"sam": {"rho": -0.5}}}, "sam.rho: -0.5"),
    ({"methods": {"at": {"eps": 1.5}}}, "at.eps: 1.5"),
    ({"methods": {}}, "methods"),
    ({"methods": {"sgd": {"rho": 0.1}}}, "sgd takes no 'rho'"),
    ({"search": {"sampler": "cmaes"}}, "search.sampler=cmaes"),
    ({"objectives": [{"metric": "clean_acc"}] * 4}, "got 4"),
    ({"models": ["resnet50"]}, "models.0=resnet50"),
    ({"models": []}, "models"),
    ({"objective_attack": "pgd_linf"}, "pgd_linf"),
    ({"train": {"lr": {"low": 0, "high": 1, "log": True}}}, "log range needs low > 0"),
    ({"resources": {"gpu": -1}}, "resources.gpu=-1"),
    ({"dataset": "cifar10", "data_dir": "/nonexistent/cifar"}, "data_dir=/nonexistent/cifar"),
]
BAD_FLAGS = [
    (["--trials", "0"], "--trials: 0 must be at least 1"),
    (["--concurrency", "-1"], "--concurrency"),
    (["--results", "/proc/samat"], "--results=/proc/samat"),
    (["--results", "{tmp}/a-file"], "exists and is not a folder"),
    (["--resume"], "--resume: no sweep"),
]


@pytest.mark.parametrize(
    "change,message",
    BAD_SPECS + [(None, m) for _, m in BAD_FLAGS],
    ids=[m for _, m in BAD_SPECS] + [" ".join(f) for f, _ in BAD_FLAGS],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, change, message):
    import ray

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**GOOD, **(change or {})}))
    (tmp_path / "a-file").write_text("not a folder")
    flags = next((f for f, m in BAD_FLAGS if m == message), []) if change is None else []
    before = sorted(tmp_path.iterdir())
    try:
        code = main(
            [
                "sweep",
                str(spec),
                "--results",
                str(tmp_path / "results"),
                *[f.replace("{tmp}", str(tmp_path)) for f in flags],
            ]
        )
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert sorted(tmp_path.iterdir()) == before and not ray.is_initialized()


def command_line(proc: Path) -> str:
    """A /proc entry's command line; "" for what is not a process or ended while it was read."""
    try:
        return (proc / "cmdline").read_bytes().decode(errors="ignore") if proc.name.isdigit() else ""
    except OSError:
        return ""


def test_local_ray_listens_on_loopback_only():
    import ray

    from sweeps.ray_start import start_ray

    assert start_ray(None, 1)
    try:
        pids = {str(os.getpid())} | {p.name for p in Path("/proc").iterdir() if "ray" in command_line(p)[:300]}
        listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
        ours = [line.split()[3] for line in listening.splitlines() if any(f"pid={pid}," in line for pid in pids)]
        assert ours, listening
        assert all(addr.rsplit(":", 1)[0] in ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]") for addr in ours), ours
    finally:
        ray.shutdown()
