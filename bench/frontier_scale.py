"""`samat frontier` on a 10,000-trial store as a user runs it: each command a fresh process.

    uv run python bench/frontier_scale.py --store /tmp/frontier-store
    uv run python bench/frontier_scale.py --store /tmp/frontier-store --before /tmp/frontier-before

`--store` holds two sqlite stores of `--trials` synthetic trials each (bench/scale.py's `synthetic_sweep`,
written through samat's MLflow layer): `closed` (closed as a sweep's end closes it) and `running` (left running
after a re-rank, as a driver leaves it between two trials). Writing them takes a while (about 40 minutes for
10,000 trials on 2 busy cores), so they are kept and reused while they hold `--trials` trials.

Each command runs once untimed (it warms the file cache, and a `show` whose front index is missing writes it),
then `--repeats` times through `uv run samat` and through the environment's `samat` script alone (what `uv run`
starts once it has checked the environment; `uv run true` times that check); the median is printed. "index
stale" changes the running store's modification time before each run, as any write of a live sweep does: that
`show` reads MLflow.

`--before DIR` also times an older samat: DIR holds its packages (a copy of analysis/, sweeps/ and trainables/
taken before a change), first on PYTHONPATH. Both are timed against the same stores, interleaved (before, after,
before...), and every export of both must hold the same rows."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from scale import REPO, synthetic_sweep

from analysis.export import read_table
from trainables.settings import local_tracking_uri

KINDS = ("closed", "running")
SAMAT = str(Path(sys.executable).with_name("samat"))
LAUNCHERS = {"uv run samat": ["uv", "run", "samat"], "samat": [SAMAT]}


def build(store: Path, kind: str, trials: int) -> str:
    """The sweep `kind` of `trials` trials in its own sqlite store under `store`, written unless already there."""
    folder = store / kind
    built = folder / f"built-{trials}"
    if not built.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        synthetic_sweep(trials, folder, name=kind, closed=kind == "closed")
        built.touch()
    return local_tracking_uri(folder)


def commands(uri: dict[str, str]) -> dict[str, list[str]]:
    """Label -> the `samat frontier` arguments; `{out}` is the folder exports go to."""
    return {
        "show closed": ["show", "closed", "--tracking-uri", uri["closed"]],
        "show running": ["show", "running", "--tracking-uri", uri["running"]],
        "show running, index stale": ["show", "running", "--tracking-uri", uri["running"]],
        "export closed .parquet": ["export", "closed", "-o", "{out}/closed.parquet", "--tracking-uri", uri["closed"]],
        "export closed .json": ["export", "closed", "-o", "{out}/closed.json", "--tracking-uri", uri["closed"]],
        "export running .parquet": [
            "export",
            "running",
            "-o",
            "{out}/running.parquet",
            "--tracking-uri",
            uri["running"],
        ],
        "export running .json": ["export", "running", "-o", "{out}/running.json", "--tracking-uri", uri["running"]],
    }


def seconds(command: list[str], env: dict[str, str], stale: Path | None = None) -> float:
    """Wall seconds of one fresh process; `stale`: a database marked written first."""
    if stale:
        os.utime(stale)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return took


def environments(before: Path | None) -> dict[str, dict[str, str]]:
    """Version -> the environment it runs in: the checkout's packages, or the older ones first on the path."""
    after = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if before is None:
        return {"after": after}
    older = {**after, "PYTHONPATH": str(before)}
    probe = [sys.executable, "-P", "-c", "import analysis; print(analysis.__file__)"]  # -P: not the checkout's
    found = subprocess.run(probe, env=older, capture_output=True, text=True, check=True).stdout.strip()
    if not found.startswith(str(before)):
        raise SystemExit(f"--before={before}: `import analysis` finds {found}")
    return {"before": older, "after": after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, metavar="DIR", help="where the stores are kept")
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--before", type=Path, metavar="DIR", help="a folder holding an older samat's packages")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    args.store.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(len(KINDS)) as pool:  # two independent stores: written side by side
        uri = dict(zip(KINDS, pool.map(build, [args.store] * 2, KINDS, [args.trials] * 2)))
    print(f"stores of {args.trials} trials under {args.store} ready ({time.perf_counter() - start:.0f} s)")
    versions = environments(args.before and args.before.resolve())
    running_db = Path(uri["running"].removeprefix("sqlite:///"))
    uv_check = [seconds(["uv", "run", "true"], versions["after"]) for _ in range(args.repeats)]
    taken: dict[tuple[str, str, str], list[float]] = {}
    for label, argv in commands(uri).items():
        stale = running_db if "stale" in label else None
        for version, env in versions.items():
            (args.store / "exports" / version).mkdir(parents=True, exist_ok=True)
            seconds([SAMAT, "frontier", *(a.format(out=args.store / "exports" / version) for a in argv)], env, stale)
        for _ in range(args.repeats):
            for launcher, prefix in LAUNCHERS.items():
                for version, env in versions.items():
                    command = [*prefix, "frontier", *(a.format(out=args.store / "exports" / version) for a in argv)]
                    taken.setdefault((label, launcher, version), []).append(seconds(command, env, stale))
    if args.before:
        for file in sorted((args.store / "exports" / "after").iterdir()):
            if read_table(file) != read_table(args.store / "exports" / "before" / file.name):
                raise SystemExit(f"{file.name}: the two versions exported different rows")
        print("every export holds the same rows in both versions")
    print(
        f"\n{args.trials} trials: seconds, the median of {args.repeats} fresh processes "
        f"(`uv run true` alone: {statistics.median(uv_check):.2f} s)"
    )
    for launcher in LAUNCHERS:
        print(f"through `{launcher}`:\n{'samat frontier ...':<28}" + "".join(f"{v:>10}" for v in versions), end="")
        print(f"{'before/after':>14}" if args.before else "")
        for label in commands(uri):
            median = {v: statistics.median(taken[label, launcher, v]) for v in versions}
            ratio = f"{median['before'] / median['after']:>13.1f}x" if args.before else ""
            print(f"{label:<28}" + "".join(f"{median[v]:>10.2f}" for v in versions) + ratio)


if __name__ == "__main__":
    main()
