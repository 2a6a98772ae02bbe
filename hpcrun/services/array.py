"""What render runs and score runs share: a job array of tasks, then one final job.

A render run is frame chunks then an ffmpeg encode; a score run is table shards then a
merge. To the scheduler and to the state store they are the same thing, so the
bookkeeping lives here once: finding a run, reading the array's state with one
`Scheduler.states` call, counting a task's attempts from its log once it ends, failing
the run when a task failed every attempt (and cancelling the final job, whose dependency
can then never be met), watching, cancelling, and undoing a half-done submission.
Subclasses say what a task is called, where its log is, and what "done" looks like on
disk. Nothing here knows which scheduler runs the tasks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from hpcrun.errors import HpcrunError
from hpcrun.scheduler import JobRef, TaskState, TaskStatus, WorkSpec
from hpcrun.services.base import ClusterService
from hpcrun.state import ArrayRunRecord, ArrayTaskRecord, RunState, TaskRecordState

TERMINAL = {"done", "failed", "cancelled"}


class RunView(Protocol):
    """What `refresh` returns: the run as recorded, plus what its kind counts."""

    @property
    def run(self) -> ArrayRunRecord: ...

    def to_json(self) -> dict[str, Any]: ...


V = TypeVar("V", bound=RunView)


class ArrayRuns(ClusterService, Generic[V]):
    """Runs of one kind on one cluster; V is the view `refresh` returns."""

    KIND: ClassVar[str]  # the state store's kind: render | score
    TASK: ClassVar[str]  # what one array task is called: chunk | shard
    FINAL: ClassVar[str]  # what the final job does: encode | merge
    WORKING: ClassVar[RunState]  # the run's status while tasks run: rendering | scoring
    FINISHING: ClassVar[RunState]  # ... while the final job runs: encoding | merging
    START_HINT: ClassVar[str]  # how to start a run, for "no runs yet"

    # Subclass hooks --------------------------------------------------------------------

    def task_log(self, run: ArrayRunRecord, index: int) -> str:
        return f"{run.plan['run_dir']}/logs/{self.TASK}-{index}.out"

    def final_log(self, run: ArrayRunRecord) -> str:
        return f"{run.plan['run_dir']}/logs/{self.FINAL}.out"

    def describe_task(self, task: ArrayTaskRecord) -> dict[str, Any]:
        """A task as `--json` and failure reports name it."""
        return {self.TASK: task.index, "first": task.first, "last": task.last}

    def refresh(self, run: ArrayRunRecord) -> V:
        """The run as it stands now (`refresh_state` plus what the kind counts on disk)."""
        raise NotImplementedError

    # Finding runs ----------------------------------------------------------------------

    def run(self, run_id: int | None = None) -> ArrayRunRecord:
        noun = f"{self.KIND} run"
        if run_id is not None:
            found = self.store.array_run(run_id)
            if found is None or found.cluster != self.cluster or found.kind != self.KIND:
                raise HpcrunError(
                    f"no {noun} {run_id} on cluster {self.cluster}",
                    f"list them with `hpcrun {self.KIND} status`",
                )
            return found
        runs = self.store.array_runs(self.cluster, self.KIND)
        if not runs:
            raise HpcrunError(f"no {noun}s on cluster {self.cluster}", self.START_HINT)
        return runs[-1]

    def reload(self, run_id: int) -> ArrayRunRecord:
        fresh = self.store.array_run(run_id)
        assert fresh is not None
        return fresh

    # Following the scheduler -----------------------------------------------------------

    def refresh_state(self, run: ArrayRunRecord) -> ArrayRunRecord:
        """The run as the scheduler sees it now (one `states` call); task rows and the
        run's status are updated to match. A final job the scheduler no longer knows, or
        whose id now names another job, is submitted again (once; see `_reconcile_final`)."""
        if run.status in TERMINAL or run.status == "submitting":
            return run
        found = self._own(run, self.scheduler.states(_refs(run)))
        tasks = {t.index: t for t in found if t.index is not None and t.ref.id == run.array_job_id}
        updates = self._task_updates(run, tasks)
        if updates:
            self.store.set_array_tasks(run.id, updates)
            run = self.reload(run.id)
        final = next((t for t in found if t.ref.id == run.final_job_id and t.index is None), None)
        failed = any(t.status == "failed" for t in run.tasks)  # the run fails below
        if final is None and run.final_job_id is not None and not failed:
            run = self._reconcile_final(run, array_known=bool(tasks))
            if run.status in TERMINAL:
                return run
        status, detail = self._run_status(run, final)
        if (status, detail) != (run.status, run.detail):
            self.store.set_array_run(run.id, status, detail=detail)
            run = self.reload(run.id)
        return run

    def _own(self, run: ArrayRunRecord, found: Sequence[TaskStatus]) -> list[TaskStatus]:
        """What the scheduler reports of this run's jobs, less any job whose id is now
        carried by a job of another name: Slurm reuses the ids of jobs a restarted
        controller purged, and such a job is not ours to read or cancel."""
        names = {
            ref: self.job_names(run).get(role)
            for role, ref in (("array", run.array_job_id), ("final", run.final_job_id))
            if ref
        }
        return [t for t in found if t.job_name is None or names.get(t.ref.id) in (None, t.job_name)]

    def job_names(self, run: ArrayRunRecord) -> dict[str, str]:
        """The names this run's jobs were submitted with, by role (array, final)."""
        jobs = run.plan.get("jobs") or {}
        return {role: str(spec["name"]) for role, spec in jobs.items() if "name" in spec}

    def _reconcile_final(self, run: ArrayRunRecord, *, array_known: bool) -> ArrayRunRecord:
        """The final job is gone from the scheduler (a controller restart purged it, or
        its id was reused): submit its recorded spec again, once, and record that.

        Resubmitting is safe even where the job had in fact ended and aged out of a
        scheduler that keeps no accounting: the encode and the merge write under a
        temporary name and rename, so running one again rewrites the same output."""
        lost = run.final_job_id
        plan = dict(run.plan)
        history: list[dict[str, Any]] = list(plan.get("resubmitted") or [])
        spec_data = (plan.get("jobs") or {}).get("final")
        tasks_done = all(t.status == "done" for t in run.tasks)
        why = f"the {self.FINAL} job {lost} is no longer known to the scheduler"
        if spec_data is None or history or not (tasks_done or array_known):
            reason = (
                "it was resubmitted once already"
                if history
                else "the job array is gone too"
                if spec_data is not None
                else "this run predates resubmission"
            )
            detail = f"{why} ({reason}): run the same command again to resume"
            self.store.set_array_run(run.id, RunState.FAILED, detail=detail)
            return self.reload(run.id)
        fresh = self.reload(run.id)  # another hpcrun may have resubmitted it meanwhile
        if fresh.final_job_id != lost:
            return fresh
        after = (JobRef(run.array_job_id),) if run.array_job_id and not tasks_done else ()
        spec = replace(WorkSpec.from_json(spec_data), after=after)
        ref = self.scheduler.submit(spec)
        history.append({"lost": lost, "resubmitted": ref.id, "at": round(time.time(), 3)})
        plan["resubmitted"] = history
        self.store.set_array_run_plan(run.id, plan)
        self.store.set_array_run(run.id, run.status, detail=run.detail, final_job_id=ref.id)
        self.progress.step(f"{why}: resubmitted it as job {ref}")
        return self.reload(run.id)

    def _task_updates(
        self, run: ArrayRunRecord, tasks: dict[int, TaskStatus]
    ) -> list[tuple[int, TaskRecordState, int]]:
        """(index, status, attempts) of the tasks whose array task changed state; the
        attempts are counted from the task's log once it has ended."""
        updates: list[tuple[int, TaskRecordState, int]] = []
        for task in run.tasks:
            job = tasks.get(task.index)
            if job is None:
                continue  # not listed (yet, or aged out): keep what was recorded
            status = _TASK_STATUS[job.state]
            attempts = task.attempts
            if status != task.status and status in {"done", "failed"}:
                attempts = self.read_text(self.task_log(run, task.index)).count(" attempt ")
            if (status, attempts) != (task.status, task.attempts):
                updates.append((task.index, status, attempts))
        return updates

    def _run_status(self, run: ArrayRunRecord, final: TaskStatus | None) -> tuple[RunState, str]:
        failed = [t for t in run.tasks if t.status == "failed"]
        if failed:
            if final is not None and not final.state.is_terminal:
                with contextlib.suppress(HpcrunError):
                    self.scheduler.cancel([final.ref])  # its dependency can never be met
            names = ", ".join(self._task_name(t) for t in failed)
            return RunState.FAILED, f"{names} failed every attempt"
        tasks_done = all(t.status == "done" for t in run.tasks)
        if run.final_job_id is None:
            return (RunState.DONE, "") if tasks_done else (self.WORKING, "")
        if final is None:
            return run.status, run.detail
        if final.state == TaskState.SUCCEEDED:
            return RunState.DONE, ""
        if final.state.is_terminal:
            text = self.read_text(self.final_log(run))
            tail = " / ".join(text.strip().splitlines()[-3:]) or "(no log)"
            return RunState.FAILED, f"the {self.FINAL} job {final.ref} ended {final.native}: {tail}"
        return (self.FINISHING, "") if tasks_done else (self.WORKING, "")

    def _task_name(self, task: ArrayTaskRecord) -> str:
        described = self.describe_task(task)
        extra = ", ".join(f"{k} {v}" for k, v in described.items() if k != self.TASK)
        return f"{self.TASK} {task.index}" + (f" ({extra})" if extra else "")

    def failed_tasks(self, run: ArrayRunRecord) -> list[dict[str, Any]]:
        """Each failed task with the end of its log: what went wrong, every attempt."""
        return [
            {
                **self.describe_task(t),
                "attempts": t.attempts,
                "log_tail": "\n".join(
                    self.read_text(self.task_log(run, t.index)).strip().splitlines()[-8:]
                ),
            }
            for t in run.tasks
            if t.status == "failed"
        ]

    def watch(
        self,
        run: ArrayRunRecord,
        tick: Callable[[V], None],
        *,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
    ) -> V:
        """Refresh until the run ends (or `timeout_s`), calling `tick` each time."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            view = self.refresh(run)
            tick(view)
            run = view.run
            if run.status in TERMINAL:
                return view
            if deadline is not None and time.monotonic() >= deadline:
                return view
            time.sleep(poll_s)

    # Changing runs ---------------------------------------------------------------------

    def cancel(self, run: ArrayRunRecord) -> ArrayRunRecord:
        refs = _refs(run)
        if refs:
            # Only jobs that are still this run's: an id Slurm reused names someone else's.
            ours = {t.ref.id for t in self._own(run, self.scheduler.states(refs))}
            live = [r for r in refs if r.id in ours]
            if live:
                self.scheduler.cancel(live)
        self.store.set_array_run(run.id, RunState.CANCELLED, detail="cancelled by the user")
        return self.reload(run.id)

    def undo_submit(self, run_id: int, exc: BaseException) -> None:
        """A submission that failed half-way: cancel what reached the scheduler, record
        why."""
        record = self.store.array_run(run_id)
        refs = _refs(record) if record else []
        with contextlib.suppress(HpcrunError):
            if refs:
                self.scheduler.cancel(refs)
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        self.store.set_array_run(run_id, RunState.FAILED, detail=reason)

    def submit_work(self, run_id: int, role: str, spec: WorkSpec) -> JobRef:
        """Submit one of the run's jobs (role: array or final) and keep its spec in the
        run's plan: the name tells the job from one that later reuses its id, and the
        spec is what a lost final job is resubmitted from."""
        ref = self.scheduler.submit(spec)
        plan = dict(self.reload(run_id).plan)
        plan["jobs"] = {**(plan.get("jobs") or {}), role: spec.to_json()}
        self.store.set_array_run_plan(run_id, plan)
        return ref

    def submit_jobs(
        self,
        run_id: int,
        submit: Callable[[], tuple[JobRef | None, JobRef | None]],
    ) -> ArrayRunRecord:
        """Run `submit` (returns the array's and the final job's refs) and record the run
        as started; anything that fails on the way undoes the submission."""
        try:
            array_ref, final_ref = submit()
            array_id = array_ref.id if array_ref else None
            final_id = final_ref.id if final_ref else None
            status = self.WORKING if array_id else self.FINISHING if final_id else RunState.DONE
            self.store.set_array_run(run_id, status, array_job_id=array_id, final_job_id=final_id)
        except BaseException as exc:
            self.undo_submit(run_id, exc)
            raise
        return self.reload(run_id)


_TASK_STATUS = {
    TaskState.SUCCEEDED: TaskRecordState.DONE,
    TaskState.RUNNING: TaskRecordState.RUNNING,
    TaskState.FAILED: TaskRecordState.FAILED,
    TaskState.CANCELLED: TaskRecordState.FAILED,
    TaskState.PENDING: TaskRecordState.PENDING,
}


def _refs(run: ArrayRunRecord) -> list[JobRef]:
    return [JobRef(i) for i in (run.array_job_id, run.final_job_id) if i]


def task_counts(tasks: Sequence[ArrayTaskRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.status] = counts.get(task.status, 0) + 1
    return counts
