"""What every scorer shares: batches in flight, their pending results, and stopping.

Two batches are in flight: reading and converting batch i+1 overlaps predicting batch i
(on a thread for `none`, in the server otherwise). SIGTERM (scancel) and SIGINT are only
noted when they arrive and acted on in the main loop and while waiting for a result, so
every `finally` runs and stops the server.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .errors import TaskError
from .plan import ScorePlan

if TYPE_CHECKING:
    from .model import Floats

IN_FLIGHT = 2  # batches on their way: reading batch i+1 overlaps predicting batch i
# The CPUs the scheduler gave this task on its node (hpcrun.scheduler.CPUS_ENV, exported by
# the job script: Slurm's SLURM_CPUS_PER_TASK, or SLURM_CPUS_ON_NODE for a whole node).
CPUS_ENV = "HPCRUN_CPUS"


class Stop:
    """The signal that asked this task to stop, acted on by `check_stop` in the main loop."""

    signum = 0


def note_signal(signum: int, _frame: Any) -> None:
    """SIGTERM (scancel) and SIGINT are noted, not raised here: an exception raised in a
    handler can land in a `__del__` (gRPC's) and be swallowed, and the task runs on."""
    Stop.signum = signum


def check_stop() -> None:
    """Unwind the task after SIGTERM/SIGINT, so every `finally` stops and cleans up."""
    if Stop.signum:
        raise SystemExit(128 + Stop.signum)


class Pending:
    """A batch's predictions, done or on their way; `check` raises if they never will be."""

    def __init__(
        self, future: concurrent.futures.Future[Floats], check: Callable[[], None]
    ) -> None:
        self.future = future
        self.check = check

    def result(self) -> Floats:
        while True:
            try:
                return self.future.result(timeout=0.25)
            except concurrent.futures.TimeoutError:
                check_stop()
                self.check()


class Scorer(Protocol):
    """Predictions for batches, `depth` of them in flight; `alloc` hands out the buffer a
    batch is built in (shared memory for a server that reads it from there)."""

    depth: int

    def alloc(self, rows: int) -> Floats: ...

    def submit(self, X: Floats) -> Pending: ...

    def close(self) -> None: ...


def predict_options(plan: ScorePlan) -> tuple[str, float, int]:
    """(predict mode, threshold, classes): the arguments of `model.predict`."""
    if plan.predict not in ("proba", "class", "raw"):
        raise TaskError(
            f"unknown predict mode {plan.predict!r} in the plan", "use proba, class or raw"
        )
    return plan.predict, plan.threshold, plan.num_class


def task_threads() -> int | None:
    """The model's threads: the CPUs the scheduler gave this task (`HPCRUN_CPUS`), never
    more than this process may run on (its CPU affinity: a node that declares more CPUs
    than it has, as the local cluster's do, or a scheduler that binds without cgroups).
    None where the scheduler says nothing (the model's own default then: XGBoost reads
    the cgroup's CPU quota on Kubernetes)."""
    try:
        given = int(os.environ.get(CPUS_ENV, "").strip() or 0)
    except ValueError:
        given = 0
    if given < 1:
        return None
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        usable = os.cpu_count() or given
    return max(1, min(given, usable))


def size_thread_pools(threads: int | None) -> None:
    """Before the model's library is loaded: idle OpenMP threads sleep, and Arrow's pool
    has the task's CPUs.

    OMP_WAIT_POLICY=PASSIVE (unless the user set one): XGBoost's OpenMP workers otherwise
    spin between parallel regions, on the very cores the reading thread needs while a batch
    predicts. On the 2-core test host (benchmarks/score_throughput.py, issue 19, 2 threads
    each side) --server none went from 0.59x to 0.80x a bare inplace_predict and from 2.17
    to 1.82 task CPU-s per 1M rows; pytriton (its server inherits the setting) from 0.41x
    to 0.78x and 3.78 to 2.89 CPU-s.
    Arrow sizes its pool by the host's cores, not the task's (a 4-CPU task on a 48-core
    node would decode on 48 threads)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if threads is not None:
        import pyarrow as pa  # type: ignore[import-untyped]

        pa.set_cpu_count(threads)
