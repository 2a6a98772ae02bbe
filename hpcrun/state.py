"""The state store: what hpcrun has created and submitted, in SQLite under `$HPCRUN_HOME`.

Every command that changes the world writes its intent here first and its outcome after,
so a crash or Ctrl-C in between leaves a row `hpcrun status` can explain (a cluster stuck
in "creating", a job "submitting" with no Slurm id). WAL mode lets a long `--wait` read
while another command writes. Schema changes are numbered migrations keyed on
`PRAGMA user_version`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

_MIGRATIONS = [
    """
    CREATE TABLE clusters (
        name TEXT PRIMARY KEY,
        backend TEXT NOT NULL,
        config TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        cluster TEXT NOT NULL,
        slurm_job_id TEXT,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        status TEXT NOT NULL,
        workdir TEXT NOT NULL,
        output TEXT NOT NULL,
        error TEXT,
        detail TEXT NOT NULL DEFAULT '',
        submitted_at REAL NOT NULL
    );
    CREATE INDEX jobs_by_cluster ON jobs (cluster, slurm_job_id);
    """,
    # IndeX sessions: one row per session, one per allocation it holds (the first job and
    # every attached or merged one), each written before its salloc runs.
    """
    CREATE TABLE index_sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        cluster TEXT NOT NULL,
        scene TEXT NOT NULL,
        renderer TEXT NOT NULL,
        plan TEXT NOT NULL,
        status TEXT NOT NULL,
        url TEXT NOT NULL DEFAULT '',
        workdir TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE index_jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id INTEGER NOT NULL REFERENCES index_sessions (id),
        slurm_job_id TEXT,
        initial INTEGER NOT NULL,
        nodes INTEGER NOT NULL,
        resized INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        log TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX index_jobs_by_session ON index_jobs (session_id);
    """,
    # Render runs (`hpcrun render`): the run, written before anything is submitted, and
    # one row per chunk with what the chunk's log says of its attempts.
    """
    CREATE TABLE render_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        cluster TEXT NOT NULL,
        name TEXT NOT NULL,
        plan TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        array_job_id TEXT,
        encode_job_id TEXT,
        output TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE render_chunks (
        run_id INTEGER NOT NULL REFERENCES render_runs (id),
        idx INTEGER NOT NULL,
        first INTEGER NOT NULL,
        last INTEGER NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, idx)
    );
    """,
    # Render runs and score runs are the same shape to Slurm: a job array of tasks (frame
    # chunks, table shards) and one final job (encode, merge). One pair of tables for both,
    # told apart by `kind`.
    """
    ALTER TABLE render_runs RENAME TO array_runs;
    ALTER TABLE array_runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'render';
    ALTER TABLE array_runs RENAME COLUMN encode_job_id TO final_job_id;
    ALTER TABLE render_chunks RENAME TO array_tasks;
    CREATE INDEX array_runs_by_cluster ON array_runs (cluster, kind);
    """,
    # FLARE systems (`hpcrun flare up`): recorded before provisioning, so a Ctrl-C at any
    # point leaves a row `flare status` explains and `flare down` cleans. No key material:
    # the kits' keys stay in the run directory.
    """
    CREATE TABLE flare_systems (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        cluster TEXT NOT NULL,
        plan TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        run_dir TEXT NOT NULL DEFAULT '',
        server_job_id TEXT,
        sites_job_id TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX flare_systems_by_cluster ON flare_systems (cluster);
    """,
    # Served models (`hpcrun serve triton`): one row per name and cluster, written before
    # any object exists; the plan holds the repository and the shape, never a credential.
    """
    CREATE TABLE served_models (
        cluster TEXT NOT NULL,
        name TEXT NOT NULL,
        plan TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (cluster, name)
    );
    """,
]


class ClusterState(StrEnum):
    """A cluster's status: the recorded ones (intent, then outcome) and those `status`
    reports from looking at the cluster itself (degraded, unreachable, gone)."""

    CREATING = "creating"
    UP = "up"
    FAILED = "failed"
    STOPPING = "stopping"  # local: daemons being stopped
    DOWN = "down"  # local: every daemon stopped
    DELETING = "deleting"  # ParallelCluster: delete-cluster running
    DELETED = "deleted"
    DETACHED = "detached"  # ssh: hpcrun let go of it; the cluster runs on
    DEGRADED = "degraded"  # reported: up, but a daemon died or nodes are down
    UNREACHABLE = "unreachable"  # reported: Slurm does not answer over SSH
    GONE = "gone"  # reported: AWS no longer knows it, though hpcrun never deleted it


class JobState(StrEnum):
    """A `hpcrun submit` job as hpcrun recorded it (Slurm has its own states)."""

    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    FAILED = "failed"


class SessionState(StrEnum):
    """An IndeX session."""

    STARTING = "starting"
    RUNNING = "running"
    FAILED = "failed"
    STOPPED = "stopped"


class IndexJobState(StrEnum):
    """One allocation of an IndeX session."""

    ALLOCATING = "allocating"
    RUNNING = "running"
    ENDED = "ended"
    FAILED = "failed"


class RunState(StrEnum):
    """A render or score run: its array's tasks work, then its final job finishes."""

    SUBMITTING = "submitting"
    RENDERING = "rendering"  # render: the chunks run
    ENCODING = "encoding"  # render: ffmpeg makes the video
    SCORING = "scoring"  # score: the shards run
    MERGING = "merging"  # score: the parts become one file
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FlareState(StrEnum):
    """A FLARE system, from `flare up` to `flare down`."""

    PROVISIONING = "provisioning"  # kits being made; nothing submitted yet
    STARTING = "starting"  # jobs submitted; waiting for the sites to register
    RUNNING = "running"  # every site registered once
    STOPPING = "stopping"  # `flare down` under way
    STOPPED = "stopped"
    FAILED = "failed"


FLARE_ENDED = frozenset({FlareState.STOPPED, FlareState.FAILED})


class ServedState(StrEnum):
    """A served model, from `serve triton` to `serve stop`."""

    STARTING = "starting"  # objects being made, or made with --no-wait
    UP = "up"  # its first replicas were ready
    FAILED = "failed"  # the start failed; the objects stay for `serve status` to explain
    STOPPING = "stopping"
    STOPPED = "stopped"


RUN_ENDED = frozenset({RunState.DONE, RunState.FAILED, RunState.CANCELLED})


_LIVE_INDEX_JOBS = frozenset({IndexJobState.ALLOCATING, IndexJobState.RUNNING})
# The same sets as SQL parameters, in a fixed order.
_LIVE_INDEX_JOBS_SQL = [IndexJobState.ALLOCATING.value, IndexJobState.RUNNING.value]
_ACTIVE_SESSIONS_SQL = [SessionState.STARTING.value, SessionState.RUNNING.value]


class TaskRecordState(StrEnum):
    """One task (render chunk, score shard) of a run's array, as its log tells."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # by `--cancel`, or in the scheduler by someone else


def hpcrun_home() -> Path:
    """`$HPCRUN_HOME`, else `~/.hpcrun`: everything hpcrun writes for itself lives here."""
    return Path(os.environ.get("HPCRUN_HOME") or Path.home() / ".hpcrun").expanduser()


@dataclass(frozen=True)
class ClusterRecord:
    name: str
    backend: str
    config: dict[str, Any]
    status: ClusterState
    detail: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class JobRecord:
    id: int
    cluster: str
    slurm_job_id: str | None
    name: str
    spec: dict[str, Any]
    status: JobState
    workdir: str
    output: str
    error: str | None
    detail: str  # why a submission failed
    submitted_at: float


@dataclass(frozen=True)
class IndexJobRecord:
    id: int
    session_id: int
    slurm_job_id: str | None
    initial: bool
    nodes: int
    resized: bool  # Slurm resized it once: without slurmdbd it cannot be updated again
    status: IndexJobState
    log: str


@dataclass(frozen=True)
class IndexSessionRecord:
    id: int
    cluster: str
    scene: str
    renderer: str  # nvindex | open
    plan: dict[str, Any]
    status: SessionState
    url: str
    workdir: str
    detail: str
    created_at: float
    jobs: tuple[IndexJobRecord, ...]

    @property
    def live_jobs(self) -> tuple[IndexJobRecord, ...]:
        return tuple(j for j in self.jobs if j.status in _LIVE_INDEX_JOBS)

    @property
    def initial_job(self) -> IndexJobRecord | None:
        return next((j for j in self.jobs if j.initial), None)


@dataclass(frozen=True)
class ArrayTaskRecord:
    """One task of a run's job array: a render chunk (frames first..last) or a score
    shard (rows first..last)."""

    index: int
    first: int
    last: int
    status: TaskRecordState
    attempts: int


_TASK_STATES = {state.value: state for state in TaskRecordState}


@dataclass(frozen=True)
class ArrayRunRecord:
    """A render or score run: a job array of tasks, then one final job (encode, merge)."""

    id: int
    cluster: str
    kind: str  # render | score
    name: str
    plan: dict[str, Any]
    status: RunState
    detail: str
    array_job_id: str | None
    final_job_id: str | None
    output: str  # what the user named: a directory, a file or an s3:// URL
    created_at: float
    tasks: tuple[ArrayTaskRecord, ...]


@dataclass(frozen=True)
class FlareSystemRecord:
    id: int
    cluster: str
    plan: dict[str, Any]  # the participants, ports, paths (never a key)
    status: FlareState
    detail: str
    run_dir: str
    server_job_id: str | None
    sites_job_id: str | None
    created_at: float


@dataclass(frozen=True)
class ServedModelRecord:
    cluster: str
    name: str
    plan: dict[str, Any]  # repository, image, namespace, scale (never a credential)
    status: ServedState
    detail: str
    created_at: float
    updated_at: float


class StateStore:
    def __init__(self, home: Path | None = None) -> None:
        self.home = home or hpcrun_home()
        # Only the owner may read hpcrun's home and state (cluster files, session records,
        # the private known_hosts): created 0700 and 0600, and SQLite gives its -wal and
        # -shm files the database's mode. An older store's mode is tightened too.
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = self.home / "state.db"
        if not self.path.exists():
            # Only a new file: closing any descriptor of a database this process has open
            # in SQLite drops that connection's POSIX locks, and another process may then
            # checkpoint and delete the WAL under it ("database disk image is malformed",
            # seen in tests/e2e/test_render.py, which opens many stores in one process).
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for path in (self.path, self.home / "state.db-wal", self.home / "state.db-shm"):
            # Another process may delete the WAL and -shm at any moment (its last close).
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mode & 0o077:
                    path.chmod(0o600)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    def close(self) -> None:
        self._db.close()

    def _migrate(self) -> None:
        if self._db.execute("PRAGMA user_version").fetchone()[0] >= len(_MIGRATIONS):
            return  # up to date: one query, not one per migration
        for number, script in enumerate(_MIGRATIONS, start=1):
            if self._db.execute("PRAGMA user_version").fetchone()[0] >= number:
                continue
            with self._transaction() as db:
                # Read again under the write lock: two commands opening a new home at once
                # must not both apply the same migration.
                if db.execute("PRAGMA user_version").fetchone()[0] >= number:
                    continue
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={number}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # clusters ---------------------------------------------------------------------------

    def put_cluster(
        self, name: str, backend: str, config: Mapping[str, Any], status: ClusterState
    ) -> None:
        now = time.time()
        self._db.execute(
            """INSERT INTO clusters (name, backend, config, status, detail, created_at, updated_at)
               VALUES (?, ?, ?, ?, '', ?, ?)
               ON CONFLICT(name) DO UPDATE SET backend=excluded.backend, config=excluded.config,
               status=excluded.status, detail='', updated_at=excluded.updated_at""",
            (name, backend, json.dumps(dict(config), sort_keys=True), status, now, now),
        )

    def set_cluster_status(self, name: str, status: ClusterState, detail: str = "") -> None:
        self._db.execute(
            "UPDATE clusters SET status=?, detail=?, updated_at=? WHERE name=?",
            (status, detail, time.time(), name),
        )

    def cluster(self, name: str) -> ClusterRecord | None:
        row = self._db.execute("SELECT * FROM clusters WHERE name=?", (name,)).fetchone()
        return _cluster(row) if row else None

    def clusters(self) -> list[ClusterRecord]:
        rows = self._db.execute("SELECT * FROM clusters ORDER BY name").fetchall()
        return [_cluster(r) for r in rows]

    def delete_cluster(self, name: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM clusters WHERE name=?", (name,))
            db.execute("DELETE FROM jobs WHERE cluster=?", (name,))
            db.execute(
                "DELETE FROM index_jobs WHERE session_id IN "
                "(SELECT id FROM index_sessions WHERE cluster=?)",
                (name,),
            )
            db.execute("DELETE FROM index_sessions WHERE cluster=?", (name,))
            db.execute("DELETE FROM served_models WHERE cluster=?", (name,))
            if self.current_cluster() == name:
                db.execute("DELETE FROM settings WHERE key='current_cluster'")

    def setting(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_setting(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO settings (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, value),
        )

    def current_cluster(self) -> str | None:
        return self.setting("current_cluster")

    def set_current_cluster(self, name: str) -> None:
        self.set_setting("current_cluster", name)

    # jobs -------------------------------------------------------------------------------

    def record_submit_intent(
        self,
        cluster: str,
        name: str,
        spec: Mapping[str, Any],
        workdir: str,
        output: str,
        error: str | None,
    ) -> int:
        cur = self._db.execute(
            """INSERT INTO jobs (cluster, name, spec, status, workdir, output, error, submitted_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                cluster,
                name,
                json.dumps(dict(spec), sort_keys=True),
                JobState.SUBMITTING,
                workdir,
                output,
                error,
                time.time(),
            ),
        )
        return int(cur.lastrowid or 0)

    def record_submitted(self, row_id: int, slurm_job_id: str) -> None:
        self._db.execute(
            "UPDATE jobs SET slurm_job_id=?, status=? WHERE id=?",
            (slurm_job_id, JobState.SUBMITTED, row_id),
        )

    def forget_submit(self, row_id: int) -> None:
        """Drop the intent of a submission the scheduler refused outright: nothing ran,
        and the refusal was already told to the user."""
        self._db.execute("DELETE FROM jobs WHERE id=? AND slurm_job_id IS NULL", (row_id,))

    def record_submit_failed(self, row_id: int, detail: str) -> None:
        self._db.execute(
            "UPDATE jobs SET status=?, detail=? WHERE id=?", (JobState.FAILED, detail, row_id)
        )

    def job(self, cluster: str, slurm_job_id: str) -> JobRecord | None:
        """The record of an hpcrun-submitted job; `123_4` finds the array job `123`."""
        base = slurm_job_id.split("_", 1)[0]
        row = self._db.execute(
            "SELECT * FROM jobs WHERE cluster=? AND slurm_job_id=?", (cluster, base)
        ).fetchone()
        return _job(row) if row else None

    def jobs(self, cluster: str, limit: int = 100) -> list[JobRecord]:
        rows = self._db.execute(
            "SELECT * FROM jobs WHERE cluster=? ORDER BY id DESC LIMIT ?", (cluster, limit)
        ).fetchall()
        return [_job(r) for r in reversed(rows)]

    # IndeX sessions ---------------------------------------------------------------------

    def create_index_session(
        self, cluster: str, scene: str, renderer: str, plan: Mapping[str, Any], workdir: str
    ) -> int:
        now = time.time()
        cur = self._db.execute(
            """INSERT INTO index_sessions
               (cluster, scene, renderer, plan, status, workdir, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (
                cluster,
                scene,
                renderer,
                json.dumps(dict(plan), sort_keys=True),
                SessionState.STARTING,
                workdir,
                now,
                now,
            ),
        )
        return int(cur.lastrowid or 0)

    def set_index_session(
        self, session_id: int, status: SessionState, *, url: str | None = None, detail: str = ""
    ) -> None:
        self._db.execute(
            "UPDATE index_sessions SET status=?, url=COALESCE(?, url), detail=?, updated_at=? "
            "WHERE id=?",
            (status, url, detail, time.time(), session_id),
        )

    def set_index_session_plan(
        self, session_id: int, workdir: str, plan: Mapping[str, Any]
    ) -> None:
        self._db.execute(
            "UPDATE index_sessions SET workdir=?, plan=?, updated_at=? WHERE id=?",
            (workdir, json.dumps(dict(plan), sort_keys=True), time.time(), session_id),
        )

    def end_index_sessions(self, cluster: str, detail: str) -> None:
        """Mark every active session of a cluster stopped (its jobs went with the cluster)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE index_jobs SET status=? WHERE status IN (?, ?) "
                "AND session_id IN (SELECT id FROM index_sessions WHERE cluster=?)",
                (IndexJobState.ENDED, *_LIVE_INDEX_JOBS_SQL, cluster),
            )
            db.execute(
                "UPDATE index_sessions SET status=?, detail=?, updated_at=? "
                "WHERE cluster=? AND status IN (?, ?)",
                (SessionState.STOPPED, detail, time.time(), cluster, *_ACTIVE_SESSIONS_SQL),
            )

    def add_index_job(self, session_id: int, *, initial: bool, nodes: int, log: str) -> int:
        cur = self._db.execute(
            """INSERT INTO index_jobs (session_id, initial, nodes, status, log, created_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            (session_id, int(initial), nodes, IndexJobState.ALLOCATING, log, time.time()),
        )
        return int(cur.lastrowid or 0)

    def update_index_job(
        self,
        row_id: int,
        *,
        slurm_job_id: str | None = None,
        nodes: int | None = None,
        resized: bool | None = None,
        status: IndexJobState | None = None,
    ) -> None:
        self._db.execute(
            """UPDATE index_jobs SET slurm_job_id=COALESCE(?, slurm_job_id),
               nodes=COALESCE(?, nodes), resized=COALESCE(?, resized),
               status=COALESCE(?, status) WHERE id=?""",
            (slurm_job_id, nodes, None if resized is None else int(resized), status, row_id),
        )

    def index_session(self, session_id: int) -> IndexSessionRecord | None:
        row = self._db.execute("SELECT * FROM index_sessions WHERE id=?", (session_id,)).fetchone()
        return self._index_session(row) if row else None

    def index_sessions(
        self, cluster: str, *, active_only: bool = False
    ) -> list[IndexSessionRecord]:
        sql, args = "SELECT * FROM index_sessions WHERE cluster=?", [cluster]
        if active_only:
            sql += " AND status IN (?, ?)"
            args += _ACTIVE_SESSIONS_SQL
        rows = self._db.execute(sql + " ORDER BY id", args).fetchall()
        return [self._index_session(r) for r in rows]

    def _index_session(self, row: sqlite3.Row) -> IndexSessionRecord:
        jobs = self._db.execute(
            "SELECT * FROM index_jobs WHERE session_id=? ORDER BY id", (row["id"],)
        ).fetchall()
        return IndexSessionRecord(
            id=row["id"],
            cluster=row["cluster"],
            scene=row["scene"],
            renderer=row["renderer"],
            plan=json.loads(row["plan"]),
            status=SessionState(row["status"]),
            url=row["url"],
            workdir=row["workdir"],
            detail=row["detail"],
            created_at=row["created_at"],
            jobs=tuple(
                IndexJobRecord(
                    id=j["id"],
                    session_id=j["session_id"],
                    slurm_job_id=j["slurm_job_id"],
                    initial=bool(j["initial"]),
                    nodes=j["nodes"],
                    resized=bool(j["resized"]),
                    status=IndexJobState(j["status"]),
                    log=j["log"],
                )
                for j in jobs
            ),
        )

    # array runs (render, score) ----------------------------------------------------------

    def create_array_run(
        self,
        kind: str,
        cluster: str,
        name: str,
        plan: Mapping[str, Any],
        output: str,
        tasks: list[tuple[int, int, int]],
    ) -> int:
        """The run and its tasks (index, first, last), recorded before anything is
        submitted: a failed submission leaves a "failed" run, never a missing one."""
        now = time.time()
        with self._transaction() as db:
            cur = db.execute(
                """INSERT INTO array_runs
                   (kind, cluster, name, plan, status, output, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (
                    kind,
                    cluster,
                    name,
                    json.dumps(dict(plan), sort_keys=True),
                    RunState.SUBMITTING,
                    output,
                    now,
                    now,
                ),
            )
            run_id = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO array_tasks (run_id, idx, first, last, status) VALUES (?, ?, ?, ?, ?)",
                [
                    (run_id, index, first, last, TaskRecordState.PENDING)
                    for index, first, last in tasks
                ],
            )
        return run_id

    def set_array_run(
        self,
        run_id: int,
        status: RunState,
        *,
        detail: str = "",
        array_job_id: str | None = None,
        final_job_id: str | None = None,
    ) -> None:
        self._db.execute(
            """UPDATE array_runs SET status=?, detail=?,
               array_job_id=COALESCE(?, array_job_id), final_job_id=COALESCE(?, final_job_id),
               updated_at=? WHERE id=?""",
            (status, detail, array_job_id, final_job_id, time.time(), run_id),
        )

    def set_array_run_plan(self, run_id: int, plan: Mapping[str, Any]) -> None:
        self._db.execute(
            "UPDATE array_runs SET plan=?, updated_at=? WHERE id=?",
            (json.dumps(dict(plan), sort_keys=True), time.time(), run_id),
        )

    def set_array_tasks(self, run_id: int, updates: list[tuple[int, TaskRecordState, int]]) -> None:
        """(index, status, attempts) for each task whose state changed."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE array_tasks SET status=?, attempts=? WHERE run_id=? AND idx=?",
                [(status, attempts, run_id, index) for index, status, attempts in updates],
            )

    def array_run(self, run_id: int) -> ArrayRunRecord | None:
        row = self._db.execute("SELECT * FROM array_runs WHERE id=?", (run_id,)).fetchone()
        return self._array_run(row) if row else None

    def array_runs(
        self, cluster: str, kind: str, *, unfinished: bool = False
    ) -> list[ArrayRunRecord]:
        """The cluster's runs of `kind`, oldest first; `unfinished`: only those not done,
        failed or cancelled (a submit's output check, which would otherwise load every
        task of every run the cluster ever had)."""
        ended = (RunState.DONE, RunState.FAILED, RunState.CANCELLED) if unfinished else ()
        rows = self._db.execute(
            "SELECT * FROM array_runs WHERE cluster=? AND kind=? "
            f"AND status NOT IN ({', '.join('?' * len(ended))}) ORDER BY id",
            (cluster, kind, *ended),
        ).fetchall()
        return [self._array_run(r) for r in rows]

    def _array_run(self, row: sqlite3.Row) -> ArrayRunRecord:
        return ArrayRunRecord(
            id=row["id"],
            cluster=row["cluster"],
            kind=row["kind"],
            name=row["name"],
            plan=json.loads(row["plan"]),
            status=RunState(row["status"]),
            detail=row["detail"],
            array_job_id=row["array_job_id"],
            final_job_id=row["final_job_id"],
            output=row["output"],
            created_at=row["created_at"],
            tasks=self._array_tasks(row["id"]),
        )

    def _array_tasks(self, run_id: int) -> tuple[ArrayTaskRecord, ...]:
        """A run's tasks, index order. A follow or submit reads a 1000-task run several
        times, so rows come as plain tuples and each record is made without the frozen
        dataclass's `__init__` (its `__dict__` built whole, as `__init__` leaves it; a
        test compares the two): ~10 -> ~3 ms a read."""
        cursor = self._db.cursor()
        cursor.row_factory = None
        rows = cursor.execute(
            "SELECT idx, first, last, status, attempts FROM array_tasks WHERE run_id=? "
            "ORDER BY idx",
            (run_id,),
        ).fetchall()
        new, set_attr, states = object.__new__, object.__setattr__, _TASK_STATES
        tasks = []
        for index, first, last, status, attempts in rows:
            task = new(ArrayTaskRecord)
            set_attr(
                task,
                "__dict__",
                {
                    "index": index,
                    "first": first,
                    "last": last,
                    "status": states.get(status) or TaskRecordState(status),
                    "attempts": attempts,
                },
            )
            tasks.append(task)
        return tuple(tasks)

    # FLARE systems ---------------------------------------------------------------------

    def create_flare_system(self, cluster: str, plan: Mapping[str, Any]) -> int:
        now = time.time()
        cur = self._db.execute(
            """INSERT INTO flare_systems (cluster, plan, status, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?)""",
            (cluster, json.dumps(dict(plan), sort_keys=True), FlareState.PROVISIONING, now, now),
        )
        return int(cur.lastrowid or 0)

    def set_flare_system(
        self,
        system_id: int,
        status: FlareState,
        *,
        detail: str = "",
        plan: Mapping[str, Any] | None = None,
        run_dir: str | None = None,
        server_job_id: str | None = None,
        sites_job_id: str | None = None,
    ) -> None:
        self._db.execute(
            """UPDATE flare_systems SET status=?, detail=?, plan=COALESCE(?, plan),
               run_dir=COALESCE(?, run_dir), server_job_id=COALESCE(?, server_job_id),
               sites_job_id=COALESCE(?, sites_job_id), updated_at=? WHERE id=?""",
            (
                status,
                detail,
                None if plan is None else json.dumps(dict(plan), sort_keys=True),
                run_dir,
                server_job_id,
                sites_job_id,
                time.time(),
                system_id,
            ),
        )

    def flare_system(self, system_id: int) -> FlareSystemRecord | None:
        row = self._db.execute("SELECT * FROM flare_systems WHERE id=?", (system_id,)).fetchone()
        return _flare_system(row) if row else None

    def flare_systems(self, cluster: str) -> list[FlareSystemRecord]:
        rows = self._db.execute(
            "SELECT * FROM flare_systems WHERE cluster=? ORDER BY id", (cluster,)
        ).fetchall()
        return [_flare_system(r) for r in rows]

    # served models ----------------------------------------------------------------------

    def put_served_model(
        self, cluster: str, name: str, plan: Mapping[str, Any], status: ServedState
    ) -> None:
        """Record (or re-record, as `serve triton` again updates it) a served model."""
        now = time.time()
        self._db.execute(
            """INSERT INTO served_models (cluster, name, plan, status, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (cluster, name) DO UPDATE SET plan=excluded.plan,
               status=excluded.status, detail='', updated_at=excluded.updated_at""",
            (cluster, name, json.dumps(dict(plan), sort_keys=True), status, now, now),
        )

    def set_served_model(self, cluster: str, name: str, status: ServedState, detail: str) -> None:
        self._db.execute(
            "UPDATE served_models SET status=?, detail=?, updated_at=? WHERE cluster=? AND name=?",
            (status, detail, time.time(), cluster, name),
        )

    def served_model(self, cluster: str, name: str) -> ServedModelRecord | None:
        row = self._db.execute(
            "SELECT * FROM served_models WHERE cluster=? AND name=?", (cluster, name)
        ).fetchone()
        return _served_model(row) if row else None

    def served_models(self, cluster: str) -> list[ServedModelRecord]:
        rows = self._db.execute(
            "SELECT * FROM served_models WHERE cluster=? ORDER BY created_at, name", (cluster,)
        ).fetchall()
        return [_served_model(r) for r in rows]


def _served_model(row: sqlite3.Row) -> ServedModelRecord:
    return ServedModelRecord(
        cluster=row["cluster"],
        name=row["name"],
        plan=json.loads(row["plan"]),
        status=ServedState(row["status"]),
        detail=row["detail"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _flare_system(row: sqlite3.Row) -> FlareSystemRecord:
    return FlareSystemRecord(
        id=row["id"],
        cluster=row["cluster"],
        plan=json.loads(row["plan"]),
        status=FlareState(row["status"]),
        detail=row["detail"],
        run_dir=row["run_dir"],
        server_job_id=row["server_job_id"],
        sites_job_id=row["sites_job_id"],
        created_at=row["created_at"],
    )


def _cluster(row: sqlite3.Row) -> ClusterRecord:
    return ClusterRecord(
        name=row["name"],
        backend=row["backend"],
        config=json.loads(row["config"]),
        status=ClusterState(row["status"]),
        detail=row["detail"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"],
        cluster=row["cluster"],
        slurm_job_id=row["slurm_job_id"],
        name=row["name"],
        spec=json.loads(row["spec"]),
        status=JobState(row["status"]),
        workdir=row["workdir"],
        output=row["output"],
        error=row["error"],
        detail=row["detail"],
        submitted_at=row["submitted_at"],
    )
