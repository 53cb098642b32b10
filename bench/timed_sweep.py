"""A sweep with its start-up timed apart, for the benchmarks (`bench/sweep_overhead.py`, `bench/quick_profile.py`).

Ray's start-up covers `ray.init` and the driver's imports of Ray Tune and Optuna; the workers' start-up runs
until Tune starts the first trial, i.e. until a trial process has imported the trainable (torch, Ray Tune)."""

from __future__ import annotations

import functools
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TimedSweep:
    result: object  # sweeps.run.SweepResult
    ray_start_s: float
    workers_s: float  # from the sweep's start to the first trial's start
    sweep_s: float  # the whole run_sweep call
    splits: list[dict[str, float]]  # per trial: training, evaluation, checkpoint and report, set-up


def time_calls(owner, name: str, seconds: list[float]) -> None:
    """Wrap `owner.name` (a class's method) so that each call appends its seconds to `seconds`."""
    method = getattr(owner, name)

    @functools.wraps(method)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    setattr(owner, name, timed)


def trial_split(result_file: Path) -> dict[str, float]:
    """A trial's seconds by activity, from its result.json: per epoch `train_time_s` and `eval_time_s` grow by
    the training and evaluation time (the last epoch's evaluation holds the full validation evaluation behind
    the objectives and the test images' with every final attack); the rest of an epoch is checkpoint and
    report; the first epoch's excess over the others is the trial's set-up (data, model, imports on a fresh
    worker)."""
    results = [json.loads(line) for line in result_file.read_text().splitlines() if line.endswith("}")]
    epochs = [r for r in results if "train_time_s" in r]
    train = [b["train_time_s"] - a["train_time_s"] for a, b in zip([{"train_time_s": 0.0}] + epochs, epochs)]
    evals = [b["eval_time_s"] - a["eval_time_s"] for a, b in zip([{"eval_time_s": 0.0}] + epochs, epochs)]
    rest = [r["time_this_iter_s"] - t - e for r, t, e in zip(epochs, train, evals)]
    steady = statistics.median(rest[1:]) if len(rest) > 1 else rest[0]
    return {
        "training": sum(train),
        "evaluation, epochs before the last": sum(evals[:-1]),
        "evaluation, last epoch (validation + test)": evals[-1],
        "checkpoint and report": steady * len(rest),
        "set-up (data, model, imports)": max(0.0, rest[0] - steady),
    }


def timed_sweep(spec) -> TimedSweep:
    start = time.perf_counter()
    # the driver's imports are timed as start-up, like Ray's
    import optuna  # noqa: F401, PLC0415
    import ray  # noqa: PLC0415
    import ray.tune.search.optuna  # noqa: F401, PLC0415
    from ray.tune import Callback  # noqa: PLC0415

    from sweeps.ray_start import start_ray  # noqa: PLC0415
    from sweeps.run import run_sweep  # noqa: PLC0415

    start_ray(None)
    ray_start_s = time.perf_counter() - start
    first_start: list[float] = []

    class FirstTrialStart(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            first_start.append(time.perf_counter())

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as results:
        result = run_sweep(spec, results_dir=results, callbacks=[FirstTrialStart()])
        sweep_s = time.perf_counter() - start
        splits = [trial_split(Path(row.path) / "result.json") for row in result.trials]
    ray.shutdown()
    return TimedSweep(result, ray_start_s, first_start[0] - start, sweep_s, splits)
