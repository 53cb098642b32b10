"""The driver at scale: a sweep of many cheap trials on one machine, and `samat frontier` on a very large sweep.

    uv run python bench/scale.py                          # 1000 trials: driver ms per trial at 100, 500, 1000
    uv run python bench/scale.py --trials 300 --concurrency 6
    uv run python bench/scale.py --trials 0 --synthetic 10000    # only frontier list/show/export on 10,000 trials

The sweep: the mlp on digits for one epoch (PGD-10 on 50 validation images), SGD or SAM, NSGA-II (the paper
specs' sampler), `--concurrency` trials at once with a fractional CPU each. The driver's cost per trial is its
process CPU time (Ray Tune's loop, Optuna, samat's callbacks; all of the driver's threads) between finished
trials, in windows of 100 trials ending at 100, 500 and 1000, split into Optuna's share (proposing and being
told), samat's MLflow recording (every write of the outbox), of that the front maintenance (re-ranks), and
Tune's experiment-state saves, each as wall time in the driver. A flat column means that part does not grow
with the number of finished trials.

`--synthetic N` writes an N-trial sweep straight through samat's MLflow layer (no training: each trial gets its
params, two epochs of metrics and an end) into a fresh sqlite store, then times `samat frontier list`, `show`
and `export` on it as a user runs them (`uv run samat ...`, each a fresh process; the median of 3)."""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from ray.tune import Callback
from ray.tune.execution.tune_controller import TuneController
from timed_sweep import time_calls

from analysis.outbox import Outbox
from analysis.tracking import SweepStore
from sweeps.run import run_sweep
from sweeps.search import FailureAwareOptunaSearch
from sweeps.spec import validate_spec
from sweeps.trainable import STATE_SAVE_S
from trainables.settings import local_tracking_uri

WINDOWS = (100, 500, 1000)
REPO = Path(__file__).resolve().parent.parent


def scale_spec(trials: int, concurrency: int) -> dict:
    return {
        "name": "scale",
        "dataset": "digits",
        "models": ["mlp"],
        "methods": {"sgd": {}, "sam": {"rho": {"low": 0.01, "high": 1.0, "log": True}}},
        "train": {"epochs": 1, "lr": {"low": 0.01, "high": 0.3, "log": True}, "batch_size": 128},
        "objective_attack": "pgd_linf_0.1",
        "eval_n": 50,
        "search": {"sampler": "nsga2", "seed": 0, "trials": trials, "concurrency": concurrency},
        "resources": {"cpu": round(2 / concurrency, 3), "gpu": 0},
    }


class DriverClock(Callback):
    """At each finished trial: (trials finished, driver CPU seconds, wall seconds, {part: seconds so far})."""

    def __init__(self, parts: dict[str, list[float]]):
        self.parts, self.marks = parts, []

    def on_trial_complete(self, iteration, trials, trial, **info):
        sums = {part: sum(seconds) for part, seconds in self.parts.items()}
        self.marks.append((len(self.marks) + 1, time.process_time(), time.perf_counter(), sums))


def sweep_at_scale(trials: int, concurrency: int, folder: Path) -> str:
    """Run the sweep with the driver's parts timed: Optuna (proposing trials, being told results: its sampler
    reads the study back from its sqlite storage), samat's MLflow recording (every write of the outbox), of it
    the front maintenance (re-ranks), and Tune's experiment-state saves."""
    parts = {"Optuna": [], "MLflow recording": [], "of it front": [], "Tune state saves": []}
    time_calls(FailureAwareOptunaSearch, "suggest", parts["Optuna"])
    time_calls(FailureAwareOptunaSearch, "on_trial_complete", parts["Optuna"])
    time_calls(Outbox, "apply", parts["MLflow recording"])
    time_calls(Outbox, "rerank", parts["of it front"])
    time_calls(TuneController, "save_to_dir", parts["Tune state saves"])  # every STATE_SAVE_S
    clock = DriverClock(parts)
    start = time.perf_counter()
    result = run_sweep(validate_spec(scale_spec(trials, concurrency)), folder, callbacks=[clock])
    wall = time.perf_counter() - start
    done = sum(r.status == "complete" for r in result.trials)
    print(f"{done} of {trials} trials complete in {wall:.0f} s ({concurrency} at a time); front {len(result.front)}")
    print("driver ms per finished trial, in windows of 100 trials:")
    print(f"{'trials':>10} {'wall':>7} {'CPU':>7}" + "".join(f" {part:>18}" for part in parts))
    marks = clock.marks
    for end in (w for w in WINDOWS if w <= len(marks)):
        a = marks[end - 101] if end > 100 else (0, 0.0, start, dict.fromkeys(parts, 0.0))
        b = marks[end - 1]
        n = b[0] - a[0]
        print(
            f"{f'{a[0] + 1}-{b[0]}':>10} {1000 * (b[2] - a[2]) / n:7.1f} {1000 * (b[1] - a[1]) / n:7.1f}"
            + "".join(f" {1000 * (b[3][part] - a[3][part]) / n:18.1f}" for part in parts)
        )
    saves = parts["Tune state saves"]
    print(
        f"Tune's experiment-state saves: {len(saves)}, {1000 * statistics.mean(saves or [0.0]):.0f} ms on average, "
        f"{1000 * statistics.mean(saves[-10:] or [0.0]):.0f} ms each for the last 10 (every {STATE_SAVE_S} s)"
    )
    return result.tracking_uri


def synthetic_sweep(trials: int, folder: Path, name: str = "synthetic", closed: bool = True) -> str:
    """An N-trial sweep written through SweepStore as the recorder would, without training: closed, or left
    running after one re-rank as the driver's (front membership and the summary written)."""
    uri = local_tracking_uri(folder)
    store = SweepStore(uri)
    spec = validate_spec(scale_spec(trials, 8))
    parent = store.open_sweep(name, spec.model_dump(mode="json"), spec.directions, [0.0, 0.0], str(folder))
    rng, start = random.Random(0), time.perf_counter()
    for i in range(trials):
        trial_id = f"{i:08x}"
        params = {"model": "mlp", "method": "sgd", "lr": rng.uniform(0.01, 0.3)}
        run_id = store.create_trial_run(
            parent, trial_id, {**params, "epochs": 2}, params, {"method": "sgd", "model": "mlp"}
        )
        clean = rng.uniform(0.5, 1.0)
        for epoch in (1, 2):
            robust = rng.uniform(0.0, 1.0 - clean + 0.2)
            store.log_metrics(run_id, {"epoch": epoch, "clean_acc": clean, "robust_acc/pgd_linf_0.1": robust}, epoch)
        store.finish_trial(run_id, "FINISHED")
        if (i + 1) % 1000 == 0:
            print(f"  wrote {i + 1} trials ({time.perf_counter() - start:.0f} s)", flush=True)
    if closed:
        store.close_sweep(name, finished=True)
    else:
        store.write_ranks(store.load_sweep(name), every_rank=False)
    return uri


def time_frontier(uri: str, sweep: str, folder: Path) -> None:
    commands = {
        "frontier list": ["list"],
        f"frontier show {sweep}": ["show", sweep],
        f"frontier export {sweep}": ["export", sweep, "-o", str(folder / "all.parquet")],
    }
    for label, args in commands.items():
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            subprocess.run(
                ["uv", "run", "samat", "frontier", *args, "--tracking-uri", uri],
                cwd=REPO,
                check=True,
                capture_output=True,
            )
            seconds.append(time.perf_counter() - start)
        print(
            f"  samat {label:<32} {statistics.median(seconds):6.1f} s  "
            f"(median of 3: {', '.join(f'{s:.1f}' for s in seconds)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="also time frontier on N trials")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        if args.trials:
            uri = sweep_at_scale(args.trials, args.concurrency, Path(scratch) / "sweep")
            print(f"samat frontier on this sweep ({args.trials} trials):")
            time_frontier(uri, "scale", Path(scratch))
        if args.synthetic:
            print(f"writing a synthetic sweep of {args.synthetic} trials ...", flush=True)
            uri = synthetic_sweep(args.synthetic, Path(scratch) / "synthetic")
            print(f"samat frontier on the synthetic sweep ({args.synthetic} trials):")
            time_frontier(uri, "synthetic", Path(scratch))


if __name__ == "__main__":
    main()
