"""`KubernetesIndexDriver`: IndeX sessions as NVIDIA's helm chart runs them on EKS.

A session is one release: the chart's objects (`hpcrun.k8s.manifests`) applied server-side,
or with `--chart DIR` a helm release of a chart to NVIDIA's values contract
(`hpcrun.k8s.helm`). Either way its objects carry `app.kubernetes.io/instance: <release>`
(helm's convention, which NVIDIA's chart and hpcrun's objects follow), and that label is
how the driver finds the release's workloads, pods and Ingress; the release name is the
session's one "allocation" id. Growing and shrinking change the number of workers in
place (the worker Deployment's scale, or `nodeCount` through helm), so to the service
every scale is a resize of that one allocation. Readiness is the pods' own (readiness
probes): every workload of the release with all its replicas Ready. A pod the scheduler
cannot place (not enough `nvidia.com/gpu`), or whose image cannot be pulled, fails the
start or the scale with the scheduler's or the kubelet's reason, and the pods' events go
to the session's log; nothing waits silently for a timeout. The basic-auth password of a
session's Ingress is made here, handed to the caller in memory (`credentials`) and never
written by hpcrun: the Secret holds only its hash.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.k8s.apply import Applier, Ref, pending_reason, readiness, rejection
from hpcrun.k8s.cluster import node_gpus
from hpcrun.k8s.manifests import GPU_RESOURCE, VIEWER_HTTP_PORT, IndexRelease, index_objects
from hpcrun.scheduler import NullProgress, Progress
from hpcrun.scheduler.index import (
    Allocation,
    Grown,
    IndexInstall,
    IndexPlan,
    SessionJob,
    ShrinkStep,
)

if TYPE_CHECKING:
    from lightkube import Client

    from hpcrun.k8s.helm import Helm

AUTH_USER = "nvindex"  # NVIDIA's chart's basic-auth user
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
# A ConfigMap holds at most 1 MiB; a scene's .prj and its small files (colour maps,
# shader snippets) are far below; its volume data comes from `data_location`.
SCENE_FILES_MAX_BYTES = 900_000
# Image pull failures the kubelet reports while it keeps retrying: never fixed by waiting.
PULL_FAILURES = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})


@dataclass(frozen=True)
class Publishing:
    """Where sessions are reachable: an ingress-nginx host (TLS secret, basic auth), or
    none (the viewer Service inside the cluster, reached by `hpcrun index tunnel`)."""

    host: str | None = None
    tls_secret: str | None = None
    basic_auth: bool = True


@dataclass(frozen=True)
class PodsOf:
    """The IndeX image settings of a cluster file (`index:`)."""

    image: str
    pull_secret: str | None = None
    service_account: str | None = None
    data_location: str | None = None
    open_image: str = ""  # the open renderer's image (--renderer open)


@dataclass(frozen=True)
class Workload:
    """A StatefulSet or Deployment of a release, with its Ready and wanted replicas."""

    kind: str
    name: str
    component: str
    ready: int
    desired: int
    by_helm: bool = False  # made by a helm release (`--chart`), not by hpcrun's apply

    @property
    def is_viewer(self) -> bool:
        return self.component == "viewer" or (not self.component and self.kind == "StatefulSet")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "ready": self.ready, "desired": self.desired}


def totals(workloads: Sequence[Workload]) -> tuple[int, int]:
    """(Ready, wanted) pods of a release: its viewer and workers together."""
    return sum(w.ready for w in workloads), sum(w.desired for w in workloads)


def scene_files(prj: str) -> dict[str, str]:
    """The scene's directory as ConfigMap data: the .prj as `scene.prj`, and the small text
    files beside it (colour maps, shaders) under their own names."""
    path = Path(prj)
    if not path.is_file():
        raise HpcrunError(
            f"scene file {prj} does not exist on this machine",
            "on Kubernetes the scene goes into a ConfigMap from here: pass a scene name "
            "(`hpcrun scenes`) or a local .prj path",
        )
    files = {"scene.prj": path.read_text()}
    for other in sorted(path.parent.iterdir()):
        if other == path or not other.is_file() or other.suffix == ".prj":
            continue
        try:
            files[other.name] = other.read_text()
        except UnicodeDecodeError:
            continue  # data belongs in data_location, not in a ConfigMap
    size = sum(len(text.encode()) for text in files.values())
    if size > SCENE_FILES_MAX_BYTES:
        raise HpcrunError(
            f"the scene's files in {path.parent} are {size:,} bytes; a ConfigMap holds "
            f"{SCENE_FILES_MAX_BYTES:,}",
            "put its data in S3 (index.data_location in the cluster file) and keep only the "
            ".prj and small files beside it",
        )
    return files


class KubernetesIndexDriver:
    """One namespace's IndeX releases through one lightkube client (and helm for charts)."""

    def __init__(
        self,
        client: Client,
        namespace: str,
        pods: PodsOf,
        publishing: Publishing,
        *,
        helm: Helm | None = None,
        ready_timeout_s: float = 300.0,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.pods = pods
        self.publishing = publishing
        self.helm = helm
        self.ready_timeout_s = ready_timeout_s
        self._progress: Progress = NullProgress()
        self._wait_for_nodes = False
        self._logs: dict[str, Path] = {}
        self._credentials: dict[str, tuple[str, str]] = {}
        self._seen: dict[str, tuple[int, int]] = {}
        self._events_logged: set[str] = set()

    # what the service asks first ---------------------------------------------------

    def install(self, renderer: str) -> IndexInstall | None:
        """Kubernetes runs an image: NVIDIA's IndeX (auto, nvindex), or the open renderer's
        (`make open-renderer-image`), whose launcher learns its role from the pod."""
        if renderer == "open":
            return IndexInstall(
                launcher="",
                workdir="",
                scenes_dir="",
                viewer_script="",
                open_renderer=True,
                image=self.pods.open_image,
            )
        return IndexInstall(
            launcher="", workdir="", scenes_dir="", viewer_script="", image=self.pods.image
        )

    def validate(self, plan: IndexPlan) -> None:
        if plan.time_limit is not None:
            raise UsageError(
                "--time is a Slurm time limit; a Kubernetes session runs until `hpcrun index stop`",
                "leave --time out on this cluster",
            )
        if plan.partition is not None:
            raise UsageError("--partition is Slurm's; node groups are chosen by GPU requests")
        chart = plan.install.chart
        if chart is not None and plan.install.open_renderer:
            raise UsageError(
                "--chart installs NVIDIA's IndeX chart; the open renderer is hpcrun's own objects",
                "leave out --chart or --renderer open",
            )
        if chart is not None:
            from hpcrun.k8s.helm import helm_binary, scene_in_chart

            if not (Path(chart) / "Chart.yaml").is_file():
                raise UsageError(
                    f"--chart {chart}: not a helm chart (no Chart.yaml there)",
                    "give the chart's directory, e.g. charts/nvindex of NVIDIA/nvindex-cloud",
                )
            helm_binary()
            scene_in_chart(chart, plan.scene_prj)

    def check_capacity(
        self, nodes: int, *, wait: bool, progress: Progress, partition: str | None = None
    ) -> None:
        """At least one node must offer GPUs at all; whether enough are free is the
        scheduler's call (a node group may grow), answered by the pods' reasons."""
        from lightkube.resources.core_v1 import Node

        if not any(node_gpus(n) for n in self.client.list(Node)):
            raise HpcrunError(
                f"no node of the cluster offers {GPU_RESOURCE}",
                "add a GPU node group (and NVIDIA's device plugin, which EKS GPU AMIs run)",
            )

    def whole_node_gpus(self) -> int:
        """What `salloc --exclusive` means here: every GPU of the largest GPU node."""
        from lightkube.resources.core_v1 import Node

        return max((node_gpus(n) for n in self.client.list(Node)), default=0)

    # start ---------------------------------------------------------------------------

    def start(
        self,
        plan: IndexPlan,
        log: str,
        *,
        wait: bool,
        progress: Progress,
        on_allocated: Callable[[str], None],
    ) -> str:
        name = f"index-{plan.session or '0'}-{secrets.token_hex(2)}"
        self._progress, self._wait_for_nodes = progress, wait
        self._logs[name] = Path(log)
        on_allocated(name)  # before anything exists: a crash still names what to remove
        login = None
        if self.publishing.host is not None and self.publishing.basic_auth:
            from hpcrun.k8s.auth import new_password

            login = (AUTH_USER, new_password())
            self._credentials[name] = login
        gpus = plan.gpus_per_node or self.whole_node_gpus()
        progress.step(
            f"{'installing' if plan.install.chart else 'applying'} release {name}: a viewer "
            f"and {plan.nodes - 1} worker(s), {gpus} {GPU_RESOURCE} each"
        )
        if plan.install.chart is not None:
            self._install_chart(name, plan, gpus, login)
        else:
            self._apply_objects(name, plan, gpus, login)
        return name

    def _apply_objects(
        self, name: str, plan: IndexPlan, gpus: int, login: tuple[str, str] | None
    ) -> None:
        from hpcrun.k8s.auth import htpasswd

        release = IndexRelease(
            name=name,
            namespace=self.namespace,
            session=name,
            nodes=plan.nodes,
            gpus_per_node=gpus,
            image=plan.install.image or self.pods.image,
            scene_files=scene_files(plan.scene_prj),
            pull_secret=self.pods.pull_secret,
            service_account=self.pods.service_account,
            data_location=self.pods.data_location,
            htpasswd=htpasswd(*login) if login else None,
            ingress_host=self.publishing.host,
            tls_secret=self.publishing.tls_secret,
            service_port=plan.port,
            renderer="open" if plan.install.open_renderer else "nvindex",
            agent_token=secrets.token_urlsafe(32) if plan.install.open_renderer else None,
        )
        applied = self._applier().apply(index_objects(release))
        self._log(name, "applied " + ", ".join(str(r) for r in applied))

    def _install_chart(
        self, name: str, plan: IndexPlan, gpus: int, login: tuple[str, str] | None
    ) -> None:
        from hpcrun.k8s.helm import chart_values, scene_in_chart

        chart = plan.install.chart
        assert chart is not None
        values = chart_values(
            nodes=plan.nodes,
            gpus_per_node=gpus,
            scene=scene_in_chart(chart, plan.scene_prj),
            ingress_host=self.publishing.host,
            tls_secret=self.publishing.tls_secret,
            login=login,
            data_location=self.pods.data_location,
        )
        self._helm().install(name, chart, values)
        self._log(name, f"helm upgrade --install {name} {chart} (values on stdin)")

    def credentials(self, job_id: str) -> tuple[str, str] | None:
        """The basic-auth login made at start, held in memory only (shown once)."""
        return self._credentials.get(job_id)

    def viewer_address(self, job_id: str, log_text: str) -> tuple[str, int] | None:
        workloads = self._workloads(job_id)
        ready, wanted = totals(workloads)
        if not workloads or ready < wanted:
            return None
        return self._viewer_service(job_id)

    def public_url(self, job_id: str, host: str, port: int) -> str:
        """Through the release's Ingress (`https://HOST/<path>`, as NVIDIA's chart
        publishes it); without one, the viewer Service's address inside the cluster."""
        from lightkube.resources.networking_v1 import Ingress

        for found in self.client.list(
            Ingress, namespace=self.namespace, labels={INSTANCE_LABEL: job_id}
        ):
            spec = found.spec
            rules = (spec.rules if spec else None) or []
            if not rules or not rules[0].host or not rules[0].http:
                continue
            path = rules[0].http.paths[0].path or "/"
            scheme = "https" if spec is not None and spec.tls else "http"
            return f"{scheme}://{rules[0].host}{path}"
        return f"http://{host}:{port}"

    def _viewer_service(self, job_id: str) -> tuple[str, int]:
        """The viewer's Service with an address (not the headless discovery one)."""
        from lightkube.resources.core_v1 import Service

        for service in self.client.list(
            Service, namespace=self.namespace, labels={INSTANCE_LABEL: job_id}
        ):
            spec, meta = service.spec, service.metadata
            if spec is None or meta is None or spec.clusterIP == "None" or not spec.ports:
                continue
            return f"{meta.name}.{self.namespace}.svc", int(spec.ports[0].port)
        return f"{job_id}-viewer.{self.namespace}.svc", VIEWER_HTTP_PORT

    def failure(self, job_id: str, log_text: str) -> str | None:
        """Why the session's pods will not become Ready without the user: gone objects,
        pods the scheduler cannot place (unless waiting for nodes), images not pulled."""
        if not self._workloads(job_id):
            return f"release {job_id} has no viewer or workers (they were removed)"
        return self._stuck(job_id)

    def _stuck(self, job_id: str) -> str | None:
        reason = self._pull_failure(job_id)
        if reason is None and not self._wait_for_nodes:
            reason = pending_reason(self.client, self.namespace, {INSTANCE_LABEL: job_id}) or None
        if reason is not None:
            self._log_events(job_id)
            # A `hint:` line leads the hint of the start's failure, as the launcher's do.
            self._log(job_id, "hint: " + _stuck_hint(reason, None))
        return reason

    def _pods(self, job_id: str, **labels: str) -> list[Any]:
        from lightkube.resources.core_v1 import Pod

        selector: dict[str, Any] = {INSTANCE_LABEL: job_id, **labels}
        return list(self.client.list(Pod, namespace=self.namespace, labels=selector))

    def _pull_failure(self, job_id: str) -> str | None:
        for pod in self._pods(job_id):
            for status in (pod.status.containerStatuses if pod.status else None) or []:
                waiting = status.state.waiting if status.state else None
                if waiting is not None and waiting.reason in PULL_FAILURES:
                    name = pod.metadata.name if pod.metadata else "?"
                    return f"pod {name}: {waiting.reason}: {waiting.message or self.pods.image}"
        return None

    # status --------------------------------------------------------------------------

    def allocations(self, ids: Sequence[str]) -> dict[str, Allocation]:
        found = {}
        for job_id in ids:
            workloads = self._workloads(job_id)
            if not workloads:
                continue
            ready, wanted = totals(workloads)
            found[job_id] = Allocation(
                id=job_id,
                native=f"{ready}/{wanted} pods ready",
                ended=False,
                nodes=wanted,
                nodelist=",".join(self._pod_nodes(job_id)),
                workloads=tuple(w.to_json() for w in workloads),
                pods_ready=ready,
            )
        return found

    def hosts(self, allocation: Allocation) -> list[str]:
        return [h for h in allocation.nodelist.split(",") if h]

    def _pod_nodes(self, job_id: str) -> list[str]:
        """The nodes the session's pods run on, the viewer's first."""

        def order(pod: Any) -> tuple[int, str]:
            component = (pod.metadata.labels or {}).get(COMPONENT_LABEL, "")
            return (0 if component == "viewer" else 1, pod.metadata.name or "")

        nodes = []
        for pod in sorted(self._pods(job_id), key=order):
            node = pod.spec.nodeName if pod.spec else None
            if node and node not in nodes:
                nodes.append(node)
        return nodes

    # grow, shrink --------------------------------------------------------------------

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
        """More workers, Ready; on failure the session goes back to its size before."""
        nodes = self._nodes(first)
        self._progress, self._wait_for_nodes = progress, wait
        self._logs.setdefault(first, Path(log))
        progress.step(f"{first}: {nodes} -> {nodes + count} pods (the viewer and workers)")
        self._set_nodes(first, plan, nodes + count)
        try:
            self._wait_ready(first)
        except BaseException:
            self._set_nodes(first, plan, nodes)
            raise
        return Grown(job_id=first, merged=True, initial_nodes=nodes + count)

    def shrink(
        self,
        plan: IndexPlan,
        jobs: Sequence[SessionJob],
        count: int,
        *,
        progress: Progress,
        on_step: Callable[[ShrinkStep], None],
    ) -> None:
        first = next(j for j in jobs if j.initial)
        nodes = self._nodes(first.job_id)
        if count >= nodes:
            raise UsageError(
                f"the session has {nodes} pods (the viewer and {nodes - 1} workers); it "
                f"cannot give back {count}",
                "`hpcrun index stop` ends the whole session",
            )
        progress.step(f"{first.job_id}: {nodes} -> {nodes - count} pods (the viewer and workers)")
        self._set_nodes(first.job_id, plan, nodes - count)
        self._wait_ready(first.job_id)
        on_step(ShrinkStep(first.job_id, nodes - count))

    def restart_agents(
        self, plan: IndexPlan, job_id: str, first: str, hosts: Sequence[str], log: str
    ) -> None:
        """Delete the worker pods on `hosts`: their Deployment starts new ones."""
        from lightkube.resources.core_v1 import Pod

        for pod in self._pods(job_id, **{COMPONENT_LABEL: "worker"}):
            if pod.spec and pod.spec.nodeName in hosts and pod.metadata and pod.metadata.name:
                self.client.delete(Pod, pod.metadata.name, namespace=self.namespace)

    # stop ----------------------------------------------------------------------------

    def cancel(self, ids: Sequence[str]) -> None:
        self.stop(ids, timeout_s=60.0)

    def stop(self, ids: Sequence[str], *, timeout_s: float) -> None:
        """`helm uninstall --wait` of a chart's release; delete-and-wait of hpcrun's own."""
        for job_id in ids:
            if self._is_helm_release(job_id):
                self._helm().uninstall(job_id, timeout_s=timeout_s)
            self._applier().delete_session(self.namespace, job_id, timeout_s=timeout_s)
            self._credentials.pop(job_id, None)

    # helpers -------------------------------------------------------------------------

    def _applier(self) -> Applier:
        return Applier(self.client, progress=self._progress.step)

    def _helm(self) -> Helm:
        if self.helm is None:
            raise HpcrunError("this cluster's backend gives no helm to install charts with")
        return self.helm

    def _workloads(self, job_id: str) -> list[Workload]:
        """The release's StatefulSets and Deployments, the viewer first; progress hears
        each change of the Ready count."""
        from lightkube.resources.apps_v1 import Deployment, StatefulSet

        found = []
        kinds: tuple[tuple[Any, str], ...] = (
            (StatefulSet, "StatefulSet"),
            (Deployment, "Deployment"),
        )
        for resource, kind in kinds:
            for item in self.client.list(
                resource, namespace=self.namespace, labels={INSTANCE_LABEL: job_id}
            ):
                meta = item.metadata
                assert meta is not None and meta.name is not None
                ready, desired = readiness(kind, item)  # the listed object: no second GET
                item_labels = meta.labels or {}
                found.append(
                    Workload(
                        kind,
                        meta.name,
                        item_labels.get(COMPONENT_LABEL, ""),
                        ready,
                        desired,
                        by_helm=item_labels.get("app.kubernetes.io/managed-by") == "Helm",
                    )
                )
        found.sort(key=lambda w: not w.is_viewer)
        if found:
            counts = totals(found)
            if self._seen.get(job_id) != counts:
                self._seen[job_id] = counts
                self._progress.advance(*counts, f"{counts[0]} of {counts[1]} IndeX pods Ready")
        return found

    def _nodes(self, job_id: str) -> int:
        """The pods the release wants: the viewer and its workers, one a node."""
        workloads = self._workloads(job_id)
        if not workloads:
            raise HpcrunError(f"release {job_id} has no viewer or workers any more")
        return totals(workloads)[1]

    def _is_helm_release(self, job_id: str) -> bool:
        return any(w.by_helm for w in self._workloads(job_id))

    def _set_nodes(self, job_id: str, plan: IndexPlan, nodes: int) -> None:
        """`helm upgrade --reuse-values --set nodeCount=N` of a chart's release; the
        worker Deployment's scale subresource of hpcrun's own, as `kubectl scale` changes
        it (a partial server-side apply would drop every field it leaves out)."""
        if plan.install.chart is not None:
            self._helm().set_nodes(job_id, plan.install.chart, nodes)
            return
        from lightkube import ApiError
        from lightkube.resources.apps_v1 import Deployment
        from lightkube.types import PatchType

        workers = [w for w in self._workloads(job_id) if not w.is_viewer]
        if not workers:
            raise HpcrunError(f"release {job_id} has no worker Deployment to scale")
        name = workers[0].name
        try:
            self.client.patch(
                Deployment.Scale,
                name,
                {"spec": {"replicas": nodes - 1}},
                namespace=self.namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as exc:
            raise rejection(Ref("apps/v1", "Deployment", name, self.namespace), exc) from None

    def _wait_ready(self, job_id: str) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            workloads = self._workloads(job_id)
            if not workloads:
                raise HpcrunError(f"release {job_id} has no viewer or workers any more")
            ready, wanted = totals(workloads)
            if ready == wanted:
                return
            stuck = self._stuck(job_id)
            if stuck is not None:
                raise HpcrunError(
                    f"{ready} of {wanted} pods Ready: {stuck}",
                    _stuck_hint(stuck, self._logs.get(job_id)),
                )
            if time.monotonic() > deadline:
                raise HpcrunError(
                    f"{ready} of {wanted} pods Ready within {self.ready_timeout_s:g} s",
                    f"see `kubectl get pods -l {INSTANCE_LABEL}={job_id}`",
                )
            time.sleep(0.2)

    def _log(self, job_id: str, line: str) -> None:
        log = self._logs.get(job_id)
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as out:
                out.write(line.rstrip() + "\n")

    def _log_events(self, job_id: str) -> None:
        """The events of the session's pods, once each, to its log."""
        from lightkube.resources.core_v1 import Event

        pods = {p.metadata.name for p in self._pods(job_id) if p.metadata and p.metadata.name}
        for event in self.client.list(Event, namespace=self.namespace):
            involved = event.involvedObject
            uid = event.metadata.uid if event.metadata else None
            if involved.name not in pods or uid in self._events_logged:
                continue
            self._events_logged.add(uid or "")
            self._log(
                job_id, f"event {involved.kind} {involved.name}: {event.reason}: {event.message}"
            )


def _stuck_hint(reason: str, log: Path | None) -> str:
    where = f"; the pods' events are in {log}" if log else ""
    if "Insufficient" in reason or "Unschedulable" in reason:
        return (
            "ask for fewer nodes or GPUs (--gpus-per-node), or pass --wait where a node "
            "group grows on demand" + where
        )
    return "check the cluster file's index.image and index.pull_secret" + where
