"""The handlers of the commands that run Ray: `samat sweep`, and `samat frontier audit`, `reseed` and `sync` (which
find a sweep's Ray folders). The command tree that calls them is sweeps/cli.py; each handler takes the parsed
arguments, with `args.settings` resolved there once, and raises UsageError for what the user can fix.

The runner, imported when a handler runs, pulls in Ray Tune, MLflow and (through the trainable) torch: ~15 s
together on a 2-core machine, which `samat --help` need not pay."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from analysis.stores import set_quiet_mlflow_env
from analysis.tables import front_table, show_front, stopped_line
from analysis.trials import format_params, stopped_counts
from analysis.ui import runs_page, ui_base
from sweeps.places import latest_name, place_sweep
from sweeps.spec import load_spec, validate_spec
from sweeps.storage import StorageFault, check_writable
from trainables import settings
from trainables.cifar_c import open_corruption_folder
from trainables.usage import INTERRUPTED, UsageError, show, terminal_console
from trainables.vocabulary import IMAGE_SHAPE, corruptions_named


def check_results_dir(places: settings.Settings) -> None:
    """Refuse a results folder that cannot be written, without creating anything: the sweep makes it later."""
    if places.remote_results:
        return
    path = Path(places.results)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{places.results_named}: exists and is not a folder")
    existing = next(p for p in [path, *path.parents] if p.exists())
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UsageError(f"{places.results_named}: cannot write there ({existing}: {e.strerror})") from None
    try:
        check_writable(existing)
    except StorageFault as e:
        raise UsageError(f"{places.results_named}: {e}") from None


def check_data(spec, address: str | None) -> None:
    """On this machine, a data set that is missing is a usage error now, not a failure of every trial later.
    (On a cluster the data lives on the workers, which say so themselves.)"""
    if address or os.environ.get("RAY_ADDRESS"):
        return
    named = corruptions_named(spec.final_attacks)
    if spec.corruption_dir and named:  # the files, as far as they can be checked without the test set's labels
        channels, side, _ = IMAGE_SHAPE[spec.dataset]
        side = spec.image_size if spec.dataset == "tinyimagenet" and spec.image_size else side  # its resize alone
        open_corruption_folder(settings.data_dir(spec.corruption_dir), named, (channels, side, side))
    if spec.dataset == "digits" or spec.download:
        return
    folder = Path(settings.data_dir(spec.data_dir))
    if not folder.is_dir():
        raise UsageError(
            f"data_dir={show(spec.data_dir)}: no such folder {folder} for {spec.dataset} (set "
            f"data_dir in the spec, SAMAT_DATA_ROOT, or download: true)"
        )


def sweep(args: argparse.Namespace) -> int:
    from analysis.tracking import SweepStore  # noqa: PLC0415 - see the module docstring
    from sweeps.progress import ProgressCallback, SweepDisplay  # noqa: PLC0415
    from sweeps.run import check_newest_state, run_sweep  # noqa: PLC0415
    from sweeps.trainable import configure_tune  # noqa: PLC0415

    set_quiet_mlflow_env()
    places = args.settings
    spec = load_spec(args.spec).overriding(trials=args.trials, concurrency=args.concurrency)
    configure_tune()  # the Ray installed is one samat works with, before anything is written or started
    resume_hint = f"  uv run samat sweep {args.spec} --resume --results {places.results}"
    if args.resume and not places.remote_results:
        name = args.name or latest_name(Path(places.results), spec.name)
        if not name or not (Path(places.results) / name).is_dir():
            raise UsageError(f"--resume: no sweep of {spec.name!r} to resume in {places.results}")
        check_newest_state(Path(places.results) / name)
    check_results_dir(places)
    check_data(spec, args.address)
    store = SweepStore(places.tracking_uri)
    if not store.tracking_uri.startswith("sqlite:///"):  # a server answers before anything is announced or started
        store.check_reachable()
    console = terminal_console(stderr=True)
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
                places.results,
                name=args.name,
                resume=args.resume,
                address=args.address,
                tracking_uri=places.tracking_uri,
                callbacks=[ProgressCallback()],
            )
    except StorageFault as e:
        console.print(
            f"[red]samat sweep: {e}[/red]: the sweep stopped, and everything written before is kept. Once the folder "
            f"can be written again, resume with:\n{resume_hint}",
            soft_wrap=True,
        )
        return 1
    except KeyboardInterrupt:  # Ctrl-C before Tune took over, or a second one while it saved its state
        console.print(f"[yellow]Interrupted.[/yellow] What was saved can be resumed with:\n{resume_hint}")
        return INTERRUPTED
    print_front(result, terminal_console())
    if result.audit:
        print_audits(*result.audit, terminal_console())
    print_where(result, store, console)
    if result.pending:
        console.print(
            f"[red]MLflow did not take {result.pending} writes[/red] (the tracking store stopped answering): they are "
            f"kept in {result.pending_path}. When it answers, write them with:\n"
            f"  uv run samat frontier sync {result.name} --results {places.results}"
            + (f" --tracking-uri {result.tracking_uri}" if args.tracking_uri else ""),
            soft_wrap=True,
        )
        return 1
    if not result.finished:
        console.print(
            f"[yellow]The sweep stopped before all trials finished.[/yellow] Resume it with:\n"
            f"  uv run samat sweep {args.spec} --resume --name {result.name} --results {places.results}"
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


def sync(args: argparse.Namespace) -> int:
    from analysis.outbox import Outbox, driven, pending_path  # noqa: PLC0415 - MLflow (2 s), imported when syncing
    from analysis.tracking import SweepStore  # noqa: PLC0415

    places = args.settings
    place = place_sweep(args.sweep, places.results, args.sweep, resume=True)
    if not place.study_dir.is_dir():
        raise UsageError(f"{places.results_named}: no sweep named {args.sweep!r} there (its folder {place.study_dir})")
    path = pending_path(place.study_dir)
    console = terminal_console(stderr=True)
    if not path.is_file():
        console.print(f"{args.sweep}: nothing waits in {path}: MLflow holds every write of the sweep")
        return 0
    if driven(path):
        raise UsageError(
            f"sweep {args.sweep} is running: it writes what it kept ({path}) itself when the store answers "
            f"(sync a sweep that ended)"
        )
    set_quiet_mlflow_env()
    store = SweepStore(places.tracking_uri)
    store.check_reachable()
    _, parent = store.sweep_parent(args.sweep)
    outbox = Outbox(store.tracking_uri, args.sweep, parent.info.run_id, path, driver=False)
    waiting = outbox.pending()
    left = outbox.retry(now=True)
    if left:
        console.print(f"[red]{left} of {waiting} kept writes still wait[/red] in {path}: run sync again later")
        return 1
    console.print(f"{args.sweep}: wrote the {waiting} kept writes to {store.tracking_uri}")
    return 0


def audit(args: argparse.Namespace) -> int:
    from analysis.commands import existing_store  # noqa: PLC0415 - MLflow, Ray and torch: see the docstring
    from sweeps.audit import audit_sweep  # noqa: PLC0415

    store = existing_store(args.settings)
    console = terminal_console(stderr=True)
    console.print(f"auditing the best {args.ranks} rank(s) of {args.sweep} with AutoAttack and the sanity checks")
    try:
        sweep, audits = audit_sweep(
            store,
            args.sweep,
            args.ranks,
            args.address,
            on_audit=lambda row, result: console.print(
                f"  {row.trial_id} {row.method}: {result.verdict}", soft_wrap=True
            ),
        )
    except FileNotFoundError as e:
        console.print(f"[red]cannot audit:[/red] {e}")
        return 1
    print_audits(sweep, audits, terminal_console())
    return 0


def reseed(args: argparse.Namespace) -> int:
    from analysis.commands import existing_store  # noqa: PLC0415 - see the module docstring
    from sweeps.progress import ProgressCallback, SweepDisplay  # noqa: PLC0415
    from sweeps.reseed import reseed_sweep  # noqa: PLC0415
    from sweeps.trainable import configure_tune  # noqa: PLC0415

    configure_tune()
    store = existing_store(args.settings)
    console = terminal_console(stderr=True)
    front = [r for r in store.load_sweep(args.sweep).rows if r.rank is not None and r.rank <= args.ranks]
    console.print(f"reseeding {len(front)} point(s) of {args.sweep} with {args.seeds} more seed(s) each")
    raw, _ = store.sweep_spec(args.sweep)
    spec = validate_spec(raw, f"{args.sweep}'s spec.yaml")
    try:
        with SweepDisplay(spec, len(front) * args.seeds, console):
            record = reseed_sweep(
                store, args.sweep, args.seeds, args.ranks, args.address, callbacks=[ProgressCallback()]
            )
    except KeyboardInterrupt:
        console.print("[yellow]Interrupted.[/yellow] Finished reseeds are recorded; run reseed again for the rest.")
        return INTERRUPTED
    show_front(record, record.summary(), terminal_console())
    return 0


def print_audits(sweep, audits: dict, console: Console) -> None:
    """Per point, on the test images: clean accuracy on all of them, PGD-10 against AutoAttack at the first robust
    objective's radius, their gap and the verdict; the reasons of suspect points below."""
    from sweeps.audit import gap_rows, robust_objectives  # noqa: PLC0415 - imported with audit_sweep above

    objective = robust_objectives(sweep.spec)[0]
    rows = sorted((r for r in sweep.record.rows if r.trial_id in audits), key=lambda r: r.rank)
    images = max(a.images for a in audits.values())
    table = Table(
        title=f"audit of {sweep.record.name}: {len(rows)} point(s) on the test images (clean: all of them; attacks: "
        f"the first {images}), ε = {objective.name.rsplit('_', 1)[-1]} ({objective.norm})"
    )
    for column in ("trial", "rank", "method", "params", "clean", "PGD-10", "AutoAttack", "gap", "verdict"):
        table.add_column(
            column,
            justify="left" if column in ("trial", "method", "params", "verdict") else "right",
            no_wrap=column == "trial",
            min_width=8 if column == "trial" else None,
        )
    gaps = gap_rows(rows, audits, objective)
    for g in gaps:
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
            "passed" if g["verdict"] == "passed" else "[red]suspect[/red]",
        )
    console.print(table)
    for g in gaps:
        for reason in g["reasons"]:
            console.print(f"  {g['row'].trial_id} suspect: {reason}", soft_wrap=True)
