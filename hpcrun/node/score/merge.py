"""`merge`: stream every part, in shard order, into one Parquet file; write the summary.

It refuses to merge while a part is missing or holds other than the plan's rows, and
holds one row group in memory at a time.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq  # type: ignore[import-untyped]

from .errors import TaskError
from .plan import load_plan
from .writing import part_paths, write_json_atomic


def run_merge(plan_path: str) -> dict[str, Any]:
    """Stream every part, in shard order, into the merged file; then write the summary."""
    started = time.perf_counter()
    plan = load_plan(plan_path)
    shards = plan.shards
    paths = {s.index: part_paths(plan, s.index) for s in shards}
    missing = [i for i, (part, _, stats) in paths.items() if not (part.exists() and stats.exists())]
    if missing:
        raise TaskError(
            f"shards {', '.join(map(str, missing))} have no part in {plan.parts_dir}",
            "run those array tasks again, then merge",
        )
    stats = [json.loads(paths[s.index][2].read_text()) for s in shards]
    for shard, stat in zip(shards, stats, strict=True):
        if int(stat["rows"]) != shard.rows:
            raise TaskError(
                f"part {shard.index} has {stat['rows']} rows, the plan {shard.rows}",
                "run that array task again, then merge",
            )
    merged = Path(plan.merged)
    rows = stream_parts([paths[s.index][0] for s in shards], merged)
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
    write_json_atomic(Path(plan.summary), summary)
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
