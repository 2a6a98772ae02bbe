"""An IndeX session as plain data: the allocations, job steps and resizes that start, grow
and shrink multi-node rendering, exactly as NVIDIA's IndeX AMI does it by hand.

NVIDIA's recipe is `salloc -N4 --exclusive` then `srun -N4 nvindex-slurm -v
./nvindex-viewer.sh --add <scene.prj>`; more nodes are a second allocation whose
`nvindex-slurm -a<first job>` processes attach as render agents; fewer nodes are `scontrol
update JobId=<id> NumNodes=<n>`. This module turns those steps into `JobSpec`s and argv
lists (golden-tested) and decides *which* job to end or shrink, so the service that runs
them stays a thin loop. The open renderer (`hpcrun-nvindex-slurm`) takes the same command
line, so only the launcher path and working directory differ between the two installs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.slurm.spec import JobSpec

READY_MARKER = "Application layer viewer server is running at "
DEFAULT_PORT = 8080
INITIAL_JOB_NAME = "hpcrun-index"
AGENTS_JOB_NAME = "hpcrun-index-agents"


@dataclass(frozen=True)
class IndexInstall:
    """Where the launcher, the viewer script and the scenes live on the cluster's nodes."""

    launcher: str
    workdir: str
    scenes_dir: str
    viewer_script: str = "./nvindex-viewer.sh"
    open_renderer: bool = False


# NVIDIA's IndeX AMI for ParallelCluster.
NVIDIA_AMI = IndexInstall(
    launcher="nvindex-slurm", workdir="/opt/nvidia-index/demo", scenes_dir="/opt/scenes"
)


@dataclass(frozen=True)
class IndexPlan:
    """One session's fixed choices; `gpus_per_node=None` means whole nodes (`--exclusive`)."""

    nodes: int
    scene_prj: str
    install: IndexInstall
    gpus_per_node: int | None = None
    port: int = DEFAULT_PORT
    partition: str | None = None
    time_limit: str | None = None  # Slurm's --time for every allocation of the session
    # Options only the open renderer understands (rendezvous directory, basic auth).
    open_options: tuple[str, ...] = field(default_factory=tuple)

    def validate(self) -> None:
        if self.nodes < 1:
            raise UsageError(f"--nodes must be at least 1, got {self.nodes}")
        if self.gpus_per_node is not None and self.gpus_per_node < 1:
            raise UsageError(
                f"--gpus-per-node must be at least 1, got {self.gpus_per_node}",
                "leave it out to take whole nodes (--exclusive), as NVIDIA's recipe does",
            )
        if not 1 <= self.port <= 65535:
            raise UsageError(f"--port must be 1-65535, got {self.port}")
        if not self.install.open_renderer and self.port != DEFAULT_PORT:
            raise UsageError(
                f"--port {self.port}: IndeX's own viewer listens on {DEFAULT_PORT}",
                "change the port in IndeX's nvindex-viewer.sh configuration instead",
            )


def _allocation(plan: IndexPlan, name: str, nodes: int, dependency: str | None) -> JobSpec:
    return JobSpec(
        command=(),
        name=name,
        nodes=nodes,
        exclusive=plan.gpus_per_node is None,
        gpus_per_node=plan.gpus_per_node,
        dependency=dependency,
        partition=plan.partition,
        time_limit=plan.time_limit,
    )


def initial_allocation(plan: IndexPlan) -> JobSpec:
    """`salloc -N<n> --exclusive` (or `--gpus-per-node`), step-less: the viewer is a step."""
    return _allocation(plan, INITIAL_JOB_NAME, plan.nodes, None)


def agents_allocation(plan: IndexPlan, nodes: int, *, expand_job: str | None = None) -> JobSpec:
    """A further allocation for `nodes` more agents; `expand_job` makes it a job-expansion
    donor (`--dependency=expand:<job>`), whose nodes are then merged into that job."""
    return _allocation(plan, AGENTS_JOB_NAME, nodes, f"expand:{expand_job}" if expand_job else None)


def _launch_argv(
    plan: IndexPlan, job_id: str, nodes: int, args: Sequence[str], nodelist: str | None
) -> list[str]:
    step = JobSpec(
        command=(plan.install.launcher, *args),
        name=INITIAL_JOB_NAME,
        nodes=nodes,
        ntasks_per_node=1,
        workdir=plan.install.workdir,
    )
    argv = step.to_srun_argv(jobid=job_id)
    if nodelist:
        # Agents for nodes merged into a grown job: run only on the new nodes.
        argv.insert(argv.index("srun") + 2, f"--nodelist={nodelist}")
    return argv


def viewer_step(plan: IndexPlan, job_id: str) -> list[str]:
    """`srun -N<n> nvindex-slurm -v ./nvindex-viewer.sh --add <scene> -dice::log_timestamp yes`:
    rank 0 becomes the viewer and every rank a render agent."""
    args = [
        "-v",
        plan.install.viewer_script,
        "--add",
        plan.scene_prj,
        "-dice::log_timestamp",
        "yes",
    ]
    if plan.install.open_renderer:
        args += ["--port", str(plan.port), *plan.open_options]
    return _launch_argv(plan, job_id, plan.nodes, args, None)


def agents_step(
    plan: IndexPlan, job_id: str, initial_job: str, nodes: int, *, nodelist: str | None = None
) -> list[str]:
    """`srun -N<k> nvindex-slurm -a<initial job> ./nvindex-viewer.sh`: render agents only,
    connecting to the viewer of the session's first job."""
    args = [f"-a{initial_job}", plan.install.viewer_script]
    if plan.install.open_renderer:
        args += list(plan.open_options)
    return _launch_argv(plan, job_id, nodes, args, nodelist)


# --- shrinking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionJob:
    """One allocation of a session as the shrink planner sees it."""

    job_id: str
    nodes: int
    initial: bool
    resized: bool = False


@dataclass(frozen=True)
class ShrinkStep:
    """End a whole job (`nodes_after == 0`, scancel) or shrink it (scontrol NumNodes=)."""

    job_id: str
    nodes_after: int

    @property
    def cancels(self) -> bool:
        return self.nodes_after == 0


def plan_shrink(
    jobs: Sequence[SessionJob], remove: int, *, can_resize_twice: bool
) -> list[ShrinkStep]:
    """Which jobs to end or shrink to give back `remove` nodes.

    Whole attached jobs go first (newest first, an exact fit preferred): that needs no
    resize at all. Only the remainder shrinks a job with `scontrol update NumNodes=`, and
    never one Slurm already resized when the cluster has no Slurm database (22.05 refuses
    any further update of such a job). The first job keeps at least its first node, where
    the viewer runs; `jobs` is in the order they were allocated.
    """
    total = sum(j.nodes for j in jobs)
    if remove < 1:
        raise UsageError(f"nothing to remove: asked for {remove} nodes")
    if remove >= total:
        raise UsageError(
            f"the session has {total} node{'s' * (total != 1)}; removing {remove} would leave "
            "no viewer",
            "use `hpcrun index stop` to end the session",
        )
    attached = [j for j in reversed(jobs) if not j.initial]  # newest first
    exact = next((j for j in attached if j.nodes == remove), None)
    if exact is not None:
        return [ShrinkStep(exact.job_id, 0)]
    steps: list[ShrinkStep] = []
    left = remove
    for job in attached:
        if job.nodes <= left:
            steps.append(ShrinkStep(job.job_id, 0))
            left -= job.nodes
    if left == 0:
        return steps
    ended = {s.job_id for s in steps}
    candidates = [j for j in attached if j.job_id not in ended] + [j for j in jobs if j.initial]
    refused: list[SessionJob] = []
    for job in candidates:
        if job.nodes - left < 1:
            continue
        if job.resized and not can_resize_twice:
            refused.append(job)
            continue
        return [*steps, ShrinkStep(job.job_id, job.nodes - left)]
    if refused:
        raise HpcrunError(
            f"cannot remove {remove} node{'s' * (remove != 1)}: job {refused[0].job_id} was "
            "resized before and this cluster keeps no Slurm database, so Slurm refuses to "
            "update it again",
            "remove a whole attached job instead (see `hpcrun index status`), or enable "
            "accounting (slurmdbd) on the cluster",
        )
    raise HpcrunError(f"cannot remove {remove} nodes from jobs of sizes {[j.nodes for j in jobs]}")
