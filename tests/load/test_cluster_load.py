"""Load on the real local cluster (issue 14): many `hpcrun status` at once, and a
10 000-task array submitted, tracked and reported through the CLI.

This host has 2 cores: 50 CLI processes a second cannot start (Python alone takes most of
that), so the status load is the call the CLI makes (`backend.status()`, with the store
opened per call as each command does) from threads, paced at 50 a second. The test
asserts only what is true of every answer; the rate reached is printed, not asserted.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from hpcrun.backends import open_backend
from hpcrun.backends.base import ClusterStatus
from hpcrun.state import StateStore
from tests.conftest import Cluster

pytestmark = pytest.mark.slurm

STATUS_PER_S = 50
STATUS_FOR_S = 10
ARRAY_TASKS = 10_000


def _status(cluster: Cluster) -> ClusterStatus:
    """What `hpcrun status` does between parsing its flags and printing."""
    store = StateStore(cluster.home)
    try:
        record = store.cluster(cluster.name)
        assert record is not None
        return open_backend(record, store).status()
    finally:
        store.close()


def test_fifty_status_calls_a_second_all_answer_truly(local_cluster: Cluster) -> None:
    before = local_cluster.store.cluster(local_cluster.name)
    answers: list[ClusterStatus] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        try:
            found = _status(local_cluster)
        except Exception as exc:  # every failure is the finding, whatever its type
            with lock:
                errors.append(repr(exc))
            return
        with lock:
            answers.append(found)

    calls = STATUS_PER_S * STATUS_FOR_S
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        for i in range(calls):
            time.sleep(max(0.0, started + i / STATUS_PER_S - time.monotonic()))
            pool.submit(one)
    elapsed_s = time.monotonic() - started
    print(
        f"\n[load] {calls} status calls in {elapsed_s:.1f} s: {calls / elapsed_s:.1f}/s",
        file=sys.stderr,
    )

    assert errors == [], f"{len(errors)} of {calls} failed: {errors[:3]}"
    assert len(answers) == calls
    wrong = [(a.state, a.detail, a.jobs_error) for a in answers if a.state != "up"]
    assert wrong == [], f"{len(wrong)} answers not 'up': {wrong[:3]}"
    assert all(len(a.nodes) == 6 and not a.jobs_error for a in answers)
    assert local_cluster.store.cluster(local_cluster.name) == before  # reads changed nothing
    with sqlite3.connect(local_cluster.home / "state.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _tasks(cluster: Cluster, job_id: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = json.loads(cluster.cli("jobs", job_id, "--json").stdout)
    return tasks


def test_a_ten_thousand_task_array_is_submitted_tracked_and_reported(
    local_cluster: Cluster,
) -> None:
    # All 10 000 `true` tasks take 219 s here (46 a second on 48 CPUs): the test tracks
    # the array while it runs, then cancels what is left and checks the final counts.
    job_id = local_cluster.cli(
        "submit", "--array", f"0-{ARRAY_TASKS - 1}", "--output", "/dev/null", "--", "true"
    ).stdout.strip()
    try:
        running = _tasks(local_cluster, job_id)
        ids = {t["array_task_id"] for t in running}
        assert ids == {str(i) for i in range(ARRAY_TASKS)}
        assert {t["array_job_id"] for t in running} == {job_id}

        deadline = time.monotonic() + 60
        while not Counter(t["state"] for t in _tasks(local_cluster, job_id))["COMPLETED"]:
            assert time.monotonic() < deadline, "no task of the array completed"
            time.sleep(0.5)
        table = local_cluster.cli("jobs", job_id).stdout
        rows = [line for line in table.splitlines()[1:] if line.strip()]
        assert len(rows) <= 6, table  # one row per state, not one per task
        shown = sum(int(r.split("_[", 1)[1].split()[0]) if "_[" in r else 1 for r in rows)
        assert shown == ARRAY_TASKS, table
        status = json.loads(local_cluster.cli("status", "--json").stdout)
        mine = Counter(j["state"] for j in status["jobs"] if j["array_job_id"] == job_id)
        assert sum(mine.values()) == ARRAY_TASKS and mine["PENDING"] > 0, mine
    finally:
        local_cluster.cli("cancel", job_id)

    deadline = time.monotonic() + 60
    while True:
        ended = Counter(t["state"] for t in _tasks(local_cluster, job_id))
        if sum(ended.values()) == ARRAY_TASKS and set(ended) <= {"COMPLETED", "CANCELLED"}:
            break
        assert time.monotonic() < deadline, f"the array did not end after its cancel: {ended}"
        time.sleep(0.5)
    assert ended["COMPLETED"] > 0 and ended["CANCELLED"] > 0, ended

    status = json.loads(local_cluster.cli("status", "--json").stdout)
    mine = Counter(j["state"] for j in status["jobs"] if j["array_job_id"] == job_id)
    assert mine == ended
    line = next(ln for ln in local_cluster.cli("status").stdout.splitlines() if "Jobs:" in ln)
    recently_ended = int(line.split(",")[1].split()[0])
    assert recently_ended >= ARRAY_TASKS, line
