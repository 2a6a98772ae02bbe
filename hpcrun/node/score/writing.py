"""A shard's part: predictions batch by batch into `.part-NNNNN.parquet.partial`.

The part gets its name only once complete (`run_shard` renames it), so a part that exists
is whole and a killed task leaves nothing that looks finished; its stats JSON is written
the same way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

from .plan import ScorePlan
from .reading import Batch

if TYPE_CHECKING:
    from .model import Floats


def part_paths(plan: ScorePlan, index: int) -> tuple[Path, Path, Path]:
    """The part, its `.partial` while it is written, and its stats."""
    part = Path(plan.part_file(index))
    return part, part.with_name(f".{part.name}.partial"), part.with_suffix(".json")


class PartWriter:
    """A shard's predictions, batch by batch, into its `.partial` Parquet file."""

    def __init__(self, path: Path, plan: ScorePlan, first_row: int) -> None:
        self.path = path
        self.id_column = plan.id_column
        self.as_class = plan.predict == "class"
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
