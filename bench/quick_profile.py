"""Where the quick sweep's time goes: start-up, data and model set-up, training, evaluation, recording.

    uv run python bench/quick_profile.py                  # sweeps/quick.yaml, as `uv run samat sweep` runs it
    uv run python bench/quick_profile.py --spec my.yaml

Driver side: Ray's start-up and the driver's imports, the workers' start-up (until Tune starts the first
trial), and MLflow recording (every SweepStore call the driver makes, timed in this process). Trial side, from
each trial's result.json: per epoch, `train_time_s` and `eval_time_s` grow by the training and evaluation
time, the rest of the epoch is saving the checkpoint and reporting it; the first epoch's excess over the
others is the trial's set-up (data, model, imports on a fresh worker)."""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path

from analysis.tracking import SweepStore
from sweeps.spec import load_spec

RECORDING = {"seconds": 0.0, "calls": 0}


def timed(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            RECORDING["seconds"] += time.perf_counter() - start
            RECORDING["calls"] += 1
    return wrapper


def trial_split(result_file: Path) -> dict[str, float]:
    results = [json.loads(line) for line in result_file.read_text().splitlines() if line.endswith("}")]
    epochs = [r for r in results if "train_time_s" in r]
    train = [b["train_time_s"] - a["train_time_s"] for a, b in zip([{"train_time_s": 0.0}] + epochs, epochs)]
    evals = [b["eval_time_s"] - a["eval_time_s"] for a, b in zip([{"eval_time_s": 0.0}] + epochs, epochs)]
    rest = [r["time_this_iter_s"] - t - e for r, t, e in zip(epochs, train, evals)]
    steady = statistics.median(rest[1:]) if len(rest) > 1 else rest[0]
    return {"training": sum(train), "evaluation (clean + objective attack)": sum(evals),
            "checkpoint and report": steady * len(rest), "set-up (data, model, imports)": max(0.0, rest[0] - steady)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="quick")
    args = parser.parse_args()
    spec = load_spec(args.spec)

    for name in ("open_sweep", "trial_run", "log_metrics", "finish_trial", "update_front", "log_front_artifacts",
                 "close_sweep"):
        setattr(SweepStore, name, timed(getattr(SweepStore, name)))

    start = time.perf_counter()
    import ray
    from ray.tune import Callback

    from sweeps.run import run_sweep, start_ray

    start_ray(None)
    ray_start = time.perf_counter() - start
    first_start: list[float] = []

    class FirstTrialStart(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            first_start.append(time.perf_counter())

    sweep_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as results:
        result = run_sweep(spec, results_dir=results, callbacks=[FirstTrialStart()])
        wall = time.perf_counter() - sweep_start
        splits = [trial_split(Path(row["path"]) / "result.json") for row in result.trials]
    ray.shutdown()

    trial_side = {key: sum(s[key] for s in splits) for key in splits[0]}
    busy = sum(trial_side.values())
    print(f"sweep {spec.name}: {len(result.trials)} trials, concurrency {spec.search.concurrency}, "
          f"{spec.resources.cpu:g} CPU each")
    print(f"total wall time                      {ray_start + wall:7.1f} s")
    print(f"  Ray start-up (ray.init + imports)  {ray_start:7.1f} s")
    print(f"  workers' start-up to first trial   {first_start[0] - sweep_start:7.1f} s")
    print(f"  sweep after the first trial starts {wall - (first_start[0] - sweep_start):7.1f} s")
    print(f"MLflow recording in the driver       {RECORDING['seconds']:7.1f} s   ({RECORDING['calls']} calls)")
    print(f"trial-seconds, summed over trials    {busy:7.1f} s")
    for key, seconds in trial_side.items():
        print(f"  {key:<38} {seconds:7.1f} s   {100 * seconds / busy:4.0f}%")


if __name__ == "__main__":
    main()
