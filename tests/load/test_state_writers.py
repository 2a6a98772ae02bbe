"""The state store under concurrent writers: separate processes, as separate `hpcrun`
commands are, opening one new `$HPCRUN_HOME` at once and writing to it together.

WAL lets readers go on while one writes; the busy timeout makes a second writer wait for
the lock instead of failing with "database is locked"; BEGIN IMMEDIATE keeps a
read-then-write transaction from deadlocking. Every row must land, none twice.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

from hpcrun.state import JobState, StateStore

WRITERS = 8
ROWS_EACH = 150


def _write(home: str, writer: int, start: multiprocessing.synchronize.Event) -> None:
    start.wait()
    store = StateStore(Path(home))  # every writer migrates the fresh home at once
    try:
        for i in range(ROWS_EACH):
            row = store.record_submit_intent("c", f"w{writer}", {"i": i}, "/w", "o", None)
            store.record_submitted(row, f"{writer}{i:04d}")
            store.set_setting(f"last-{writer}", str(i))
            store.put_cluster("c", "local", {"writer": writer}, "up")  # a transaction
            assert store.job("c", f"{writer}{i:04d}") is not None
    finally:
        store.close()


def test_concurrent_writer_processes_lose_nothing(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # no pytest state forked into writers
    start = context.Event()
    writers = [
        context.Process(target=_write, args=(str(tmp_path), n, start)) for n in range(WRITERS)
    ]
    for process in writers:
        process.start()
    start.set()
    for process in writers:
        process.join(timeout=120)
    assert [p.exitcode for p in writers] == [0] * WRITERS

    with sqlite3.connect(tmp_path / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT slurm_job_id, status FROM jobs").fetchall()
    assert len(rows) == WRITERS * ROWS_EACH
    assert len({job_id for job_id, _ in rows}) == WRITERS * ROWS_EACH
    assert {status for _, status in rows} == {JobState.SUBMITTED.value}
    store = StateStore(tmp_path)
    try:
        assert [store.setting(f"last-{n}") for n in range(WRITERS)] == [
            str(ROWS_EACH - 1)
        ] * WRITERS
    finally:
        store.close()
