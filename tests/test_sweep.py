"""Sweeps end to end with real Ray Tune and a real Optuna study on digits."""

import json
import signal
import time
from pathlib import Path

import optuna
import pytest
import yaml

from analysis.pareto import pareto_front
from analysis.tracking import SweepStore
from sweeps.cli import main
from sweeps.run import run_sweep
from sweeps.spec import validate_spec
from tests.conftest import (
    epochs_by_process,
    epochs_of,
    finished_trials,
    random_sweep,
    results_of,
    resume_sweep,
    start_sweep,
    tiny_spec,
    write_spec,
)


def test_three_trial_sweep_end_to_end(tiny_sweep):
    result = tiny_sweep
    assert result.finished and len(result.trials) == 3
    assert all(r.status == "complete" and r.metrics["epochs"] == 2 for r in result.trials)
    assert all(r.metrics["node_id"] for r in result.trials)

    study = optuna.load_study(study_name=result.name, storage=result.optuna_storage)
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE] * 2
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    # every Ray trial's objectives are exactly the values Optuna was told, for the same parameters
    told = sorted((round(t.params.get("lr"), 12), tuple(t.values)) for t in study.trials)
    ran = sorted((round(r.params["lr"], 12), tuple(r.objectives.values())) for r in result.trials)
    assert told == ran
    # the front is the non-dominated set of the trials, first objective descending
    assert list(result.trials[0].objectives) == ["clean_acc", "robust_acc/pgd_linf_0.1"]  # keyed, in order
    values = [list(r.objectives.values()) for r in result.trials]
    assert {result.trials[i].trial_id for i in pareto_front(values, ["max", "max"])} == {
        r.trial_id for r in result.front
    }
    assert Path(result.path).name == "tiny" and (Path(result.path) / "optuna.db").is_file()


def test_a_second_sweep_of_the_same_spec_never_overwrites_the_first(tmp_path):
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "keep.txt").write_text("earlier results")
    spec = validate_spec(tiny_spec(search={"sampler": "random", "trials": 1, "concurrency": 1}, train={"epochs": 1}))
    result = run_sweep(spec, results_dir=tmp_path, num_cpus=2)
    assert result.name == "tiny-2" and (tmp_path / "tiny" / "keep.txt").read_text() == "earlier results"


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path):
    spec_file = write_spec(tmp_path, **random_sweep("resumable", "small_cnn", 4, 5, seed=0, concurrency=1))
    results = tmp_path / "results"
    storage = f"sqlite:///{results / 'resumable' / 'optuna.db'}"
    sweep = start_sweep(spec_file, results)
    deadline = time.time() + 240
    while finished_trials(results / "resumable", 4) < 2:
        assert sweep.poll() is None and time.time() < deadline, "the sweep ended before it could be interrupted"
        time.sleep(0.5)
    sweep.send_signal(signal.SIGINT)  # Ctrl-C
    out, _ = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, out
    assert "--resume" in out

    finished_before = {
        p.name: (p / "result.json").read_text()
        for p in (results / "resumable").iterdir()
        if p.is_dir() and (p / "result.json").is_file() and epochs_of(p)[-1:] == [4]
    }
    assert 2 <= len(finished_before) < 5
    interrupted = SweepStore(f"sqlite:///{results / 'mlflow.db'}").load_sweep("resumable")
    assert interrupted.status == "interrupted"  # the parent run says so; every result line is whole JSON:
    assert all(
        json.loads(line) for p in (results / "resumable").glob("*/result.json") for line in p.read_text().splitlines()
    )

    state = next((results / "resumable").glob("experiment_state-*.json"))
    interrupted_state = state.stat()

    resumed = resume_sweep(spec_file, results)
    assert "Pareto front of resumable" in resumed.stdout
    # the resumed sweep's Tune copies its staging folder, the interrupted sweep's state among it, at each save:
    # Ray's copy rewrote every file in place each time, where a kill in the middle cuts it short; samat's copies
    # only what changed, each file whole (sweeps.whole_files), so this one was never written again
    assert state.stat().st_mtime_ns == interrupted_state.st_mtime_ns
    assert state.stat().st_ino == interrupted_state.st_ino

    study = optuna.load_study(study_name="resumable", storage=storage)
    assert len(study.trials) == 5 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    trial_dirs = [p for p in (results / "resumable").iterdir() if p.is_dir() and (p / "result.json").is_file()]
    assert len(trial_dirs) == 5
    for p in trial_dirs:
        epochs_by_process(results_of(p), 4)  # resumed trials continued from their last checkpoint, none restarted
    for name, text in finished_before.items():  # finished trials never re-ran; one interrupted between its last
        # report and its end (Tune had not marked it finished) may report or train that last epoch once more
        now = (results / "resumable" / name / "result.json").read_text()
        assert now.startswith(text), now
        assert [json.loads(line)["epoch"] for line in now[len(text) :].splitlines()] in ([], [4]), now

    record = SweepStore(f"sqlite:///{results / 'mlflow.db'}").load_sweep("resumable")
    assert len(record.rows) == 5 and len({r.trial_id for r in record.rows}) == 5  # one MLflow run per trial
    assert all(r.status == "complete" for r in record.rows) and record.status == "finished"
    ray_ids = {json.loads((p / "result.json").read_text().splitlines()[-1])["trial_id"] for p in trial_dirs}
    assert {r.trial_id for r in record.rows} == ray_ids


@pytest.mark.parametrize(
    "argv,message",
    [
        (["no_such_spec"], "no such spec file"),
        (["quick", "--trials", "0"], "--trials: 0 must be at least 1"),
        (["quick", "--concurrency", "x"], "--concurrency"),
        (["quick", "--results", "/proc/samat-results"], "--results=/proc/samat-results: cannot write there"),
        (["quick", "--resume"], "--resume: no sweep of 'quick' to resume"),
    ],
)
def test_sweep_usage_errors_exit_2_before_starting_anything(capsys, tmp_path, monkeypatch, argv, message):
    import ray

    monkeypatch.chdir(tmp_path)
    try:
        code = main(["sweep", *argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert list(tmp_path.iterdir()) == [] and not ray.is_initialized()


def test_resume_refuses_a_newest_experiment_state_cut_short(capsys, tmp_path):
    """A sweep Ray's own copy left with its newest state cut short (before samat copied files whole): refused
    with one line naming the file, before Ray starts or anything is written (Tune would fail on it)."""
    import ray

    spec_file, results = write_spec(tmp_path, name="cut"), tmp_path / "results"
    sweep = results / "cut"
    sweep.mkdir(parents=True)
    (sweep / "tuner.pkl").write_bytes(b"")  # what Tune looks for to call a folder resumable
    (sweep / "experiment_state-2026-11-22_10-00-00.json").write_text("{}")
    (sweep / "experiment_state-2026-11-22_11-00-00.json").write_text('{"trial_data": [')
    before = sorted(p.relative_to(results) for p in results.rglob("*"))
    assert main(["sweep", str(spec_file), "--results", str(results), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "experiment_state-2026-11-22_11-00-00.json is cut short (16 bytes)" in err
    assert sorted(p.relative_to(results) for p in results.rglob("*")) == before and not ray.is_initialized()


def test_bad_spec_file_exits_2(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny_spec(methods={"sam": {"rho": -1}})))
    assert main(["sweep", str(bad), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "sam.rho: -1 is not allowed" in err and not (tmp_path / "r").exists()
