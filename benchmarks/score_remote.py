"""score_remote: rows/s of `hpcrun score --server grpc://HOST:PORT` through a Triton that
is already serving vs `hpcrun score --server pytriton` (one Triton started by the task).

Data: scripts/score/make_example.py (1M rows x 32 float32 features, a 100-tree XGBoost
model). The served Triton is nvidia-pytriton's tritonserver with hpcrun's python-backend
model (what `--server pytriton` starts in each task), started once by this script on
loopback, standing in for `hpcrun serve triton` (kwok runs no container, so a served pod
cannot answer here). Both sides: `hpcrun score --tasks 1 --batch-rows 65536` on the local
cluster; the figure is the task's own scoring seconds from the run's summary (reading,
the Triton round trips, writing the part), without Slurm's scheduling or a server's
start-up, which are shown beside it. Median of `--repeats` (default 3), in turn.

Goal (issue 17): remote >= 0.9x the rows/s of pytriton, reported as a time ratio <= 1/0.9.
Remote sends batches over gRPC; pytriton's task puts them in shared memory the server maps.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import bench_cluster, log, parse_args, report, run_main
from _score import BATCH, ROWS, hpcrun_score, make_example

REPO = Path(__file__).resolve().parents[1]


def served_plan(model: Path, table: Path) -> Any:
    sys.path.insert(0, str(REPO))
    from hpcrun.node.score.plan import ScorePlan

    return ScorePlan.from_json({
        "format": "parquet", "files": [str(table)], "features": [f"f{i}" for i in range(32)],
        "model": str(model), "model_format": "xgboost_json", "predict": "proba",
        "objective": "binary:logistic", "server": "pytriton", "batch_rows": BATCH,
        "parts_dir": "", "merged": "", "summary": "", "shards": [],
    })


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 3
    from hpcrun.node.score.servers import serving

    with tempfile.TemporaryDirectory(prefix="hrsr") as tmp:
        work = Path(tmp)
        model, table = make_example(work)
        runs: dict[str, list[dict[str, Any]]] = {"remote": [], "pytriton": []}
        with bench_cluster() as cluster, serving(served_plan(model, table), 0) as server:
            url = f"grpc://127.0.0.1:{server.port}/{server.model_name}"
            log(f"serving the model at {url}")
            for i in range(repeats):
                for kind, flag in (("remote", url), ("pytriton", "pytriton")):
                    log(f"run {i + 1}/{repeats}: hpcrun score --server {flag}")
                    out = work / f"{kind}-{i}"
                    runs[kind].append(hpcrun_score(cluster.env, model, table, out, flag))
    remote = statistics.median(r["seconds"] for r in runs["remote"])
    local = statistics.median(r["seconds"] for r in runs["pytriton"])
    extra: dict[str, Any] = {
        "--server grpc:// rows/s": f"{ROWS / remote:,.0f}",
        "--server pytriton rows/s": f"{ROWS / local:,.0f}",
        "--server grpc:// whole command": statistics.median(r["wall"] for r in runs["remote"]),
        "--server pytriton whole command": statistics.median(r["wall"] for r in runs["pytriton"]),
        "--server pytriton server start": statistics.median(r["start"] for r in runs["pytriton"]),
    }
    report("score_remote", remote, local, 1 / 0.9, extra, as_json=args.json, strict=args.strict,
           hpcrun_label="hpcrun score --server grpc://, task scoring 1M rows (median)",
           yardstick_label="hpcrun score --server pytriton, task scoring 1M rows (median)")


if __name__ == "__main__":
    run_main(main)
