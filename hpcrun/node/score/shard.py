"""`shard`: score one shard of the plan into its part file.

The rows are read, predicted and written with two batches in flight, in bounded memory
(one row group or CSV block plus two batches). The part appears, complete, only at the
end; the stats beside it (rows, seconds, server start time, CPU seconds, the node's name
from HPCRUN_NODE_NAME, the model's threads from HPCRUN_CPUS) are what merge sums into the
summary.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import TaskError
from .local import LocalScorer
from .packages import check_server_packages
from .plan import ScorePlan, Shard, load_plan
from .reading import Batch, batches, read_segments
from .scoring import (
    CPUS_ENV,
    Pending,
    Scorer,
    check_stop,
    note_signal,
    size_thread_pools,
    task_threads,
)
from .servers import serving
from .triton import TritonScorer
from .writing import PartWriter, part_paths, write_json_atomic


@contextlib.contextmanager
def scorer_for(
    plan: ScorePlan, index: int, threads: int | None = None
) -> Iterator[tuple[Scorer, float]]:
    """The plan's scorer, and the seconds it took to be ready (model load, server start);
    the model predicts with `threads` threads (None: its default)."""
    kind = plan.server
    started = time.perf_counter()
    said = f"{threads or 'default'} model threads ({CPUS_ENV}={os.environ.get(CPUS_ENV, '')!r})"
    if kind == "none":
        local = LocalScorer(plan, threads)
        print(f"hpcrun: shard {index}: model loaded, {said}", flush=True)
        try:
            yield local, time.perf_counter() - started
        finally:
            local.close()
        return
    if kind not in ("pytriton", "triton", "remote"):
        raise TaskError(
            f"unknown server {kind!r} in the plan", "use none, pytriton, triton or a grpc:// URL"
        )
    check_server_packages(kind)
    with serving(plan, index, threads) as server:
        seconds = time.perf_counter() - started
        print(f"hpcrun: shard {index}: server ready in {seconds:.1f} s, {said}", flush=True)
        # a remote server is on another host: its /dev/shm is not this one's
        use_shm = kind != "remote" and os.environ.get("HPCRUN_SCORE_SHM", "1") != "0"
        scorer = TritonScorer(server, plan, use_shm)
        try:
            yield scorer, seconds
        finally:
            scorer.close()


def cpu_seconds() -> float:
    """User + system CPU of this process and of its children that have been waited for."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


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


def score_rows(plan: ScorePlan, shard: Shard, scorer: Scorer, out: PartWriter) -> int:
    """Read, predict and write the shard with `scorer.depth` batches in flight; batches."""
    progress = Progress(shard.index, shard.rows)
    source = batches(
        read_segments(plan, shard), plan.batch_rows, plan.features, plan.id_column, scorer.alloc
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
    shard = plan.find_shard(index)
    part, partial, stats_path = part_paths(plan, index)
    part.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)
    threads = task_threads()
    size_thread_pools(threads)
    try:
        with scorer_for(plan, index, threads) as (scorer, start_seconds):
            started = time.perf_counter()
            out = PartWriter(partial, plan, shard.first_row)
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
            "host": os.environ.get("HPCRUN_NODE_NAME") or socket.gethostname(),
            "server": plan.server,
            "threads": threads,  # the model's; None: its default (every CPU it sees)
            "batches": count,
            "batch_rows": plan.batch_rows,
        }
        write_json_atomic(stats_path, stats)
        os.replace(partial, part)
    finally:
        partial.unlink(missing_ok=True)
    return stats
