"""How long a cluster has had no job: the facts hpcrun gathers, and what `down --if-idle`
decides from them.

The definition itself is `hpcrun.node.idle.compute` (pure), shared with the guard that
`hpcrun create --idle-down` installs on a ParallelCluster head node, so `hpcrun status`
and the guard agree. Here the facts come through the backend's `SlurmClient`: squeue
(active jobs and the recently ended ones with their end times; skipped when the caller's
`status` already saw an active job), then sacct only when nothing is active (one call;
None without accounting), the moment the cluster came up (its record's last change to
"up"), and, for clusters without accounting, the latest activity hpcrun's own records
know (the latest submission, run or IndeX session it started there).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpcrun.errors import HpcrunError
from hpcrun.node.idle.compute import Idle, IdleFacts, compute_idle

if TYPE_CHECKING:
    from hpcrun.backends.base import Backend, ClusterStatus
    from hpcrun.node.idle.compute import JobTime
    from hpcrun.state import ClusterRecord, StateStore

__all__ = ["Idle", "IdleFacts", "LeftUp", "cluster_idle", "compute_idle", "down_decision"]

# Exit status of `hpcrun down --if-idle` when the cluster was left up (busy, or not idle
# long enough): 0 means it was taken down, 1 an error (idle time unknown included).
LEFT_UP_EXIT = 3


def recorded_activity(store: StateStore, cluster: str) -> float | None:
    """The latest moment hpcrun's own records show work starting on `cluster`: a job
    submitted, a render or score run or an IndeX session begun (they keep no end time)."""
    times = [j.submitted_at for j in store.jobs(cluster, limit=1)]
    for kind in ("render", "score"):
        times += [r.created_at for r in store.array_runs(cluster, kind)]
    times += [s.created_at for s in store.index_sessions(cluster)]
    return max(times) if times else None


def cluster_idle(
    store: StateStore,
    record: ClusterRecord,
    backend: Backend,
    *,
    status: ClusterStatus | None = None,
    timeout_s: float = 60.0,
    now_s: float | None = None,
) -> Idle:
    """How long `record`'s cluster has had no job. `status`: what the caller's status
    call just saw (an active job there answers without asking Slurm again)."""
    now = time.time() if now_s is None else now_s
    up_since = record.updated_at if record.status == "up" else None
    jobs = status.jobs if status is not None and status.jobs_error is None else []
    if any(not j.state.is_terminal for j in jobs):
        queue: list[JobTime] = [(j.job_id, str(j.state), None, j.state.is_terminal) for j in jobs]
        return compute_idle(IdleFacts(now_s=now, queue=queue, up_since_s=up_since))
    try:
        client = backend.slurm()
        queue = client.job_end_times(timeout_s=timeout_s)
        busy = any(not ended for *_, ended in queue)
        accounting = None if busy else client.accounting_end_times(timeout_s=timeout_s)
    except HpcrunError as exc:
        return compute_idle(
            IdleFacts(now_s=now, queue=None, error=f"Slurm did not answer: {exc.message}")
        )
    return compute_idle(
        IdleFacts(
            now_s=now,
            queue=queue,
            accounting=accounting,
            up_since_s=up_since,
            recorded_s=recorded_activity(store, record.name) if accounting is None else None,
        )
    )


@dataclass(frozen=True)
class LeftUp:
    """Why `down --if-idle` leaves a cluster up; `known` False: the idle time is unknown."""

    message: str
    known: bool


def down_decision(cluster: str, idle: Idle, minutes: float) -> LeftUp | None:
    """None: take `cluster` down (idle `minutes` or longer); else why it stays up."""
    if idle.at_least(minutes):
        return None
    if not idle.known:
        return LeftUp(
            f"cluster {cluster}: idle time unknown ({idle.reason}): left up, since a job "
            "may be running",
            known=False,
        )
    if idle.busy:
        return LeftUp(f"cluster {cluster} is not idle ({idle.active_text()}): left up", True)
    return LeftUp(
        f"cluster {cluster} is idle {idle.minutes} min < {minutes:g}: left up"
        + (" (no Slurm accounting: estimated)" if idle.approximate else ""),
        known=True,
    )
