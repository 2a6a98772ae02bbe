"""Batch scoring as any scheduler sees it: table shards as one job array, then one merge job.

Pure planning, no I/O. The score task's `inspect` (run on the cluster, where the data is)
describes the table as *units* (Parquet row groups, line-aligned CSV byte ranges) with
their row counts; `plan_shards` cuts the table's rows into N contiguous shards of nearly
equal size (splitting a row group where needed, never a CSV block, whose lines are only
found by reading it); `check_table` turns what inspect saw into the errors a user can fix
before anything is submitted; `fil_model_repository` is the Triton model repository for
the FIL backend (`--server triton` and `--export-model-repo`), golden-tested. The plan
itself (`ScorePlan`, `Shard`, `Segment`) is `hpcrun.node.score.plan`, the one module the
task reads it with.

Retries live in the shard script, as for render chunks: a shard's part file exists only
once it is complete (written under a temporary name, then renamed), so a retried or
resumed task skips it, and a killed task leaves nothing that looks finished.
"""

from __future__ import annotations

import bisect
import itertools
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpcrun.errors import UsageError
from hpcrun.node.score.plan import MODEL_NAME as MODEL_NAME
from hpcrun.node.score.plan import ScorePlan as ScorePlan
from hpcrun.node.score.plan import Segment as Segment
from hpcrun.node.score.plan import Shard as Shard
from hpcrun.node.score.plan import part_file as part_file
from hpcrun.scheduler import JobRef, WorkSpec, parse_duration
from hpcrun.templates import template
from hpcrun.workloads.shell import check_script_values, one_line

SERVERS = ("auto", "triton", "pytriton", "none")
# `--server grpc://HOST:PORT[/MODEL]`: a Triton someone serves (e.g. `hpcrun serve triton`)
_SERVER_URL_RE = re.compile(
    r"^grpc://(?P<host>[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]{1,5})"
    r"(?:/(?P<model>[A-Za-z0-9_.-]+))?/?$"
)
PREDICTIONS = ("proba", "class", "raw")
# Each format and the file name Triton's FIL backend looks for in the version directory.
MODEL_FILES = {
    "xgboost_json": "xgboost.json",
    "xgboost_ubj": "xgboost.ubj",
    "lightgbm": "model.txt",
    "treelite_checkpoint": "checkpoint.tl",
}
XGBOOST_FORMATS = ("xgboost_json", "xgboost_ubj")  # what the in-process paths can load
_SUFFIX_FORMATS = {
    ".json": "xgboost_json",
    ".ubj": "xgboost_ubj",
    ".txt": "lightgbm",
    ".tl": "treelite_checkpoint",
}
DEFAULT_BATCH_ROWS = 65536
# The fewest rows worth a shard of their own. Each shard is an array task that starts a
# Python, loads the model and (--server triton/pytriton) a Triton server, seconds before
# its first row, while 10 000 rows then score in well under a second: `score --tasks 1000`
# on a 1,000-row table made 1,000 tasks each starting a server (issue 14).
MIN_SHARD_ROWS = 10_000
WORKER = "score_task.pyz"  # the task's zipapp (hpcrun.node.zipapp), shipped with each run


def server_url(text: str) -> tuple[str, str] | None:
    """(HOST:PORT, model name) of `--server grpc://HOST:PORT[/MODEL]`; None for a server
    kind (triton, pytriton, none, auto); a UsageError for a grpc:// URL that is not one."""
    if not text.startswith("grpc://"):
        return None
    found = _SERVER_URL_RE.match(text)
    if found is None or not 0 < int(found["port"]) < 65536:
        raise UsageError(
            f"--server {text!r} is not grpc://HOST:PORT[/MODEL]",
            "e.g. --server grpc://triton.default.svc:8001 (the model defaults to "
            f"{MODEL_NAME}, the name hpcrun exports)",
        )
    return f"{found['host']}:{found['port']}", found["model"] or MODEL_NAME


def model_format_of(model: str, given: str | None) -> str:
    """--model-format, or the format the model file's suffix names."""
    if given is not None:
        if given not in MODEL_FILES:
            raise UsageError(
                f"--model-format {given!r} is not a format Triton's FIL backend reads",
                f"choose one of {', '.join(MODEL_FILES)}",
            )
        return given
    suffix = posixpath.splitext(model)[1].lower()
    if suffix not in _SUFFIX_FORMATS:
        raise UsageError(
            f"cannot tell the format of {model} from its name",
            f"pass --model-format ({', '.join(MODEL_FILES)})",
        )
    return _SUFFIX_FORMATS[suffix]


@dataclass(frozen=True)
class OutputLayout:
    """Where a run's files go: one part per shard, the merged file and the summary."""

    parts_dir: str
    merged: str
    summary: str


def output_layout(output: str) -> OutputLayout:
    """`x.parquet` is the merged file (parts beside it in `x.parts/`); anything else is a
    directory holding `parts/`, `predictions.parquet` and `summary.json`."""
    output = output.rstrip("/") or "/"
    if output.endswith(".parquet"):
        parts = output[: -len(".parquet")] + ".parts"
        return OutputLayout(parts, output, f"{parts}/summary.json")
    return OutputLayout(
        f"{output}/parts", f"{output}/predictions.parquet", f"{output}/summary.json"
    )


@dataclass(frozen=True)
class Unit:
    """A piece of the table inspect found: a Parquet row group or a CSV byte range."""

    file: int
    rows: int
    row_group: int | None = None  # Parquet
    start: int | None = None  # CSV: byte range [start, end), whole lines
    end: int | None = None

    @property
    def splittable(self) -> bool:
        return self.row_group is not None  # a row group can be read from any row

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Unit:
        return cls(
            file=int(data["file"]),
            rows=int(data["rows"]),
            row_group=data.get("row_group"),
            start=data.get("start"),
            end=data.get("end"),
        )


def plan_shards(units: Sequence[Unit], tasks: int) -> list[Shard]:
    """Cut the table into at most `tasks` contiguous shards of nearly equal rows.

    A cut inside a row group splits it; a cut inside a CSV block moves to the block's
    nearer edge. Fewer shards come back when there are fewer rows (or CSV blocks) than
    tasks; no shard is empty.
    """
    if tasks < 1:
        raise UsageError(f"--tasks {tasks}: at least 1")
    units = [u for u in units if u.rows > 0]
    starts: list[int] = []
    total = 0
    for unit in units:
        starts.append(total)
        total += unit.rows
    cuts = {0, total}
    for i in range(1, tasks):
        cut = round(i * total / tasks)
        at = bisect.bisect_right(starts, cut) - 1
        if at >= 0 and not units[at].splittable and cut != starts[at]:
            end = starts[at] + units[at].rows
            cut = starts[at] if cut - starts[at] <= end - cut else end
        cuts.add(cut)
    edges = sorted(cuts)
    shards: list[Shard] = []
    for first, stop in itertools.pairwise(edges):
        if stop > first:
            segments = _segments(units, starts, first, stop)
            shards.append(Shard(len(shards), first, stop - first, segments))
    return shards


def shards_for(units: Sequence[Unit], tasks: int, *, server: str) -> tuple[list[Shard], str]:
    """The shards `score --tasks N` makes, and why there are fewer than N ("" if none).

    Never fewer than `MIN_SHARD_ROWS` rows a shard (but always one shard), so a small
    table is not spread over tasks that each pay a server's start-up for a few rows; a
    CSV's shards are whole blocks, which may leave fewer still.
    """
    total = sum(u.rows for u in units if u.rows > 0)
    wanted = max(1, min(tasks, total // MIN_SHARD_ROWS))
    shards = plan_shards(units, wanted)
    count = len(shards)
    shards_word = "shard" if count == 1 else "shards"
    if count < wanted:
        blocks = sum(1 for u in units if u.rows > 0)
        return shards, (
            f"{count} {shards_word}, not {tasks}: a CSV shard reads whole line-aligned blocks "
            f"of about 16 MiB, and the table has {blocks}"
        )
    if wanted < tasks:
        startup = "Triton server" if server in {"triton", "pytriton"} else "task"
        return shards, (
            f"{count} {shards_word}, not {tasks}: fewer than {MIN_SHARD_ROWS:,} rows per shard "
            f"would cost more in {startup} start-up than it saves ({total:,} rows in all)"
        )
    return shards, ""


def _segments(
    units: Sequence[Unit], starts: Sequence[int], first: int, stop: int
) -> tuple[Segment, ...]:
    found: list[Segment] = []
    at = max(bisect.bisect_right(starts, first) - 1, 0)
    while at < len(units) and starts[at] < stop:
        unit, begin = units[at], starts[at]
        lo, hi = max(first, begin), min(stop, begin + unit.rows)
        if hi > lo:
            if unit.row_group is not None:
                found.append(
                    {
                        "file": unit.file,
                        "row_group": unit.row_group,
                        "offset": lo - begin,
                        "rows": hi - lo,
                    }
                )
            else:
                assert unit.start is not None and unit.end is not None
                found.append(
                    {"file": unit.file, "start": unit.start, "end": unit.end, "rows": unit.rows}
                )
        at += 1
    return tuple(found)


@dataclass(frozen=True)
class TableCheck:
    features: list[str]  # feature columns, in the model's order
    id_column: str | None  # copied to the output; None: a `row` column is written


def check_table(
    inspected: Mapping[str, Any], source: str, *, id_column: str | None, predict: str
) -> TableCheck:
    """What inspect saw against what scoring needs: rows, numeric features the model
    expects (by name when the model has names, else by count), an id column that
    exists, and a prediction the model can give. Each failure says how to fix it."""
    if int(inspected["rows"]) == 0:
        raise UsageError(f"{source} holds no rows", "point --input at a table with data")
    columns = [c["name"] for c in inspected["columns"]]
    types = {c["name"]: c["type"] for c in inspected["columns"]}
    if id_column is not None and id_column not in columns:
        raise UsageError(
            f"--id-column {id_column!r} is not a column of {source}",
            f"its columns: {', '.join(columns[:20])}" + (" ..." if len(columns) > 20 else ""),
        )
    if id_column is None and "id" in columns:
        id_column = "id"
    model = inspected["model"]
    names = model.get("feature_names")
    if names and all(n in columns for n in names):
        features = list(names)
    else:
        features = [c for c in columns if c != id_column]
    non_numeric = [c for c in features if c not in set(inspected["numeric"])]
    if non_numeric:
        shown = ", ".join(f"{c!r} ({types[c]})" for c in non_numeric[:5])
        raise UsageError(
            f"{source}: column {shown} is not numeric; the model scores numbers",
            "drop the column, or name it with --id-column to carry it to the output",
        )
    expected = model.get("features")
    if expected is not None and expected != len(features):
        besides = f" besides the id column {id_column!r}" if id_column else ""
        raise UsageError(
            f"the model expects {expected} features but {source} has {len(features)} "
            f"columns{besides}",
            "score the table the model was trained on (same columns, same order), "
            "or name an extra column with --id-column",
        )
    objective = str(model.get("objective") or "")
    if predict == "class" and objective.startswith(("reg:", "survival:", "rank:")):
        raise UsageError(
            f"--predict class: the model is not a classifier (objective {objective})",
            "use --predict raw (or proba, the same for a regression model)",
        )
    return TableCheck(features, id_column)


def output_width(num_class: int, objective: str, predict: str) -> int:
    """Values per row: one, or one per class for a multi-class model's probabilities or
    margins."""
    per_class = predict == "raw" or (predict == "proba" and objective != "multi:softmax")
    if num_class > 2 and per_class:
        return num_class
    return 1


def array_spec(plan: ScorePlan, indices: Sequence[int]) -> WorkSpec:
    """One task per shard still to score; task N scores shard N.

    Each task asks for a whole node (`exclusive`) unless `--cpus-per-task` gave a number:
    a scoring task uses every CPU it is given (the model's threads follow HPCRUN_CPUS), and
    with Slurm's default of one CPU a task the four shards of `--tasks 4` were packed onto
    one node, one core each (issue 19). A whole node needs no CPU count known here, so it
    fits any node type of the partition."""
    return WorkSpec(
        argv=("bash", f"{plan.run_dir}/score-shard.sh"),
        name=f"score-{plan.name}",
        array=tuple(indices),
        max_parallel=plan.max_parallel,
        cpus_per_task=plan.cpus_per_task,
        exclusive=plan.cpus_per_task is None,
        gpus_per_task=plan.gpus_per_task,
        queue=plan.partition,
        time_limit_s=parse_duration(plan.time_limit) if plan.time_limit else None,
        workdir=plan.run_dir,
        log_path=f"{plan.run_dir}/logs/shard-{{index}}.out",
    )


def merge_spec(plan: ScorePlan, after: JobRef | None) -> WorkSpec:
    """The merge job; runs once every shard succeeded."""
    return WorkSpec(
        argv=(plan.python, plan.worker, "merge", "--plan", plan.plan_file),
        name=f"merge-{plan.name}",
        after=(after,) if after else (),
        queue=plan.partition,
        time_limit_s=parse_duration(plan.time_limit) if plan.time_limit else None,
        workdir=plan.run_dir,
        log_path=f"{plan.run_dir}/logs/merge.out",
    )


def shard_script(plan: ScorePlan) -> str:
    check_script_values(
        {"python program": plan.python, "name": plan.name, "output": plan.parts_dir},
        option_like={"task program": plan.worker, "run directory": plan.run_dir},
    )
    return template("hpcrun.workloads", "score_shard.sh.j2").render(
        plan=plan, q=shlex.quote, c=one_line
    )


def fil_config(
    *,
    features: int,
    width: int,
    predict: str,
    model_format: str,
    threshold: float = 0.5,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    gpus: bool = True,
    model_name: str = MODEL_NAME,
) -> str:
    """config.pbtxt for Triton's FIL backend. FIL gives a binary classifier's
    probabilities as two columns [1-p, p]."""
    return template("hpcrun.workloads", "fil_config.pbtxt.j2").render(
        name=model_name,
        features=features,
        outputs=2 if predict == "proba" and width == 1 else width,
        output_class=predict != "raw",
        predict_proba=predict == "proba",
        model_type=model_format,
        threshold=threshold,
        batch_rows=batch_rows,
        kind="KIND_GPU" if gpus else "KIND_CPU",
    )


def fil_model_repository(*, model_format: str, **config: Any) -> dict[str, str]:
    """The repository's text files by relative path; the model file itself goes to the
    path `model_path_in_repository` names."""
    name = config.get("model_name", MODEL_NAME)
    return {f"{name}/config.pbtxt": fil_config(model_format=model_format, **config)}


def model_path_in_repository(model_format: str, model_name: str = MODEL_NAME) -> str:
    return f"{model_name}/1/{MODEL_FILES[model_format]}"
