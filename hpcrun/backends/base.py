"""What every backend provides, whatever the cluster is made of.

A backend owns a cluster's lifecycle (create, status, destroy) and hands out what services
run work through: a neutral `Scheduler`, a `Workspace` (the cluster's storage) and an
`IndexDriver` (IndeX sessions), plus the `SlurmClient` itself for the Slurm-only commands
(`submit`, `jobs`, `logs`). Workloads never learn whether they run on daemons on this host
or on ParallelCluster. The registry (`hpcrun.backends`) declares what each backend lacks,
so the CLI can refuse early with a clear message instead of failing half-way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from hpcrun.scheduler import NullProgress, Progress, Scheduler, Workspace
from hpcrun.slurm import Job, Node, SlurmClient

if TYPE_CHECKING:
    from hpcrun.backends.dcv import DcvDesktop
    from hpcrun.scheduler.index import IndexDriver

__all__ = [
    "Backend",
    "ClusterSite",
    "ClusterStatus",
    "DaemonStatus",
    "Feature",
    "NodeStatus",
    "NullProgress",
    "Progress",
]


class Feature(StrEnum):
    CREATE = "create"
    SLURM = "slurm"
    DESKTOP = "desktop"  # a remote desktop (NICE DCV) on the head node
    JOB_EXPANSION = "job-expansion"
    ACCOUNTING = "accounting"
    SHELL = "shell"  # a login shell on a head node (`hpcrun ssh`)
    SERVE = "serve"  # long-running servers behind an autoscaler (`hpcrun serve`)


@dataclass(frozen=True)
class DaemonStatus:
    name: str
    pid: int
    running: bool
    returncode: int | None
    log: str

    @property
    def died(self) -> bool:
        return not self.running and self.pid > 0


@dataclass(frozen=True)
class NodeStatus:
    """A Slurm node as Slurm sees it, plus what the backend knows of the process behind it."""

    node: Node
    daemon: DaemonStatus | None = None

    @property
    def is_down(self) -> bool:
        daemon_dead = self.daemon is not None and not self.daemon.running
        return daemon_dead or not self.node.is_available

    @property
    def summary(self) -> str:
        if self.daemon is not None and not self.daemon.running:
            return (
                f"down (slurmd exited, status {self.daemon.returncode}; Slurm: {self.node.state})"
            )
        return self.node.state


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    backend: str
    state: str  # up | degraded | down | creating | failed
    detail: str = ""
    slurm_conf: str | None = None
    daemons: list[DaemonStatus] = field(default_factory=list)
    nodes: list[NodeStatus] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    # Why `jobs` is not Slurm's answer (its controller is down or did not answer): then
    # the empty list means "unknown", not "no jobs".
    jobs_error: str | None = None
    # Kubernetes: each node (ready, instance type, node group, GPUs and GPUs used) and
    # each node group as the cloud describes it.
    kube_nodes: list[dict[str, Any]] = field(default_factory=list)
    node_groups: list[dict[str, Any]] = field(default_factory=list)
    slurm: bool = True  # False: a Kubernetes cluster, which has no Slurm jobs to show

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "state": self.state,
            "detail": self.detail,
            "slurm_conf": self.slurm_conf,
            "daemons": [asdict(d) for d in self.daemons],
            "nodes": [
                {**n.node.to_json(), "down": n.is_down, "summary": n.summary} for n in self.nodes
            ],
            "jobs": [j.to_json() for j in self.jobs],
            "jobs_error": self.jobs_error,
            **({"kube_nodes": self.kube_nodes} if self.kube_nodes else {}),
            **({"node_groups": self.node_groups} if self.node_groups else {}),
        }


@dataclass(frozen=True)
class ClusterSite:
    """Where hpcrun's own files and programs are on the cluster, as paths there.

    `workspace` is where services write session files (step logs, the open renderer's
    rendezvous): every node must see it (the local cluster's directory; the shared home on
    ParallelCluster). Services read it as their `Workspace`'s root. `launcher` and
    `scenes_dir` are the open renderer's `hpcrun-nvindex-slurm` and scene catalogue there,
    None where hpcrun is not installed.
    """

    workspace: str
    launcher: str | None
    scenes_dir: str | None
    shares_local_files: bool  # True when the cluster sees this machine's files (local)


class Backend(Protocol):
    name: str
    unsupported: frozenset[Feature]

    def create(self, progress: Progress) -> bool:
        """Bring the cluster up; False when it already was (and nothing changed)."""
        ...

    def status(self) -> ClusterStatus: ...

    def destroy(self, progress: Progress, *, purge: bool = False) -> None: ...

    def slurm(self) -> SlurmClient:
        """Slurm itself, for the commands that are Slurm's own (submit, jobs, logs)."""
        ...

    def scheduler(self) -> Scheduler: ...

    def workspace(self) -> Workspace: ...

    def index_driver(self) -> IndexDriver:
        """How IndeX sessions start, grow, shrink and stop on this cluster."""
        ...

    def desktop(
        self,
        progress: Callable[[str], None] | None = None,
        *,
        attempts: int | None = None,
        wait_s: float | None = None,
    ) -> DcvDesktop | None:
        """The head node's DCV session (`hpcrun dcv`), retried while it starts
        (`progress` hears of each try); None where the cluster has no desktop to offer."""
        ...

    def endpoint(self, host: str, port: int) -> str:
        """The URL of `port` on `host` as users on the cluster's network see it."""
        ...

    def site(self) -> ClusterSite: ...

    def default_workdir(self) -> str | None:
        """Where a job runs when the user names no directory: None for this one (local
        clusters see it), the login home on a remote cluster."""
        ...

    def shell_argv(self, command: Sequence[str] = ()) -> list[str]:
        """The argv of a shell (or `command`) on the head node, for `hpcrun ssh`."""
        ...

    def reach(self, host: str, port: int, local_port: int = 0) -> AbstractContextManager[int]:
        """A port on 127.0.0.1 that reaches `host:port` of the cluster while the context is
        open: the port itself here, an SSH tunnel through the head node on remote clusters
        (`local_port` 0 picks a free one)."""
        ...
