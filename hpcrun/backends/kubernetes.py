"""A Kubernetes cluster hpcrun did not make, through a kubeconfig context: `backend:
kubernetes` (an EKS cluster made by someone else, a lab cluster, the test control plane).

"Creating" it checks access (the API answers, hpcrun may manage objects in its
namespace) and records what it found; `down` detaches: it ends the IndeX sessions hpcrun
recorded there (as `index stop` does) and leaves the cluster running. Work reaches the
cluster through `hpcrun.k8s` only: IndeX sessions as NVIDIA's chart makes them
(`KubernetesIndexDriver`). The session files hpcrun keeps (a session's events) live on
this machine, in the cluster's directory under HPCRUN_HOME; the cluster sees none of
them. The EKS backend (`hpcrun.backends.eks`) adds the AWS lifecycle around this one.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from hpcrun.backends import backend_entry, previous_record, refusal
from hpcrun.backends.base import ClusterSite, ClusterStatus, Feature, Progress
from hpcrun.errors import HpcrunError
from hpcrun.scheduler import Scheduler, Workspace
from hpcrun.scheduler.index import IndexDriver
from hpcrun.slurm import SlurmClient
from hpcrun.state import ClusterRecord, ClusterState, StateStore
from hpcrun.transport.runner import LocalRunner
from hpcrun.transport.workspace import RunnerWorkspace

if TYPE_CHECKING:
    from lightkube import Client

    from hpcrun.backends.dcv import DcvDesktop
    from hpcrun.k8s.flare import KubernetesFlareDriver
    from hpcrun.k8s.index import Publishing
    from hpcrun.k8s.serve import KubernetesServeDriver


class KubernetesBackend:
    name = "kubernetes"
    unsupported: frozenset[Feature]  # declared in the registry (hpcrun.backends)

    def __init__(self, config: dict[str, Any], store: StateStore) -> None:
        self.config = dict(config)
        self.unsupported = backend_entry(self.name).unsupported(self.config)
        self.store = store
        self.cluster_name: str = self.config["name"]

    @classmethod
    def from_record(cls, record: ClusterRecord, store: StateStore) -> KubernetesBackend:
        return cls(record.config, store)

    # how the cluster is reached ------------------------------------------------------

    @property
    def kubeconfig(self) -> str:
        return os.path.expanduser(str(self.config.get("kubeconfig") or "~/.kube/config"))

    @property
    def context(self) -> str | None:
        return self.config.get("context")

    @property
    def namespace(self) -> str:
        return str(self.config.get("namespace") or "default")

    @functools.cached_property
    def client(self) -> Client:
        from hpcrun.k8s.apply import connect

        return connect(self.kubeconfig, self.context)

    def publishing(self) -> Publishing:
        from hpcrun.k8s.index import Publishing

        ingress = self.config.get("ingress") or {}
        if not ingress.get("host"):
            return Publishing()
        return Publishing(
            host=ingress["host"],
            tls_secret=ingress.get("tls_secret"),
            basic_auth=bool(ingress.get("basic_auth", True)),
        )

    # what services use ---------------------------------------------------------------

    def slurm(self) -> SlurmClient:
        raise refusal(self.cluster_name, self.name, Feature.SLURM, "this command")

    def scheduler(self) -> Scheduler:
        raise refusal(self.cluster_name, self.name, Feature.SLURM, "render and score job arrays")

    def workspace(self) -> Workspace:
        return RunnerWorkspace(LocalRunner(), self.site().workspace)

    def site(self) -> ClusterSite:
        return ClusterSite(
            workspace=str(self.store.home / "kubernetes" / self.cluster_name),
            launcher=None,
            scenes_dir=None,
            shares_local_files=False,
        )

    def index_driver(self) -> IndexDriver:
        from hpcrun.config.eks.model import NVINDEX_IMAGE, OPEN_RENDERER_IMAGE
        from hpcrun.k8s.helm import Helm
        from hpcrun.k8s.index import KubernetesIndexDriver, PodsOf

        index = self.config.get("index") or {}
        pods = PodsOf(
            image=str(index.get("image") or NVINDEX_IMAGE),
            pull_secret=index.get("pull_secret"),
            service_account=index.get("service_account"),
            data_location=index.get("data_location"),
            open_image=str(index.get("open_image") or OPEN_RENDERER_IMAGE),
        )
        return KubernetesIndexDriver(
            self.client,
            self.namespace,
            pods,
            self.publishing(),
            helm=Helm(self.kubeconfig, self.context, self.namespace),
        )

    def flare_driver(self) -> KubernetesFlareDriver:
        """FLARE systems on this cluster, each in its own namespace (`hpcrun-flare-<id>`)."""
        from hpcrun.k8s.flare import KubernetesFlareDriver

        return KubernetesFlareDriver(self.client)

    def serve_driver(self) -> KubernetesServeDriver:
        """Served models (`hpcrun serve`) in the cluster's namespace."""
        from hpcrun.k8s.serve import KubernetesServeDriver

        return KubernetesServeDriver(self.client, self.namespace)

    def endpoint(self, host: str, port: int) -> str:
        return f"http://{host}:{port}"  # a Service's address inside the cluster

    def default_workdir(self) -> str | None:
        return None

    def desktop(
        self,
        progress: Callable[[str], None] | None = None,
        *,
        attempts: int | None = None,
        wait_s: float | None = None,
    ) -> DcvDesktop | None:
        raise refusal(self.cluster_name, self.name, Feature.DESKTOP, "hpcrun dcv")

    def shell_argv(self, command: Sequence[str] = ()) -> list[str]:
        raise refusal(self.cluster_name, self.name, Feature.SHELL, "hpcrun ssh")

    @contextlib.contextmanager
    def reach(self, host: str, port: int, local_port: int = 0) -> Iterator[int]:
        """`kubectl port-forward` of the Service `host` names (`<svc>.<ns>.svc`)."""
        from hpcrun.k8s.portforward import port_forward

        service, _, rest = host.partition(".")
        namespace = rest.partition(".")[0] or self.namespace
        with port_forward(
            self.kubeconfig, self.context, namespace, f"svc/{service}", port, local_port
        ) as bound:
            yield bound

    # attach / status / detach --------------------------------------------------------

    def create(self, progress: Progress) -> bool:
        """Check access and record it; False when the same cluster was already attached."""
        previous = previous_record(self.store, self.cluster_name, self.name)
        found = self.check_access(progress)
        resolved = {**self.config, "kubeconfig": self.kubeconfig, "server": found["server"]}
        unchanged = previous is not None and previous.config == resolved and previous.status == "up"
        self.config = resolved
        self.store.put_cluster(self.cluster_name, self.name, resolved, ClusterState.UP)
        return not unchanged

    def check_access(self, progress: Progress) -> dict[str, Any]:
        from hpcrun.k8s.cluster import check_access

        progress.step(f"connecting to the Kubernetes API ({self.kubeconfig})")
        found = check_access(self.client, self.namespace, kubeconfig=self.kubeconfig)
        progress.step(
            f"{found['nodes']} nodes, {found['gpus']} GPUs ({found['server']}, namespace "
            f"{self.namespace})"
        )
        return found

    def status(self) -> ClusterStatus:
        record = self.store.cluster(self.cluster_name)
        state = record.status if record else "detached"
        detail = f"{self.config.get('server', '')} namespace {self.namespace}".strip()
        return self.with_nodes(state, detail)

    def with_nodes(
        self,
        state: str,
        detail: str,
        node_groups: Sequence[dict[str, Any]] = (),
        *,
        api_decides: bool = True,
    ) -> ClusterStatus:
        """The status with the cluster's nodes when it is up. An API that does not answer
        makes it unreachable (`api_decides`), or is only said in the detail where the
        cloud's own answer decides the state (EKS)."""
        nodes: list[dict[str, Any]] = []
        if state == "up":
            from hpcrun.k8s.cluster import node_views

            try:
                nodes = node_views(self.client)
            except HpcrunError as exc:
                if api_decides:
                    state, detail = "unreachable", exc.message
                else:
                    detail = f"{detail}; {exc.message}"
        return ClusterStatus(
            name=self.cluster_name,
            backend=self.name,
            state=state,
            detail=detail,
            kube_nodes=nodes,
            node_groups=list(node_groups),
            slurm=False,
        )

    def destroy(self, progress: Progress, *, purge: bool = False) -> None:
        """Detach: remove hpcrun's own objects (its IndeX sessions); the cluster stays."""
        self.remove_own_objects(progress)
        self.store.end_index_sessions(self.cluster_name, "hpcrun detached from the cluster")
        progress.step("the cluster keeps running: hpcrun did not create it")
        if purge:
            self.store.delete_cluster(self.cluster_name)
        else:
            self.store.set_cluster_status(self.cluster_name, ClusterState.DETACHED)

    def remove_own_objects(self, progress: Progress) -> None:
        """End hpcrun's IndeX sessions here as `index stop` does (helm uninstall of a
        chart's release, delete-and-wait of hpcrun's own objects)."""
        sessions = self.store.index_sessions(self.cluster_name, active_only=True)
        releases = [j.slurm_job_id for s in sessions for j in s.live_jobs if j.slurm_job_id]
        if not releases:
            return
        progress.step(f"removing hpcrun's IndeX sessions {', '.join(releases)}")
        driver = self.index_driver()
        for release in releases:
            with contextlib.suppress(HpcrunError):
                driver.stop([release], timeout_s=120.0)
