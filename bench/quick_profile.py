"""Where the quick sweep's time goes: start-up, data and model set-up, training, evaluation, recording.

    uv run python bench/quick_profile.py                  # sweeps/quick.yaml, as `uv run samat sweep` runs it
    uv run python bench/quick_profile.py --spec my.yaml
    cd ../old-checkout && uv run python ../samat/bench/quick_profile.py   # the same measurement of other code

Driver side: Ray's start-up, the workers' start-up and MLflow recording (every SweepStore call the driver
makes, timed in this process). Trial side: each trial's seconds by activity (bench/timed_sweep.py says how)."""

from __future__ import annotations

import argparse

from timed_sweep import time_calls, timed_sweep

from analysis.outbox import Outbox
from analysis.tracking import SweepStore
from sweeps.spec import load_spec

RECORDING: list[float] = []  # seconds of each MLflow write the driver makes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="quick")
    args = parser.parse_args()
    spec = load_spec(args.spec)

    # the sweep's MLflow writes: its parent run, then every write of the recorder's outbox (each trial's run,
    # epochs, end, re-ranks, the sweep's close), none nested in another
    time_calls(SweepStore, "open_sweep", RECORDING)
    time_calls(Outbox, "apply", RECORDING)

    timed_run = timed_sweep(spec)
    result, wall, workers = timed_run.result, timed_run.sweep_s, timed_run.workers_s
    splits = timed_run.splits

    trial_side = {key: sum(s[key] for s in splits) for key in splits[0]}
    busy = sum(trial_side.values())
    print(
        f"sweep {spec.name}: {len(result.trials)} trials, concurrency {spec.search.concurrency}, "
        f"{spec.resources.cpu:g} CPU each"
    )
    print(f"total wall time                      {timed_run.ray_start_s + wall:7.1f} s")
    print(f"  Ray start-up (ray.init + imports)  {timed_run.ray_start_s:7.1f} s")
    print(f"  workers' start-up to first trial   {workers:7.1f} s")
    print(f"  sweep after the first trial starts {wall - workers:7.1f} s")
    print(f"MLflow recording in the driver       {sum(RECORDING):7.1f} s   ({len(RECORDING)} writes)")
    print(f"trial-seconds, summed over trials    {busy:7.1f} s")
    for key, seconds in trial_side.items():
        print(f"  {key:<44} {seconds:7.1f} s   {100 * seconds / busy:4.0f}%")
    evaluation = sum(v for k, v in trial_side.items() if k.startswith("evaluation"))
    print(f"  {'evaluation in all':<44} {evaluation:7.1f} s   {100 * evaluation / busy:4.0f}%")


if __name__ == "__main__":
    main()
