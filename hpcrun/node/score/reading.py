"""A shard's rows: its segments read in order, re-cut into batches of float32 features.

Only the columns scoring needs are read (the features and the id column), one row group
or CSV block at a time, so a shard runs in bounded memory. CSV blocks are parsed with the
column types inspect found (integer features as float64, so a later block with a decimal
point still parses); a block whose row count differs from the plan's fails the shard
rather than shifting rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from .errors import TaskError
from .plan import ScorePlan, Segment, Shard

if TYPE_CHECKING:
    from .model import Floats


def needed_columns(plan: ScorePlan) -> list[str]:
    features, id_column = list(plan.features), plan.id_column
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


def csv_convert_options(plan: ScorePlan) -> Any:
    features = set(plan.features)
    column_types = plan.column_types
    types = {}
    for name in needed_columns(plan):
        dtype = (
            csv_read_type(column_types[name], name in features) if name in column_types else None
        )
        if dtype is not None:
            types[name] = dtype
    return pacsv.ConvertOptions(column_types=types, include_columns=needed_columns(plan))


def read_segments(plan: ScorePlan, shard: Shard) -> Iterator[Any]:
    """The shard's rows as one Arrow table per segment, in order."""
    files = plan.files
    if plan.format == "csv":
        if plan.csv_header is None:
            raise TaskError(
                "the plan has no 'csv_header'", "run hpcrun score again to write a new plan"
            )
        options = csv_convert_options(plan)
        for seg in shard.segments:
            yield read_csv_segment(files[seg["file"]], seg, plan.csv_header, options)
    else:
        columns = needed_columns(plan)
        for seg in shard.segments:
            yield read_parquet_segment(files[seg["file"]], seg, columns)


def read_parquet_segment(path: str, seg: Segment, columns: list[str]) -> Any:
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


def read_csv_segment(path: str, seg: Segment, header: list[str], options: Any) -> Any:
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
