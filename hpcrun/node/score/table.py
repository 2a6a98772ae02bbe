"""`inspect`: the table's layout and columns, and the model, as one JSON report.

It reads metadata, headers and line breaks, never the table, so the user's machine can
plan an array over a table of any size from the report: Parquet row groups and CSV byte
ranges that end at a line break (*units*) with their row counts, the shared schema of
every file (the first column that differs is named), which columns are numeric, the
model's features and classes, and which Triton servers the node has.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from .errors import TaskError
from .model import inspect_model
from .packages import check_server_packages, server_info

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
INFER_BLOCK_BYTES = 1 << 20  # what pyarrow.csv infers column types from


def resolve_inputs(paths: Sequence[str]) -> tuple[str, list[Path]]:
    """The table's format and files: files in the order given, a directory's sorted by name."""
    files = [f for text in paths for f in expand_input(Path(text).absolute())]
    formats = {f: file_format(f) for f in files}
    kinds = sorted(set(formats.values()))
    if len(kinds) > 1:
        first = {kind: next(f for f in files if formats[f] == kind) for kind in kinds}
        raise TaskError(
            f"the inputs mix CSV ({first['csv']}) and Parquet ({first['parquet']}) files",
            "score one format at a time",
        )
    return kinds[0], files


def expand_input(path: Path) -> list[Path]:
    if not path.exists():
        raise TaskError(f"input {path} does not exist", "check the --input path")
    if not os.access(path, os.R_OK):
        raise TaskError(f"cannot read input {path} (permission denied)", "check its permissions")
    if not path.is_dir():
        return [path]
    parquet = sorted(p for p in path.glob("*.parquet") if p.is_file())
    csv = sorted(p for p in path.glob("*.csv") if p.is_file())
    if parquet and csv:
        raise TaskError(
            f"directory {path} holds both *.parquet and *.csv files",
            "keep one format per directory, or pass the files themselves",
        )
    if not parquet and not csv:
        raise TaskError(f"directory {path} holds no *.parquet or *.csv file", "check the path")
    return parquet or csv


def file_format(path: Path) -> str:
    """`parquet` (by its PAR1 magic) or `csv` (by its name)."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise TaskError(f"cannot read input {path}: {exc.strerror}", "check the path") from exc
    if magic == b"PAR1":
        return "parquet"
    if path.suffix.lower() in PARQUET_SUFFIXES:
        raise TaskError(
            f"{path} is not a Parquet file (it does not start with PAR1)",
            "check that it was written completely; name a CSV file *.csv",
        )
    if path.suffix.lower() == ".csv":
        return "csv"
    raise TaskError(
        f"{path} is neither a Parquet file nor named *.csv",
        "give Parquet files, or uncompressed CSV files named *.csv",
    )


def inspect_parquet(files: list[Path]) -> tuple[Any, list[dict[str, int]]]:
    """The shared schema and one unit per row group, in order; metadata only."""
    schema: Any = None
    units: list[dict[str, int]] = []
    for index, path in enumerate(files):
        this, groups = parquet_metadata(path)
        if schema is None:
            schema = this
        check_same_columns(files[0], fields_of(schema), path, fields_of(this))
        units.extend({"file": index, "row_group": i, "rows": rows} for i, rows in groups)
    return schema, units


def parquet_metadata(path: Path) -> tuple[Any, list[tuple[int, int]]]:
    try:
        with pq.ParquetFile(path) as handle:
            meta = handle.metadata
            groups = [(i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)]
            return handle.schema_arrow, groups
    except (pa.ArrowException, OSError) as exc:
        raise TaskError(f"{path} is not a readable Parquet file: {exc}", "rewrite it") from exc


def fields_of(schema: Any) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in schema]


def check_same_columns(
    first: Path, want: list[tuple[str, str]], path: Path, got: list[tuple[str, str]]
) -> None:
    """Name the first column where `path` differs from `first` (name, then type)."""
    for i in range(max(len(want), len(got))):
        a = want[i] if i < len(want) else None
        b = got[i] if i < len(got) else None
        if a != b:
            raise TaskError(
                f"{path} has different columns from {first}: column {i + 1} is "
                f"{describe_column(b)}, expected {describe_column(a)}",
                "score files with the same columns together (one run per schema)",
            )


def describe_column(column: tuple[str, str] | None) -> str:
    if column is None:
        return "missing"
    return f"{column[0]} ({column[1]})" if column[1] else column[0]


def inspect_csv(files: list[Path], block_bytes: int) -> tuple[Any, list[dict[str, int]]]:
    """The shared inferred schema and the line-aligned byte-range units of every file."""
    schema: Any = None
    units: list[dict[str, int]] = []
    for index, path in enumerate(files):
        this = csv_schema(path)
        schema = this if schema is None else merge_csv_schemas(files[0], schema, path, this)
        units.extend({"file": index, **unit} for unit in csv_units(path, block_bytes))
    return schema, units


def csv_schema(path: Path) -> Any:
    """The schema pyarrow.csv infers from the first block of `path`."""
    with open(path, "rb") as handle:
        head = handle.read(65536)
    if not head.strip():
        raise TaskError(f"{path} is empty (no header line)", "write a header of column names")
    if b"\x00" in head:
        raise TaskError(f"{path} is not a CSV file: it holds binary data", "check the file")
    options = pacsv.ReadOptions(block_size=INFER_BLOCK_BYTES)
    try:
        with pacsv.open_csv(path, read_options=options) as reader:
            return reader.schema
    except (pa.ArrowException, OSError) as exc:
        raise TaskError(f"{path} is not a readable CSV file: {exc}", "check the file") from exc


def merge_csv_schemas(first: Path, schema: Any, path: Path, other: Any) -> Any:
    """Same names in the same order; integer and float widen, an all-null column takes any."""
    check_same_columns(first, [(n, "") for n in schema.names], path, [(n, "") for n in other.names])
    fields = []
    for want, got in zip(schema, other, strict=True):
        dtype = merge_csv_type(want.type, got.type)
        if dtype is None:
            raise TaskError(
                f"{path} has different columns from {first}: column {got.name} is "
                f"{got.type}, expected {want.type}",
                "score files with the same column types together",
            )
        fields.append(pa.field(want.name, dtype))
    return pa.schema(fields)


def merge_csv_type(a: Any, b: Any) -> Any:
    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    number = (pa.types.is_integer, pa.types.is_floating)
    if any(f(a) for f in number) and any(f(b) for f in number):
        return pa.int64() if pa.types.is_integer(a) and pa.types.is_integer(b) else pa.float64()
    return None


def csv_units(path: Path, block_bytes: int) -> list[dict[str, int]]:
    """Byte ranges of about `block_bytes` after the header, each ending at a line break."""
    units: list[dict[str, int]] = []
    with open(path, "rb") as handle:
        handle.readline()
        start = handle.tell()
        while data := handle.read(block_bytes):
            if not data.endswith(b"\n"):
                data += handle.readline()
            rows = count_rows(data)
            if rows:
                units.append({"start": start, "end": start + len(data), "rows": rows})
            start += len(data)
    return units


def count_rows(data: bytes) -> int:
    """Non-blank lines of `data` (which starts a line); the last may lack its newline."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if len(buf) and buf[-1] != 10:
        ends = np.append(ends, len(buf))
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    first = buf[np.minimum(starts, max(len(buf) - 1, 0))] if len(buf) else lengths
    blank = (lengths == 0) | ((lengths == 1) & (first == 13))  # "" or "\r"
    return int(len(ends) - np.count_nonzero(blank))


def type_alias(dtype: Any) -> str:
    """A name `pyarrow.type_for_alias` reads back: float32, float64, int64, string, ..."""
    if pa.types.is_floating(dtype):
        return f"float{dtype.bit_width}"
    if pa.types.is_date32(dtype):
        return "date32"
    if pa.types.is_date64(dtype):
        return "date64"
    return str(dtype)


def is_numeric(dtype: Any) -> bool:
    """Columns that cast to float32: numbers, booleans and (CSV) all-empty columns."""
    kinds = (
        pa.types.is_integer,
        pa.types.is_floating,
        pa.types.is_boolean,
        pa.types.is_decimal,
        pa.types.is_null,
    )
    return any(kind(dtype) for kind in kinds)


def run_inspect(
    *,
    inputs: Sequence[str],
    model: str,
    model_format: str,
    id_column: str | None,
    server: str,
    tritonserver: str,
    block_bytes: int,
) -> dict[str, Any]:
    """The report `inspect` prints: the table's format, files, columns and units, the
    model, and the servers the node has."""
    check_server_packages(server)
    fmt, files = resolve_inputs(inputs)
    if fmt == "parquet":
        schema, units = inspect_parquet(files)
    else:
        schema, units = inspect_csv(files, max(1, block_bytes))
    if id_column is not None and id_column not in schema.names:
        raise TaskError(
            f"id column {id_column} is not in {files[0]}",
            f"pick one of its columns: {', '.join(schema.names)}",
        )
    model_report = inspect_model(model, model_format)
    return {
        "format": fmt,
        "files": [str(f) for f in files],
        "columns": [{"name": f.name, "type": str(f.type)} for f in schema],
        "numeric": [f.name for f in schema if is_numeric(f.type)],
        "non_numeric": [f.name for f in schema if not is_numeric(f.type)],
        "column_types": {f.name: type_alias(f.type) for f in schema},
        "rows": sum(unit["rows"] for unit in units),
        "units": units,
        "model": model_report,
        "servers": server_info(tritonserver),
    }
