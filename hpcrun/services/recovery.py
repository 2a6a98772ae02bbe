"""After `hpcrun create` brought a cluster back: bring its unfinished runs back too.

A controller that restarted may have lost jobs it had not saved yet, and then hands their
ids to new jobs. Each unfinished render and score run is refreshed once, which is where a
lost final job is found and submitted again (`ArrayRuns._reconcile_final`); what was
resubmitted, or given up on, comes back as one line each for `create` to print.
"""

from __future__ import annotations

from typing import Any

from hpcrun.backends.base import Backend, Progress
from hpcrun.errors import HpcrunError
from hpcrun.services.array import TERMINAL, ArrayRuns
from hpcrun.state import StateStore


def recover_runs(
    store: StateStore, cluster: str, backend: Backend, progress: Progress | None = None
) -> list[str]:
    """Refresh every unfinished run of `cluster`; one line for each one that changed."""
    from hpcrun.services.render import RenderRuns
    from hpcrun.services.score import ScoreRuns

    lines: list[str] = []
    kinds: tuple[type[RenderRuns] | type[ScoreRuns], ...] = (RenderRuns, ScoreRuns)
    for kind in kinds:
        service: ArrayRuns[Any] = kind(store, cluster, backend, progress)
        for run in store.array_runs(cluster, kind.KIND):
            if run.status in TERMINAL or run.status == "submitting":
                continue
            before = len(run.plan.get("resubmitted") or [])
            try:
                fresh = service.refresh_state(run)
            except HpcrunError as exc:
                lines.append(f"{kind.KIND} run {run.id} ({run.name}): not checked: {exc.message}")
                continue
            for step in (fresh.plan.get("resubmitted") or [])[before:]:
                lines.append(
                    f"{kind.KIND} run {run.id} ({run.name}): the {kind.FINAL} job "
                    f"{step['lost']} was lost; resubmitted as job {step['resubmitted']}"
                )
            if fresh.status == "failed" and run.status != "failed":
                lines.append(f"{kind.KIND} run {run.id} ({run.name}) failed: {fresh.detail}")
    return lines
