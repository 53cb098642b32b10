"""Where a command's CPU goes, the whole machine's: wall time, the CPU-seconds every core spent busy (/proc/stat), and
the CPU time of every process it started, by kind (Ray trials, sweep drivers, MLflow servers, Ray's daemons...).
Made for the test suite, whose Ray clusters, servers and killed drivers leave no parent to account for them:

    python3 bench/suite_cpu.py -- uv run pytest             # on a fresh clone, nothing else running
    python3 bench/suite_cpu.py --top 20 -- uv run samat sweep

Processes are sampled every 0.3 s (the sampling costs 1-2 % of one core): a process's CPU time after its last
sample is lost, so the kinds add up to a little less than the busy total. Linux only; the standard library only."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter

TICK = os.sysconf("SC_CLK_TCK")
# the first of these found in a process's command line names its kind; otherwise the executable's name does
KINDS = (
    ("uv run ", "uv run (checks the environment, then runs its command)"),
    ("ray::", "Ray trial and task workers"),
    ("setup_worker.py", "Ray trial and task workers"),
    ("default_worker.py", "Ray trial and task workers"),
    ("samat sweep", "samat sweep drivers"),
    ("samat frontier", "samat frontier commands"),
    ("pytest", "pytest and its workers (torch-only tests, in-process sweeps)"),
    # xdist's workers: execnet starts them as `python -c "import sys;exec(eval(sys.stdin.readline()))"`
    ("exec(eval(sys.stdin.readline()))", "pytest and its workers (torch-only tests, in-process sweeps)"),
    ("pip_compileall.py", "uv compiling the environment to bytecode"),
    ("mlflow", "MLflow servers and UI"),
    ("uvicorn", "MLflow servers and UI"),
    ("huey", "MLflow servers and UI"),
    ("gcs_server", "Ray's daemons"),
    ("raylet", "Ray's daemons"),
    ("dashboard", "Ray's daemons"),
    ("log_monitor", "Ray's daemons"),
    ("monitor.py", "Ray's daemons"),
    ("runtime_env", "Ray's daemons"),
    ("cc1plus", "C++ compiler (torch.compile)"),
)


def busy_and_total() -> tuple[int, int]:
    """The machine's busy and total clock ticks since boot, all cores."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return sum(ticks) - idle, sum(ticks)


def processes() -> dict[tuple[int, int], tuple[int, str]]:
    """Every process, by (pid, start time), with its CPU ticks so far and its command line (or name)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            with open(f"/proc/{pid}/cmdline") as f:
                command = f.read().replace("\0", " ").strip()
        except OSError:
            continue  # ended between the listing and the read
        fields = stat[stat.rfind(")") + 2 :].split()
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        out[int(pid), int(fields[19])] = (int(fields[11]) + int(fields[12]), command or name)
    return out


def kind(command: str) -> str:
    kinds = [name for marker, name in KINDS if marker in command]
    return kinds[0] if kinds else os.path.basename(command.split()[0]) if command else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=0, help="also list the N processes that used the most CPU")
    parser.add_argument("command", nargs="+", help="the command to run (after --)")
    args = parser.parse_args()

    before, seen = processes(), {}  # process -> (ticks used since the start, longest command line seen)
    busy0, total0 = busy_and_total()
    start = time.monotonic()
    command = subprocess.Popen(args.command)
    while command.poll() is None:
        for process, (ticks, line) in processes().items():
            ticks -= before.get(process, (0,))[0]  # running before the command: count only what it used since
            used, known = seen.get(process, (0, ""))
            seen[process] = (max(used, ticks), known if len(known) > len(line) else line)  # a dying one loses its line
        time.sleep(0.3)
    wall = time.monotonic() - start
    busy1, total1 = busy_and_total()

    print(
        f"\nwall {wall:.1f} s; the machine was busy {(busy1 - busy0) / TICK:.1f} CPU-s "
        f"({(busy1 - busy0) / (total1 - total0):.0%} of {os.cpu_count()} cores)"
    )
    by_kind, count = Counter(), Counter()
    for used, line in seen.values():
        if used:
            name = kind(line)
            by_kind[name] += used / TICK
            count[name] += 1
    for name, seconds in by_kind.most_common(12):
        print(f"{seconds:8.1f} CPU-s  {count[name]:4d} processes  {name}")
    for used, line in sorted(seen.values(), reverse=True)[: args.top]:
        print(f"{used / TICK:8.1f} CPU-s  {line[:150]}")
    return command.returncode


if __name__ == "__main__":
    sys.exit(main())
