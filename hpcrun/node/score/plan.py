"""The score plan: what `hpcrun score` decided on the user's machine, as every task reads it.

One typed module for both sides. `hpcrun.workloads.score` builds a `ScorePlan` (the table's
files and columns, the model, the shards and where their parts go) and writes `to_json()`
as plan.json beside the job scripts; `shard` and `merge` read it back with `from_json` and
use its attributes. A shard's segments stay JSON objects (`Segment` is a TypedDict): they
are what the shard reads, in order, and `--resume` compares plans as JSON.

`from_json` names the first key a task needs that the plan lacks, as the task always did;
the keys only the submitting side uses (name, run_dir, python, worker, objective, rows) may
be missing, so a plan written by hand for a test or a rerun still scores. Standard library
only: this module ships inside the task's zipapp.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Required, TypedDict, cast

from .errors import TaskError

PLAN_VERSION = 1
MODEL_NAME = "hpcrun_model"  # the model's name in every Triton model repository
_NEW_PLAN = "run hpcrun score again to write a new plan"


class Segment(TypedDict, total=False):
    """A piece of a shard in file `file`: `rows` rows from `offset` of Parquet row group
    `row_group`, or the whole line-aligned CSV byte range [`start`, `end`)."""

    file: Required[int]
    rows: Required[int]
    row_group: int
    offset: int
    start: int
    end: int


_SEGMENT_KEYS = ("file", "row_group", "offset", "start", "end", "rows")


def part_file(parts_dir: str, index: int) -> str:
    """Shard `index`'s part: written by its task, counted by status, read by merge."""
    return f"{parts_dir}/part-{index:05d}.parquet"


@dataclass(frozen=True)
class Shard:
    """Rows [first_row, first_row + rows) of the table, scored by array task `index`."""

    index: int
    first_row: int  # 0-based row number in the whole table
    rows: int
    segments: tuple[Segment, ...]  # what the task reads, in order

    @property
    def last_row(self) -> int:
        return self.first_row + self.rows - 1

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "first_row": self.first_row,
            "rows": self.rows,
            "segments": [dict(seg) for seg in self.segments],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Shard:
        try:
            return cls(
                index=int(data["index"]),
                first_row=int(data["first_row"]),
                rows=int(data["rows"]),
                segments=tuple(_segment(seg) for seg in data["segments"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TaskError(f"the plan has a malformed shard ({exc!r})", _NEW_PLAN) from None


def _segment(data: Mapping[str, Any]) -> Segment:
    """The segment's numbers, keys in the JSON's order (read and written again, a plan is
    the same text)."""
    for key in ("file", "rows"):
        if key not in data:
            raise KeyError(key)
    return cast(Segment, {key: int(data[key]) for key in data if key in _SEGMENT_KEYS})


@dataclass(frozen=True)
class ScorePlan:
    """Everything the jobs need (written as plan.json beside the scripts); every path is
    a path on the cluster."""

    name: str
    run_dir: str
    python: str  # the cluster's Python that runs the task
    worker: str  # the task's zipapp on the cluster (the pytriton model.py imports from it)
    format: str  # parquet | csv
    files: list[str]
    column_types: dict[str, str]
    csv_header: list[str] | None
    features: list[str]
    id_column: str | None
    model: str
    model_format: str
    predict: str
    threshold: float
    num_class: int
    objective: str
    server: str  # none | pytriton | triton | remote (auto is resolved before the plan)
    batch_rows: int
    parts_dir: str
    merged: str
    summary: str
    rows: int
    shards: tuple[Shard, ...] = ()
    tritonserver: str = "tritonserver"
    model_name: str = MODEL_NAME
    server_url: str | None = None  # remote: HOST:PORT of a Triton someone serves
    retries: int = 2
    max_parallel: int | None = None
    gpus_per_task: int | None = None
    # CPUs each task asks for (--cpus-per-task); None: a whole node each (--exclusive).
    # The task sizes its threads by what the scheduler says it got (HPCRUN_CPUS), not this.
    cpus_per_task: int | None = None
    partition: str | None = None
    time_limit: str | None = None

    @property
    def plan_file(self) -> str:
        return f"{self.run_dir}/plan.json"

    @property
    def model_repository(self) -> str:
        return f"{self.run_dir}/model_repository"

    def part_file(self, index: int) -> str:
        return part_file(self.parts_dir, index)

    def find_shard(self, index: int) -> Shard:
        for shard in self.shards:
            if shard.index == index:
                return shard
        raise TaskError(f"the plan has no shard {index}", "check --index against the plan")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["shards"] = [shard.to_json() for shard in self.shards]
        data["version"] = PLAN_VERSION
        data["model_repository"] = self.model_repository
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScorePlan:
        """The plan in plan.json; a key the task needs and the plan lacks is a TaskError."""

        def need(key: str) -> Any:
            if key not in data:
                raise TaskError(f"the plan has no {key!r}", _NEW_PLAN)
            return data[key]

        try:
            header = data.get("csv_header")
            return cls(
                name=str(data.get("name", "")),
                run_dir=str(data.get("run_dir", "")),
                python=str(data.get("python", "")),
                worker=str(data.get("worker", "")),
                format=str(need("format")),
                files=[str(f) for f in need("files")],
                column_types={str(k): str(v) for k, v in (data.get("column_types") or {}).items()},
                csv_header=None if header is None else [str(c) for c in header],
                features=[str(c) for c in need("features")],
                id_column=_optional_str(data.get("id_column")),
                model=str(need("model")),
                model_format=str(need("model_format")),
                predict=str(need("predict")),
                threshold=float(data.get("threshold", 0.5)),
                num_class=int(data.get("num_class") or 0),
                objective=str(data.get("objective") or ""),
                server=str(need("server")),
                batch_rows=int(need("batch_rows")),
                parts_dir=str(need("parts_dir")),
                merged=str(need("merged")),
                summary=str(need("summary")),
                rows=int(data.get("rows", 0)),
                shards=tuple(Shard.from_json(s) for s in need("shards")),
                tritonserver=str(data.get("tritonserver") or "tritonserver"),
                model_name=str(data.get("model_name") or MODEL_NAME),
                server_url=_optional_str(data.get("server_url")),
                retries=int(data.get("retries", 2)),
                max_parallel=_optional_int(data.get("max_parallel")),
                gpus_per_task=_optional_int(data.get("gpus_per_task")),
                cpus_per_task=_optional_int(data.get("cpus_per_task")),
                partition=_optional_str(data.get("partition")),
                time_limit=_optional_str(data.get("time_limit")),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise TaskError(f"the plan is malformed ({exc})", _NEW_PLAN) from None


def load_plan(path: str) -> ScorePlan:
    """The plan in the file `path` (plan.json)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise TaskError(f"plan {path} does not exist", "check the --plan path") from exc
    except (OSError, ValueError) as exc:
        raise TaskError(f"cannot read plan {path}: {exc}", "run hpcrun score again") from exc
    if not isinstance(data, dict):
        raise TaskError(f"plan {path} is not a JSON object", _NEW_PLAN)
    return ScorePlan.from_json(data)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
