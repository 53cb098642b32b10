"""The handlers of `samat frontier list`, `show`, `export`, `plot`, `compare` and `ui` (`list_sweeps`,
`show_sweep`, `export_sweep`, `plot_sweep`, `compare_sweeps`, `serve_ui`): they read sweeps from any
MLflow store (a finished sweep's, or one still running) and need no Ray nor torch. The command tree that calls them
is sweeps/cli.py; each takes the parsed arguments with `args.settings` resolved there once.

MLflow (~2-5 s to import here) is imported when a store is opened, not at `samat --help`; `list`, and `show` and
`export` of a sweep whose index is current, read a sqlite store's index without it (analysis.stores)."""

from __future__ import annotations

import argparse
import signal
import tempfile
from pathlib import Path

from rich.table import Table

from analysis.curves import write_curves
from analysis.export import FORMATS, copy_table
from analysis.pareto import as_maximised
from analysis.plots import PLOT_FORMATS, write_plot
from analysis.stores import (
    TrackingError,
    artifact_root,
    kept_table,
    read_front_index,
    read_sweep_index,
    set_quiet_mlflow_env,
)
from analysis.tables import print_sweeps, show_front, summary_table
from analysis.trials import SweepRecord, common_reference, objective_values, sweep_hypervolume
from analysis.ui import runs_page, start_ui, stop_ui, ui_base
from trainables.settings import Settings
from trainables.usage import INTERRUPTED, UsageError, show, terminal_console


def existing_store(places: Settings):
    """The sweeps' MLflow store, answering: a sqlite store must exist already (the command reads it)."""
    from analysis.tracking import SweepStore  # noqa: PLC0415 - MLflow: see the module docstring

    set_quiet_mlflow_env()
    uri = places.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise TrackingError(
            f"{places.results_named}: no MLflow store at {uri.removeprefix('sqlite:///')} (run a sweep first, "
            f"or point --results or --tracking-uri at the store)"
        )
    store = SweepStore(uri)
    store.check_reachable()
    return store


def writable_output(path: str, formats: tuple[str, ...]) -> Path:
    """Refuse a bad output before reading anything: unknown format, missing or unwritable folder."""
    out = Path(path).expanduser()
    if out.suffix not in formats:
        raise UsageError(f"--output={show(path)}: unknown format {out.suffix or '(none)'!r}; use {', '.join(formats)}")
    if out.is_dir():
        raise UsageError(f"--output={show(path)}: is a folder")
    try:
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as e:
        raise UsageError(f"--output={show(path)}: cannot write in {out.parent} ({e.strerror})") from None
    return out


def list_sweeps(args: argparse.Namespace) -> int:
    uri = args.settings.tracking_uri
    sweeps = read_sweep_index(uri)  # the index is the database as it is: no MLflow needed
    if sweeps is None:
        store = existing_store(args.settings)
        sweeps = store.list_sweeps()
    print_sweeps(uri, sweeps, terminal_console())
    return 0


def show_sweep(args: argparse.Namespace) -> int:
    uri = args.settings.tracking_uri
    front = read_front_index(uri, args.sweep)  # the front as last ranked, while the index is current
    record, summary = front or existing_store(args.settings).load_front(args.sweep)
    console = terminal_console()
    show_front(record, summary, console)
    console.print(
        f"front in the MLflow UI: {runs_page(ui_base(uri), record.experiment_id)}"
        + ("" if uri.startswith("http") else f"  (start it with: uv run samat frontier ui {record.name})"),
        soft_wrap=True,
    )
    return 0


def export_sweep(args: argparse.Namespace) -> int:
    output = writable_output(args.output, FORMATS)
    kept = kept_table(args.settings.tracking_uri, args.sweep, args.front_only)  # a closed sweep's own table
    try:
        if kept:
            count = copy_table(kept, output)
        else:
            count = existing_store(args.settings).export_trials(args.sweep, output, args.front_only)
    except OSError as e:  # a disk that fills up (or fails) while the file is written: it is not there
        raise UsageError(f"--output={show(args.output)}: not written ({e.strerror or e})") from None
    terminal_console().print(f"wrote {count} {'front ' if args.front_only else ''}trials of {args.sweep} to {output}")
    return 0


def plot_sweep(args: argparse.Namespace) -> int:
    output = writable_output(args.output, PLOT_FORMATS)
    record = existing_store(args.settings).load_sweep(args.sweep)
    console = terminal_console()
    if args.curves:
        try:
            write_curves(record, output)
        except ValueError as e:
            raise UsageError(f"SWEEP={record.name}: {e}") from None
        console.print(summary_table(record))
        console.print(f"wrote the robustness curves of {record.name} to {output}")
    else:
        write_plot(record, output)
        console.print(
            f"wrote the front of {record.name} ({len(record.front)} of {len(record.finished)} trials) to {output}"
        )
    return 0


def compare_sweeps(args: argparse.Namespace) -> int:
    store = existing_store(args.settings)
    a, b = store.load_sweep(args.sweep), store.load_sweep(args.other)
    if list(a.directions.items()) != list(b.directions.items()):
        raise UsageError(
            f"SWEEP_B={b.name}: its objectives {b.directions} differ from {a.name}'s {a.directions}; "
            f"fronts compare only on the same objectives"
        )
    terminal_console().print(comparison_table(a, b))
    return 0


def comparison_table(a: SweepRecord, b: SweepRecord) -> Table:
    """Each sweep's hypervolume on one reference point, and the share of its front the other's front dominates."""
    reference = common_reference(a, b)
    directions = list(a.directions.values())
    front_a = as_maximised([objective_values(r, a.directions) for r in a.front], directions)
    front_b = as_maximised([objective_values(r, b.directions) for r in b.front], directions)

    def dominated_share(front, by):
        if not len(front) or not len(by):
            return 0.0
        hit = [((by >= p).all(1) & (by > p).any(1)).any() for p in front]
        return sum(hit) / len(front)

    table = Table(title=f"{a.name} vs {b.name} (reference point {', '.join(f'{v:g}' for v in reference)})")
    for column in ("sweep", "finished", "front", "hypervolume", "front dominated by the other"):
        table.add_column(column, justify="left" if column == "sweep" else "right")
    for record, mine, theirs in ((a, front_a, front_b), (b, front_b, front_a)):
        hv = sweep_hypervolume(record.finished, record.directions, reference)
        table.add_row(
            record.name,
            str(len(record.finished)),
            str(len(record.front)),
            f"{hv:.4f}",
            f"{dominated_share(mine, theirs):.0%}",
        )
    return table


def serve_ui(args: argparse.Namespace) -> int:
    """Print the link to the sweep's front; for a local store, serve the UI on loopback until Ctrl-C."""
    store = existing_store(args.settings)
    console = terminal_console()
    sweeps = store.list_sweeps()
    if not sweeps:
        raise UsageError(f"no sweeps at {store.tracking_uri} yet (run one with: uv run samat sweep)")
    record = store.load_sweep(args.sweep or sweeps[-1]["name"])
    link = runs_page(ui_base(store.tracking_uri, args.port), record.experiment_id)
    if store.tracking_uri.startswith(("http://", "https://")):
        console.print(f"the tracking server is the UI; the front of {record.name}:\n  {link}", soft_wrap=True)
        return 0
    console.print(f"starting the MLflow UI for {store.tracking_uri} on 127.0.0.1:{args.port} (6-30 s)...")
    try:
        server = start_ui(store.tracking_uri, artifact_root(store.tracking_uri), args.port)
    except RuntimeError as e:
        raise UsageError(f"--port={args.port}: {e}") from None
    console.print(
        f"the front of {record.name}:\n  {link}\nevery run of it: "
        f"{runs_page(ui_base(store.tracking_uri, args.port), record.experiment_id, '')}\nCtrl-C stops the UI.",
        soft_wrap=True,
    )
    # a closed terminal (SIGHUP) or `kill` (SIGTERM) stops the UI as Ctrl-C does: it runs in a session of its own
    # and would otherwise outlive this command, holding the port
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, interrupt)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return INTERRUPTED
    finally:
        stop_ui(server)


def interrupt(signum, frame):
    raise KeyboardInterrupt
