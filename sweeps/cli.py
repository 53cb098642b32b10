"""The `samat` command: its whole tree (every subcommand, flag and help text) in one place, the settings every
command shares resolved once (trainables.settings), and one translation of what a user got wrong (any UsageError:
a bad flag, spec, data folder, checkpoint, tracking store, results folder or Ray) into one line and exit status 2.

Each handler lives in the layer whose work it does and is named here by module and function, imported only when
it runs, so `samat --help` imports none of them (nor torch, Ray or MLflow):

    samat train                                      trainables.commands   torch alone
    samat sweep                                      sweeps.commands       Ray Tune, Optuna, MLflow; torch in trials
    samat frontier list|show|export|plot|compare|ui  analysis.commands     MLflow (or a sqlite store's index)
    samat frontier audit|reseed|sync                 sweeps.commands       Ray tasks and trials, a sweep's folders"""

from __future__ import annotations

import argparse
import importlib
import sys

from analysis.ui import DEFAULT_PORT
from sweeps.spec import available_specs
from trainables.commands import add_config_flags
from trainables.config import TrainConfig
from trainables.settings import DATA_ROOT_ENV, RESULTS_ENV, TRACKING_ENV, Settings
from trainables.usage import USAGE_ERROR, OneLineParser, UsageError, positive_int

RESULTS_HELP = f"results folder, or a shared URI (s3://...) on a cluster [default: {RESULTS_ENV}, else ./results]"
TRACKING_HELP = f"MLflow tracking URI [default: {TRACKING_ENV}, else sqlite:///<results>/mlflow.db]"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="samat",
        description="SAM vs adversarial training: train one model, sweep many with Ray Tune and Optuna, compare "
        "clean/robust Pareto fronts.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_train(commands)
    add_sweep(commands)
    add_frontier(commands)
    return parser


def handled_by(parser: argparse.ArgumentParser, handler: str) -> None:
    """`handler` is `module:function`, imported when the command runs."""
    parser.set_defaults(handler=handler)


def with_places(parser: argparse.ArgumentParser) -> None:
    """--results and --tracking-uri, resolved into `args.settings` before the handler runs."""
    parser.add_argument("--results", metavar="DIR", help=RESULTS_HELP)
    parser.add_argument("--tracking-uri", help=TRACKING_HELP)


def add_train(commands) -> None:
    train = commands.add_parser(
        "train",
        help="train one model and evaluate its clean and robust accuracy",
        description=f"Train one model with torch alone (no Ray) and print its clean and robust accuracy. A relative "
        f"--data-dir is taken against {DATA_ROOT_ENV} where set.",
    )
    add_config_flags(train, TrainConfig)
    train.add_argument("--json", action="store_true", help="print the final metrics as one JSON object on stdout")
    train.add_argument("--save", metavar="FILE", help="write a checkpoint here after every epoch")
    train.add_argument("--resume", metavar="FILE", help="continue from a checkpoint written by --save")
    handled_by(train, "trainables.commands:train")


def add_sweep(commands) -> None:
    sweep = commands.add_parser(
        "sweep",
        help="search ρ, ε and the architecture with Ray Tune and Optuna (clean vs robust accuracy)",
        description="Run a sweep spec on Ray Tune with Optuna's multi-objective search and print its Pareto "
        "front. With no SPEC, runs sweeps/quick.yaml on a local Ray (a few minutes on a laptop).",
    )
    sweep.add_argument(
        "spec",
        nargs="?",
        default="quick",
        metavar="SPEC",
        help=f"a spec in sweeps/ by name ({', '.join(available_specs())}) or a YAML file [default: quick]",
    )
    sweep.add_argument("--trials", type=positive_int, help="number of trials [default: the spec's]")
    sweep.add_argument("--concurrency", type=positive_int, help="trials at once [default: the spec's]")
    with_places(sweep)
    sweep.add_argument(
        "--name",
        help="sweep name [default: the spec's name, numbered -2, -3... if taken; with --resume, the latest sweep "
        "of this spec]",
    )
    sweep.add_argument("--address", help="join this Ray cluster instead of starting one [default: RAY_ADDRESS]")
    sweep.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep: finished trials are kept, unfinished ones continue from their last "
        "checkpoint",
    )
    handled_by(sweep, "sweeps.commands:sweep")


def add_frontier(commands) -> None:
    frontier = commands.add_parser(
        "frontier",
        help="list, show, export, plot, compare, audit and reseed the Pareto fronts recorded in MLflow",
        description=f"Work with the sweeps of an MLflow tracking store (--tracking-uri, else {TRACKING_ENV}, else "
        f"sqlite:///<results>/mlflow.db with --results, else {RESULTS_ENV}, else ./results).",
    )
    actions = frontier.add_subparsers(dest="action", required=True, parser_class=OneLineParser)

    def action(name: str, help_text: str, handler: str, sweep: str | None = "SWEEP") -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text)
        if sweep:
            sub.add_argument("sweep", metavar=sweep)
        with_places(sub)
        handled_by(sub, handler)
        return sub

    action("list", "sweeps with their trial counts, status and hypervolume", "analysis.commands:list_sweeps", None)
    action("show", "the Pareto front of a sweep as a table", "analysis.commands:show_sweep")
    export = action(
        "export",
        "write a sweep's trials (every trial, or --front-only) to parquet, CSV or JSON",
        "analysis.commands:export_sweep",
    )
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.parquet, FILE.csv or FILE.json")
    export.add_argument("--front-only", action="store_true", help="only the trials on the Pareto front")
    plot = action(
        "plot",
        "plot all trials and the front (PNG via matplotlib, interactive HTML via plotly)",
        "analysis.commands:plot_sweep",
    )
    plot.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.png or FILE.html")
    plot.add_argument(
        "--curves",
        action="store_true",
        help="the paper's figure instead: test accuracy against attack radius for each front point and each "
        "method's best, and a per-method summary",
    )
    compare = action(
        "compare",
        "hypervolume of two sweeps on a common reference, and how much of each front the other dominates",
        "analysis.commands:compare_sweeps",
        "SWEEP_A",
    )
    compare.add_argument("other", metavar="SWEEP_B")
    ui = action(
        "ui",
        "start the MLflow UI on 127.0.0.1 for a local store (a tracking server is its own UI) and print the link "
        "to a sweep's front; Ctrl-C stops it",
        "analysis.commands:serve_ui",
        None,
    )
    ui.add_argument("sweep", nargs="?", metavar="SWEEP", help="the sweep whose front to link [default: the latest]")
    ui.add_argument("--port", type=positive_int, default=DEFAULT_PORT, help=f"[default: {DEFAULT_PORT}]")
    audit = action(
        "audit",
        "re-evaluate the front from its final checkpoints on the test images with AutoAttack (the reference "
        "standard version) and sanity checks after Carlini et al. 2019 at every audited radius, as Ray tasks with "
        "the sweep's resources; record the verdicts and the audited front in MLflow. An empirical evaluation, not "
        "a certificate: it can find signs of a masked gradient, never prove robustness",
        "sweeps.commands:audit",
    )
    reseed = action(
        "reseed",
        "train the front's configurations again with new seeds, as Ray trials recorded in the same sweep, and "
        "show the new seeds' mean ± std apart from the selected seed, and which points they cannot tell apart",
        "sweeps.commands:reseed",
    )
    for sub in (audit, reseed):
        sub.add_argument(
            "--ranks", type=positive_int, default=1, help="the best K Pareto ranks (1: the front) [default: 1]"
        )
        sub.add_argument("--address", help="the Ray cluster to run on [default: RAY_ADDRESS, else a local Ray]")
    reseed.add_argument(
        "--seeds", type=positive_int, default=3, help="new seeds per point (2 at least for a test) [default: 3]"
    )
    action(
        "sync",
        "write to MLflow what a sweep kept on the driver's disk while the tracking store did not answer (its "
        "mlflow-pending.jsonl); `samat sweep --resume` does it too; refused while the sweep runs",
        "sweeps.commands:sync",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
    try:
        if hasattr(args, "results"):
            args.settings = Settings.resolve(args.results, args.tracking_uri)
        module, function = args.handler.split(":")
        return getattr(importlib.import_module(module), function)(args)
    except UsageError as e:
        print(f"samat {command}: error: {e}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
