"""`samat frontier`: list sweeps, show, export, plot and compare their Pareto fronts from any MLflow store
(a finished sweep's, or one still running), and open them in the MLflow UI.

Imports no torch: MLflow and the analysis modules are imported by the command handler, so that `samat --help`
does not pay for MLflow's import (~2-5 s here)."""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from analysis.curves import method_summary, write_curves
from analysis.export import FORMATS, write_table
from analysis.pareto import as_maximised
from analysis.plots import PLOT_FORMATS, write_plot
from analysis.stores import TrackingError, artifact_root, default_tracking_uri, read_sweep_index, set_quiet_mlflow_env
from analysis.trials import (
    LISTED_STOPPED,
    SweepRecord,
    SweepSummary,
    TrialRow,
    common_reference,
    format_params,
    objective_values,
    sweep_hypervolume,
)
from analysis.ui import DEFAULT_PORT, runs_page, start_ui, stop_ui, ui_base
from trainables.usage import INTERRUPTED, UsageError, positive_int, show


def add_frontier_parser(subparsers):
    """The `frontier` command; returns its `action(name, help)` maker, so the sweep layer can add the actions that
    need Ray (certify, reseed) without this layer importing it."""
    parser = subparsers.add_parser(
        "frontier",
        help="list, show, export, plot and compare the Pareto fronts recorded in MLflow",
        description="Read sweeps from an MLflow tracking store (--tracking-uri, else MLFLOW_TRACKING_URI, else "
        "sqlite:///<results>/mlflow.db) and work with their Pareto fronts.",
    )
    actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))

    def action(name: str, help_text: str):
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--tracking-uri",
            help="MLflow tracking URI [default: MLFLOW_TRACKING_URI, else sqlite:///<results>/mlflow.db]",
        )
        sub.add_argument(
            "--results",
            default="results",
            metavar="DIR",
            help="results folder of the embedded default store [default: results]",
        )
        sub.set_defaults(handler=frontier_command)
        return sub

    action("list", "sweeps with their trial counts, status and hypervolume")
    action("show", "the Pareto front of a sweep as a table").add_argument("sweep", metavar="SWEEP")
    export = action("export", "write a sweep's trials (every trial, or --front-only) to parquet, CSV or JSON")
    export.add_argument("sweep", metavar="SWEEP")
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.parquet, FILE.csv or FILE.json")
    export.add_argument("--front-only", action="store_true", help="only the trials on the Pareto front")
    plot = action("plot", "plot all trials and the front (PNG via matplotlib, interactive HTML via plotly)")
    plot.add_argument("sweep", metavar="SWEEP")
    plot.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.png or FILE.html")
    plot.add_argument(
        "--curves",
        action="store_true",
        help="the paper's figure instead: test accuracy against "
        "attack radius for each front point and each method's best, and a per-method summary",
    )
    compare = action(
        "compare", "hypervolume of two sweeps on a common reference, and how much of each front the other dominates"
    )
    compare.add_argument("sweep", metavar="SWEEP_A")
    compare.add_argument("other", metavar="SWEEP_B")
    ui = action(
        "ui",
        "start the MLflow UI on 127.0.0.1 for a local store (a tracking server is its own UI) and "
        "print the link to a sweep's front; Ctrl-C stops it",
    )
    ui.add_argument("sweep", nargs="?", metavar="SWEEP", help="the sweep whose front to link [default: the latest]")
    ui.add_argument("--port", type=positive_int, default=DEFAULT_PORT, help=f"[default: {DEFAULT_PORT}]")
    return action


def tracking_uri(args) -> str:
    return args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(args.results)


def open_store(args):
    # MLflow, imported when a store is opened: 2-5 s that `samat --help` need not pay
    from analysis.tracking import SweepStore  # noqa: PLC0415

    set_quiet_mlflow_env()
    uri = tracking_uri(args)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        flag = "--tracking-uri" if args.tracking_uri else "--results"
        raise UsageError(
            f"{flag}: no MLflow store at {uri.removeprefix('sqlite:///')} (run a sweep first, or "
            f"point --tracking-uri at the store)"
        )
    return SweepStore(uri)


def check_output(path: str, formats: tuple[str, ...]) -> Path:
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


def frontier_command(args: argparse.Namespace) -> int:
    output = None
    if args.action in ("export", "plot"):
        output = check_output(args.output, FORMATS if args.action == "export" else PLOT_FORMATS)
    console = Console()
    if args.action == "list" and (sweeps := read_sweep_index(uri := tracking_uri(args))) is not None:
        print_sweeps(uri, sweeps, console)  # the index is the database as it is: no MLflow needed
        return 0
    store = open_store(args)
    try:
        store.check_reachable()
        if args.action == "list":
            print_sweeps(store.tracking_uri, store.list_sweeps(), console)
        elif args.action == "show":
            record, summary = store.load_front(args.sweep)
            show_front(record, summary, console)
            console.print(
                f"front in the MLflow UI: {runs_page(ui_base(store.tracking_uri), record.experiment_id)}"
                + (
                    ""
                    if store.tracking_uri.startswith("http")
                    else f"  (start it with: uv run samat frontier ui {record.name})"
                ),
                soft_wrap=True,
            )
        elif args.action == "export":
            rows = store.closed_table(args.sweep, args.front_only)
            if rows is None:  # a running sweep: every trial as MLflow holds it now
                rows = store.load_sweep(args.sweep).table(front_only=args.front_only)
            write_table(rows, output)
            console.print(f"wrote {len(rows)} {'front ' if args.front_only else ''}trials of {args.sweep} to {output}")
        elif args.action == "plot" and args.curves:
            record = store.load_sweep(args.sweep)
            try:
                write_curves(record, output)
            except ValueError as e:
                raise UsageError(f"SWEEP={record.name}: {e}") from None
            console.print(summary_table(record))
            console.print(f"wrote the robustness curves of {record.name} to {output}")
        elif args.action == "plot":
            record = store.load_sweep(args.sweep)
            write_plot(record, output)
            console.print(
                f"wrote the front of {record.name} ({len(record.front)} of {len(record.finished)} trials) to {output}"
            )
        elif args.action == "ui":
            return serve_ui(store, args.sweep, args.port, console)
        else:
            compare(store.load_sweep(args.sweep), store.load_sweep(args.other), console)
    except TrackingError as e:
        raise UsageError(str(e)) from None
    return 0


def serve_ui(store, sweep: str | None, port: int, console: Console) -> int:
    """Print the link to the sweep's front; for a local store, serve the UI on loopback until Ctrl-C."""
    sweeps = store.list_sweeps()
    if not sweeps:
        raise UsageError(f"no sweeps at {store.tracking_uri} yet (run one with: uv run samat sweep)")
    record = store.load_sweep(sweep or sweeps[-1]["name"])
    link = runs_page(ui_base(store.tracking_uri, port), record.experiment_id)
    if store.tracking_uri.startswith(("http://", "https://")):
        console.print(f"the tracking server is the UI; the front of {record.name}:\n  {link}", soft_wrap=True)
        return 0
    console.print(f"starting the MLflow UI for {store.tracking_uri} on 127.0.0.1:{port} (6-30 s)...")
    try:
        server = start_ui(store.tracking_uri, artifact_root(store.tracking_uri), port)
    except RuntimeError as e:
        raise UsageError(f"--port={port}: {e}") from None
    console.print(
        f"the front of {record.name}:\n  {link}\nevery run of it: "
        f"{runs_page(ui_base(store.tracking_uri, port), record.experiment_id, '')}\nCtrl-C stops the UI.",
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


def print_sweeps(uri: str, sweeps: list[dict], console) -> None:
    table = Table(title=f"sweeps at {uri}")
    for column in ("sweep", "status", "trials", "finished", "stopped", "failed", "hypervolume"):
        table.add_column(column, justify="left" if column in ("sweep", "status") else "right")
    for s in sweeps:
        hv = "-" if s["hypervolume"] is None else f"{s['hypervolume']:.4f}"
        counts = (s["trials"], s["finished"], s["stopped"], s["failed"])
        table.add_row(s["name"], s["status"], *map(str, counts), hv)
    console.print(table)


def front_table(title: str, objectives: list[str], front: list[TrialRow]) -> Table:
    """The Pareto front as a table: trial, method, model, searched params, objective values (validation), and
    the same metrics on the test images where the trials report them."""
    tests = [t for t in dict.fromkeys(k for r in front for k, v in r.test_values.items() if v is not None)]
    table = Table(title=title)
    for column in ("trial", "method", "model", "params", *objectives, *tests):
        # a trial id is never cut (it is what users copy); narrow terminals wrap the params instead
        table.add_column(
            column,
            justify="right" if column in (*objectives, *tests) else "left",
            no_wrap=column == "trial",
            min_width=8 if column == "trial" else None,
        )
    for row in front:
        test_cells = (f"{row.test_values[t]:.4f}" if row.test_values.get(t) is not None else "-" for t in tests)
        table.add_row(
            row.trial_id,
            row.method,
            row.model,
            format_params(row.params),
            *(f"{row.objectives[m]:.4f}" for m in objectives),
            *test_cells,
        )
    return table


def show_front(record: SweepRecord, summary: SweepSummary, console) -> None:
    """The front of `record` (its front rows, reseeds and stopped rows are all it needs) under the sweep's figures;
    a running sweep's as of its last re-rank."""
    title = (
        f"Pareto front of {record.name} ({record.status}): {len(record.front)} of {summary.ranked} "
        f"finished trials, hypervolume {summary.hypervolume:.4f}"
    )
    console.print(
        seeded_front_table(title, record) if record.reseeds else front_table(title, record.objectives, record.front)
    )
    if summary.stopped:
        console.print(stopped_line(summary.stopped_at, summary.trials, record.stopped), soft_wrap=True)


def summary_table(record: SweepRecord) -> Table:
    """Per method, on the test images: best clean, best robust, robust at matched clean accuracy."""
    rows = method_summary(record)
    table = Table(
        title=f"{record.name} by method (test images; matched clean = the least clean method's best, "
        f"{rows[0]['matched_clean']:.4f})"
        if rows
        else f"{record.name} by method"
    )
    for column in ("method", "trials", "best clean", "best robust", "robust at matched clean"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for r in rows:
        table.add_row(
            r["method"],
            str(r["trials"]),
            f"{r['best_clean']:.4f}",
            f"{r['best_robust']:.4f}",
            f"{r['robust_at_matched_clean']:.4f}",
        )
    return table


def seeded_front_table(title: str, record: SweepRecord) -> Table:
    """The front with each objective as mean ± std over the trial and its reseeds, the number of seeds, and the
    neighbour each point cannot be told from within that noise."""
    table = Table(
        title=f"{title}\nmean ± std over seeds; a point is not separable from a neighbour whose "
        f"mean ± std overlaps its own in every objective"
    )
    for column in ("trial", "method", "model", "params", *record.objectives, "seeds", "not separable from"):
        table.add_column(
            column,
            justify="right" if column in (*record.objectives, "seeds") else "left",
            no_wrap=column == "trial",
            min_width=8 if column == "trial" else None,
        )
    inseparable = record.inseparable()
    for row in record.front:
        stats = record.seed_stats(row)
        table.add_row(
            row.trial_id,
            row.method,
            row.model,
            format_params(row.params),
            *(str(stats[m]) for m in record.objectives),
            str(min(s.n for s in stats.values())),
            inseparable.get(row.trial_id, ""),
        )
    return table


def stopped_line(stopped_at: dict[str, int], trials: int, stopped: list[TrialRow]) -> str:
    """The trials the scheduler stopped early (not ranked, so never on the front), counted by the epoch they
    stopped at (`stopped_at`, see stopped_counts), and named when `stopped` holds them all and they are few."""
    named: dict[str, list[str]] = {}
    if len(stopped) == sum(stopped_at.values()) <= LISTED_STOPPED:
        for row in sorted(stopped, key=lambda r: r.trial_id):
            named.setdefault(str(row.stopped_at or 0), []).append(row.trial_id)
    where = "; ".join(
        f"at epoch {epoch}: {', '.join(named[epoch]) if named else f'{n} trials'}" for epoch, n in stopped_at.items()
    )
    return f"stopped early by MO-ASHA (not ranked): {sum(stopped_at.values())} of {trials} trials; {where}"


def compare(a: SweepRecord, b: SweepRecord, console: Console) -> None:
    if list(a.directions.items()) != list(b.directions.items()):
        raise UsageError(
            f"SWEEP_B={b.name}: its objectives {b.directions} differ from {a.name}'s {a.directions}; "
            f"fronts compare only on the same objectives"
        )
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
    console.print(table)
