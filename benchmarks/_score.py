"""What the score benchmarks share: the 1M-row example and one `hpcrun score --tasks 1`
(whose task has a node to itself, `--exclusive`, and predicts on the threads it reports)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, hpcrun_exe, log

ROWS = 1_000_000
BATCH = 65_536


def make_example(work: Path) -> tuple[Path, Path]:
    """scripts/score/make_example.py: (model.json, table.parquet) in `work`."""
    log("making the 1M-row table and the 100-tree model")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/score/make_example.py"), str(work)],
        check=True,
        capture_output=True,
    )
    return work / "model.json", work / "table.parquet"


def hpcrun_score(
    env: dict[str, str], model: Path, table: Path, out: Path, server: str
) -> dict[str, Any]:
    """One run's wall time and its task's own figures (scoring seconds, CPU, server start)."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            hpcrun_exe(),
            "score",
            "-m",
            str(model),
            "-i",
            str(table),
            "-o",
            str(out),
            "--tasks",
            "1",
            "--batch-rows",
            str(BATCH),
            "--server",
            server,
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"hpcrun score --server {server} failed:\n{done.stderr}{done.stdout}")
    shard = json.loads(done.stdout)["summary"]["shards"][0]
    return {
        "wall": wall,
        "seconds": shard["seconds"],
        "cpu": shard["cpu_seconds"],
        "start": shard.get("server_start_seconds", 0.0),
        # the model's threads in the task (HPCRUN_CPUS capped by its CPU affinity);
        # None: XGBoost's default, every CPU it sees
        "threads": shard.get("threads"),
        "host": shard.get("host"),
    }
