"""Fixed start-up, as a user meets it: `samat --help`, `samat frontier list`, and a 4-trial sweep (mlp, one epoch)
from the command to its first trial training and to the prompt. Every command is a fresh `uv run`.

    uv run python bench/startup.py                              # this checkout
    uv run python bench/startup.py --before 6fa162d             # and an earlier commit, alternately, in one run

`--before REF` checks REF out into a temporary git worktree with its own `uv sync`ed environment (as a fresh clone
would have it), then measures both checkouts in turn, `--repeats` times each, and prints the medians. Goals (on a
2-core machine of the project's kind): first trial training <= 12 s after the command; `samat --help` and
`samat frontier list` <= 1.5 s.

"First trial training" is when the first epoch of the first trial began: that epoch's result time (Tune's
`timestamp`) less its training and evaluation seconds (to within the checkpoint it writes, ~0.02 s)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
GOALS = {"samat --help": 1.5, "samat frontier list": 1.5, "sweep: first trial training": 12.0}


def tiny_spec(checkout: Path, folder: Path) -> Path:
    """The quick spec cut to the issue's measurement: 4 trials of the mlp for one epoch, no final curves."""
    spec = yaml.safe_load((checkout / "sweeps" / "quick.yaml").read_text())
    spec.update(name="startup", models=["mlp"], final_attacks=[])
    spec["train"]["epochs"] = 1
    spec["search"]["trials"] = 4
    path = folder / "startup.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(unix time at launch, seconds to exit) of a command that must succeed."""
    start, clock = time.time(), time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} (in {cwd}) failed:\n{done.stderr[-2000:]}")
    return start, time.perf_counter() - clock


def first_training(experiment: Path) -> float:
    """Unix time when the sweep's first trial began its first epoch."""
    starts = []
    for result_file in experiment.glob("*/result.json"):
        first = json.loads(result_file.read_text().splitlines()[0])
        starts.append(first["timestamp"] - first["train_time_s"] - first["eval_time_s"])
    return min(starts)


def measure(checkout: Path, work: Path) -> dict[str, float]:
    """One round of the three measurements in `checkout`; sweep results go to a fresh folder under `work`."""
    results = Path(tempfile.mkdtemp(dir=work))
    spec = tiny_spec(checkout, results)
    launched, sweep_s = timed(["uv", "run", "samat", "sweep", str(spec), "--results", str(results)], checkout)
    _, help_s = timed(["uv", "run", "samat", "--help"], checkout)
    _, list_s = timed(["uv", "run", "samat", "frontier", "list", "--results", str(results)], checkout)
    return {
        "samat --help": help_s,
        "samat frontier list": list_s,
        "sweep: first trial training": first_training(results / "startup") - launched,
        "sweep: command to prompt": sweep_s,
    }


def worktree(ref: str, work: Path) -> Path:
    """REF checked out beside this repository, its environment synced as a fresh clone's would be."""
    path = work / f"before-{ref}"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), ref], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["uv", "sync", "--quiet"], cwd=path, check=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REF", help="also measure this git commit, alternately with this one")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        checkouts = {"now": REPO}
        try:
            if args.before:
                checkouts = {f"before ({args.before})": worktree(args.before, work), **checkouts}
            rounds = {name: [] for name in checkouts}
            for i in range(args.repeats):
                for name, checkout in checkouts.items():
                    rounds[name].append(measure(checkout, work))
                    print(f"round {i + 1} {name}: " + ", ".join(f"{k} {v:.1f} s" for k, v in rounds[name][-1].items()))
        finally:
            for checkout in checkouts.values():
                if checkout != REPO:
                    subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=REPO, check=False)
    print(f"\nmedians of {args.repeats} rounds, seconds:")
    names = list(rounds)
    print(f"{'':32}" + "".join(f"{n:>22}" for n in names) + f"{'goal':>8}")
    for key in rounds[names[0]][0]:
        medians = [statistics.median(r[key] for r in rounds[n]) for n in names]
        goal = f"{GOALS[key]:g}" if key in GOALS else ""
        print(f"{key:32}" + "".join(f"{m:22.1f}" for m in medians) + f"{goal:>8}")


if __name__ == "__main__":
    main()
