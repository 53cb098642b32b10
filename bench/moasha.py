"""MO-ASHA against no early stopping: the same spec and sampler seeds, hypervolume reached against epochs spent.

    uv run python bench/moasha.py --out bench_out/             # BENCH_SPEC below, seeds 0 1 2, its grace 2, η 3
    uv run python bench/moasha.py --spec quick --grace 2 --eta 3 --seeds 0 1 2 3 --out bench_out/

For each seed (= `search.seed`, the sampler's), the spec runs twice in one local Ray: without a scheduler and
with MO-ASHA (`--grace`, `--eta`, `--brackets`; default: the spec's own `scheduler:` block, else grace 2, η 3).
Hypervolume counts only trials that trained every epoch (as `samat frontier` does), from one reference point for
every run (the spec's: 0 for accuracies). Epochs are counted from each trial's results, stopped trials' included.
Prints a table per run and the mean ratios; writes `moasha.png` (hypervolume against cumulative epochs and
against wall time, every run) and `moasha.json` (the figures) under `--out`.
Goal: MO-ASHA reaches >= 95 % of the no-stopping hypervolume for <= 40 % of its epochs."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import ray

from analysis.trials import sweep_hypervolume
from sweeps.ray_start import start_ray
from sweeps.run import run_sweep
from sweeps.spec import Scheduler, load_spec, validate_spec

HV_GOAL, EPOCH_GOAL = 0.95, 0.40

# The default benchmark spec: the quick sweep made harder for early stopping to pay, and fairer to slow starters.
# quick's 10 epochs are too few: small_cnn trails mlp after epoch 1 and overtakes it by epoch 2, so a trustworthy
# first rung is at epoch 2, already 20 % of quick's budget. Here trials train 16 epochs (rungs at 2 and 6), the
# ranges are wider (learning rates, ρ and ε that a user unsure of digits would search), so more trials are plainly
# bad early, and there are 48 trials (with 32, ASHA's first records promote too much: 0.41 of the epochs). The
# sampler is random: a random sampler ignores results, so both arms train
# the very same configurations and the hypervolume compares early stopping alone. With TPE the arms' proposals
# part after the first results (a stopped trial tells Optuna less), so the comparison mixes the scheduler with the
# search's luck: TPE, 24 trials x 24 epochs (rungs 2, 6, 18) gave hypervolume ratios 1.13, 0.59 and 0.91 for
# 0.56, 0.34 and 0.34 of the epochs; TPE, 24 x 16: 0.93, 1.08 and 1.00 for 0.45, 0.41 and 0.36.
BENCH_SPEC = {
    "name": "moasha_bench",
    "description": "quick, harder: 16 epochs, wider ranges, 48 trials sampled at random",
    "dataset": "digits",
    "models": ["small_cnn", "mlp"],
    "methods": {
        "sgd": {},
        "sam": {"rho": {"low": 0.01, "high": 2.0, "log": True}},
        "at": {"norm": "linf", "eps": {"low": 0.02, "high": 0.4}, "attack_steps": 3},
        "fast_at": {"norm": "linf", "eps": {"low": 0.02, "high": 0.4}},
    },
    "train": {"epochs": 16, "lr": {"low": 0.005, "high": 0.5, "log": True}, "batch_size": 64, "schedule": "piecewise"},
    "objective_attack": "pgd_linf_0.1",
    "search": {"sampler": "random", "seed": 0, "trials": 48, "concurrency": 2},
    "scheduler": {"type": "moasha", "grace_period": 2, "reduction_factor": 3},
    "resources": {"cpu": 1, "gpu": 0},
}


def epoch_events(result, start: float) -> list[tuple[float, int, object]]:
    """Every epoch every trial reported, in time order: (seconds since the sweep started, epoch, its row when the
    epoch completed the trial's full budget, else None)."""
    events = []
    for row in result.trials:
        lines = (Path(row.path) / "result.json").read_text().splitlines()
        results = [r for r in (json.loads(line) for line in lines if line.endswith("}")) if "epoch" in r]
        for r in results:
            last = r is results[-1] and row.status == "complete"
            events.append((r["timestamp"] - start, r["epoch"], row if last else None))
    return sorted(events, key=lambda e: (e[0], e[2] is not None))


def curve(result, start: float, reference: list) -> list[tuple[float, int, float]]:
    """(seconds, cumulative epochs, hypervolume of the complete trials so far) after every epoch of the sweep."""
    points, complete = [], []
    for epochs, (seconds, _, row) in enumerate(epoch_events(result, start), 1):
        if row is not None:
            complete.append(row)
        points.append((seconds, epochs, sweep_hypervolume(complete, result.directions, reference)))
    return points


def run(spec, results: str, name: str) -> dict:
    start = time.time()
    result = run_sweep(spec, results, name=name)
    reference = [r if r is not None else 0.0 for r in spec.hypervolume_reference]
    points = curve(result, int(start), reference)
    complete = [r for r in result.trials if r.status == "complete"]
    return {
        "name": name,
        "hypervolume": sweep_hypervolume(complete, result.directions, reference),
        "epochs": points[-1][1] if points else 0,
        "wall_s": result.wall_s,
        "complete": len(complete),
        "stopped": sum(r.status == "stopped" for r in result.trials),
        "failed": sum(r.status == "error" for r in result.trials),
        "front": len(result.front),
        "curve": points,
    }


def hv_at(points: list, epochs: int) -> float:
    """The hypervolume a run had reached when it had spent `epochs` epochs."""
    return max((hv for _, e, hv in points if e <= epochs), default=0.0)


def epochs_to(points: list, hypervolume: float) -> int | None:
    """The epochs a run had spent when its hypervolume first reached `hypervolume`; None if it never did."""
    return next((e for _, e, hv in points if hv >= hypervolume), None)


def plot(runs: dict, path: Path, title: str) -> None:
    import matplotlib  # noqa: PLC0415 - only the plot pays for matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120)
    colours = {"none": "#1f77b4", "moasha": "#d62728"}
    for seed, pair in runs.items():
        for arm, figures in pair.items():
            seconds, epochs, hv = zip(*figures["curve"]) if figures["curve"] else ((), (), ())
            label = f"{'no stopping' if arm == 'none' else 'MO-ASHA'}" if seed == min(runs) else None
            axes[0].step(epochs, hv, where="post", color=colours[arm], alpha=0.8, label=label)
            axes[1].step(seconds, hv, where="post", color=colours[arm], alpha=0.8, label=label)
    for ax, xlabel in zip(axes, ("epochs spent (all trials, cumulative)", "wall time (s)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("hypervolume of fully trained trials")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spec", default="bench", help="a spec by name or file, or bench: the harder quick spec above [default]"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--grace", type=int, help="grace period [default: the spec's, else 1]")
    parser.add_argument("--eta", type=float, help="reduction factor η [default: the spec's, else 3]")
    parser.add_argument("--brackets", type=int, help="[default: the spec's, else 1]")
    parser.add_argument("--trials", type=int, help="trials per sweep [default: the spec's]")
    parser.add_argument("--out", default="bench_out", help="folder for moasha.png and moasha.json")
    parser.add_argument("--keep", metavar="DIR", help="keep the sweeps' results (Ray, Optuna, MLflow) in DIR")
    args = parser.parse_args()

    base = (validate_spec(BENCH_SPEC) if args.spec == "bench" else load_spec(args.spec)).overriding(trials=args.trials)
    own = base.scheduler or Scheduler(type="moasha", grace_period=2, reduction_factor=3)
    scheduler = own.model_copy(
        update={
            k: v
            for k, v in {"grace_period": args.grace, "reduction_factor": args.eta, "brackets": args.brackets}.items()
            if v is not None
        }
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arms = {"none": None, "moasha": scheduler}
    print(
        f"{base.name}: {base.search.trials} trials, up to {base.max_epochs} epochs, sampler {base.search.sampler}, "
        f"concurrency {base.search.concurrency}; MO-ASHA grace {scheduler.grace_period}, η "
        f"{scheduler.reduction_factor:g}, {scheduler.brackets} bracket(s); seeds {args.seeds}",
        flush=True,
    )
    start_ray(None)  # one local Ray for every sweep: run_sweep joins it and leaves it running
    runs: dict[int, dict[str, dict]] = {}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            results = args.keep or scratch
            for seed in args.seeds:
                for arm, sched in arms.items():
                    spec = base.model_copy(
                        update={"scheduler": sched, "search": base.search.model_copy(update={"seed": seed})}
                    )
                    figures = run(spec, results, f"{base.name}-{arm}-s{seed}")
                    runs.setdefault(seed, {})[arm] = figures
                    print(
                        f"  seed {seed} {arm:<7} hv {figures['hypervolume']:.4f}  epochs {figures['epochs']:4d}  "
                        f"wall {figures['wall_s']:6.1f} s  complete {figures['complete']:2d}  stopped "
                        f"{figures['stopped']:2d}  failed {figures['failed']}",
                        flush=True,
                    )
    finally:
        ray.shutdown()

    print()
    header = (
        f"{'seed':>4}  {'HV none':>8}  {'HV MO-ASHA':>10}  {'HV ratio':>8}  {'epochs none':>11}  "
        f"{'epochs MO-ASHA':>14}  {'epoch ratio':>11}  {'wall none':>9}  {'wall MO-ASHA':>12}  {'wall ratio':>10}  "
        f"{'HV none at MO-ASHA epochs':>25}  {'MO-ASHA epochs to 95 % HV none':>30}"
    )
    print(header)
    ratios = {"hv": [], "epochs": [], "wall": [], "hv_same_epochs": []}
    for seed, pair in runs.items():
        none, mo = pair["none"], pair["moasha"]
        hv_ratio, epoch_ratio = mo["hypervolume"] / none["hypervolume"], mo["epochs"] / none["epochs"]
        wall_ratio, same = mo["wall_s"] / none["wall_s"], hv_at(none["curve"], mo["epochs"])
        reach = epochs_to(mo["curve"], HV_GOAL * none["hypervolume"])
        reached = "never" if reach is None else f"{reach} ({reach / none['epochs']:.0%})"
        for key, value in zip(ratios, (hv_ratio, epoch_ratio, wall_ratio, same / none["hypervolume"])):
            ratios[key].append(value)
        print(
            f"{seed:>4}  {none['hypervolume']:8.4f}  {mo['hypervolume']:10.4f}  {hv_ratio:8.3f}  "
            f"{none['epochs']:11d}  {mo['epochs']:14d}  {epoch_ratio:11.3f}  {none['wall_s']:9.1f}  "
            f"{mo['wall_s']:12.1f}  {wall_ratio:10.3f}  {same:25.4f}  "
            f"{reached:>30}"
        )
    mean = {k: statistics.mean(v) for k, v in ratios.items()}
    print(
        f"mean  HV ratio {mean['hv']:.3f} (goal >= {HV_GOAL}), epoch ratio {mean['epochs']:.3f} (goal <= "
        f"{EPOCH_GOAL}), wall ratio {mean['wall']:.3f}; no stopping, cut at MO-ASHA's epochs, reaches "
        f"{mean['hv_same_epochs']:.3f} of its final HV  ->  "
        f"{'goal met' if mean['hv'] >= HV_GOAL and mean['epochs'] <= EPOCH_GOAL else 'goal MISSED'}"
    )
    title = (
        f"{base.name}: {base.search.trials} trials × {base.max_epochs} epochs, seeds {args.seeds}; MO-ASHA "
        f"grace {scheduler.grace_period}, η {scheduler.reduction_factor:g}: HV ratio {mean['hv']:.3f}, "
        f"epoch ratio {mean['epochs']:.3f}"
    )
    plot(runs, out / "moasha.png", title)
    (out / "moasha.json").write_text(json.dumps({"spec": base.name, "ratios": ratios, "mean": mean, "runs": runs}))
    print(f"wrote {out / 'moasha.png'} and {out / 'moasha.json'}")


if __name__ == "__main__":
    main()
