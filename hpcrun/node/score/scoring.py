"""What every scorer shares: batches in flight, their pending results, and stopping.

Two batches are in flight: reading and converting batch i+1 overlaps predicting batch i
(on a thread for `none`, in the server otherwise). SIGTERM (scancel) and SIGINT are only
noted when they arrive and acted on in the main loop and while waiting for a result, so
every `finally` runs and stops the server.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .errors import TaskError
from .plan import ScorePlan

if TYPE_CHECKING:
    from .model import Floats

IN_FLIGHT = 2  # batches on their way: reading batch i+1 overlaps predicting batch i


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
