"""Trial tables to files through pyarrow: the format follows the file's extension. A table is written a page of
rows at a time (a sweep's trials as MLflow pages them, a kept table's row groups) into a hidden temporary beside
the file, which becomes the file once whole: a failed export leaves no file, and the file it would replace as it
was."""

from __future__ import annotations

import json
import tempfile
import textwrap
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from analysis.plots import written_whole

FORMATS = (".parquet", ".csv", ".json")
PAGE = 1000  # rows read and written at a time (MLflow's largest page of runs)


def write_table(rows: list[dict], path: str | Path) -> Path:
    """Write rows as parquet, CSV or JSON (a list of records); the file appears whole or not at all."""
    write_pages(lambda: [rows], path)
    return Path(path)


def write_pages(pages: Callable[[], Iterable[list[dict]]], path: str | Path) -> int:
    """Write the rows `pages()` gives a page at a time as write_table writes them all at once; returns how many.
    Parquet and CSV call `pages()` twice: the columns' types are those of every page's values, so they are read
    from all pages before the first is written."""
    path = format_checked(path)
    if path.suffix == ".json":
        return write_json(pages(), path)
    schemas = [pa.Table.from_pylist(page).schema for page in pages() if page]
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else None
    return write_arrow((pa.Table.from_pylist(page, schema=schema) for page in pages() if page), schema, path)


def copy_table(source: str | Path, path: str | Path) -> int:
    """Write the parquet table at `source` (as write_table wrote it) to `path`, in `path`'s format, a page of
    rows at a time; returns how many."""
    path, table = format_checked(path), pyarrow.parquet.ParquetFile(source)
    pages = table.iter_batches(batch_size=PAGE)
    if path.suffix == ".json":
        return write_json((page.to_pylist() for page in pages), path)
    return write_arrow(pages, table.schema_arrow if table.metadata.num_rows else None, path)


def format_checked(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix not in FORMATS:
        raise ValueError(f"unknown format {path.suffix or '(none)'!r}: use one of {', '.join(FORMATS)}")
    return path


def write_arrow(pages: Iterable[pa.Table | pa.RecordBatch], schema: pa.Schema | None, path: Path) -> int:
    """Pages of one `schema` as parquet (a row group each) or CSV; no schema: no rows, and no columns."""
    rows = 0
    with written_whole(path) as tmp:
        if schema is None:
            (pyarrow.parquet.write_table if path.suffix == ".parquet" else pyarrow.csv.write_csv)(pa.table({}), tmp)
            return 0
        parquet = path.suffix == ".parquet"
        with pyarrow.parquet.ParquetWriter(tmp, schema) if parquet else pyarrow.csv.CSVWriter(tmp, schema) as out:
            for page in pages:
                out.write(page)
                rows += page.num_rows
    return rows


def write_json(pages: Iterable[list[dict]], path: Path) -> int:
    """The records as one JSON list, byte for byte what json.dumps(rows, indent=1) makes of them all."""
    rows = 0
    with written_whole(path) as tmp, open(tmp, "w") as out:
        for page in pages:
            for row in page:
                out.write(("[\n" if not rows else ",\n") + textwrap.indent(json.dumps(row, indent=1, default=str), " "))
                rows += 1
        out.write("\n]" if rows else "[]")
    return rows


def read_table(path: str | Path) -> list[dict]:
    """Read back what write_table wrote (used by tests and by scripts comparing exports)."""
    path = Path(path)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    table = pyarrow.parquet.read_table(path) if path.suffix == ".parquet" else pyarrow.csv.read_csv(path)
    return table.to_pylist()


class Spill:
    """Records kept, as they come, in an unnamed temporary file in `folder` (gone when closed, however the process
    ends), and read back by their position in any order: rows that wait for the last of them to decide their order
    and ranks, without holding them all in memory."""

    def __init__(self, folder: str | Path):
        self.file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 - closed on leaving the `with`
        self.offsets: list[int] = []

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, *failure) -> None:
        self.file.close()

    def add(self, record: dict) -> None:
        self.offsets.append(self.file.tell())
        self.file.write(json.dumps(record).encode() + b"\n")

    def __getitem__(self, position: int) -> dict:
        self.file.seek(self.offsets[position])
        return json.loads(self.file.readline())


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)` for a bar of `description` on stderr, counting to `total` (None: unknown), gone when
    done; when stderr is not a terminal nothing is shown."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda n: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)
