"""`SlurmIndexDriver`: IndeX sessions exactly as NVIDIA's IndeX AMI runs them by hand.

NVIDIA's recipe is `salloc -N4 --exclusive` then `srun -N4 nvindex-slurm -v
./nvindex-viewer.sh --add <scene.prj>`; more nodes are a second allocation whose
`nvindex-slurm -a<first job>` processes attach as render agents; fewer nodes are `scontrol
update JobId=<id> NumNodes=<n>`. The pure half of this module turns those steps into
`JobSpec`s and argv lists (golden-tested) and decides *which* job to end or shrink
(`plan_shrink`); the driver runs them through one `SlurmClient`. The open renderer
(`hpcrun-nvindex-slurm`) takes the same command line, so only the launcher path and
working directory differ between the two installs.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Sequence

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.scheduler import Progress
from hpcrun.scheduler.index import (
    READY_MARKER,
    Allocation,
    Grown,
    IndexInstall,
    IndexPlan,
    SessionJob,
    ShrinkStep,
)
from hpcrun.slurm.client import SlurmClient
from hpcrun.slurm.parse import Job
from hpcrun.slurm.spec import JobSpec
from hpcrun.transport.runner import Runner

INITIAL_JOB_NAME = "hpcrun-index"
AGENTS_JOB_NAME = "hpcrun-index-agents"
_URL_RE = re.compile(re.escape(READY_MARKER) + r"(https?://)([^\s:/]+):(\d+)")


def _allocation(plan: IndexPlan, name: str, nodes: int, dependency: str | None) -> JobSpec:
    return JobSpec(
        command=(),
        name=name,
        nodes=nodes,
        exclusive=plan.gpus_per_node is None,
        gpus_per_node=plan.gpus_per_node,
        dependency=dependency,
        partition=plan.partition,
        time_limit=plan.time_limit,  # as typed: Slurm's own --time grammar
    )


def initial_allocation(plan: IndexPlan) -> JobSpec:
    """`salloc -N<n> --exclusive` (or `--gpus-per-node`), step-less: the viewer is a step."""
    return _allocation(plan, INITIAL_JOB_NAME, plan.nodes, None)


def agents_allocation(plan: IndexPlan, nodes: int, *, expand_job: str | None = None) -> JobSpec:
    """A further allocation for `nodes` more agents; `expand_job` makes it a job-expansion
    donor (`--dependency=expand:<job>`), whose nodes are then merged into that job."""
    return _allocation(plan, AGENTS_JOB_NAME, nodes, f"expand:{expand_job}" if expand_job else None)


def _launch_argv(
    plan: IndexPlan,
    job_id: str,
    nodes: int,
    args: Sequence[str],
    nodelist: str | None,
    *,
    overlap: bool = False,
) -> list[str]:
    step = JobSpec(
        command=(plan.install.launcher, *args),
        name=INITIAL_JOB_NAME,
        nodes=nodes,
        ntasks_per_node=1,
        workdir=plan.install.workdir,
    )
    argv = step.to_srun_argv(jobid=job_id)
    # Where in the allocation the step runs: only on the given nodes (those merged into a
    # grown job, or those whose agent died), beside the steps already there (--overlap).
    placement = ["--overlap"] * overlap + ([f"--nodelist={nodelist}"] if nodelist else [])
    at = argv.index("srun") + 2  # after `srun --jobid=J`
    argv[at:at] = placement
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
    plan: IndexPlan,
    job_id: str,
    initial_job: str,
    nodes: int,
    *,
    nodelist: str | None = None,
    overlap: bool = False,
) -> list[str]:
    """`srun -N<k> nvindex-slurm -a<initial job> ./nvindex-viewer.sh`: render agents only,
    connecting to the viewer of the session's first job."""
    args = [f"-a{initial_job}", plan.install.viewer_script]
    if plan.install.open_renderer:
        args += list(plan.open_options)
    return _launch_argv(plan, job_id, nodes, args, nodelist, overlap=overlap)


def restart_step(plan: IndexPlan, job_id: str, initial_job: str, hosts: Sequence[str]) -> list[str]:
    """Agents again on `hosts` of job `job_id`, whose own agents died: the step they ran in
    still holds its share of those nodes until its last task ends, so the new step
    overlaps it (`--overlap`) instead of queueing behind it."""
    return agents_step(
        plan, job_id, initial_job, len(hosts), nodelist=",".join(hosts), overlap=True
    )


# --- shrinking ------------------------------------------------------------------------------


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



# --- the driver -----------------------------------------------------------------------------


class SlurmIndexDriver:
    """`IndexDriver` on Slurm: allocations with `salloc --no-shell`, the viewer and agents
    as `srun` steps spawned through the runner (they outlive this process), growing by a
    second allocation (or job expansion), shrinking by scancel / `scontrol update`."""

    def __init__(self, client: SlurmClient, runner: Runner) -> None:
        self.client = client
        self.runner = runner

    def install(self, renderer: str) -> IndexInstall | None:
        return None  # IndeX or the open renderer is installed on the nodes

    def credentials(self, job_id: str) -> tuple[str, str] | None:
        return None

    def public_url(self, job_id: str, host: str, port: int) -> str | None:
        return None

    def validate(self, plan: IndexPlan) -> None:
        initial_allocation(plan)  # JobSpec's checks (e.g. --time syntax)

    def check_capacity(
        self, nodes: int, *, wait: bool, progress: Progress, partition: str | None = None
    ) -> None:
        found = self.client.nodes(partition)
        if partition and not found:
            raise UsageError(
                f"--partition {partition}: the cluster has no such partition (or no nodes in it)",
                "`hpcrun status` (or `sinfo -s`) lists the partitions; leave it out for the "
                "default",
            )
        usable = [n for n in found if n.is_available]
        # Free: idle, or idle and powered down (`idle~`: a cloud node Slurm starts on
        # demand, as ParallelCluster's dynamic nodes are until a job wants them).
        idle = [n.name for n in found if n.state in ("idle", "idle~")]
        where = f"partition {partition}" if partition else "the cluster"
        if nodes > len(usable):
            raise HpcrunError(
                f"{plural(nodes, 'node')} requested but {where} has {len(usable)} usable "
                f"node{'s' * (len(usable) != 1)}",
                "ask for fewer nodes, or create the cluster with more (`hpcrun create --nodes`)",
            )
        if nodes > len(idle):
            if wait:
                progress.step(
                    f"waiting for {nodes} free nodes ({len(idle)} free now); Ctrl-C cancels"
                )
                return
            raise HpcrunError(
                f"{plural(nodes, 'node')} requested but only {len(idle)} are free"
                + (f" ({', '.join(idle)})" if idle else ""),
                "pass --wait to queue until nodes free up, or ask for fewer",
            )

    def start(
        self,
        plan: IndexPlan,
        log: str,
        *,
        wait: bool,
        progress: Progress,
        on_allocated: Callable[[str], None],
    ) -> str:
        progress.step(f"allocating {plural(plan.nodes, 'node')} (salloc --no-shell)")
        job_id = self.client.allocate(initial_allocation(plan), timeout_s=None if wait else 60.0)
        on_allocated(job_id)
        progress.step(f"job {job_id}: starting the viewer and {plural(plan.nodes, 'agent')}")
        self.runner.spawn(viewer_step(plan, job_id), log_path=log)
        return job_id

    def viewer_address(self, job_id: str, log_text: str) -> tuple[str, int] | None:
        found = _URL_RE.search(log_text)
        return None if found is None else (found.group(2), int(found.group(3)))

    def failure(self, job_id: str, log_text: str) -> str | None:
        jobs = self.client.jobs([job_id])
        if not jobs or jobs[0].state.is_terminal:
            state = jobs[0].state if jobs else "gone"
            return f"job {job_id} ended ({state}) before the viewer"
        if _step_exited(log_text):
            return "the viewer step exited before it was ready"
        return None

    def allocations(self, ids: Sequence[str]) -> dict[str, Allocation]:
        if not ids:  # jobs([]) would mean every job of the cluster
            return {}
        return {j.job_id: _allocation_of(j) for j in self.client.jobs(list(ids))}

    def hosts(self, allocation: Allocation) -> list[str]:
        return self.client.hostnames(allocation.nodelist)

    def grow(
        self,
        plan: IndexPlan,
        first: str,
        count: int,
        log: str,
        *,
        merge: bool,
        wait: bool,
        progress: Progress,
        on_allocated: Callable[[str], None],
    ) -> Grown:
        if merge:
            gres = self.client.job_details(first).get("JOB_GRES", "(null)")
            if gres not in {"(null)", ""}:
                raise HpcrunError(
                    f"--merge: job {first} holds GPUs ({gres}) and Slurm cannot expand a job "
                    "that holds GRES",
                    "scale without --merge: the new nodes join as a second job (NVIDIA's way)",
                )
        job_id: str | None = None
        merged = False
        try:
            progress.step(f"allocating {plural(count, 'more node')}")
            job_id = self.client.allocate(
                agents_allocation(plan, count, expand_job=first if merge else None),
                timeout_s=None if wait else 60.0,
            )
            on_allocated(job_id)
            initial_nodes = None
            if merge:
                nodelist = self.client.jobs([job_id])[0].nodelist
                progress.step(f"merging job {job_id}'s nodes into job {first}")
                self.client.resize(job_id, 0)
                merged = True
                self.client.resize(first, "ALL")
                grown = self.allocations([first]).get(first)
                initial_nodes = grown.nodes if grown is not None and not grown.ended else None
                argv = agents_step(plan, first, first, count, nodelist=nodelist)
            else:
                argv = agents_step(plan, job_id, first, count)
            progress.step(f"starting {plural(count, 'render agent')}")
            self.runner.spawn(argv, log_path=log)
        except BaseException:
            # A donor job Slurm did not merge still holds its nodes: give them back.
            if job_id is not None and not merged:
                with contextlib.suppress(HpcrunError):
                    self.client.cancel([job_id])
            raise
        return Grown(job_id, merged, initial_nodes)

    def restart_agents(
        self, plan: IndexPlan, job_id: str, first: str, hosts: Sequence[str], log: str
    ) -> None:
        self.runner.spawn(restart_step(plan, job_id, first, hosts), log_path=log)

    def shrink(
        self,
        plan: IndexPlan,
        jobs: Sequence[SessionJob],
        count: int,
        *,
        progress: Progress,
        on_step: Callable[[ShrinkStep], None],
    ) -> None:
        steps = plan_shrink(jobs, count, can_resize_twice=self.client.has_accounting_database())
        cancelled = [step.job_id for step in steps if step.cancels]
        for step in steps:
            if step.cancels:
                progress.step(f"ending job {step.job_id} (scancel)")
                self.client.cancel([step.job_id])
            else:
                progress.step(
                    f"shrinking job {step.job_id} to {plural(step.nodes_after, 'node')} "
                    f"(scontrol update NumNodes={step.nodes_after})"
                )
                self.client.resize(step.job_id, step.nodes_after)
            on_step(step)
        # Return once Slurm has the nodes back, so a `scale +K` right after finds them free.
        if cancelled:
            self._wait_ended(cancelled, 30.0)

    def cancel(self, ids: Sequence[str]) -> None:
        self.client.cancel(list(ids))

    def stop(self, ids: Sequence[str], *, timeout_s: float) -> None:
        if not ids:
            return
        self.client.cancel(list(ids))
        self._wait_ended(list(ids), timeout_s)

    def _wait_ended(self, ids: list[str], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not all(j.state.is_terminal for j in self.client.jobs(ids)):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True


def _allocation_of(job: Job) -> Allocation:
    return Allocation(
        id=job.job_id,
        native=str(job.state),
        ended=job.state.is_terminal,
        nodes=job.node_count,
        nodelist=job.nodelist,
    )


def _step_exited(text: str) -> bool:
    # srun reports a task that ended by itself or was killed before the viewer was up.
    return "srun: error:" in text and ("Exited with exit code" in text or "task 0:" in text)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"
