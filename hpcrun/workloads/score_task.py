"""Score a table with a tree model across a Slurm job array: `inspect`, `shard`, `merge`.

Why one self-contained script: hpcrun copies this file into the run directory and the
cluster's own Python runs it, so it imports nothing from `hpcrun` (which is not installed
there), only the standard library, numpy, pyarrow, xgboost and, lazily, tritonclient.
`inspect` reads metadata, headers and line breaks, never the table, so the user's machine
can plan an array over a table of any size from its JSON; `shard` scores one slice of the
plan in bounded memory (one row group or CSV block plus two batches); `merge` streams the
parts into one file. Every file is written under a temporary name and renamed, so a part
that exists is complete and a killed task leaves nothing that looks finished.

Why a bundled server: `--server pytriton` starts the real `tritonserver` that ships inside
the nvidia-pytriton wheel (Triton's Python backend only), so users get Triton's serving
path on any node without installing Triton or pulling a container. Its model repository,
backend directory and shared-memory names are private to the task, because several array
tasks share a host; the server dies with the task (PR_SET_PDEATHSIG) and is stopped and
cleaned up in `finally` and on SIGTERM (`scancel`); what a SIGKILLed task leaves behind
is removed by the next task on the host that starts a server. `--server triton` runs a
site's own Triton (the FIL backend) through the same client code.

Why bit-identical predictions: the Python backend model imports `load_model` and `predict`
from this very file, so every server mode sends the same float32 matrix through the same
XGBoost call and returns the same bits; switching modes never moves a number, and the
tests compare modes with `==`, not a tolerance.

Why two batches in flight: reading and converting batch i+1 overlaps predicting batch i
(on a thread for `none`, in the server otherwise); with Triton the batch is built directly
in a shared-memory region the server reads (HPCRUN_SCORE_SHM=0 sends it over gRPC instead,
and a server that cannot map the region falls back to gRPC by itself).

CSV inputs are split at line breaks, so quoted fields must not contain newlines; a block
whose row count differs from the plan's fails the shard rather than shifting rows.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import fcntl
import importlib.util
import json
import mmap
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:  # A missing package is reported as a JSON error with an install hint, not a traceback.
    import numpy as np
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.csv as pacsv  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    MISSING_PACKAGE: str | None = None
except ImportError as _missing:  # pragma: no cover - depends on the cluster's Python
    MISSING_PACKAGE = _missing.name or "numpy"

if TYPE_CHECKING:
    import numpy.typing as npt

    Floats = npt.NDArray[np.float32]

SCORE_HINT = "pip install 'hpcrun[score]'"
TRITON_HINT = "pip install 'hpcrun[triton]'"
XGBOOST_FORMATS = ("xgboost_json", "xgboost_ubj")
MODEL_FORMATS = (*XGBOOST_FORMATS, "lightgbm", "treelite_checkpoint")
FORMAT_NAMES = {"xgboost_json": "XGBoost JSON", "xgboost_ubj": "XGBoost UBJSON"}
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
DEFAULT_BLOCK_BYTES = 16 << 20
INFER_BLOCK_BYTES = 1 << 20  # what pyarrow.csv infers column types from
MODEL_NAME = "hpcrun_model"
INPUT_NAME = "input__0"
OUTPUT_NAME = "output__0"
IN_FLIGHT = 2  # batches on their way: reading batch i+1 overlaps predicting batch i
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
PORT_ATTEMPTS = 4
TMP_PREFIX = "hpcrun-score-"
LOG_ERROR_WORDS = ("UNAVAILABLE", "rror", "failed", "Traceback")


class TaskError(Exception):
    """A problem the user can fix: what is wrong and where (message), how to fix it (hint)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


# ----------------------------------------------------------------------------- predictions


def load_model(path: str, fmt: str) -> Any:
    """An XGBoost booster; the one loader of `--server none` and of the Triton model."""
    if fmt not in XGBOOST_FORMATS:
        raise TaskError(
            f"a {fmt} model can only be scored by Triton's FIL backend",
            "use --server triton, or convert the model to XGBoost",
        )
    import xgboost as xgb

    raw = read_model_bytes(path)
    check_model_kind(path, raw, fmt)
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(raw))  # from memory: the format is not guessed from the name
    except (xgb.core.XGBoostError, UnicodeDecodeError) as exc:
        # XGBoost's own error message is not UTF-8 for binary junk: that is the error then.
        raise TaskError(
            f"{path} is not an {FORMAT_NAMES[fmt]} model: {first_line(str(exc))}",
            f"pass --model-format with the model's format ({', '.join(MODEL_FORMATS)})",
        ) from exc
    return booster


def predict(booster: Any, X: Floats, predict: str, threshold: float, num_class: int) -> Floats:
    """(n, K) float32 predictions of the (n, F) float32 `X`, the same in every server mode.

    proba: probabilities (or regression values); class: class ids as float32; raw: margins.
    """
    if predict == "raw":
        out = booster.inplace_predict(X, predict_type="margin")
    else:
        out = booster.inplace_predict(X, predict_type="value")
        if predict == "class":
            out = to_classes(np.asarray(out), threshold, num_class)
    values: Floats = np.asarray(out, dtype=np.float32)
    return values.reshape(len(X), 1) if values.ndim == 1 else values


def to_classes(values: Floats, threshold: float, num_class: int) -> Floats:
    """argmax of class probabilities, multi:softmax's ids as they are, else value > threshold."""
    if values.ndim == 2 and values.shape[1] > 1:
        ids: Floats = np.argmax(values, axis=1).astype(np.float32)
        return ids
    if num_class > 1:
        return values.astype(np.float32)
    return (values > threshold).astype(np.float32)


def first_line(text: str) -> str:
    """The first line of an XGBoost error, without its `[hh:mm:ss] ` stamp."""
    lines = text.strip().splitlines()
    line = lines[0] if lines else "unknown error"
    if line.startswith("[") and "] " in line[:12]:
        line = line.split("] ", 1)[1]
    return line


def read_model_bytes(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise TaskError(f"model {path} does not exist", "check the --model path") from exc
    except OSError as exc:
        raise TaskError(f"cannot read model {path}: {exc.strerror}", "check the path") from exc


def sniff_model(raw: bytes) -> str | None:
    """The model format `raw` looks like, if it looks like one."""
    head = raw[:4096]
    if head.lstrip()[:1] == b"{":
        return "xgboost_ubj" if b"\x00" in head else "xgboost_json"
    if b"max_feature_idx=" in head or head.startswith(b"tree\n"):
        return "lightgbm"
    return None


def check_model_kind(path: str, raw: bytes, fmt: str) -> None:
    """Refuse a model of another known format with the --model-format that fits it."""
    kind = sniff_model(raw)
    if kind is not None and kind != fmt:
        raise TaskError(
            f"{path} is not an {FORMAT_NAMES[fmt]} model: it looks like {kind}",
            f"pass --model-format {kind}",
        )


# ----------------------------------------------------------------------------- inspect


def require(module: str, hint: str) -> None:
    if not importable(module):
        raise TaskError(f"the Python package {module} is not installed", hint)


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def check_server_packages(server: str) -> None:
    if server == "pytriton":
        require("pytriton", TRITON_HINT)
    if server in ("pytriton", "triton"):
        require("tritonclient.grpc", TRITON_HINT)


def server_info(program: str) -> dict[str, Any]:
    pytriton = importable("pytriton") and importable("tritonclient.grpc")
    return {"pytriton": pytriton, "tritonserver": shutil.which(program)}


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


def inspect_model(model: str, fmt: str) -> dict[str, Any]:
    path = str(Path(model).absolute())
    raw = read_model_bytes(path)
    if fmt == "lightgbm":
        return lightgbm_info(path, raw)
    if fmt == "treelite_checkpoint":
        return model_info(fmt, None, 0, None, None)
    require("xgboost", SCORE_HINT)
    booster = load_model(path, fmt)
    learner = json.loads(booster.save_config())["learner"]
    return model_info(
        fmt,
        int(booster.num_features()),
        int(learner["learner_model_param"]["num_class"]),
        learner["objective"]["name"],
        booster.feature_names,
    )


def model_info(
    fmt: str, features: int | None, num_class: int, objective: str | None, names: Any
) -> dict[str, Any]:
    return {
        "format": fmt,
        "features": features,
        "num_class": num_class,
        "objective": objective,
        "feature_names": list(names) if names else None,
    }


def lightgbm_info(path: str, raw: bytes) -> dict[str, Any]:
    """Features, classes and objective from a LightGBM text model's header."""
    header: dict[str, str] = {}
    for line in raw[: 1 << 20].decode("utf-8", "replace").splitlines():
        if line.startswith("Tree="):
            break
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
    if "max_feature_idx" not in header:
        kind = sniff_model(raw)
        raise TaskError(
            f"{path} is not a LightGBM text model: it has no max_feature_idx= line",
            f"pass --model-format {kind}"
            if kind
            else f"pass --model-format with the model's format ({', '.join(MODEL_FORMATS)})",
        )
    names = header.get("feature_names")
    objective = header.get("objective")
    return model_info(
        "lightgbm",
        int(header["max_feature_idx"]) + 1,
        int(header.get("num_class", "1")),
        objective.split()[0] if objective else None,
        names.split() if names else None,
    )


def run_inspect(args: argparse.Namespace) -> dict[str, Any]:
    if MISSING_PACKAGE is not None:
        raise TaskError(f"the Python package {MISSING_PACKAGE} is not installed", SCORE_HINT)
    check_server_packages(args.server)
    fmt, files = resolve_inputs(args.input)
    if fmt == "parquet":
        schema, units = inspect_parquet(files)
    else:
        schema, units = inspect_csv(files, max(1, args.block_bytes))
    if args.id_column is not None and args.id_column not in schema.names:
        raise TaskError(
            f"id column {args.id_column} is not in {files[0]}",
            f"pick one of its columns: {', '.join(schema.names)}",
        )
    model = inspect_model(args.model, args.model_format)
    return {
        "format": fmt,
        "files": [str(f) for f in files],
        "columns": [{"name": f.name, "type": str(f.type)} for f in schema],
        "numeric": [f.name for f in schema if is_numeric(f.type)],
        "non_numeric": [f.name for f in schema if not is_numeric(f.type)],
        "column_types": {f.name: type_alias(f.type) for f in schema},
        "rows": sum(unit["rows"] for unit in units),
        "units": units,
        "model": model,
        "servers": server_info(args.tritonserver),
    }


# ----------------------------------------------------------------------------- reading


def plan_get(plan: dict[str, Any], key: str) -> Any:
    if key not in plan:
        raise TaskError(f"the plan has no {key!r}", "run hpcrun score again to write a new plan")
    return plan[key]


def needed_columns(plan: dict[str, Any]) -> list[str]:
    features: list[str] = list(plan_get(plan, "features"))
    id_column = plan.get("id_column")
    return features + ([id_column] if id_column and id_column not in features else [])


def csv_read_type(alias: str, feature: bool) -> Any:
    """The type a CSV column is parsed as; integer and null features as float64, so a later
    block with a decimal point parses too (the cast to float32 gives the same values)."""
    try:
        dtype = pa.type_for_alias(alias)
    except (ValueError, KeyError):
        return None  # left to pyarrow's inference
    if feature and (pa.types.is_integer(dtype) or pa.types.is_null(dtype)):
        return pa.float64()
    return dtype


def csv_convert_options(plan: dict[str, Any]) -> Any:
    features = set(plan_get(plan, "features"))
    column_types = plan.get("column_types") or {}
    types = {}
    for name in needed_columns(plan):
        dtype = (
            csv_read_type(column_types[name], name in features) if name in column_types else None
        )
        if dtype is not None:
            types[name] = dtype
    return pacsv.ConvertOptions(column_types=types, include_columns=needed_columns(plan))


def read_segments(plan: dict[str, Any], shard: dict[str, Any]) -> Iterator[Any]:
    """The shard's rows as one Arrow table per segment, in order."""
    files: list[str] = plan_get(plan, "files")
    if plan_get(plan, "format") == "csv":
        options = csv_convert_options(plan)
        header = list(plan_get(plan, "csv_header"))
        for seg in shard["segments"]:
            yield read_csv_segment(files[seg["file"]], seg, header, options)
    else:
        columns = needed_columns(plan)
        for seg in shard["segments"]:
            yield read_parquet_segment(files[seg["file"]], seg, columns)


def read_parquet_segment(path: str, seg: dict[str, int], columns: list[str]) -> Any:
    group, offset, rows = seg["row_group"], seg.get("offset", 0), seg["rows"]
    try:
        with pq.ParquetFile(path) as handle:
            table = handle.read_row_group(group, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise TaskError(f"cannot read row group {group} of {path}: {exc}") from exc
    if table.num_rows < offset + rows:
        raise TaskError(
            f"row group {group} of {path} has {table.num_rows} rows, the plan expects "
            f"at least {offset + rows}",
            "the input changed since the run was planned: start the run again",
        )
    return table.slice(offset, rows)


def read_csv_segment(path: str, seg: dict[str, int], header: list[str], options: Any) -> Any:
    where = f"bytes {seg['start']}-{seg['end']} of {path}"
    try:
        with open(path, "rb") as handle:
            handle.seek(seg["start"])
            data = handle.read(seg["end"] - seg["start"])
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=header),
            convert_options=options,
        )
    except (pa.ArrowException, OSError) as exc:
        raise TaskError(f"cannot read {where}: {exc}", "check the CSV file") from exc
    if table.num_rows != seg["rows"]:
        raise TaskError(
            f"{where} hold {table.num_rows} rows, the plan expects {seg['rows']}",
            "the input changed since the run was planned, or a quoted field holds a newline",
        )
    return table


def fill_features(out: Floats, table: Any, features: list[str]) -> None:
    """Write `table`'s feature columns into `out` (n, F) as float32, nulls as NaN (missing)."""
    nan = pa.scalar(float("nan"), pa.float32())
    for j, name in enumerate(features):
        column = table.column(name).cast(pa.float32(), safe=False)
        if column.null_count:
            column = column.fill_null(nan)
        out[:, j] = column.to_numpy()


@dataclass
class Batch:
    """One predict call: features (n, F) float32 in a C-contiguous array, and the ids."""

    X: Floats
    ids: Any  # a pyarrow ChunkedArray, or None without an id column


def batches(
    tables: Iterator[Any],
    size: int,
    features: list[str],
    id_column: str | None,
    alloc: Callable[[int], Floats],
) -> Iterator[Batch]:
    """Re-cut the segment tables into batches of `size` rows (the last may be shorter).

    `alloc` hands out the buffer of each batch, so a server mode can build it in shared
    memory; it is called lazily, after the consumer has taken the previous batch.
    """
    X: Floats | None = None
    ids: list[Any] = []
    n = 0
    for table in tables:
        pos = 0
        while pos < table.num_rows:
            if X is None:
                X = alloc(size)
            take = min(size - n, table.num_rows - pos)
            piece = table.slice(pos, take)
            fill_features(X[n : n + take], piece, features)
            if id_column:
                ids.extend(piece.column(id_column).chunks)
            n, pos = n + take, pos + take
            if n == size:
                yield Batch(X, pa.chunked_array(ids) if id_column else None)
                X, ids, n = None, [], 0
    if X is not None and n:
        yield Batch(X[:n], pa.chunked_array(ids) if id_column else None)


# ----------------------------------------------------------------------------- writing


class PartWriter:
    """A shard's predictions, batch by batch, into its `.partial` Parquet file."""

    def __init__(self, path: Path, plan: dict[str, Any], first_row: int) -> None:
        self.path = path
        self.id_column: str | None = plan.get("id_column")
        self.as_class = plan_get(plan, "predict") == "class"
        self.next_row = first_row
        self.rows = 0
        self.writer: Any = None

    def write(self, batch: Batch, preds: Floats) -> None:
        table = self.table(batch, preds)
        if self.writer is None:
            # Dictionary encoding of float predictions costs 4x the time and grows the file.
            self.writer = pq.ParquetWriter(self.path, table.schema, use_dictionary=False)
        self.writer.write_table(table)
        self.rows += table.num_rows

    def table(self, batch: Batch, preds: Floats) -> Any:
        n = len(preds)
        columns: dict[str, Any] = {}
        if self.id_column:
            columns[self.id_column] = batch.ids
        else:
            columns["row"] = np.arange(self.next_row, self.next_row + n, dtype=np.int64)
        self.next_row += n
        values = preds.astype(np.int32) if self.as_class else preds
        if values.shape[1] == 1:
            columns["prediction"] = values[:, 0]
        else:
            for k in range(values.shape[1]):
                columns[f"prediction_{k}"] = np.ascontiguousarray(values[:, k])
        return pa.table(columns)

    def close(self) -> None:
        if self.writer is None:  # an empty shard: merge skips its (guessed) schema
            kind = pa.int32() if self.as_class else pa.float32()
            schema = pa.schema([(self.id_column or "row", pa.int64()), ("prediction", kind)])
            self.writer = pq.ParquetWriter(self.path, schema)
        self.writer.close()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    temp = path.with_name(f".{path.name}.partial")
    temp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(temp, path)


# ----------------------------------------------------------------------------- scorers


class Pending:
    """A batch's predictions, done or on their way; `check` raises if they never will be."""

    def __init__(
        self, future: concurrent.futures.Future[Floats], check: Callable[[], None]
    ) -> None:
        self.future = future
        self.check = check

    def result(self) -> Floats:
        while True:
            try:
                return self.future.result(timeout=0.25)
            except concurrent.futures.TimeoutError:
                check_stop()
                self.check()


def predict_options(plan: dict[str, Any]) -> tuple[str, float, int]:
    mode = str(plan_get(plan, "predict"))
    if mode not in ("proba", "class", "raw"):
        raise TaskError(f"unknown predict mode {mode!r} in the plan", "use proba, class or raw")
    return mode, float(plan.get("threshold", 0.5)), int(plan.get("num_class") or 0)


class LocalScorer:
    """`--server none`: predict in this process on one thread while the main one reads."""

    depth = IN_FLIGHT

    def __init__(self, plan: dict[str, Any]) -> None:
        self.booster = load_model(plan_get(plan, "model"), plan_get(plan, "model_format"))
        self.options = predict_options(plan)
        self.features = len(plan_get(plan, "features"))
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="predict")

    def alloc(self, rows: int) -> Floats:
        return np.empty((rows, self.features), dtype=np.float32)

    def submit(self, X: Floats) -> Pending:
        return Pending(self.pool.submit(predict, self.booster, X, *self.options), lambda: None)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class ShmRegion:
    """A POSIX shared-memory file, mapped here and registered with the server by its key."""

    name: str
    size: int
    buffer: mmap.mmap = field(init=False)

    def __post_init__(self) -> None:
        fd = os.open(f"/dev/shm/{self.name}", os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, self.size)
            self.buffer = mmap.mmap(fd, self.size)
        finally:
            os.close(fd)

    def array(self, rows: int, features: int) -> Floats:
        return np.ndarray((rows, features), dtype=np.float32, buffer=self.buffer)

    def close(self) -> None:
        with contextlib.suppress(BufferError):  # a batch still holds a view: GC unmaps it
            self.buffer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/dev/shm/{self.name}")


class TritonScorer:
    """Batches to a running server over gRPC, IN_FLIGHT at a time.

    With system shared memory each batch is built directly in one of IN_FLIGHT regions
    the server reads, so the features never pass through gRPC; a batch's region is
    reused only after its response came back (the pipeline waits before reading on).
    """

    depth = IN_FLIGHT

    def __init__(self, server: Server, plan: dict[str, Any], use_shm: bool) -> None:
        import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]

        self.grpc: Any = grpcclient
        self.server = server
        self.features = len(plan_get(plan, "features"))
        mode, _, num_class = predict_options(plan)
        # FIL returns [1 - p, p] for a binary classifier's probabilities; keep p.
        self.keep_last = server.kind == "triton" and mode == "proba" and num_class <= 1
        self.regions: list[ShmRegion] = []
        self.slots: deque[int] = deque()
        self.next_slot = 0
        if use_shm:
            self.open_regions(int(plan_get(plan, "batch_rows")))

    def open_regions(self, rows: int) -> None:
        size = rows * self.features * 4
        try:
            for i in range(self.depth):
                region = ShmRegion(f"{self.server.shm_prefix}client_in{i}", size)
                self.regions.append(region)
                self.server.client.register_system_shared_memory(
                    region.name, f"/{region.name}", size
                )
        except Exception as exc:  # e.g. a server in a container that has its own /dev/shm
            print(f"hpcrun: shared memory refused ({exc}); sending batches over gRPC", flush=True)
            self.close()

    def alloc(self, rows: int) -> Floats:
        if not self.regions:
            return np.empty((rows, self.features), dtype=np.float32)
        slot, self.next_slot = self.next_slot, (self.next_slot + 1) % len(self.regions)
        self.slots.append(slot)
        return self.regions[slot].array(rows, self.features)

    def submit(self, X: Floats) -> Pending:
        request = self.grpc.InferInput(INPUT_NAME, list(X.shape), "FP32")
        if self.regions:
            request.set_shared_memory(self.regions[self.slots.popleft()].name, X.nbytes)
        else:
            request.set_data_from_numpy(X)
        future: concurrent.futures.Future[Floats] = concurrent.futures.Future()
        rows = len(X)

        def done(result: Any, error: Any) -> None:  # on a gRPC thread
            try:
                if error is not None:
                    raise TaskError(f"the server failed a batch of {rows} rows: {error}")
                future.set_result(self.output(result, rows))
            except BaseException as exc:
                future.set_exception(exc)

        outputs = [self.grpc.InferRequestedOutput(OUTPUT_NAME)]
        self.server.client.async_infer(self.server.model_name, [request], done, outputs=outputs)
        return Pending(future, self.server.check_alive)

    def output(self, result: Any, rows: int) -> Floats:
        """The (rows, K) predictions; anything else is an error, never a short file."""
        values = result.as_numpy(OUTPUT_NAME)
        if values is None or values.ndim != 2 or values.shape[0] != rows or values.size == 0:
            raise TaskError(
                f"the server answered {rows} rows with an output of shape "
                f"{None if values is None else values.shape}",
                "the server's Python environment differs from this one: see the server log",
            )
        if self.keep_last and values.shape[1] == 2:
            values = values[:, 1:]
        return np.ascontiguousarray(values, dtype=np.float32)

    def close(self) -> None:
        for region in self.regions:
            with contextlib.suppress(Exception):
                self.server.client.unregister_system_shared_memory(region.name)
            region.close()
        self.regions = []


# ----------------------------------------------------------------------------- servers


@dataclass
class Server:
    """A tritonserver child process, its client, and what it leaves to clean up."""

    kind: str  # pytriton | triton
    model_name: str
    tmp: Path
    shm_prefix: str
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    client: Any = None

    @property
    def log(self) -> Path:
        return self.tmp / "tritonserver.log"

    def log_tail(self, lines: int = 8) -> str:
        """The log's error lines (a failed model's status row among them) and its last lines."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        errors = [line for line in text if any(w in line for w in LOG_ERROR_WORDS)]
        keep = dict.fromkeys([*errors[:15], *text[-lines:]])
        return "\n".join(line.rstrip() for line in keep)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise TaskError(
                f"tritonserver exited with status {self.proc.returncode}; its log ends:\n"
                f"{self.log_tail()}"
            )


def shm_prefix(index: int) -> str:
    """Unique per array task on a host, and the same when Slurm requeues the task."""
    job = os.environ.get("SLURM_JOB_ID") or f"pid{os.getpid()}"
    return f"hpcrun_{job}_{index}_"


def remove_shm(prefix: str) -> None:
    for path in Path("/dev/shm").glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            path.unlink()


def pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TaskError("the Python package nvidia-pytriton is not installed", TRITON_HINT)
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise TaskError(f"the Python package {module} is not installed", SCORE_HINT)
    return spec.origin


def write_backend_dir(tmp: Path) -> None:
    """`<tmp>/backends/python`: pytriton's Python backend and the stub of this Python."""
    root = pytriton_dir() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    backend = tmp / "backends" / "python"
    backend.mkdir(parents=True)
    sources = {
        "libtriton_python.so": root / "backends/python/libtriton_python.so",
        "triton_python_backend_utils.py": root / "backends/python/triton_python_backend_utils.py",
        "triton_python_backend_stub": root
        / "python_backend_stubs"
        / version
        / "triton_python_backend_stub",
    }
    for name, source in sources.items():
        if not source.exists():
            raise TaskError(f"nvidia-pytriton has no {source} for Python {version}", TRITON_HINT)
        (backend / name).symlink_to(source)


MODEL_PY = '''\
"""hpcrun's Triton Python backend model: the predictions of {module}.predict."""
import json
import sys

sys.path.insert(0, {script_dir!r})

import numpy  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
import xgboost  # noqa: E402
from {module} import load_model, predict  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.opts = json.loads(config["parameters"]["hpcrun"]["string_value"])
        for mod in (numpy, xgboost):  # the stub's Python must import the task's packages
            want = self.opts["expect"][mod.__name__]
            if mod.__file__ != want:
                raise RuntimeError(f"stub imported {{mod.__file__}}, expected {{want}}")
        self.booster = load_model(self.opts["model"], self.opts["model_format"])

    def execute(self, requests):
        o = self.opts
        responses = []
        for request in requests:
            X = pb_utils.get_input_tensor_by_name(request, "{input_name}").as_numpy()
            y = predict(self.booster, X, o["predict"], o["threshold"], o["num_class"])
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("{output_name}", y)]))
        return responses
'''

CONFIG_PBTXT = """\
name: "{name}"
backend: "python"
max_batch_size: {batch_rows}
input [ {{ name: "{input_name}", data_type: TYPE_FP32, dims: [ {features} ] }} ]
output [ {{ name: "{output_name}", data_type: TYPE_FP32, dims: [ -1 ] }} ]
instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
parameters {{ key: "hpcrun", value: {{ string_value: {options} }} }}
"""


def pbtxt_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def write_model_repository(tmp: Path, plan: dict[str, Any]) -> Path:
    """`<tmp>/models/hpcrun_model`: config.pbtxt and a 1/model.py that calls `predict`."""
    repo = tmp / "models"
    (repo / MODEL_NAME / "1").mkdir(parents=True)
    mode, threshold, num_class = predict_options(plan)
    options = {
        "model": str(Path(plan_get(plan, "model")).absolute()),
        "model_format": plan_get(plan, "model_format"),
        "predict": mode,
        "threshold": threshold,
        "num_class": num_class,
        "expect": {m: package_file(m) for m in ("numpy", "xgboost")},
    }
    script = Path(__file__).resolve()
    model_py = MODEL_PY.format(
        script_dir=str(script.parent),
        module=script.stem,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
    )
    (repo / MODEL_NAME / "1" / "model.py").write_text(model_py)
    config = CONFIG_PBTXT.format(
        name=MODEL_NAME,
        batch_rows=int(plan_get(plan, "batch_rows")),
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        features=len(plan_get(plan, "features")),
        options=pbtxt_string(json.dumps(options)),
    )
    (repo / MODEL_NAME / "config.pbtxt").write_text(config)
    return repo


def pytriton_env() -> dict[str, str]:
    """The bundled server's environment: the stub must embed this very Python.

    LD_LIBRARY_PATH puts this interpreter's libpython first (another one can fail with
    `'_thread.RLock' object has no attribute '_recursion_count'`); PATH and PYTHONPATH make
    the stub import this environment's numpy and xgboost, not another Python's (a numpy 2
    there answered with empty outputs); model.py checks which files it imported.
    """
    env = dict(os.environ)
    libs = [
        str(sysconfig.get_config_var("LIBDIR")),
        str(pytriton_dir().parent / "nvidia_pytriton.libs"),
    ]
    env["LD_LIBRARY_PATH"] = join_paths(libs, env.get("LD_LIBRARY_PATH"))
    env["PATH"] = join_paths([str(Path(sys.executable).parent)], env.get("PATH"))
    roots = [str(Path(package_file(m)).parent.parent) for m in ("numpy", "xgboost")]
    env["PYTHONPATH"] = join_paths(list(dict.fromkeys(roots)), env.get("PYTHONPATH"))
    return env


def join_paths(first: list[str], rest: str | None) -> str:
    return os.pathsep.join([*first, *([rest] if rest else [])])


def server_argv(plan: dict[str, Any], server: Server) -> list[str]:
    if server.kind == "pytriton":
        program = [str(pytriton_dir() / "tritonserver" / "bin" / "tritonserver")]
        repo = str(server.tmp / "models")
        extra = [
            f"--backend-directory={server.tmp / 'backends'}",
            f"--backend-config=python,shm-region-prefix-name={server.shm_prefix}",
        ]
    else:
        program = shlex.split(str(plan_get(plan, "tritonserver")))
        repo = str(plan_get(plan, "model_repository"))
        extra = []
    return [
        *program,
        f"--model-repository={repo}",
        "--allow-http=false",
        "--allow-metrics=false",
        "--grpc-address=127.0.0.1",  # the task is the only client; others on the node are not
        f"--grpc-port={server.port}",
        "--exit-timeout-secs=5",
        "--log-verbose=0",
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> Callable[[], None]:
    """A preexec_fn: the kernel sends the server SIGTERM when this task dies, even by SIGKILL.

    prctl is looked up here, before the fork, so the child only makes the call.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the task died before the call took effect
            os._exit(1)

    return set_death_signal


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    try:
        with open(log, "ab") as out:
            return subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
                start_new_session=False,
            )
    except OSError as exc:
        raise TaskError(f"cannot start {argv[0]}: {exc.strerror}", "check --tritonserver") from exc


def start_server(plan: dict[str, Any], index: int, tmp: Path) -> Server:
    """Start tritonserver on a free port (another one if the bind fails); wait until ready."""
    kind = str(plan_get(plan, "server"))
    name = MODEL_NAME if kind == "pytriton" else str(plan.get("model_name") or MODEL_NAME)
    server = Server(kind, name, tmp, shm_prefix(index))
    remove_shm(server.shm_prefix)  # left by an earlier attempt of this task that was killed
    env = dict(os.environ)
    if kind == "pytriton":
        write_backend_dir(tmp)
        write_model_repository(tmp, plan)
        env = pytriton_env()
    for _ in range(PORT_ATTEMPTS):
        server.port = free_port()
        server.proc = spawn(server_argv(plan, server), env, server.log)
        if wait_ready(server):
            return server
        if not port_taken(server):
            break
    server.check_alive()
    raise TaskError(f"tritonserver was not ready in {READY_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def port_taken(server: Server) -> bool:
    tail = server.log_tail().lower()
    return "address already in use" in tail or "failed to listen" in tail


def wait_ready(server: Server) -> bool:
    """True once server and model are ready; False when the process exited first.

    The gRPC client is made only once the port accepts connections: a channel whose first
    connection was refused backs off for seconds before it tries again.
    """
    import tritonclient.grpc as grpcclient

    close_client(server)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        check_stop()
        assert server.proc is not None
        if server.proc.poll() is not None:
            return False
        if server.client is None and port_open(server.port):
            server.client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.port}")
        if server.client is not None and model_ready(server):
            return True
        time.sleep(0.05)
    return False


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def model_ready(server: Server) -> bool:
    client = server.client
    try:  # with a timeout: the port may belong to another program that never answers
        return bool(
            client.is_server_ready(client_timeout=2.0)
            and client.is_model_ready(server.model_name, client_timeout=2.0)
        )
    except Exception:  # tritonclient's InferenceServerException while it starts
        return False


def close_client(server: Server) -> None:
    if server.client is not None:
        with contextlib.suppress(Exception):
            server.client.close()
        server.client = None


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, STOP_TIMEOUT_S to exit, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_server(server: Server) -> None:
    close_client(server)
    stop_process(server.proc)
    remove_shm(server.shm_prefix)


@contextlib.contextmanager
def scorer_for(plan: dict[str, Any], index: int) -> Iterator[tuple[Any, float]]:
    """The plan's scorer, and the seconds it took to be ready (model load, server start)."""
    kind = plan_get(plan, "server")
    started = time.perf_counter()
    if kind == "none":
        local = LocalScorer(plan)
        try:
            yield local, time.perf_counter() - started
        finally:
            local.close()
        return
    if kind not in ("pytriton", "triton"):
        raise TaskError(f"unknown server {kind!r} in the plan", "use none, pytriton or triton")
    check_server_packages(kind)
    with serving(plan, index) as server:
        seconds = time.perf_counter() - started
        print(f"hpcrun: shard {index}: server ready in {seconds:.1f} s", flush=True)
        use_shm = os.environ.get("HPCRUN_SCORE_SHM", "1") != "0"
        scorer = TritonScorer(server, plan, use_shm)
        try:
            yield scorer, seconds
        finally:
            scorer.close()


@contextlib.contextmanager
def serving(plan: dict[str, Any], index: int) -> Iterator[Server]:
    """A ready server; afterwards it is stopped and its temp dir and shared memory removed."""
    base = Path(tempfile.gettempdir())
    sweep_stale(base)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=base))
    lock = claim(tmp, shm_prefix(index))
    server: Server | None = None
    try:
        server = start_server(plan, index, tmp)
        yield server
    finally:
        if server is not None:
            stop_server(server)
        remove_shm(shm_prefix(index))
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(lock)


def claim(tmp: Path, prefix: str) -> int:
    """Lock `<tmp>/owner.lock` (naming the shared-memory prefix) for as long as the task lives.

    The kernel drops the lock when the task dies, even by SIGKILL, so `sweep_stale` can tell
    a dead task's leftovers from a live one's without trusting pids. The file gets its name
    only once locked, so a sweep never sees it unlocked while its task lives.
    """
    fd = os.open(tmp / ".owner.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, prefix.encode())
    os.rename(tmp / ".owner.lock", tmp / "owner.lock")
    return fd


def sweep_stale(base: Path) -> None:
    """Remove the temp dirs and shared memory of tasks that were killed (SIGKILL, OOM)."""
    for tmp in base.glob(f"{TMP_PREFIX}*"):
        try:
            fd = os.open(tmp / "owner.lock", os.O_RDWR)
        except OSError:
            continue  # not ours, or not claimed yet
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its task is alive
        prefix = os.read(fd, 256).decode(errors="replace")
        if prefix.startswith("hpcrun_"):
            remove_shm(prefix)
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


# ----------------------------------------------------------------------------- shard


def load_plan(path: str) -> dict[str, Any]:
    try:
        plan: dict[str, Any] = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise TaskError(f"plan {path} does not exist", "check the --plan path") from exc
    except (OSError, ValueError) as exc:
        raise TaskError(f"cannot read plan {path}: {exc}", "run hpcrun score again") from exc
    return plan


def find_shard(plan: dict[str, Any], index: int) -> dict[str, Any]:
    for shard in plan_get(plan, "shards"):
        if int(shard["index"]) == index:
            return dict(shard)
    raise TaskError(f"the plan has no shard {index}", "check --index against the plan")


def part_paths(plan: dict[str, Any], index: int) -> tuple[Path, Path, Path]:
    """The part, its `.partial` while it is written, and its stats."""
    parts = Path(plan_get(plan, "parts_dir"))
    part = parts / f"part-{index:05d}.parquet"
    return part, parts / f".{part.name}.partial", parts / f"part-{index:05d}.json"


def cpu_seconds() -> float:
    """User + system CPU of this process and of its children that have been waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


class Stop:
    """The signal that asked this task to stop, acted on by `check_stop` in the main loop."""

    signum = 0


def note_signal(signum: int, _frame: Any) -> None:
    """SIGTERM (scancel) and SIGINT are noted, not raised here: an exception raised in a
    handler can land in a `__del__` (gRPC's) and be swallowed, and the task runs on."""
    Stop.signum = signum


def check_stop() -> None:
    """Unwind the task after SIGTERM/SIGINT, so every `finally` stops and cleans up."""
    if Stop.signum:
        raise SystemExit(128 + Stop.signum)


@dataclass
class Progress:
    """`R/T rows` lines at every tenth of the shard."""

    index: int
    total: int
    next_report: int = 0

    def update(self, rows: int) -> None:
        step = max(1, self.total // 10)
        self.next_report = self.next_report or step
        if self.next_report <= rows < self.total:
            print(f"hpcrun: shard {self.index}: {rows}/{self.total} rows", flush=True)
            self.next_report = (rows // step + 1) * step


def score_rows(plan: dict[str, Any], shard: dict[str, Any], scorer: Any, out: PartWriter) -> int:
    """Read, predict and write the shard with `scorer.depth` batches in flight; batches."""
    progress = Progress(int(shard["index"]), int(shard["rows"]))
    source = batches(
        read_segments(plan, shard),
        int(plan_get(plan, "batch_rows")),
        list(plan_get(plan, "features")),
        plan.get("id_column"),
        scorer.alloc,
    )
    pending: deque[tuple[Batch, Pending]] = deque()
    count = 0
    for batch in source:
        check_stop()
        pending.append((batch, scorer.submit(batch.X)))
        count += 1
        while len(pending) >= scorer.depth:  # before the next batch reuses a buffer
            finish(pending.popleft(), out, progress)
    while pending:
        finish(pending.popleft(), out, progress)
    return count


def finish(item: tuple[Batch, Pending], out: PartWriter, progress: Progress) -> None:
    batch, pending = item
    out.write(batch, pending.result())
    progress.update(out.rows)


def run_shard(plan_path: str, index: int) -> dict[str, Any]:
    """Score shard `index` into its part; the part appears (complete) only at the end."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, note_signal)
    cpu0 = cpu_seconds()
    plan = load_plan(plan_path)
    shard = find_shard(plan, index)
    part, partial, stats_path = part_paths(plan, index)
    part.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)
    try:
        with scorer_for(plan, index) as (scorer, start_seconds):
            started = time.perf_counter()
            out = PartWriter(partial, plan, int(shard["first_row"]))
            count = score_rows(plan, shard, scorer, out)
            out.close()
            seconds = time.perf_counter() - started
        stats = {
            "index": index,
            "rows": out.rows,
            "seconds": round(seconds, 4),
            "server_start_seconds": round(start_seconds, 4),
            "rows_per_s": round(out.rows / seconds, 1) if seconds > 0 else None,
            "cpu_seconds": round(cpu_seconds() - cpu0, 3),
            "host": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
            "server": plan_get(plan, "server"),
            "batches": count,
            "batch_rows": int(plan_get(plan, "batch_rows")),
        }
        write_json_atomic(stats_path, stats)
        os.replace(partial, part)
    finally:
        partial.unlink(missing_ok=True)
    return stats


# ----------------------------------------------------------------------------- merge


def run_merge(plan_path: str) -> dict[str, Any]:
    """Stream every part, in shard order, into the merged file; then write the summary."""
    started = time.perf_counter()
    plan = load_plan(plan_path)
    shards = list(plan_get(plan, "shards"))
    paths = {int(s["index"]): part_paths(plan, int(s["index"])) for s in shards}
    missing = [i for i, (part, _, stats) in paths.items() if not (part.exists() and stats.exists())]
    if missing:
        raise TaskError(
            f"shards {', '.join(map(str, missing))} have no part in {plan['parts_dir']}",
            "run those array tasks again, then merge",
        )
    stats = [json.loads(paths[int(s["index"])][2].read_text()) for s in shards]
    for shard, stat in zip(shards, stats, strict=True):
        if int(stat["rows"]) != int(shard["rows"]):
            raise TaskError(
                f"part {shard['index']} has {stat['rows']} rows, the plan {shard['rows']}",
                "run that array task again, then merge",
            )
    merged = Path(plan_get(plan, "merged"))
    rows = stream_parts([paths[int(s["index"])][0] for s in shards], merged)
    seconds = sum(float(s["seconds"]) for s in stats)
    summary = {
        "rows": rows,
        "shards": stats,
        "seconds": round(seconds, 4),
        "wall_seconds": max((float(s["seconds"]) for s in stats), default=0.0),
        "rows_per_s": round(rows / seconds, 1) if seconds > 0 else None,
        "merged": str(merged),
        "merge_seconds": round(time.perf_counter() - started, 4),
    }
    write_json_atomic(Path(plan_get(plan, "summary")), summary)
    return summary


def stream_parts(parts: list[Path], merged: Path) -> int:
    """Copy the parts' row groups in order through one writer into `.<merged>.partial`,
    then rename it; one row group in memory at a time. Returns the rows written."""
    partial = merged.with_name(f".{merged.name}.partial")
    merged.parent.mkdir(parents=True, exist_ok=True)
    writer: Any = None
    rows = 0
    try:
        for part in parts:
            with pq.ParquetFile(part) as handle:
                if handle.metadata.num_rows == 0 and (writer is not None or part != parts[-1]):
                    continue  # an empty shard's schema is a guess: let the others decide
                if writer is None:
                    writer = pq.ParquetWriter(partial, handle.schema_arrow, use_dictionary=False)
                for group in range(handle.num_row_groups):
                    table = handle.read_row_group(group)
                    writer.write_table(table.cast(writer.schema))
                    rows += table.num_rows
        if writer is not None:
            writer.close()
            writer = None
        os.replace(partial, merged)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
    return rows


# ----------------------------------------------------------------------------- main


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="score_task.py", description=(__doc__ or "").split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="describe the table and the model as one JSON line")
    inspect.add_argument("--input", nargs="+", required=True, metavar="PATH")
    inspect.add_argument("--model", required=True)
    inspect.add_argument("--model-format", required=True, choices=MODEL_FORMATS)
    inspect.add_argument("--id-column")
    servers = ("auto", "none", "pytriton", "triton")
    inspect.add_argument("--server", default="auto", choices=servers)
    inspect.add_argument("--tritonserver", default="tritonserver")
    inspect.add_argument("--block-bytes", type=int, default=DEFAULT_BLOCK_BYTES)
    shard = sub.add_parser("shard", help="score one shard of a plan into its part file")
    shard.add_argument("--plan", required=True)
    shard.add_argument("--index", type=int, required=True)
    merge = sub.add_parser("merge", help="join a plan's parts into one Parquet file")
    merge.add_argument("--plan", required=True)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "inspect":
        return main_inspect(args)
    if MISSING_PACKAGE is not None:
        return fail(f"the Python package {MISSING_PACKAGE} is not installed", SCORE_HINT)
    what = f"shard {args.index}" if args.command == "shard" else "merge"
    try:
        if args.command == "shard":
            report_shard(run_shard(args.plan, args.index))
        else:
            report_merge(run_merge(args.plan))
    except TaskError as exc:
        return fail(f"{what} failed: {exc.message}", exc.hint)
    except SystemExit as exc:
        if isinstance(exc.code, int) and exc.code > 128:
            print(f"hpcrun: {what} stopped by signal {exc.code - 128}", file=sys.stderr)
        raise
    return 0


def main_inspect(args: argparse.Namespace) -> int:
    try:
        report = run_inspect(args)
    except TaskError as exc:
        print(json.dumps({"error": exc.message, "hint": exc.hint}))
        return 2
    print(json.dumps(report))
    return 0


def report_shard(stats: dict[str, Any]) -> None:
    print(
        f"hpcrun: shard {stats['index']} done: {stats['rows']} rows in {stats['seconds']:.2f} s "
        f"({stats['rows_per_s'] or 0:.0f} rows/s)",
        flush=True,
    )


def report_merge(summary: dict[str, Any]) -> None:
    print(
        f"hpcrun: merged {summary['rows']} rows from {len(summary['shards'])} shards "
        f"into {summary['merged']}",
        flush=True,
    )


def fail(message: str, hint: str = "") -> int:
    print(f"hpcrun: {message}", file=sys.stderr)
    if hint:
        print(f"hpcrun: hint: {hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
