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
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from hpcrun.backends.base import Backend, Progress
from hpcrun.errors import HpcrunError
from hpcrun.scheduler import JobRef, NodeTrouble, TaskState, TaskStatus, WorkSpec
from hpcrun.services.base import ClusterService
from hpcrun.state import ArrayRunRecord, ArrayTaskRecord, RunState, StateStore, TaskRecordState

TERMINAL = {"done", "failed", "cancelled"}


class RunView(Protocol):
    """What `refresh` returns: the run as recorded, plus what its kind counts."""

    @property
    def run(self) -> ArrayRunRecord: ...

    def to_json(self) -> dict[str, Any]: ...


V = TypeVar("V", bound=RunView)


VC = TypeVar("VC", bound=RunView, covariant=True)


class FollowedRuns(Protocol[VC]):
    """What the CLI follows and shows of a kind of run (`render`, `score`): job-array runs
    (`ArrayRuns`), and the render farm's runs on Kubernetes (`services.farm`)."""

    @property
    def KIND(self) -> str: ...  # the class constant: render | score

    @property
    def TASK(self) -> str: ...

    def run(self, run_id: int | None = None) -> ArrayRunRecord: ...

    def cancel(self, run: ArrayRunRecord) -> ArrayRunRecord: ...

    def refresh(self, run: ArrayRunRecord) -> VC: ...

    def watch(self, run: ArrayRunRecord, tick: Callable[[VC], None]) -> VC: ...

    def on_dead_nodes(self, run: ArrayRunRecord) -> list[dict[str, Any]]: ...


class ArrayRuns(ClusterService, Generic[V]):
    """Runs of one kind on one cluster; V is the view `refresh` returns."""

    KIND: ClassVar[str]  # the state store's kind: render | score
    TASK: ClassVar[str]  # what one array task is called: chunk | shard
    FINAL: ClassVar[str]  # what the final job does: encode | merge
    WORKING: ClassVar[RunState]  # the run's status while tasks run: rendering | scoring
    FINISHING: ClassVar[RunState]  # ... while the final job runs: encoding | merging
    START_HINT: ClassVar[str]  # how to start a run, for "no runs yet"

    def __init__(
        self, store: StateStore, cluster: str, backend: Backend, progress: Progress | None = None
    ) -> None:
        super().__init__(store, cluster, backend, progress)
        # run id -> its running tasks on nodes whose agent is dead, at the last refresh
        self._on_dead_nodes: dict[int, list[dict[str, Any]]] = {}

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
        self._on_dead_nodes[run.id] = []
        # The record as it is now: a `--cancel` from another terminal while this one
        # follows must not be overwritten from the copy this one read a tick ago.
        run = self.reload(run.id)
        if run.status in TERMINAL or run.status == "submitting":
            return run
        found = self._own(run, self.scheduler.states(_refs(run)))
        run = self._release_held(run, [t for t in found if t.held])
        tasks = {t.index: t for t in found if t.index is not None and t.ref.id == run.array_job_id}
        self._on_dead_nodes[run.id] = self._find_dead_nodes(tasks)
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

    def _release_held(self, run: ArrayRunRecord, held: Sequence[TaskStatus]) -> ArrayRunRecord:
        """Tasks the scheduler holds after failing to launch them start again, once each.

        The scheduler would leave them pending for ever (Slurm holds a batch job whose
        launch failed so that a broken one does not relaunch in a loop); here the failure
        is a restarted controller's, which launched again a task that a node still ran
        (see `held_after_failed_launch` in hpcrun.slurm.parse), and a task's outputs are
        written under temporary names, so running it again is safe. One held a second
        time stays held: `render status` lists it pending, and the release is recorded."""
        if not held:
            return run
        plan = dict(run.plan)
        released: list[str] = list(plan.get("released") or [])
        fresh = [t for t in held if t.name not in released]
        if not fresh:
            return run
        self.scheduler.release(fresh)
        plan["released"] = released + [t.name for t in fresh]
        self.store.set_array_run_plan(run.id, plan)
        names = ", ".join(
            f"{self.TASK} {t.index}" if t.index is not None else t.name for t in fresh
        )
        self.progress.step(f"{names}: held by the scheduler after a failed launch; released")
        return self.reload(run.id)

    def on_dead_nodes(self, run: ArrayRunRecord) -> list[dict[str, Any]]:
        """The run's running tasks on nodes whose agent is dead, by node, as the last
        `refresh_state` found them: each with a `message` a status line can print."""
        return self._on_dead_nodes.get(run.id, [])

    def _find_dead_nodes(self, tasks: dict[int, TaskStatus]) -> list[dict[str, Any]]:
        """Ask the scheduler about the nodes running tasks run on (nothing when none run):
        a slurmd SIGKILLed under two chunks left `render status` saying `2 running` for
        ~50 s, with no word of the dead node (issue 14)."""
        running = {i: t for i, t in tasks.items() if t.state == TaskState.RUNNING}
        nodes = sorted({n for t in running.values() for n in t.nodes})
        if not nodes:
            return []
        with contextlib.suppress(HpcrunError):
            return [
                self._dead_node(trouble, running) for trouble in self.scheduler.node_trouble(nodes)
            ]
        return []  # a question about nodes must not break a status

    def _dead_node(self, trouble: NodeTrouble, running: dict[int, TaskStatus]) -> dict[str, Any]:
        indices = sorted(i for i, t in running.items() if trouble.node in t.nodes)
        names = [f"{self.TASK} {i}" for i in indices]
        shown = " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]
        if len(names) > 5:
            shown = f"{len(names)} {self.TASK}s ({', '.join(map(str, indices[:5]))}, ...)"
        verb = "runs" if len(names) == 1 else "run"
        message = f"{shown} {verb} on {trouble.node}, whose {trouble.why}: {trouble.then}"
        return {
            "node": trouble.node,
            f"{self.TASK}s": indices,
            "why": trouble.why,
            "message": message + (f"; {trouble.hint}" if trouble.hint else ""),
        }

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
        its id was reused): submit its recorded spec again, once, and record that. When
        the job array is gone too (a controller killed seconds after the submit saved
        neither), the array is submitted again first, for the tasks not done.

        Resubmitting is safe even where a job had in fact ended and aged out of a
        scheduler that keeps no accounting: the encode and the merge write under a
        temporary name and rename, and a render chunk renders only frames that are not
        complete, a score shard rewrites its own part."""
        lost = run.final_job_id
        jobs = run.plan.get("jobs") or {}
        history: list[dict[str, Any]] = list(run.plan.get("resubmitted") or [])
        spec_data, array_data = jobs.get("final"), jobs.get("array")
        todo = [t.index for t in run.tasks if t.status != "done"]
        why = f"the {self.FINAL} job {lost} is no longer known to the scheduler"
        array_lost = bool(todo) and not array_known
        if spec_data is None or history or (array_lost and array_data is None):
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
        from hpcrun.locks import Busy, exclusive

        try:
            # Two refreshes at once (a follower and a `render status`) must not both
            # resubmit: one holds the run's lock, the other leaves the job to it.
            with exclusive(
                self.store.home,
                f"run-{self.cluster}-{run.id}",
                what=f"{self.KIND} run {run.id}",
                doing=f"resubmitting its {self.FINAL} job",
            ):
                fresh = self.reload(run.id)  # another hpcrun may have resubmitted it
                if fresh.final_job_id != lost:
                    return fresh
                array_id = run.array_job_id
                entry: dict[str, Any] = {"lost": lost}
                if array_lost and array_data is not None:
                    again = replace(WorkSpec.from_json(array_data), array=tuple(todo))
                    array_id = self.scheduler.submit(again).id
                    entry.update(lost_array=run.array_job_id, array=array_id)
                    self.store.set_array_tasks(
                        run.id, [(i, TaskRecordState.PENDING, 0) for i in todo]
                    )
                after = (JobRef(array_id),) if array_id and todo else ()
                ref = self.scheduler.submit(replace(WorkSpec.from_json(spec_data), after=after))
                entry.update(resubmitted=ref.id, at=round(time.time(), 3))
                history.append(entry)
                # The plan as it is now (a release may have added to it since `run`).
                self.store.set_array_run_plan(run.id, dict(fresh.plan, resubmitted=history))
                self.store.set_array_run(
                    run.id,
                    run.status,
                    detail=run.detail,
                    final_job_id=ref.id,
                    array_job_id=array_id,
                )
        except Busy:
            return self.reload(run.id)
        if "array" in entry:
            self.progress.step(
                f"the job array {entry['lost_array']} is no longer known to the scheduler "
                f"either: resubmitted its {len(todo)} unfinished {self.TASK}(s) as job "
                f"{entry['array']}"
            )
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
            if status != task.status and status in _ENDED:
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
        cancelled = [t for t in run.tasks if t.status == "cancelled"]
        if cancelled:
            # Cancelled in the scheduler, not through hpcrun (`--cancel` records the run
            # itself): the final job's dependency can never be met either.
            if final is not None and not final.state.is_terminal:
                with contextlib.suppress(HpcrunError):
                    self.scheduler.cancel([final.ref])
            count = len(cancelled)
            return RunState.CANCELLED, (
                f"{count} {self.TASK}{'' if count == 1 else 's'} cancelled in the scheduler "
                f"(first: {self._task_name(cancelled[0])}), not through `hpcrun {self.KIND}`"
            )
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
        """Cancel the run's jobs and record every task that had not ended as cancelled: a
        cancelled run is never refreshed again, so its rows must say so now (issue 14:
        status kept saying `968 pending, 32 running` after a cancel)."""
        refs = _refs(run)
        if refs:
            # Only jobs that are still this run's: an id Slurm reused names someone else's.
            found = self._own(run, self.scheduler.states(refs))
            ours = {t.ref.id for t in found}
            live = [r for r in refs if r.id in ours]
            if live:
                self.scheduler.cancel(live)
            # Tasks that ended before the cancel keep what they ended as.
            tasks = {
                t.index: t for t in found if t.index is not None and t.ref.id == run.array_job_id
            }
            updates = [u for u in self._task_updates(run, tasks) if u[1] in _ENDED]
            if updates:
                self.store.set_array_tasks(run.id, updates)
                run = self.reload(run.id)
        open_tasks = [
            (t.index, TaskRecordState.CANCELLED, t.attempts)
            for t in run.tasks
            if t.status not in _ENDED
        ]
        if open_tasks:
            self.store.set_array_tasks(run.id, open_tasks)
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

    @contextlib.contextmanager
    def claiming(self, output: str, same: Callable[[ArrayRunRecord], bool]) -> Iterator[None]:
        """One unfinished run per output, held from the output check until the new run
        is recorded (two submits at once cannot both pass the check).

        Two renders into one directory at once render every frame twice and race to
        encode; a second score with --overwrite would delete the parts the first is still
        writing. `same` tells which recorded runs write `output`. A run found still
        "submitting" while the lock is held is one whose submit crashed (every submit
        holds it), so it does not count."""
        from hpcrun.locks import exclusive

        digest = hashlib.sha256(output.encode()).hexdigest()[:16]
        with exclusive(
            self.store.home,
            f"output-{self.cluster}-{digest}",
            what=f"the output {output}",
            doing=f"hpcrun {self.KIND} submitting a run",
        ):
            for run in self.store.array_runs(self.cluster, self.KIND, unfinished=True):
                if run.status in TERMINAL or run.status == "submitting" or not same(run):
                    continue
                run = self.refresh_state(run)  # its record may predate its end
                if run.status not in TERMINAL:
                    raise HpcrunError(
                        f"{self.KIND} run {run.id} is still writing to {output} ({run.status})",
                        f"follow it with `hpcrun {self.KIND} status {run.id}`, cancel it with "
                        f"`hpcrun {self.KIND} status {run.id} --cancel`, or pass another "
                        "--output",
                    )
            yield

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
    TaskState.CANCELLED: TaskRecordState.CANCELLED,
    TaskState.PENDING: TaskRecordState.PENDING,
}
_ENDED = {TaskRecordState.DONE, TaskRecordState.FAILED, TaskRecordState.CANCELLED}


def _refs(run: ArrayRunRecord) -> list[JobRef]:
    return [JobRef(i) for i in (run.array_job_id, run.final_job_id) if i]


def task_counts(tasks: Sequence[ArrayTaskRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.status] = counts.get(task.status, 0) + 1
    return counts
