"""The task's command line: `inspect`, `shard --index N`, `merge` (all with `--plan`).

`inspect` prints one JSON line (the report, or `{"error", "hint"}` with exit status 2) for
the submitting side to read; `shard` and `merge` print `hpcrun: ...` progress lines to the
job's log and errors to stderr (exit status 1). The job modules are imported only once
the packages they need are known to be there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import TaskError
from .model import MODEL_FORMATS
from .packages import SCORE_HINT, missing_package

DEFAULT_BLOCK_BYTES = 16 << 20  # CSV units of about 16 MiB
DESCRIPTION = "Score a table with a tree model as a job array: inspect, shard, merge."


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="score_task.pyz", description=DESCRIPTION)
    sub = top.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="describe the table and the model as one JSON line")
    inspect.add_argument("--input", nargs="+", required=True, metavar="PATH")
    inspect.add_argument("--model", required=True)
    inspect.add_argument("--model-format", required=True, choices=MODEL_FORMATS)
    inspect.add_argument("--id-column")
    servers = ("auto", "none", "pytriton", "triton", "remote")
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
    missing = missing_package()
    if missing is not None:
        return fail(f"the Python package {missing} is not installed", SCORE_HINT)
    what = f"shard {args.index}" if args.command == "shard" else "merge"
    try:
        if args.command == "shard":
            from .shard import run_shard

            report_shard(run_shard(args.plan, args.index))
        else:
            from .merge import run_merge

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
        missing = missing_package()
        if missing is not None:
            raise TaskError(f"the Python package {missing} is not installed", SCORE_HINT)
        from .table import run_inspect

        report = run_inspect(
            inputs=args.input,
            model=args.model,
            model_format=args.model_format,
            id_column=args.id_column,
            server=args.server,
            tritonserver=args.tritonserver,
            block_bytes=args.block_bytes,
        )
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
