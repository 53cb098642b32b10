"""What Ray Tune + Optuna cost: a sweep of N short trials vs the very same trials in a plain loop without Ray.

    uv run python bench/sweep_overhead.py                 # 8 trials of small_cnn on digits, 2 at a time
    uv run python bench/sweep_overhead.py --trials 12 --epochs 5 --concurrency 2

Start-up is timed separately in two parts: Ray's (ray.init, with the driver's imports of Ray Tune and Optuna)
and the workers' (until the first trial runs: each trial process imports torch, Ray Tune and torchattacks,
about 6 s on 2 busy cores, once per concurrent slot since actors are reused). The sweep runs `concurrency`
trials at once with cpu=1 each (one torch thread each); the loop runs the sweep's own trial configs one after
another with every core's threads. Goal: sweep / loop <= 1.2 on 2 cores, start-up counted separately."""

from __future__ import annotations

import argparse
import os
import time

import torch
from timed_sweep import timed_sweep

from sweeps.space import train_config
from sweeps.spec import validate_spec
from trainables.run import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count())
    args = parser.parse_args()

    spec = validate_spec(
        {
            "name": "overhead",
            "dataset": "digits",
            "models": ["small_cnn"],
            "methods": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 0.3}}},
            "train": {"epochs": args.epochs, "lr": {"low": 0.02, "high": 0.1}},
            "objective_attack": "pgd_linf_0.1",
            "search": {"sampler": "random", "trials": args.trials, "concurrency": args.concurrency},
            "resources": {"cpu": 1},
        }
    )
    timed_run = timed_sweep(spec)
    result, ray_start, workers_s, sweep_s = (
        timed_run.result,
        timed_run.ray_start_s,
        timed_run.workers_s,
        timed_run.sweep_s,
    )

    torch.set_num_threads(os.cpu_count())
    start = time.perf_counter()
    for row in result.trials:
        fit(train_config({**spec.base_config(), **row.metrics["config"]}))
    loop_s = time.perf_counter() - start

    steady_s = sweep_s - workers_s
    print(
        f"{args.trials} trials x {args.epochs} epochs (small_cnn, digits), {os.cpu_count()} cores, "
        f"sweep concurrency {args.concurrency}"
    )
    print(f"ray start-up                    {ray_start:7.1f} s   (start-up, counted separately)")
    print(f"worker start-up to first trial  {workers_s:7.1f} s   (start-up, counted separately)")
    print(f"sweep after start-up            {steady_s:7.1f} s")
    print(f"plain loop, no Ray              {loop_s:7.1f} s")
    ratio = steady_s / loop_s
    print(f"sweep / loop                    {ratio:7.2f}     goal <= 1.2  {'ok' if ratio <= 1.2 else 'MISSED'}")
    print(f"(sweep / loop counting worker start-up: {sweep_s / loop_s:.2f})")


if __name__ == "__main__":
    main()
