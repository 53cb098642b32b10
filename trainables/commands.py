"""`samat train`'s handler: one model, a progress bar, a final table (or `--json`). Its flags come from TrainConfig
(`add_config_flags`, which the command tree in sweeps/cli.py calls)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import get_args

from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from trainables.config import TrainConfig
from trainables.usage import UsageError, describe_validation_error, flag, show, terminal_console


def add_config_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One flag per config field; only flags the user gives reach the model, so its defaults stay the truth."""
    for name, field in model.model_fields.items():
        default = field.default if not isinstance(field.default, tuple) else ",".join(field.default)
        choices = get_args(field.annotation)
        extra = f" (one of {', '.join(choices)})" if choices and all(isinstance(c, str) for c in choices) else ""
        # argparse %-formats help strings: a literal % (as in "x0.1 at 75%") must be doubled
        help_text = f"{field.description}{extra} [default: {default}]".replace("%", "%%")
        if field.annotation is bool:
            parser.add_argument(
                flag(name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text
            )
        else:
            parser.add_argument(flag(name), default=argparse.SUPPRESS, metavar=name.upper(), help=help_text)


def config_from_args(args: argparse.Namespace, model: type[BaseModel] = TrainConfig):
    given = {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}
    try:
        return model(**given)
    except ValidationError as e:
        raise UsageError(describe_validation_error(e)) from None


def train(args: argparse.Namespace) -> int:
    # the torch core, imported when training: torch takes 3-7 s to import, which `samat --help` need not pay
    from trainables.run import Run, fit, resolve_device  # noqa: PLC0415

    config = config_from_args(args)
    config = config.resolved_folders()  # SAMAT_DATA_ROOT, as sweeps do
    if config.dataset != "digits" and not config.download and not Path(config.data_dir).is_dir():
        raise UsageError(
            f"--data-dir={show(config.data_dir)}: no such folder (it should hold the {config.dataset} "
            f"files; --download fetches CIFAR where the network allows)"
        )
    if args.resume and not Path(args.resume).is_file():
        raise UsageError(f"--resume={show(args.resume)}: no such checkpoint file")
    try:
        resolve_device(config.device)
    except ValueError as e:
        raise UsageError(f"--device={config.device}: {e}") from None

    console = terminal_console(stderr=True)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    # transient: the bar shows a run's progress while it trains; its result is the table below, and a run that
    # stops on bad input (a data file found wanting once loaded, say) leaves its one error line alone
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{config.method} {config.model} on {config.dataset}", total=None, status="")

        def on_batch(run: Run, i: int) -> None:
            progress.update(task, advance=1, total=config.epochs * run.batches_per_epoch)

        def on_epoch(metrics: dict, run: Run) -> None:
            if args.save:
                run.save(args.save)
            progress.update(
                task,
                status=f"epoch {metrics['epoch']}  loss {metrics['train_loss']:.3f}  clean {metrics['clean_acc']:.3f}",
            )

        metrics = fit(config, on_epoch=on_epoch, on_batch=on_batch, resume_from=args.resume)
    if args.json:
        print(json.dumps(metrics))
    else:
        print_metrics(metrics, terminal_console())
    return 0


def print_metrics(metrics: dict, console: Console) -> None:
    table = Table(title="final metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
