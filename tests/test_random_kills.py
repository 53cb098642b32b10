"""The sweep driver SIGKILLed at random instants, resumed after each kill, and at the end the three stores agree:
every Optuna COMPLETE trial has exactly one FINISHED MLflow run and one finished Ray trial with the same values,
no epoch is recorded twice, the front MLflow tags is the front of Ray's own results, and the work each kill
threw away is bounded by Tune's experiment-state save interval (printed per kill)."""

from __future__ import annotations

import os
import random
import subprocess
import time

from sweeps.trainable import STATE_SAVE_S
from tests.conftest import (
    SAMAT,
    assert_stores_agree,
    epochs_of,
    finished_trials,
    random_sweep,
    results_of,
    resume_sweep,
    stop_leftovers_of,
    trial_dirs,
    write_spec,
)

EPOCHS, TRIALS, KILLS = 3, 12, 5
SEED = int(os.environ.get("SAMAT_KILL_SEED", "0"))  # the kill instants: rerun another schedule with this


def reported(sweep_dir) -> dict[str, list[dict]]:
    """Each Ray trial folder's results so far."""
    return {trial.name: results_of(trial) for trial in trial_dirs(sweep_dir)}


def test_driver_killed_at_random_instants_then_resumed_loses_only_unsaved_work(tmp_path):
    results = tmp_path / "results"
    spec_file = write_spec(tmp_path, **random_sweep("kills", "small_cnn", EPOCHS, TRIALS, seed=4))
    sweep_dir, rng, kills = results / "kills", random.Random(SEED), []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [SAMAT, "sweep", str(spec_file), "--results", str(results)]
    for k in range(KILLS + 1):
        sweep = subprocess.Popen(
            command + (["--resume"] if k else []), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            before = sum(len(r) for r in reported(sweep_dir).values()) if sweep_dir.exists() else 0
            deadline = time.monotonic() + 300
            if k < KILLS:  # a random instant once this driver's trials train: start, report, MLflow, state save
                while sum(len(r) for r in reported(sweep_dir).values()) <= before and sweep.poll() is None:
                    assert time.monotonic() < deadline, "no trial trained"
                    time.sleep(0.1)
                time.sleep(rng.uniform(0, 3))
            else:  # the last kill: after the last trial finished, while the driver closes the sweep
                while finished_trials(sweep_dir, EPOCHS) < TRIALS and sweep.poll() is None:
                    assert time.monotonic() < deadline, "the sweep did not finish its trials"
                    time.sleep(0.05)
            if sweep.poll() is not None:
                break  # the sweep finished before this kill's instant: nothing left to kill
            at = time.time()
            sweep.kill()
            sweep.wait(timeout=30)
        finally:
            stop_leftovers_of(sweep.pid)
        kills.append((at, reported(sweep_dir)))
    assert len(kills) >= 3, "the sweep finished too soon for the kills to matter"

    resume_sweep(spec_file, results)

    final = reported(sweep_dir)
    finished = {name: rows for name, rows in final.items() if epochs_of(sweep_dir / name)[-1:] == [EPOCHS]}
    assert_stores_agree(results, "kills", EPOCHS, TRIALS)

    # a trial finished before a kill never trained again (it may report its end once more)
    for _, seen in kills:
        for name, rows in seen.items():
            if rows and rows[-1]["epoch"] == EPOCHS:
                assert final[name][: len(rows)] == rows and [r["epoch"] for r in final[name]].count(1) == 1

    # an epoch a continuing trial trained twice was lost to a kill within one state-save interval of its report:
    # the resumed trial restarts from the last checkpoint Tune's saved state knows (a finished trial may also
    # report its last epoch once more). MLflow skips the repeat either way (each epoch once, above).
    kill_times = sorted(at for at, _ in kills)
    for name, rows in finished.items():
        epochs = [r["epoch"] for r in rows]
        for e in {e for e in epochs if epochs.count(e) > 1 and e < EPOCHS}:
            reported_at = next(r["timestamp"] for r in rows if r["epoch"] == e)
            killed_at = next(at for at in kill_times if at >= reported_at)
            assert killed_at - reported_at <= STATE_SAVE_S + 3, (name, epochs, killed_at - reported_at)

    # the work each kill threw away: the epochs reported before it by trials that Tune had not saved yet, which a
    # resumed sweep abandons (proposing them again): only trials started within one state-save interval of it
    for number, (at, seen) in enumerate(kills, 1):
        abandoned = {name: rows for name, rows in seen.items() if name not in finished and rows}
        lost = sum(len(rows) for rows in abandoned.values())
        print(f"kill {number}: {lost} reported epoch(s) of {len(abandoned)} unsaved trial(s) lost")
        for rows in abandoned.values():
            started = rows[0]["timestamp"] - rows[0]["time_this_iter_s"]
            assert at - started <= STATE_SAVE_S + 3, (at - started, rows)
