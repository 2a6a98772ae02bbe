"""`SlurmScheduler`: the neutral `Scheduler` spoken in Slurm.

The only place a `WorkSpec` becomes Slurm's grammar: array indices become `--array`
ranges with `%max`, dependencies `afterok:<id>`, the log path's `{index}` Slurm's `%a`,
seconds a `--time`, `cpus_per_task` `--cpus-per-task` and `exclusive` `--exclusive` (a
whole node per array task); the batch script exports `HPCRUN_TASK_INDEX`, `HPCRUN_JOB_ID`,
`HPCRUN_NODE_NAME` and `HPCRUN_CPUS` from Slurm's own variables, so job scripts read no
`SLURM_*`. Slurm's
state names are folded into `TaskState` here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from hpcrun.errors import HpcrunError
from hpcrun.scheduler import (
    INDEX_PLACEHOLDER,
    After,
    JobRef,
    NodeTrouble,
    TaskState,
    TaskStatus,
    WorkSpec,
)
from hpcrun.slurm.client import SlurmClient
from hpcrun.slurm.parse import Job, JobState, Node, expand_nodelist, held_after_failed_launch
from hpcrun.slurm.spec import JobSpec, array_range

_DEPENDENCY = {
    After.OK: "afterok",
    After.ANY: "afterany",
    After.NOT_OK: "afternotok",
    After.STARTED: "after",
}


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
        nodes=expand_nodelist(job.nodelist),
        held=held_after_failed_launch(job),
    )


# What Slurm does to a batch job on a node it declares DOWN (JobRequeue=1, its default:
# requeue; jobs submitted with --no-requeue fail with NODE_FAIL).
_ON_NODE_DOWN = "Slurm will requeue or fail the tasks there once it declares the node down"


def slurm_node_trouble(node: Node) -> str | None:
    """Why Slurm itself says `node` does not serve its jobs (its state from sinfo), or None.

    `*` is Slurm's mark of a node whose slurmd stopped answering its pings; DOWN comes
    later, when Slurm requeues or fails its jobs (18 s and 43 s after a SIGKILL on the
    local cluster, SlurmdTimeout=30, measured)."""
    if node.state.endswith("*"):
        return "slurmd is not responding" + (f" ({node.reason})" if node.reason else "")
    if node.state.startswith("down"):
        return "node is down" + (f" ({node.reason})" if node.reason else "")
    return None


class SlurmScheduler:
    """`Scheduler` over one `SlurmClient`: each method is one Slurm command."""

    def __init__(
        self,
        client: SlurmClient,
        *,
        dead_agents: Callable[[], Mapping[str, str]] | None = None,
        restart_hint: str = "",
    ) -> None:
        """`dead_agents` (from a backend that runs the slurmds itself) names the nodes
        whose slurmd is known dead, with why, before Slurm notices; `restart_hint` says
        how such a node comes back."""
        self.client = client
        self.dead_agents = dead_agents
        self.restart_hint = restart_hint

    def submit(self, spec: WorkSpec) -> JobRef:
        return JobRef(self.client.submit(to_job_spec(spec)))

    def states(self, refs: Sequence[JobRef]) -> list[TaskStatus]:
        if not refs:
            return []
        return [task_status(j) for j in self.client.jobs([r.id for r in refs])]

    def cancel(self, refs: Sequence[JobRef]) -> None:
        self.client.cancel([r.id for r in refs])

    def release(self, tasks: Sequence[TaskStatus]) -> None:
        self.client.release(
            [t.ref.id if t.index is None else f"{t.ref.id}_{t.index}" for t in tasks]
        )

    def node_trouble(self, nodes: Sequence[str]) -> list[NodeTrouble]:
        """The backend's word on dead slurmds first (it knows at once), then sinfo's."""
        wanted = set(nodes)
        if not wanted:
            return []
        found: dict[str, str] = {}
        if self.dead_agents is not None:
            found = {n: why for n, why in self.dead_agents().items() if n in wanted}
        try:
            listed = self.client.nodes()
        except HpcrunError:
            listed = []  # the controller is down: the task states said so already
        for node in listed:
            why = slurm_node_trouble(node) if node.name in wanted else None
            if why is not None:
                found.setdefault(node.name, why)
        return [
            NodeTrouble(node=n, why=found[n], then=_ON_NODE_DOWN, hint=self.restart_hint)
            for n in sorted(found)
        ]

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
