"""StateStore: the SQLite record of clusters and jobs, against a real database in tmp_path."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcrun.state import StateStore, hpcrun_home


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore(tmp_path)
    yield opened
    opened.close()


def test_home_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HPCRUN_HOME", str(tmp_path / "h"))
    assert hpcrun_home() == tmp_path / "h"
    monkeypatch.delenv("HPCRUN_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert hpcrun_home() == tmp_path / "user" / ".hpcrun"


def test_store_creates_its_home(tmp_path: Path) -> None:
    home = tmp_path / "a" / "b"
    opened = StateStore(home)
    try:
        assert (home / "state.db").is_file()
    finally:
        opened.close()


# --- schema -------------------------------------------------------------------------------


def test_wal_mode_is_on(store: StateStore) -> None:
    with sqlite3.connect(store.path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    first = StateStore(tmp_path)
    first.put_cluster("dev", "local", {"nodes": 4}, "up")
    version = first._db.execute("PRAGMA user_version").fetchone()[0]
    first.close()
    assert version >= 1

    second = StateStore(tmp_path)  # must not re-run CREATE TABLE
    try:
        assert second._db.execute("PRAGMA user_version").fetchone()[0] == version
        record = second.cluster("dev")
        assert record is not None
        assert record.config == {"nodes": 4}
    finally:
        second.close()


def test_concurrent_first_opens_both_succeed(tmp_path: Path) -> None:
    # Hold the write lock so both openers read user_version 0 and queue on BEGIN IMMEDIATE.
    blocker = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    blocker.execute("PRAGMA journal_mode=WAL")
    blocker.execute("BEGIN IMMEDIATE")
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            StateStore(tmp_path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    blocker.execute("ROLLBACK")
    blocker.close()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []


# --- clusters -----------------------------------------------------------------------------


def test_cluster_put_and_read_back(store: StateStore) -> None:
    store.put_cluster("dev", "local", {"nodes": 4, "name": "dev"}, "creating")
    record = store.cluster("dev")
    assert record is not None
    assert (record.name, record.backend, record.status, record.detail) == (
        "dev",
        "local",
        "creating",
        "",
    )
    assert record.config == {"nodes": 4, "name": "dev"}
    assert record.created_at <= record.updated_at


def test_unknown_cluster_is_none(store: StateStore) -> None:
    assert store.cluster("nope") is None
    assert store.clusters() == []


def test_cluster_status_and_detail(store: StateStore) -> None:
    store.put_cluster("dev", "local", {}, "creating")
    store.set_cluster_status("dev", "failed", "slurmctld exited 1")
    record = store.cluster("dev")
    assert record is not None
    assert (record.status, record.detail) == ("failed", "slurmctld exited 1")


def test_put_again_updates_but_keeps_created_at(store: StateStore) -> None:
    store.put_cluster("dev", "local", {"nodes": 2}, "creating")
    store.set_cluster_status("dev", "failed", "boom")
    before = store.cluster("dev")
    assert before is not None
    time.sleep(0.01)
    store.put_cluster("dev", "local", {"nodes": 4}, "up")
    after = store.cluster("dev")
    assert after is not None
    assert after.created_at == before.created_at
    assert after.updated_at > before.updated_at
    assert (after.config, after.status, after.detail) == ({"nodes": 4}, "up", "")
    assert len(store.clusters()) == 1


def test_clusters_are_listed_by_name(store: StateStore) -> None:
    for name in ("zeta", "alpha", "mid"):
        store.put_cluster(name, "local", {}, "up")
    assert [c.name for c in store.clusters()] == ["alpha", "mid", "zeta"]


def test_delete_cluster_removes_it_and_its_jobs(store: StateStore) -> None:
    store.put_cluster("dev", "local", {}, "up")
    store.put_cluster("other", "local", {}, "up")
    dev_job = store.record_submit_intent("dev", "a", {}, "/w", "o", None)
    store.record_submitted(dev_job, "10")
    other_job = store.record_submit_intent("other", "b", {}, "/w", "o", None)
    store.record_submitted(other_job, "10")
    store.delete_cluster("dev")
    assert store.cluster("dev") is None
    assert store.jobs("dev") == []
    assert store.job("other", "10") is not None


def test_current_cluster_is_cleared_when_deleted(store: StateStore) -> None:
    store.put_cluster("dev", "local", {}, "up")
    store.set_current_cluster("dev")
    assert store.current_cluster() == "dev"
    store.delete_cluster("dev")
    assert store.current_cluster() is None


def test_current_cluster_survives_deleting_another(store: StateStore) -> None:
    store.put_cluster("dev", "local", {}, "up")
    store.put_cluster("old", "local", {}, "down")
    store.set_current_cluster("dev")
    store.set_current_cluster("dev")  # setting twice is an upsert, not an error
    store.delete_cluster("old")
    assert store.current_cluster() == "dev"


# --- jobs ---------------------------------------------------------------------------------


def test_job_intent_then_submitted(store: StateStore) -> None:
    row = store.record_submit_intent(
        "dev", "frames", {"array": "0-9", "command": ["true"]}, "/w", "hpcrun-%A_%a.out", None
    )
    (pending,) = store.jobs("dev")
    assert (pending.id, pending.status, pending.slurm_job_id) == (row, "submitting", None)
    store.record_submitted(row, "123")
    record = store.job("dev", "123")
    assert record is not None
    assert (record.status, record.name) == ("submitted", "frames")
    assert record.output == "hpcrun-%A_%a.out"
    assert record.spec == {"array": "0-9", "command": ["true"]}
    assert record.error is None


def test_array_task_id_finds_its_array_job(store: StateStore) -> None:
    row = store.record_submit_intent("dev", "frames", {}, "/w", "o", "e")
    store.record_submitted(row, "123")
    for lookup in ("123_4", "123_0", "123"):
        record = store.job("dev", lookup)
        assert record is not None, lookup
        assert record.id == row
    assert store.job("dev", "1234") is None
    assert store.job("dev", "12") is None
    assert store.job("elsewhere", "123_4") is None


def test_failed_submission_is_recorded(store: StateStore) -> None:
    row = store.record_submit_intent("dev", "x", {}, "/w", "o", None)
    store.record_submit_failed(row, "sbatch: error: invalid partition")
    (record,) = store.jobs("dev")
    assert (record.status, record.slurm_job_id) == ("failed", None)
    detail = store._db.execute("SELECT detail FROM jobs WHERE id=?", (row,)).fetchone()[0]
    assert detail == "sbatch: error: invalid partition"


def test_failed_submission_detail_is_readable(store: StateStore) -> None:
    row = store.record_submit_intent("dev", "x", {}, "/w", "o", None)
    store.record_submit_failed(row, "sbatch: error: invalid partition")
    (record,) = store.jobs("dev")
    assert getattr(record, "detail", None) == "sbatch: error: invalid partition"


def test_jobs_returns_the_newest_in_submission_order(store: StateStore) -> None:
    rows = [store.record_submit_intent("dev", f"j{i}", {}, "/w", "o", None) for i in range(5)]
    assert [j.id for j in store.jobs("dev")] == rows
    assert [j.name for j in store.jobs("dev", limit=2)] == ["j3", "j4"]


# --- two processes, one database ----------------------------------------------------------


def test_two_stores_see_each_others_writes(tmp_path: Path) -> None:
    a, b = StateStore(tmp_path), StateStore(tmp_path)
    try:
        a.put_cluster("dev", "local", {}, "creating")
        record = b.cluster("dev")
        assert record is not None
        assert record.status == "creating"
        b.set_cluster_status("dev", "up")
        record = a.cluster("dev")
        assert record is not None
        assert record.status == "up"
        row = b.record_submit_intent("dev", "x", {}, "/w", "o", None)
        a.record_submitted(row, "9")
        assert b.job("dev", "9") is not None
        a.set_current_cluster("dev")
        assert b.current_cluster() == "dev"
    finally:
        a.close()
        b.close()


def test_failed_transaction_rolls_back(store: StateStore) -> None:
    store.put_cluster("dev", "local", {}, "up")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store._transaction() as db:
        db.execute("DELETE FROM clusters WHERE name='dev'")
        raise Boom
    assert store.cluster("dev") is not None


def test_statuses_read_back_as_enums_and_are_stored_as_their_plain_values(
    store: StateStore,
) -> None:
    from hpcrun.state import ClusterState, JobState, RunState, SessionState, TaskRecordState

    store.put_cluster("dev", "local", {"name": "dev"}, ClusterState.CREATING)
    store.set_cluster_status("dev", ClusterState.UP)
    row = store.record_submit_intent("dev", "j", {}, "/w", "o-%j.out", None)
    run = store.create_array_run("render", "dev", "r", {}, "/out", [(0, 1, 2)])
    session = store.create_index_session("dev", "supernova", "open", {}, "/w")
    cluster, job = store.cluster("dev"), store.jobs("dev")[0]
    array_run, index_session = store.array_run(run), store.index_session(session)
    assert cluster is not None and array_run is not None and index_session is not None
    assert cluster.status is ClusterState.UP and cluster.status == "up"
    assert job.status is JobState.SUBMITTING and job.id == row
    assert array_run.status is RunState.SUBMITTING
    assert array_run.tasks[0].status is TaskRecordState.PENDING
    assert index_session.status is SessionState.STARTING
    raw = sqlite3.connect(store.path).execute("SELECT status FROM clusters").fetchone()[0]
    assert type(raw) is str and raw == "up"
    assert f"{cluster.status}" == "up"  # what tables and messages print


def test_a_second_store_in_one_process_keeps_the_first_ones_writes_visible(
    tmp_path: Path,
) -> None:
    # Opening and closing a plain descriptor of state.db (to create it 0600) dropped the
    # POSIX locks of this process's open SQLite connection: another process closing its
    # store then took itself for the last one and deleted the WAL, and the first store's
    # next write never reached anyone else ("database disk image is malformed" followed
    # in tests/e2e/test_render.py, which opens a store per access).
    import subprocess
    import sys

    first = StateStore(tmp_path)
    first.set_setting("k", "one")
    second = StateStore(tmp_path)
    program = (
        "import sys; from pathlib import Path; from hpcrun.state import StateStore; "
        "s = StateStore(Path(sys.argv[1])); print(s.setting('k')); s.close()"
    )

    def read_elsewhere() -> str:
        done = subprocess.run(
            [sys.executable, "-c", program, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    assert read_elsewhere() == "one"
    first.set_setting("k", "two")
    assert read_elsewhere() == "two"
    second.close()
    first.close()


def test_array_tasks_read_back_as_their_records_would_be_made(store: StateStore) -> None:
    from hpcrun.state import ArrayTaskRecord, RunState, TaskRecordState

    run_id = store.create_array_run("render", "dev", "r", {}, "/out", [(0, 1, 2), (1, 3, 4)])
    store.set_array_tasks(run_id, [(1, TaskRecordState.FAILED, 2)])
    run = store.array_run(run_id)
    assert run is not None
    assert run.tasks == (
        ArrayTaskRecord(0, 1, 2, TaskRecordState.PENDING, 0),
        ArrayTaskRecord(1, 3, 4, TaskRecordState.FAILED, 2),
    )
    assert [vars(t) for t in run.tasks] == [
        vars(ArrayTaskRecord(0, 1, 2, TaskRecordState.PENDING, 0)),
        vars(ArrayTaskRecord(1, 3, 4, TaskRecordState.FAILED, 2)),
    ]
    assert hash(run.tasks[0]) == hash(ArrayTaskRecord(0, 1, 2, TaskRecordState.PENDING, 0))
    # A submit's output check reads only the runs still going.
    ended = store.create_array_run("render", "dev", "r2", {}, "/out", [(0, 1, 1)])
    store.set_array_run(ended, RunState.DONE)
    assert [r.id for r in store.array_runs("dev", "render")] == [run_id, ended]
    assert [r.id for r in store.array_runs("dev", "render", unfinished=True)] == [run_id]
