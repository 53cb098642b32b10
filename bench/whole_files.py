"""What samat's whole-file copies (sweeps.whole_files) cost against Ray's own, per state save of a sweep.

    uv run python bench/whole_files.py                    # the newest sweep under ./results
    uv run python bench/whole_files.py results/quick --rounds 50 --running 8

At each state save Tune copies its staging folder (the experiment state and each trial's result files) into the
results folder. This builds a staging folder from a sweep's folder (without checkpoints and the Optuna study) and
then plays saves: each round replaces the experiment state (as Tune does, by a rename) and appends a result line
to `--running` trials' result.json, then copies the folder into one results folder through Ray's upload and into
another through samat's, timed alternately. It prints the median and longest copy of each and their ratio."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.fs

from sweeps.whole_files import RAY_UPLOAD, upload_whole


def newest_sweep(results: Path) -> Path:
    sweeps = [p.parent for p in results.glob("*/experiment_state-*.json")]
    if not sweeps:
        raise SystemExit(f"bench/whole_files.py: no sweep under {results}: run `uv run samat sweep` first")
    return max(sweeps, key=lambda p: p.stat().st_mtime)


def play_a_save(staging: Path, running: list[Path], round_: int) -> None:
    """What changes in a staging folder between two copies: the state file (replaced) and running trials' results."""
    for state in staging.glob("experiment_state-*.json"):
        replacement = state.with_name(f".tmp_{state.name}")
        replacement.write_bytes(state.read_bytes() + b" ")
        os.replace(replacement, state)
    for result in running:
        with open(result, "a") as f:
            f.write(f'{{"round": {round_}}}\n')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", type=Path, help="a sweep's folder [default: the newest under ./results]")
    parser.add_argument("--rounds", type=int, default=30, help="saves to play [default: 30]")
    parser.add_argument("--running", type=int, default=2, help="trials whose results grow at each save [default: 2]")
    args = parser.parse_args()
    sweep = args.sweep or newest_sweep(Path("results"))
    uploads = {"Ray's (every file, in place)": RAY_UPLOAD, "samat's (what changed, whole)": upload_whole}
    times = {name: [] for name in uploads}
    local = pyarrow.fs.LocalFileSystem()
    with tempfile.TemporaryDirectory() as scratch:
        staging = Path(scratch, "staging")
        shutil.copytree(sweep, staging, ignore=shutil.ignore_patterns("checkpoint_*", "optuna.db*", ".*"))
        files = sum(1 for p in staging.rglob("*") if p.is_file())
        running = sorted(staging.glob("*/result.json"))[: args.running]
        for round_ in range(args.rounds + 1):
            play_a_save(staging, running, round_)
            for i, (name, upload) in enumerate(uploads.items()):
                start = time.perf_counter()
                upload(str(staging), local, str(Path(scratch, f"results-{i}", sweep.name)))
                if round_:  # the first copy writes every file through both
                    times[name].append(time.perf_counter() - start)
    print(f"{sweep}: {files} files, {len(running)} trials running; {args.rounds} saves copied through each")
    for name, seconds in times.items():
        print(f"  {name:31s} median {statistics.median(seconds) * 1e3:6.1f} ms, longest {max(seconds) * 1e3:6.1f} ms")
    ray, samat = (statistics.median(seconds) for seconds in times.values())
    print(f"  samat's / Ray's: {samat / ray:.2f}")


if __name__ == "__main__":
    main()
