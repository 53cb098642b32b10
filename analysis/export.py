"""Trial tables to files through pyarrow: the format follows the file's extension."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet

FORMATS = (".parquet", ".csv", ".json")


def write_table(rows: list[dict], path: str | Path) -> Path:
    """Write rows as parquet, CSV or JSON (a list of records); the file appears whole or not at all."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise ValueError(f"unknown format {path.suffix or '(none)'!r}: use one of {', '.join(FORMATS)}")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if path.suffix == ".json":
            tmp.write_text(json.dumps(rows, indent=1, default=str))
        else:
            table = pa.Table.from_pylist(rows) if rows else pa.table({})
            if path.suffix == ".parquet":
                pyarrow.parquet.write_table(table, tmp)
            else:
                pyarrow.csv.write_csv(table, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_table(path: str | Path) -> list[dict]:
    """Read back what write_table wrote (used by tests and by scripts comparing exports)."""
    path = Path(path)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    table = pyarrow.parquet.read_table(path) if path.suffix == ".parquet" else pyarrow.csv.read_csv(path)
    return table.to_pylist()
