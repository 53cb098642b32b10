"""Command-line plumbing shared by every `samat` subcommand: usage errors as one line with exit status 2, and the
consoles commands print to.

Imports no torch (nor Ray, MLflow): `samat --help` and `samat frontier` stay quick."""

from __future__ import annotations

import argparse
import re

from pydantic import ValidationError
from rich.console import Console

USAGE_ERROR = 2
INTERRUPTED = 130


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2, nothing written. Every error a user can fix by
    what they give (a spec, a data folder, a checkpoint, a tracking store, a results folder, the Ray installed)
    is one of these, so `samat` translates them all in one place (sweeps/cli.py)."""


# wide enough for any table samat prints: a pipe or a file gets whole values, never cells cut to 80 columns
UNBOUNDED_WIDTH = 100_000


def terminal_console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr) that fits the terminal, and prints whole lines and tables when it is not one
    (CI logs, `tee`, a file)."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=UNBOUNDED_WIDTH)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line (and exit 2) instead of usage text plus a line."""

    def error(self, message):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def show(value) -> str:
    """A value as the user typed it: plain words bare, anything else (empty, spaced, lists) as Python writes it."""
    return value if isinstance(value, str) and value and not any(c.isspace() for c in value) else repr(value)


ENTRY_AT_FAULT = re.compile(r"^[\w.]+: ")


def describe_validation_error(error: ValidationError, name_of=flag) -> str:
    """The first problem of a pydantic error as `FIELD=VALUE: what is allowed`."""
    first = error.errors()[0]
    message = first["msg"].removeprefix("Value error, ")
    if not first["loc"]:  # a check across fields names its field at the start of its message
        return message
    where = name_of(".".join(str(part) for part in first["loc"]))
    if first["type"] == "value_error" and isinstance(first.get("input"), dict) and ENTRY_AT_FAULT.match(message):
        return f"{where}.{message}"  # a check of a whole mapping names its entry at fault: not the mapping
    return f"{where}={show(first['input'])}: {message}" if "input" in first else f"{where}: {message}"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value
