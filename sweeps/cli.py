"""The `samat` console command: one parser, a subcommand per job.

Command handlers import the layers they drive (the runner pulls in Ray Tune, MLflow and, through the
trainable, torch: about 15 s together on a 2-core machine) when they run, so `samat --help` stays quick."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from analysis.cli import add_frontier_parser, front_table
from analysis.stores import TrackingError, set_quiet_mlflow_env
from analysis.ui import runs_page, ui_base
from sweeps.places import SweepRefused, latest_name, resolve_data_dir, resolve_tracking_uri
from sweeps.spec import SpecError, load_spec
from trainables.cli import add_train_parser
from trainables.usage import INTERRUPTED, USAGE_ERROR, OneLineParser, UsageError, positive_int, show


def add_sweep_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="search ρ, ε and the architecture with Ray Tune and Optuna (clean vs robust accuracy)",
        description="Run a sweep spec on Ray Tune with Optuna's multi-objective search and print its Pareto "
        "front. With no SPEC, runs sweeps/quick.yaml on a local Ray (a few minutes on a laptop).",
    )
    parser.add_argument(
        "spec",
        nargs="?",
        default="quick",
        metavar="SPEC",
        help="a spec in sweeps/ by name (quick, cifar10, cifar10_arch, cifar100, tinyimagenet) "
        "or a YAML file [default: quick]",
    )
    parser.add_argument("--trials", type=positive_int, help="number of trials [default: the spec's]")
    parser.add_argument("--concurrency", type=positive_int, help="trials at once [default: the spec's]")
    parser.add_argument(
        "--results",
        default=os.environ.get("SAMAT_RESULTS", "results"),
        metavar="DIR",
        help="folder, or shared URI (s3://...) on a cluster, for Ray results and checkpoints "
        "[default: SAMAT_RESULTS, else results]",
    )
    parser.add_argument(
        "--name",
        help="sweep name [default: the spec's name, numbered -2, -3... if taken; with "
        "--resume, the latest sweep of this spec]",
    )
    parser.add_argument("--address", help="join this Ray cluster instead of starting one [default: RAY_ADDRESS]")
    parser.add_argument(
        "--tracking-uri", help="MLflow tracking URI [default: MLFLOW_TRACKING_URI, else sqlite:///<results>/mlflow.db]"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep: finished trials are kept, unfinished ones continue "
        "from their last checkpoint",
    )
    parser.set_defaults(handler=sweep_command)


def check_results_dir(results: str) -> None:
    """Refuse a results folder that cannot be written, without creating anything: the sweep makes it later."""
    if "://" in results:
        return
    path = Path(results).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"--results={show(results)}: exists and is not a folder")
    existing = next(p for p in [path, *path.parents] if p.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UsageError(f"--results={show(results)}: cannot write there ({existing}: {e.strerror})") from None


def check_data(spec, address: str | None) -> None:
    """On this machine, a data set that is missing is a usage error now, not a failure of every trial later.
    (On a cluster the data lives on the workers, which say so themselves.)"""
    if spec.dataset == "digits" or spec.download or address or os.environ.get("RAY_ADDRESS"):
        return
    folder = Path(resolve_data_dir(spec.data_dir))
    if not folder.is_dir():
        raise UsageError(
            f"data_dir={show(spec.data_dir)}: no such folder {folder} for {spec.dataset} (set "
            f"data_dir in the spec, SAMAT_DATA_ROOT, or download: true)"
        )


def sweep_command(args: argparse.Namespace) -> int:
    # the runner, imported when a sweep runs: Ray Tune, MLflow and torch take ~15 s to import on 2 cores
    from analysis.tracking import SweepStore  # noqa: PLC0415
    from sweeps.progress import ProgressCallback, SweepDisplay  # noqa: PLC0415
    from sweeps.run import run_sweep  # noqa: PLC0415

    set_quiet_mlflow_env()
    try:
        spec = load_spec(args.spec).overriding(trials=args.trials, concurrency=args.concurrency)
    except SpecError as e:
        raise UsageError(str(e)) from None
    if args.resume and "://" not in args.results:
        name = args.name or latest_name(Path(args.results).expanduser(), spec.name)
        if not name or not (Path(args.results).expanduser() / name).is_dir():
            raise UsageError(f"--resume: no sweep of {spec.name!r} to resume in {args.results}")
    check_results_dir(args.results)
    check_data(spec, args.address)
    try:  # the tracking store answers before anything is announced, written or started
        store = SweepStore(resolve_tracking_uri(args.tracking_uri, args.results))
        if not store.tracking_uri.startswith("sqlite:///"):
            store.check_reachable()
    except TrackingError as e:
        raise UsageError(f"--tracking-uri: {e}") from None
    except SweepRefused as e:
        raise UsageError(str(e)) from None
    console = Console(stderr=True)
    console.print(
        f"[bold]samat sweep[/bold] {spec.name}: {spec.search.trials} trials of {', '.join(spec.models)} "
        f"x {', '.join(spec.methods)} on {spec.dataset}; objectives "
        f"{', '.join(f'{metric} ({direction})' for metric, direction in spec.directions.items())}"
    )
    try:
        with SweepDisplay(spec, spec.search.trials, console):
            result = run_sweep(
                spec,
                args.results,
                name=args.name,
                resume=args.resume,
                address=args.address,
                tracking_uri=args.tracking_uri,
                callbacks=[ProgressCallback()],
            )
    except TrackingError as e:
        raise UsageError(f"--tracking-uri: {e}") from None
    except SweepRefused as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:  # Ctrl-C before Tune took over, or a second one while it saved its state
        console.print(
            f"[yellow]Interrupted.[/yellow] What was saved can be resumed with:\n"
            f"  uv run samat sweep {args.spec} --resume --results {args.results}"
        )
        return INTERRUPTED
    print_front(result, Console())
    print_where(result, store, console)
    if not result.finished:
        console.print(
            f"[yellow]The sweep stopped before all trials finished.[/yellow] Resume it with:\n"
            f"  uv run samat sweep {args.spec} --resume --name {result.name} --results {args.results}"
        )
        return INTERRUPTED
    return 0


def print_front(result, console: Console) -> None:
    failed = sum(r.status == "error" for r in result.trials)
    console.print(
        front_table(
            f"Pareto front of {result.name}: {len(result.front)} of {len(result.trials)} "
            f"trials{f' ({failed} failed)' if failed else ''}",
            result.objectives,
            result.front,
        )
    )


def print_where(result, store, console: Console) -> None:
    """Where the sweep's records are, and the link that opens its front in the MLflow UI."""
    link = runs_page(ui_base(result.tracking_uri), store.sweep_parent(result.name)[0].experiment_id)
    serve = (
        f"\n  (start the UI first: uv run samat frontier ui {result.name} --tracking-uri {result.tracking_uri})"
        if result.tracking_uri.startswith("sqlite:///")
        else ""
    )
    console.print(
        f"results: {result.path}\noptuna study: {result.optuna_storage} (study {result.name!r})\n"
        f"MLflow: {result.tracking_uri} (experiment {result.name!r})\nfront in the MLflow UI: {link}{serve}\n"
        f"wall time {result.wall_s:.0f} s",
        soft_wrap=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="samat",
        description="SAM vs adversarial training: train one model, sweep many "
        "with Ray Tune and Optuna, compare clean/robust Pareto fronts.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_train_parser(subparsers)
    add_sweep_parser(subparsers)
    add_frontier_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as e:
        print(f"samat {args.command}: error: {e}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
