"""An IndeX session in no scheduler's terms: the plan, and the `IndexDriver` that runs it.

A session is a viewer plus render agents on `nodes` nodes, grown and shrunk while it runs.
The service (`hpcrun.services.index`) keeps the session's lifecycle, readiness and state;
a driver does what the scheduler must: Slurm allocates with `salloc` and starts
`nvindex-slurm` steps (`hpcrun.slurm.index`), Kubernetes will create what NVIDIA's IndeX
helm chart creates and change its replicas. The service hands a driver callbacks to
record each allocation the moment it exists, so a crash never hides one from
`hpcrun status`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hpcrun.errors import UsageError
from hpcrun.scheduler import Progress

READY_MARKER = "Application layer viewer server is running at "
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class IndexInstall:
    """Where the launcher, the viewer script and the scenes live on the cluster's nodes."""

    launcher: str
    workdir: str
    scenes_dir: str
    viewer_script: str = "./nvindex-viewer.sh"
    open_renderer: bool = False
    # The container image the session's pods run (Kubernetes); None: installed on nodes.
    image: str | None = None
    # A helm chart to NVIDIA's IndeX values contract that makes the pods (Kubernetes).
    chart: str | None = None

    @property
    def open_processes(self) -> bool:
        """The open renderer as processes on the nodes (srun tasks), which hpcrun hands
        its rendezvous and auth files and whose agents it waits for; in pods of an image
        the pods' own readiness says when it serves."""
        return self.open_renderer and self.image is None


# NVIDIA's IndeX AMI for ParallelCluster.
NVIDIA_AMI = IndexInstall(
    launcher="nvindex-slurm", workdir="/opt/nvidia-index/demo", scenes_dir="/opt/scenes"
)


@dataclass(frozen=True)
class IndexPlan:
    """One session's fixed choices; `gpus_per_node=None` means whole nodes (exclusive)."""

    nodes: int
    scene_prj: str
    install: IndexInstall
    gpus_per_node: int | None = None
    port: int = DEFAULT_PORT
    partition: str | None = None
    time_limit: str | None = None  # as the user typed it (--time) for every allocation
    # Options only the open renderer understands (rendezvous directory, basic auth).
    open_options: tuple[str, ...] = field(default_factory=tuple)
    session: str = ""  # the session's id, for schedulers that name objects after it

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
        # IndeX's own viewer listens on 8080; a Kubernetes Service can serve it elsewhere.
        fixed_port = not self.install.open_renderer and self.install.image is None
        if fixed_port and self.port != DEFAULT_PORT:
            raise UsageError(
                f"--port {self.port}: IndeX's own viewer listens on {DEFAULT_PORT}",
                "change the port in IndeX's nvindex-viewer.sh configuration instead",
            )


@dataclass(frozen=True)
class Allocation:
    """One of a session's allocations as the scheduler sees it now."""

    id: str
    native: str  # the scheduler's word for its state (Slurm's RUNNING)
    ended: bool
    nodes: int
    nodelist: str  # the scheduler's compact list of its nodes ("" when it holds none)
    # Kubernetes: the workloads behind it (kind, name, ready, desired) and its Ready pods.
    workloads: tuple[dict[str, Any], ...] = ()
    pods_ready: int | None = None


@dataclass(frozen=True)
class SessionJob:
    """One allocation of a session as the shrink planner sees it."""

    job_id: str
    nodes: int
    initial: bool
    resized: bool = False


@dataclass(frozen=True)
class ShrinkStep:
    """End a whole allocation (`nodes_after == 0`) or shrink it to `nodes_after` nodes."""

    job_id: str
    nodes_after: int

    @property
    def cancels(self) -> bool:
        return self.nodes_after == 0


@dataclass(frozen=True)
class Grown:
    """What `IndexDriver.grow` did: the new allocation, and whether it was merged into
    the first one (which then holds `initial_nodes`)."""

    job_id: str
    merged: bool
    initial_nodes: int | None = None


class IndexDriver(Protocol):
    def install(self, renderer: str) -> IndexInstall | None:
        """What runs the session when the scheduler brings it itself (Kubernetes: an
        image); None: look for IndeX or the open renderer on the cluster's nodes."""
        ...

    def credentials(self, job_id: str) -> tuple[str, str] | None:
        """The (user, password) made for the session at start, in memory only, to be
        shown once; None where the session has none."""
        ...

    def public_url(self, job_id: str, host: str, port: int) -> str | None:
        """The viewer's URL where the scheduler publishes it (an Ingress path); None: the
        backend's endpoint of `host:port`."""
        ...

    def validate(self, plan: IndexPlan) -> None:
        """Refuse what the scheduler would refuse (a bad --time), before anything exists."""
        ...

    def check_capacity(
        self, nodes: int, *, wait: bool, progress: Progress, partition: str | None = None
    ) -> None:
        """Refuse a request the cluster (its `partition`, if given) cannot serve now
        (unless `wait`)."""
        ...

    def start(
        self,
        plan: IndexPlan,
        log: str,
        *,
        wait: bool,
        progress: Progress,
        on_allocated: Callable[[str], None],
    ) -> str:
        """Allocate `plan.nodes` nodes and start the viewer and its agents there, output
        to `log`; return the allocation's id (`on_allocated` hears it first)."""
        ...

    def viewer_address(self, job_id: str, log_text: str) -> tuple[str, int] | None:
        """Where the viewer listens once it is up (None until then)."""
        ...

    def failure(self, job_id: str, log_text: str) -> str | None:
        """Why the viewer cannot come up any more (its allocation or step ended)."""
        ...

    def allocations(self, ids: Sequence[str]) -> dict[str, Allocation]:
        """The named allocations the scheduler still knows (one call)."""
        ...

    def hosts(self, allocation: Allocation) -> list[str]:
        """The node names of a live allocation."""
        ...

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
        """`count` more render agents, attached to the viewer of allocation `first`."""
        ...

    def restart_agents(
        self, plan: IndexPlan, job_id: str, first: str, hosts: Sequence[str], log: str
    ) -> None:
        """Start render agents again on `hosts` of the live allocation `job_id` (their
        own died), attached to the viewer of allocation `first`, output to `log`."""
        ...

    def shrink(
        self,
        plan: IndexPlan,
        jobs: Sequence[SessionJob],
        count: int,
        *,
        progress: Progress,
        on_step: Callable[[ShrinkStep], None],
    ) -> None:
        """Give back `count` nodes; `on_step` hears each allocation ended or shrunk, and
        the call returns once the scheduler has the nodes back."""
        ...

    def cancel(self, ids: Sequence[str]) -> None: ...

    def stop(self, ids: Sequence[str], *, timeout_s: float) -> None:
        """End the allocations and wait (up to `timeout_s`) until they have ended."""
        ...
