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
from rich.table import Table

from analysis.cli import add_frontier_parser, front_table, open_store, show_front, stopped_line
from analysis.stores import TrackingError, set_quiet_mlflow_env
from analysis.trials import format_params, stopped_counts
from analysis.ui import runs_page, ui_base
from sweeps.places import SweepRefused, latest_name, place_sweep, resolve_data_dir, resolve_tracking_uri
from sweeps.spec import SpecError, load_spec, validate_spec
from sweeps.storage import StorageFault, check_writable
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
    try:
        check_writable(existing)
    except StorageFault as e:
        raise UsageError(f"--results={show(results)}: {e}") from None


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
    from sweeps.run import check_newest_state, run_sweep  # noqa: PLC0415

    set_quiet_mlflow_env()
    try:
        spec = load_spec(args.spec).overriding(trials=args.trials, concurrency=args.concurrency)
    except SpecError as e:
        raise UsageError(str(e)) from None
    if args.resume and "://" not in args.results:
        name = args.name or latest_name(Path(args.results).expanduser(), spec.name)
        if not name or not (Path(args.results).expanduser() / name).is_dir():
            raise UsageError(f"--resume: no sweep of {spec.name!r} to resume in {args.results}")
        try:
            check_newest_state(Path(args.results).expanduser() / name)
        except SweepRefused as e:
            raise UsageError(str(e)) from None
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
        + (
            f"; MO-ASHA early stopping (grace period {spec.scheduler.grace_period}, η "
            f"{spec.scheduler.reduction_factor:g}, {spec.scheduler.brackets} bracket(s), max {spec.max_epochs} epochs)"
            if spec.scheduler
            else ""
        )
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
    except StorageFault as e:
        console.print(
            f"[red]samat sweep: {e}[/red]: the sweep stopped, and everything written before is kept. Once the folder "
            f"can be written again, resume with:\n"
            f"  uv run samat sweep {args.spec} --resume --results {args.results}",
            soft_wrap=True,
        )
        return 1
    except KeyboardInterrupt:  # Ctrl-C before Tune took over, or a second one while it saved its state
        console.print(
            f"[yellow]Interrupted.[/yellow] What was saved can be resumed with:\n"
            f"  uv run samat sweep {args.spec} --resume --results {args.results}"
        )
        return INTERRUPTED
    print_front(result, Console())
    if result.certification:
        print_certificates(*result.certification, Console())
    print_where(result, store, console)
    if result.pending:
        console.print(
            f"[red]MLflow did not take {result.pending} writes[/red] (the tracking store stopped answering): they are "
            f"kept in {result.pending_path}. When it answers, write them with:\n"
            f"  uv run samat frontier sync {result.name} --results {args.results}"
            + (f" --tracking-uri {result.tracking_uri}" if args.tracking_uri else ""),
            soft_wrap=True,
        )
        return 1
    if not result.finished:
        console.print(
            f"[yellow]The sweep stopped before all trials finished.[/yellow] Resume it with:\n"
            f"  uv run samat sweep {args.spec} --resume --name {result.name} --results {args.results}"
        )
        return INTERRUPTED
    return 0


def print_front(result, console: Console) -> None:
    failed = sum(r.status == "error" for r in result.trials)
    stopped = [r for r in result.trials if r.status == "stopped"]
    console.print(
        front_table(
            f"Pareto front of {result.name}: {len(result.front)} of {len(result.trials)} "
            f"trials{f' ({failed} failed)' if failed else ''}",
            result.objectives,
            result.front,
        )
    )
    if stopped:
        console.print(stopped_line(stopped_counts(stopped), len(result.trials), stopped), soft_wrap=True)


def print_where(result, store, console: Console) -> None:
    """Where the sweep's records are, and the link that opens its front in the MLflow UI."""
    link = (  # a store that stopped answering has no page to link yet
        "(once the store answers again)"
        if result.pending
        else runs_page(ui_base(result.tracking_uri), store.sweep_parent(result.name)[0].experiment_id)
    )
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


def add_front_checks(action) -> None:
    """`samat frontier certify`, `reseed` and `sync`: they run Ray tasks and trials, or find a sweep's folders, so
    they live here."""
    certify = action(
        "certify",
        "re-evaluate the front from its final checkpoints with AutoAttack (reference "
        "standard version) and the sanity checks of Carlini et al. 2019, as Ray tasks "
        "with the sweep's resources; record the verdicts and the certified front in MLflow",
    )
    reseed = action(
        "reseed",
        "train the front's configurations again with more seeds, as Ray trials recorded in the "
        "same sweep, and show each point's mean ± std and which points noise cannot separate",
    )
    for sub in (certify, reseed):
        sub.add_argument("sweep", metavar="SWEEP")
        sub.add_argument(
            "--ranks", type=positive_int, default=1, help="the best K Pareto ranks (1: the front) [default: 1]"
        )
        sub.add_argument("--address", help="the Ray cluster to run on [default: RAY_ADDRESS, else a local Ray]")
    reseed.add_argument("--seeds", type=positive_int, default=2, help="more seeds per point [default: 2]")
    certify.set_defaults(handler=certify_command)
    reseed.set_defaults(handler=reseed_command)
    sync = action(
        "sync",
        "write to MLflow what a sweep kept on the driver's disk while the tracking store did not answer "
        "(its mlflow-pending.jsonl); `samat sweep --resume` does it too",
    )
    sync.add_argument("sweep", metavar="SWEEP", help="the sweep's name: its kept writes are in <results>/SWEEP/")
    sync.set_defaults(handler=sync_command)


def sync_command(args: argparse.Namespace) -> int:
    from analysis.outbox import Outbox, pending_path  # noqa: PLC0415 - MLflow (2 s), imported when syncing

    path = pending_path(place_sweep(args.sweep, args.results, args.sweep, resume=True).study_dir)
    console = Console(stderr=True)
    if not path.is_file():
        console.print(f"{args.sweep}: nothing waits in {path}: MLflow holds every write of the sweep")
        return 0
    store = open_store(args)
    try:
        store.check_reachable()
        _, parent = store.sweep_parent(args.sweep)
    except TrackingError as e:
        raise UsageError(str(e)) from None
    outbox = Outbox(store.tracking_uri, args.sweep, parent.info.run_id, path)
    waiting = outbox.pending()
    left = outbox.retry(now=True)
    if left:
        console.print(f"[red]{left} of {waiting} kept writes still wait[/red] in {path}: run sync again later")
        return 1
    console.print(f"{args.sweep}: wrote the {waiting} kept writes to {store.tracking_uri}")
    return 0


def certify_command(args: argparse.Namespace) -> int:
    # Ray, MLflow and torch, imported when certifying: ~15 s that `samat --help` need not pay
    from sweeps.certify import certify_sweep  # noqa: PLC0415

    store = open_store(args)
    console = Console(stderr=True)
    console.print(f"certifying the best {args.ranks} rank(s) of {args.sweep} with AutoAttack and the sanity checks")
    try:
        sweep, certificates = certify_sweep(
            store,
            args.sweep,
            args.ranks,
            args.address,
            on_certificate=lambda row, cert: console.print(
                f"  {row.trial_id} {row.method}: {cert.verdict}", soft_wrap=True
            ),
        )
    except TrackingError as e:
        raise UsageError(str(e)) from None
    except FileNotFoundError as e:
        console.print(f"[red]cannot certify:[/red] {e}")
        return 1
    print_certificates(sweep, certificates, Console())
    return 0


def reseed_command(args: argparse.Namespace) -> int:
    # Ray Tune, MLflow and torch, imported when reseeding: ~15 s that `samat --help` need not pay
    from sweeps.progress import ProgressCallback, SweepDisplay  # noqa: PLC0415
    from sweeps.reseed import reseed_sweep  # noqa: PLC0415

    store = open_store(args)
    console = Console(stderr=True)
    try:
        front = [r for r in store.load_sweep(args.sweep).rows if r.rank is not None and r.rank <= args.ranks]
        console.print(f"reseeding {len(front)} point(s) of {args.sweep} with {args.seeds} more seed(s) each")
        spec = load_spec_of(store, args.sweep)
        with SweepDisplay(spec, len(front) * args.seeds, console):
            record = reseed_sweep(
                store, args.sweep, args.seeds, args.ranks, args.address, callbacks=[ProgressCallback()]
            )
    except TrackingError as e:
        raise UsageError(str(e)) from None
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted.[/yellow] Finished reseeds are recorded; run reseed again for the rest.")
        return INTERRUPTED
    show_front(record, record.summary(), Console())
    return 0


def load_spec_of(store, name: str):
    raw, _ = store.sweep_spec(name)
    return validate_spec(raw, f"{name}'s spec.yaml")


def print_certificates(sweep, certificates: dict, console: Console) -> None:
    """PGD-10 against AutoAttack per point at the objective's ε, their gap and the verdict, reasons below."""
    from sweeps.certify import certified_radii, gap_rows  # noqa: PLC0415 - imported with certify_sweep above

    objective, _ = certified_radii(sweep.spec)
    rows = sorted((r for r in sweep.record.rows if r.trial_id in certificates), key=lambda r: r.rank)
    images = max(c.images for c in certificates.values())
    table = Table(
        title=f"certified: {sweep.record.name}, {len(rows)} point(s), first {images} test images, "
        f"ε = {objective.name.rsplit('_', 1)[-1]} ({objective.norm})"
    )
    for column in ("trial", "rank", "method", "params", "clean", "PGD-10", "AutoAttack", "gap", "verdict"):
        table.add_column(
            column,
            justify="left" if column in ("trial", "method", "params", "verdict") else "right",
            no_wrap=column == "trial",
            min_width=8 if column == "trial" else None,
        )
    for g in gap_rows(rows, certificates, objective):
        row = g["row"]
        table.add_row(
            row.trial_id,
            str(row.rank),
            row.method,
            format_params(row.params),
            f"{g['clean']:.4f}",
            f"{g['pgd']:.4f}",
            f"{g['autoattack']:.4f}",
            f"{g['gap']:+.4f}",
            "certified" if g["verdict"] == "true" else "[red]suspect[/red]",
        )
    console.print(table)
    for g in gap_rows(rows, certificates, objective):
        for reason in g["reasons"]:
            console.print(f"  {g['row'].trial_id} suspect: {reason}", soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(
        prog="samat",
        description="SAM vs adversarial training: train one model, sweep many "
        "with Ray Tune and Optuna, compare clean/robust Pareto fronts.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_train_parser(subparsers)
    add_sweep_parser(subparsers)
    add_front_checks(add_frontier_parser(subparsers))
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as e:
        print(f"samat {args.command}: error: {e}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
