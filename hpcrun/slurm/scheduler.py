"""`SlurmScheduler`: the neutral `Scheduler` spoken in Slurm.

The only place a `WorkSpec` becomes Slurm's grammar: array indices become `--array`
ranges with `%max`, dependencies `afterok:<id>`, the log path's `{index}` Slurm's `%a`,
seconds a `--time`; the batch script exports `HPCRUN_TASK_INDEX`, `HPCRUN_JOB_ID` and
`HPCRUN_NODE_NAME` from Slurm's own variables, so job scripts read no `SLURM_*`. Slurm's
state names are folded into `TaskState` here too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hpcrun.scheduler import (
    INDEX_PLACEHOLDER,
    After,
    JobRef,
    TaskState,
    TaskStatus,
    WorkSpec,
)
from hpcrun.slurm.client import SlurmClient
from hpcrun.slurm.parse import Job, JobState
from hpcrun.slurm.spec import JobSpec, array_range

_DEPENDENCY = {After.OK: "afterok", After.ANY: "afterany", After.NOT_OK: "afternotok"}


def to_job_spec(spec: WorkSpec) -> JobSpec:
    """The sbatch job for `spec` (pure; golden files pin what it writes)."""
    command = spec.argv if spec.argv else ("bash", "-c", spec.script or "")
    gpus = gpus_per_task = None
    if spec.gpus_per_task is not None:
        # One task per job (an array task is a job of its own): --gpus is that task's.
        single = spec.nodes == 1 and spec.tasks_per_node in (None, 1)
        gpus, gpus_per_task = (spec.gpus_per_task, None) if single else (None, spec.gpus_per_task)
    dependency = None
    if spec.after:
        dependency = ":".join([_DEPENDENCY[spec.after_condition], *(r.id for r in spec.after)])
    return JobSpec(
        command=command,
        name=spec.name,
        nodes=spec.nodes,
        ntasks_per_node=spec.tasks_per_node,
        cpus_per_task=spec.cpus_per_task,
        exclusive=spec.exclusive,
        gpus_per_node=spec.gpus_per_node,
        gpus=gpus,
        gpus_per_task=gpus_per_task,
        array=array_range(spec.array, spec.max_parallel) if spec.array is not None else None,
        dependency=dependency,
        time_limit=slurm_time(spec.time_limit_s) if spec.time_limit_s is not None else None,
        partition=spec.queue,
        env=spec.env,
        workdir=spec.workdir,
        output=slurm_log_pattern(spec.log_path) if spec.log_path else None,
        neutral_env=True,
    )


def slurm_time(seconds: int) -> str:
    """--time for `seconds`: whole minutes as minutes, else D-HH:MM:SS."""
    if seconds % 60 == 0:
        return str(seconds // 60)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def slurm_log_pattern(path: str) -> str:
    """A log path as sbatch's --output pattern: a literal `%` doubled, `{index}` -> `%a`."""
    return path.replace("%", "%%").replace(INDEX_PLACEHOLDER, "%a")


def task_state(state: JobState) -> TaskState:
    if state == JobState.COMPLETED:
        return TaskState.SUCCEEDED
    if state == JobState.CANCELLED:
        return TaskState.CANCELLED
    if state.is_terminal:
        return TaskState.FAILED  # FAILED, TIMEOUT, NODE_FAIL, OUT_OF_MEMORY, ...
    if state in {JobState.RUNNING, JobState.COMPLETING}:
        return TaskState.RUNNING
    return TaskState.PENDING


def task_status(job: Job) -> TaskStatus:
    """A squeue/sacct record as a neutral task status of its job (an array's tasks name
    the array job)."""
    ref = JobRef(job.array_job_id or job.job_id.split("_")[0])
    index = int(job.array_task_id) if job.array_task_id is not None else None
    return TaskStatus(
        ref=ref,
        index=index,
        state=task_state(job.state),
        native=str(job.state),
        node=job.nodelist or None,
        exit_code=job.exit_code,
        job_name=job.name,
    )


class SlurmScheduler:
    """`Scheduler` over one `SlurmClient`: each method is one Slurm command."""

    def __init__(self, client: SlurmClient) -> None:
        self.client = client

    def submit(self, spec: WorkSpec) -> JobRef:
        return JobRef(self.client.submit(to_job_spec(spec)))

    def states(self, refs: Sequence[JobRef]) -> list[TaskStatus]:
        if not refs:
            return []
        return [task_status(j) for j in self.client.jobs([r.id for r in refs])]

    def cancel(self, refs: Sequence[JobRef]) -> None:
        self.client.cancel([r.id for r in refs])

    def wait(
        self,
        ref: JobRef,
        *,
        timeout_s: float | None = None,
        on_poll: Callable[[list[TaskStatus]], None] | None = None,
    ) -> list[TaskStatus]:
        def polled(jobs: list[Job]) -> None:
            if on_poll is not None:
                on_poll([task_status(j) for j in jobs])

        jobs = self.client.wait(ref.id, timeout_s=timeout_s, on_poll=polled)
        return [task_status(j) for j in jobs]
