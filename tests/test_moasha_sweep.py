"""MO-ASHA in a real sweep on digits (Ray Tune, Optuna, MLflow on sqlite): stopped trials are recorded as stopped
everywhere and never ranked, and an interrupted sweep resumes with its rung records."""

import glob
import pickle
import signal
import time

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from analysis.tracking import SweepStore
from sweeps.cli import main
from tests.conftest import epochs_of, resume_sweep, start_sweep, tiny_spec, trial_dirs


def stopping_spec(**changes) -> dict:
    """6 mlp trials × 4 epochs with η = 2 and a wide lr range (down to 0.001, which learns little in an epoch),
    one at a time: the order trials reach the rungs is then fixed, and so are the decisions (a poor trial that
    meets better ones at a rung is stopped)."""
    return tiny_spec(
        **{
            "name": "stoppy",
            "models": ["mlp"],
            "methods": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.3, "log": True}}},
            "train": {"epochs": 4, "lr": {"low": 0.001, "high": 0.2, "log": True}},
            "search": {"sampler": "random", "seed": 0, "trials": 6, "concurrency": 1},
            "scheduler": {"type": "moasha", "grace_period": 1, "reduction_factor": 2},
            **changes,
        }
    )


@pytest.fixture(scope="module")
def stopped_sweep(tmp_path_factory):
    from sweeps.run import run_sweep
    from sweeps.spec import validate_spec

    return run_sweep(validate_spec(stopping_spec()), results_dir=tmp_path_factory.mktemp("results"), num_cpus=2)


def test_stopped_trials_are_recorded_as_stopped_and_never_ranked(stopped_sweep, capsys):
    result = stopped_sweep
    stopped = [r for r in result.trials if r.status == "stopped"]
    complete = [r for r in result.trials if r.status == "complete"]
    assert result.finished and len(result.trials) == 6 and stopped and complete
    assert len(stopped) + len(complete) == 6
    for row in stopped:  # Ray's last result: done, an epoch below the budget, the values of that epoch
        assert row.metrics["done"] and row.stopped_at == row.metrics["epochs"] < 4 and row.rank is None
    assert all(r.metrics["epochs"] == 4 and r.stopped_at is None and r.rank for r in complete)
    assert {r.trial_id for r in result.front} <= {r.trial_id for r in complete}

    # Optuna heard PRUNED (no values) for each stopped trial, COMPLETE with the full budget's values for the others
    study = optuna.load_study(study_name=result.name, storage=result.optuna_storage)
    states = sorted(t.state.name for t in study.trials)
    assert states == sorted(["PRUNED"] * len(stopped) + ["COMPLETE"] * len(complete))
    assert all(t.values is None for t in study.trials if t.state == optuna.trial.TrialState.PRUNED)
    told = sorted(tuple(t.values) for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert told == sorted(tuple(r.objectives.values()) for r in complete)

    # MLflow: KILLED with the stopped tags, read back as `stopped` with its epoch, not ranked
    client = MlflowClient(result.tracking_uri)
    record = SweepStore(result.tracking_uri).load_sweep(result.name)
    by_id = {r.trial_id: r for r in record.rows}
    for row in stopped:
        run = client.get_run(by_id[row.trial_id].run_id)
        assert run.info.status == "KILLED" and run.data.tags["samat.status"] == "stopped"
        assert run.data.tags["samat.stopped_at_epoch"] == str(row.stopped_at)
        assert run.data.tags["samat.stopped_by"] == "MO-ASHA" and "error" not in run.data.tags
        assert by_id[row.trial_id].status == "stopped" and by_id[row.trial_id].stopped_at == row.stopped_at
        assert by_id[row.trial_id].rank is None and run.data.tags["pareto_front"] == "false"
    assert {r.trial_id for r in record.stopped} == {r.trial_id for r in stopped}
    assert {r.trial_id for r in record.front} == {r.trial_id for r in result.front}
    assert {r.trial_id for r in record.finished} == {r.trial_id for r in complete}

    # the command line shows them apart: a count in `list`, a line under the front in `show`, a status in exports
    assert main(["frontier", "list", "--tracking-uri", result.tracking_uri]) == 0
    header, row = (
        [cell.strip() for cell in line.split("│" if "│" in line else "┃")[1:-1]]
        for line in capsys.readouterr().out.splitlines()
        if "hypervolume" in line or "stoppy" in line
    )
    counts = dict(zip(header, row))
    assert [counts[c] for c in ("trials", "finished", "stopped", "failed")] == [
        "6",
        str(len(complete)),
        str(len(stopped)),
        "0",
    ]
    assert main(["frontier", "show", result.name, "--tracking-uri", result.tracking_uri]) == 0
    shown = capsys.readouterr().out
    line = next(x for x in shown.splitlines() if x.startswith("stopped early by MO-ASHA"))
    assert f"{len(stopped)} of 6 trials" in line and all(r.trial_id in line for r in stopped)
    table = shown[: shown.index(line)]
    assert not any(r.trial_id in table for r in stopped)


def test_export_carries_status_and_stopped_epoch(stopped_sweep, tmp_path):
    from analysis.export import read_table

    out = tmp_path / "all.json"
    assert (
        main(["frontier", "export", stopped_sweep.name, "-o", str(out), "--tracking-uri", stopped_sweep.tracking_uri])
        == 0
    )
    rows = {r["trial_id"]: r for r in read_table(out)}
    for trial in stopped_sweep.trials:
        exported = rows[trial.trial_id]
        assert exported["status"] == trial.status and exported["stopped_at_epoch"] == trial.stopped_at
        assert not (trial.status == "stopped" and exported["pareto_front"])


def scheduler_state(experiment_dir) -> dict:
    """The scheduler's state as Tune saved it with the newest experiment checkpoint (SchedulerCheckpoint is the
    run's first callback)."""
    newest = max(glob.glob(str(experiment_dir / "callback-states-*.pkl")))  # named by the session's start time
    with open(newest, "rb") as f:
        return pickle.load(f)[0]


def test_resume_after_ctrl_c_keeps_the_rung_records(tmp_path):
    spec_file = tmp_path / "stoppy.yaml"
    spec_file.write_text(
        yaml.safe_dump(stopping_spec(search={"sampler": "random", "seed": 1, "trials": 6, "concurrency": 1}))
    )
    results = tmp_path / "results"
    sweep = start_sweep(spec_file, results)
    deadline = time.time() + 240
    while sum(1 for p in trial_dirs(results / "stoppy") if epochs_of(p)) < 3:  # 2 trials ended, a third started
        assert sweep.poll() is None and time.time() < deadline, "the sweep ended before it could be interrupted"
        time.sleep(0.5)
    sweep.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, out
    before = scheduler_state(results / "stoppy")
    first_rung = before["brackets"][0][0].recorded
    assert len(first_rung) >= 2  # the trials that reached epoch 1 before Ctrl-C

    resume_sweep(spec_file, results)
    after = scheduler_state(results / "stoppy")
    # every rung still holds what it held before Ctrl-C (trials ended then do not run again, so only the saved
    # state can hold them), and the first rung now holds all 6 trials
    for rung_before, rung_after in zip(before["brackets"][0], after["brackets"][0]):
        assert rung_after.recorded.items() >= rung_before.recorded.items()
    assert len(after["brackets"][0][0].recorded) == 6
    assert after["stopped_at"].items() >= before["stopped_at"].items()

    record = SweepStore(f"sqlite:///{results / 'mlflow.db'}").load_sweep("stoppy")
    assert record.status == "finished" and len(record.rows) == 6
    assert {r.trial_id: r.stopped_at for r in record.stopped} == after["stopped_at"]
    assert all(r.status in ("complete", "stopped") for r in record.rows)


def test_the_progress_line_of_a_stopped_trial_says_where_it_stopped():
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from sweeps.progress import SweepDisplay
    from sweeps.spec import validate_spec

    spec = validate_spec(stopping_spec())
    out = io.StringIO()
    display = SweepDisplay(spec, 2, Console(file=out, width=200))
    config = {**spec.base_config(), "model": "mlp", "method": "sgd", "lr": 0.05, "epochs": 4}
    values = dict.fromkeys(spec.directions, 0.5)
    for trial_id, epochs in (("stopped1", 2), ("complete", 4)):
        result = {**values, "epoch": epochs, "epochs": epochs, "done": True, "time_total_s": 1.0}
        display.trial_finished(SimpleNamespace(trial_id=trial_id, config=config, last_result=result))
    lines = out.getvalue().splitlines()
    assert any("stopped1" in line and "stopped at epoch 2 by MO-ASHA" in line for line in lines), lines
    assert not any("complete" in line and "stopped" in line for line in lines), lines
