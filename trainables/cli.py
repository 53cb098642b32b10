"""`samat train`: one model, a progress bar, a final table (or `--json`). Flags come from TrainConfig."""

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

USAGE_ERROR = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2, nothing written."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (and exit 2) instead of usage text plus a line."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def describe_validation_error(error: ValidationError, name_of=flag) -> str:
    """The first problem of a pydantic error as `FIELD=VALUE: what is allowed`."""
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:  # a check across fields names its field at the start of its message
        return message
    where = name_of(".".join(str(part) for part in first["loc"]))
    return f"{where}={show(first['input'])}: {message}" if "input" in first else f"{where}: {message}"


def show(value) -> str:
    """A value as the user typed it: plain words bare, anything else (empty, spaced, lists) as Python writes it."""
    return value if isinstance(value, str) and value and not any(c.isspace() for c in value) else repr(value)


def add_config_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """One flag per config field; only flags the user gives reach the model, so its defaults stay the truth."""
    for name, field in model.model_fields.items():
        default = field.default if not isinstance(field.default, tuple) else ",".join(field.default)
        choices = get_args(field.annotation)
        extra = f" (one of {', '.join(choices)})" if choices and all(isinstance(c, str) for c in choices) else ""
        help_text = f"{field.description}{extra} [default: {default}]"
        if field.annotation is bool:
            parser.add_argument(flag(name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
        else:
            parser.add_argument(flag(name), default=argparse.SUPPRESS, metavar=name.upper(), help=help_text)


def config_from_args(args: argparse.Namespace, model: type[BaseModel] = TrainConfig):
    given = {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}
    try:
        return model(**given)
    except ValidationError as e:
        raise UsageError(describe_validation_error(e)) from None


def add_train_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train one model and evaluate its clean and robust accuracy",
        description="Train one model with torch alone (no Ray) and print its clean and robust accuracy.")
    add_config_flags(parser, TrainConfig)
    parser.add_argument("--json", action="store_true", help="print the final metrics as one JSON object on stdout")
    parser.add_argument("--save", metavar="FILE", help="write a checkpoint here after every epoch")
    parser.add_argument("--resume", metavar="FILE", help="continue from a checkpoint written by --save")
    parser.set_defaults(handler=train_command)


def train_command(args: argparse.Namespace) -> int:
    from trainables.data import DataError
    from trainables.run import CheckpointError, Run, fit, resolve_device

    config = config_from_args(args)
    if config.dataset != "digits" and not config.download and not Path(config.data_dir).expanduser().is_dir():
        raise UsageError(f"--data-dir={show(config.data_dir)}: no such folder (it should hold the {config.dataset} "
                         f"files; --download fetches CIFAR where the network allows)")
    if args.resume and not Path(args.resume).is_file():
        raise UsageError(f"--resume={show(args.resume)}: no such checkpoint file")
    try:
        resolve_device(config.device)
    except ValueError as e:
        raise UsageError(f"--device={config.device}: {e}") from None

    console = Console(stderr=True)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"{config.method} {config.model} on {config.dataset}", total=None, status="")

        def on_batch(run: Run, i: int) -> None:
            progress.update(task, advance=1, total=config.epochs * run.batches_per_epoch)

        def on_epoch(metrics: dict, run: Run) -> None:
            if args.save:
                run.save(args.save)
            progress.update(task, status=f"epoch {metrics['epoch']}  loss {metrics['train_loss']:.3f}  "
                                         f"clean {metrics['clean_acc']:.3f}")

        try:
            metrics = fit(config, on_epoch=on_epoch, on_batch=on_batch, resume_from=args.resume)
        except (DataError, CheckpointError) as e:
            raise UsageError(str(e)) from None
    if args.json:
        print(json.dumps(metrics))
    else:
        print_metrics(metrics, Console())
    return 0


def print_metrics(metrics: dict, console: Console) -> None:
    table = Table(title="final metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
