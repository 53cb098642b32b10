"""`samat frontier`: list sweeps, show, export, plot and compare their Pareto fronts from any MLflow store
(a finished sweep's, or one still running)."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from trainables.cli import UsageError, show


def add_frontier_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "frontier", help="list, show, export, plot and compare the Pareto fronts recorded in MLflow",
        description="Read sweeps from an MLflow tracking store (--tracking-uri, else MLFLOW_TRACKING_URI, else "
                    "sqlite:///<results>/mlflow.db) and work with their Pareto fronts.")
    actions = parser.add_subparsers(dest="action", required=True, parser_class=type(parser))

    def action(name: str, help_text: str):
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--tracking-uri", help="MLflow tracking URI [default: MLFLOW_TRACKING_URI, else "
                                                "sqlite:///<results>/mlflow.db]")
        sub.add_argument("--results", default="results", metavar="DIR", help="results folder of the embedded "
                                                                            "default store [default: results]")
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
    compare = action("compare", "hypervolume of two sweeps on a common reference, and how much of each front "
                                "the other dominates")
    compare.add_argument("sweep", metavar="SWEEP_A")
    compare.add_argument("other", metavar="SWEEP_B")


def open_store(args):
    from analysis.tracking import SweepStore, default_tracking_uri, set_quiet_mlflow_env

    set_quiet_mlflow_env()
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(args.results)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        flag = "--tracking-uri" if args.tracking_uri else "--results"
        raise UsageError(f"{flag}: no MLflow store at {uri.removeprefix('sqlite:///')} (run a sweep first, or "
                         f"point --tracking-uri at the store)")
    return SweepStore(uri)


def check_output(path: str, formats: tuple[str, ...]) -> Path:
    """Refuse a bad output before reading anything: unknown format, missing or unwritable folder."""
    out = Path(path).expanduser()
    if out.suffix not in formats:
        raise UsageError(f"--output={show(path)}: unknown format {out.suffix or '(none)'!r}; use "
                         f"{', '.join(formats)}")
    if out.is_dir():
        raise UsageError(f"--output={show(path)}: is a folder")
    try:
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as e:
        raise UsageError(f"--output={show(path)}: cannot write in {out.parent} ({e.strerror})") from None
    return out


def frontier_command(args: argparse.Namespace) -> int:
    from rich.console import Console

    from analysis.export import FORMATS
    from analysis.plots import PLOT_FORMATS
    from analysis.tracking import TrackingError

    output = None
    if args.action in ("export", "plot"):
        output = check_output(args.output, FORMATS if args.action == "export" else PLOT_FORMATS)
    store = open_store(args)
    console = Console()
    try:
        store.check_reachable()
        if args.action == "list":
            list_sweeps(store, console)
        elif args.action == "show":
            show_front(store.load_sweep(args.sweep), console)
        elif args.action == "export":
            from analysis.export import write_table

            record = store.load_sweep(args.sweep)
            rows = record.table(front_only=args.front_only)
            write_table(rows, output)
            console.print(f"wrote {len(rows)} {'front ' if args.front_only else ''}trials of {record.name} to {output}")
        elif args.action == "plot":
            from analysis.plots import write_plot

            record = store.load_sweep(args.sweep)
            write_plot(record, output)
            console.print(f"wrote the front of {record.name} ({len(record.front)} of {len(record.finished)} "
                          f"trials) to {output}")
        else:
            compare(store.load_sweep(args.sweep), store.load_sweep(args.other), console)
    except TrackingError as e:
        raise UsageError(str(e)) from None
    return 0


def list_sweeps(store, console) -> None:
    from rich.table import Table

    table = Table(title=f"sweeps at {store.tracking_uri}")
    for column in ("sweep", "status", "trials", "finished", "failed", "hypervolume"):
        table.add_column(column, justify="left" if column in ("sweep", "status") else "right")
    for s in store.list_sweeps():
        hv = "-" if s["hypervolume"] is None else f"{s['hypervolume']:.4f}"
        table.add_row(s["name"], s["status"], str(s["trials"]), str(s["finished"]), str(s["failed"]), hv)
    console.print(table)


def front_table(title: str, objectives: list[str], front: list[dict]):
    """The Pareto front as a table: trial, method, model, searched params, objective values."""
    from rich.table import Table

    from sweeps.progress import format_params

    table = Table(title=title)
    for column in ("trial", "method", "model", "params", *objectives):
        table.add_column(column, justify="right" if column in objectives else "left")
    for row in front:
        p = row["params"]
        table.add_row(row["trial_id"], p.get("method"), p.get("model"), format_params(p),
                      *(f"{v:.4f}" for v in row["values"]))
    return table


def show_front(record, console) -> None:
    console.print(front_table(f"Pareto front of {record.name} ({record.status}): {len(record.front)} of "
                              f"{len(record.finished)} finished trials, hypervolume {record.hypervolume():.4f}",
                              record.objectives, record.front))


def compare(a, b, console) -> None:
    from rich.table import Table

    from analysis.pareto import as_maximised, hypervolume
    from analysis.tracking import common_reference

    if list(zip(a.objectives, a.directions)) != list(zip(b.objectives, b.directions)):
        raise UsageError(f"SWEEP_B={b.name}: its objectives {b.objectives} ({b.directions}) differ from "
                         f"{a.name}'s {a.objectives} ({a.directions}); fronts compare only on the same objectives")
    reference = common_reference(a, b)
    front_a = as_maximised([r["values"] for r in a.front], a.directions)
    front_b = as_maximised([r["values"] for r in b.front], b.directions)

    def dominated_share(front, by):
        if not len(front) or not len(by):
            return 0.0
        hit = [((by >= p).all(1) & (by > p).any(1)).any() for p in front]
        return sum(hit) / len(front)

    table = Table(title=f"{a.name} vs {b.name} (reference point {', '.join(f'{v:g}' for v in reference)})")
    for column in ("sweep", "finished", "front", "hypervolume", "front dominated by the other"):
        table.add_column(column, justify="left" if column == "sweep" else "right")
    for record, mine, theirs in ((a, front_a, front_b), (b, front_b, front_a)):
        hv = hypervolume([r["values"] for r in record.finished], record.directions, reference)
        table.add_row(record.name, str(len(record.finished)), str(len(record.front)), f"{hv:.4f}",
                      f"{dominated_share(mine, theirs):.0%}")
    console.print(table)
