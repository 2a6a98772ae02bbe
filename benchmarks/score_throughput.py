"""score_throughput: rows/s of `hpcrun score --tasks 1` (--server none and pytriton) vs
in-process `inplace_predict` on the same 1M rows, with the thread count the task was given.

Data: scripts/score/make_example.py (1M rows x 32 float32 features in 131072-row groups, an
XGBoost binary:logistic model of 100 trees, depth 6). hpcrun side: `hpcrun score -m
model.json -i table.parquet -o OUT --tasks 1 --batch-rows 65536 --server S` on the local
cluster; the task has a node to itself (`--exclusive`) and predicts on HPCRUN_CPUS threads,
capped by the CPUs it may run on (the local cluster's nodes declare 8 CPUs on a host that
may have fewer), and reports the count in its stats. The figure is the task's own scoring
rate from the run's summary (reading the shard, the model or the Triton round trips,
writing the part), i.e. without Slurm's scheduling and the Triton server's start-up, which
are shown beside it with the command's whole wall time. Yardstick: `booster.inplace_predict`
on the same rows, already in memory, in 65536-row batches, in this process, with `nthread`
set to the task's thread count (like with like: issue 19; before, the yardstick used
XGBoost's default, every CPU of the host, whatever the task had). CPU-seconds per million
rows for each (the task's getrusage, the server's included; this process's for the
yardstick). Median of `--repeats` (default 3) and the spread (min-max), in turn; the load
average (`/proc/loadavg`) before and after, as the machine is shared.

Goals (issue 7, BENCHMARKS.md): none >= 0.9x direct; pytriton >= 0.7x direct (64k batches).
Reported as time ratios: none <= 1/0.9, pytriton <= 1/0.7.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import bench_cluster, log, parse_args, report, run_main
from _score import BATCH, ROWS, hpcrun_score, make_example

REPO = Path(__file__).resolve().parents[1]


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"


class Direct:
    """inplace_predict over the table in memory, in the task's batches."""

    def __init__(self, model: Path, table: Path) -> None:
        import numpy as np
        import pyarrow.parquet as pq
        import xgboost as xgb

        self.booster = xgb.Booster(model_file=str(model))
        data = pq.read_table(table)
        self.x = np.column_stack([data.column(f"f{i}").to_numpy() for i in range(32)]).astype(
            np.float32
        )

    def run(self, threads: int | None) -> tuple[float, float]:
        """Seconds and CPU-seconds of one pass (after a warm-up pass) on `threads` threads
        (None: XGBoost's default, as the task has when the scheduler says nothing)."""
        import os

        self.booster.set_param({"nthread": threads or len(os.sched_getaffinity(0))})
        result = (0.0, 0.0)
        for _ in range(2):  # the first is a warm-up
            started, cpu = time.perf_counter(), cpu_now()
            for at in range(0, len(self.x), BATCH):
                self.booster.inplace_predict(self.x[at : at + BATCH], predict_type="value")
            result = (time.perf_counter() - started, cpu_now() - cpu)
        return result


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 3
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="hrsc") as tmp:
        work = Path(tmp)
        model, table = make_example(work)
        direct = Direct(model, table)
        with bench_cluster() as cluster:
            runs: dict[str, list[dict[str, Any]]] = {"none": [], "pytriton": []}
            direct_runs: list[tuple[float, float]] = []
            threads: list[int | None] = []
            for i in range(repeats):
                for server in runs:
                    log(f"run {i + 1}/{repeats}: hpcrun score --server {server}")
                    found = hpcrun_score(cluster.env, model, table, work / f"{server}-{i}", server)
                    runs[server].append(found)
                    threads.append(found["threads"])
                # like with like: the yardstick on the threads the task just had
                direct_runs.append(direct.run(runs["none"][-1]["threads"]))
    load_after = load_average()
    direct_s = statistics.median(w for w, _ in direct_runs)
    direct_cpu = statistics.median(c for _, c in direct_runs)
    extra: dict[str, Any] = {
        "model threads (task and yardstick)": ", ".join(sorted({str(t) for t in threads})),
        "direct inplace_predict": direct_s,
        "direct spread": spread([w for w, _ in direct_runs]),
        "direct rows/s": f"{ROWS / direct_s:,.0f}",
        "direct CPU-s per 1M rows": f"{direct_cpu:.2f}",
        "load average before / after": f"{load_before} / {load_after}",
    }
    medians = {}
    for server, found in runs.items():
        seconds = statistics.median(r["seconds"] for r in found)
        medians[server] = seconds
        extra[f"--server {server}: task scoring"] = seconds
        extra[f"--server {server}: spread"] = spread([r["seconds"] for r in found])
        extra[f"--server {server}: rows/s"] = (
            f"{ROWS / seconds:,.0f} ({direct_s / seconds:.2f}x direct)"
        )
        extra[f"--server {server}: CPU-s per 1M rows"] = (
            f"{statistics.median(r['cpu'] for r in found):.2f}"
        )
        extra[f"--server {server}: server start"] = statistics.median(r["start"] for r in found)
        extra[f"--server {server}: whole command"] = statistics.median(r["wall"] for r in found)
    report(
        "score_throughput_none",
        medians["none"],
        direct_s,
        1 / 0.9,
        extra,
        as_json=args.json,
        strict=False,
        hpcrun_label="hpcrun score --server none, task scoring 1M rows (median)",
        yardstick_label="inplace_predict 1M rows, the task's threads (median)",
    )
    report(
        "score_throughput_pytriton",
        medians["pytriton"],
        direct_s,
        1 / 0.7,
        {},
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="hpcrun score --server pytriton, task scoring 1M rows (median)",
        yardstick_label="inplace_predict 1M rows, the task's threads (median)",
    )


if __name__ == "__main__":
    run_main(main)
