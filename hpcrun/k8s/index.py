"""`KubernetesIndexDriver`: IndeX sessions as NVIDIA's helm chart runs them on EKS.

A session is one release: the chart's objects (`hpcrun.k8s.manifests`) applied server-side
and labelled with the release name, which is the session's one "allocation" id. Growing
and shrinking change the worker Deployment's replicas in place (the viewer StatefulSet
stays), so to the service every scale is a resize of that one allocation. Readiness is
the pods' own (readiness probes): the viewer StatefulSet and the worker Deployment with
every replica Ready. A pod the scheduler cannot place (not enough `nvidia.com/gpu`), or
whose image cannot be pulled, fails the start or the scale with the scheduler's or the
kubelet's reason, and the session's events go to its log; nothing waits silently for a
timeout. The basic-auth password of a session's Ingress is made here, handed to the
caller in memory (`credentials`) and never written: the Secret holds only its hash.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.k8s.apply import Applier, Ref, pending_reason, rejection, session_labels
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

AUTH_USER = "nvindex"  # NVIDIA's chart's basic-auth user
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
    """One namespace's IndeX releases through one lightkube client."""

    def __init__(
        self,
        client: Client,
        namespace: str,
        pods: PodsOf,
        publishing: Publishing,
        *,
        ready_timeout_s: float = 300.0,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.pods = pods
        self.publishing = publishing
        self.ready_timeout_s = ready_timeout_s
        self._progress: Progress = NullProgress()
        self._wait_for_nodes = False
        self._logs: dict[str, Path] = {}
        self._credentials: dict[str, tuple[str, str]] = {}
        self._seen: dict[str, tuple[int, int, int, int]] = {}
        self._events_logged: set[str] = set()

    # what the service asks first ---------------------------------------------------

    def install(self, renderer: str) -> IndexInstall | None:
        """Kubernetes runs an image: there is nothing to look for on the nodes."""
        if renderer == "open":
            raise HpcrunError(
                "the open renderer has no container image for Kubernetes yet",
                "use NVIDIA's IndeX image (the cluster file's index.image, the default), or "
                "the open renderer on a Slurm cluster (`hpcrun create` makes a local one)",
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

    def check_capacity(self, nodes: int, *, wait: bool, progress: Progress) -> None:
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
        htpasswd = None
        if self.publishing.host is not None and self.publishing.basic_auth:
            from hpcrun.k8s.auth import htpasswd as hash_line
            from hpcrun.k8s.auth import new_password

            password = new_password()
            self._credentials[name] = (AUTH_USER, password)
            htpasswd = hash_line(AUTH_USER, password)
        release = IndexRelease(
            name=name,
            namespace=self.namespace,
            session=name,
            nodes=plan.nodes,
            gpus_per_node=plan.gpus_per_node or self.whole_node_gpus(),
            image=self.pods.image,
            scene_files=scene_files(plan.scene_prj),
            pull_secret=self.pods.pull_secret,
            service_account=self.pods.service_account,
            data_location=self.pods.data_location,
            htpasswd=htpasswd,
            ingress_host=self.publishing.host,
            tls_secret=self.publishing.tls_secret,
        )
        progress.step(
            f"applying release {name}: a viewer and {release.workers} worker(s), "
            f"{release.gpus_per_node} {GPU_RESOURCE} each"
        )
        applied = self._applier().apply(index_objects(release))
        self._log(name, "applied " + ", ".join(str(r) for r in applied))
        return name

    def credentials(self, job_id: str) -> tuple[str, str] | None:
        """The basic-auth login made at start, held in memory only (shown once)."""
        return self._credentials.get(job_id)

    def viewer_address(self, job_id: str, log_text: str) -> tuple[str, int] | None:
        counts = self._counts(job_id)
        if counts is None or counts[0] < counts[1] or counts[2] < counts[3]:
            return None
        return f"{job_id}-viewer.{self.namespace}.svc", VIEWER_HTTP_PORT

    def public_url(self, job_id: str, host: str, port: int) -> str:
        """Through the ingress, `https://HOST/<release>` as NVIDIA's chart publishes it;
        without one, the viewer Service's address inside the cluster."""
        if self.publishing.host is not None:
            scheme = "https" if self.publishing.tls_secret else "http"
            return f"{scheme}://{self.publishing.host}/{job_id}"
        return f"http://{host}:{port}"

    def failure(self, job_id: str, log_text: str) -> str | None:
        """Why the session's pods will not become Ready without the user: gone objects,
        pods the scheduler cannot place (unless waiting for nodes), images not pulled."""
        if self._counts(job_id) is None:
            return f"the viewer StatefulSet {job_id}-viewer is gone"
        return self._stuck(job_id)

    def _stuck(self, job_id: str) -> str | None:
        reason = self._pull_failure(job_id)
        if reason is None and not self._wait_for_nodes:
            reason = pending_reason(self.client, self.namespace, job_id) or None
        if reason is not None:
            self._log_events(job_id)
        return reason

    def _pull_failure(self, job_id: str) -> str | None:
        from lightkube.resources.core_v1 import Pod

        for pod in self.client.list(Pod, namespace=self.namespace, labels=session_labels(job_id)):
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
            counts = self._counts(job_id)
            if counts is None:
                continue
            viewer_ready, viewer_want, workers_ready, workers_want = counts
            nodes = self._pod_nodes(job_id)
            ready = viewer_ready + workers_ready
            found[job_id] = Allocation(
                id=job_id,
                native=f"{ready}/{viewer_want + workers_want} pods ready",
                ended=False,
                nodes=viewer_want + workers_want,
                nodelist=",".join(nodes),
                workloads=(
                    {
                        "kind": "StatefulSet",
                        "name": f"{job_id}-viewer",
                        "ready": viewer_ready,
                        "desired": viewer_want,
                    },
                    {
                        "kind": "Deployment",
                        "name": f"{job_id}-worker",
                        "ready": workers_ready,
                        "desired": workers_want,
                    },
                ),
                pods_ready=ready,
            )
        return found

    def hosts(self, allocation: Allocation) -> list[str]:
        return [h for h in allocation.nodelist.split(",") if h]

    def _pod_nodes(self, job_id: str) -> list[str]:
        """The nodes the session's pods run on, the viewer's first."""
        from lightkube.resources.core_v1 import Pod

        pods = list(self.client.list(Pod, namespace=self.namespace, labels=session_labels(job_id)))

        def order(pod: Any) -> tuple[int, str]:
            component = (pod.metadata.labels or {}).get("app.kubernetes.io/component", "")
            return (0 if component == "viewer" else 1, pod.metadata.name or "")

        nodes = []
        for pod in sorted(pods, key=order):
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
        """More worker replicas, Ready; on failure the replicas go back as they were."""
        before = self._worker_replicas(first)
        self._progress, self._wait_for_nodes = progress, wait
        self._logs.setdefault(first, Path(log))
        progress.step(f"{first}: worker replicas {before} -> {before + count}")
        self._set_workers(first, before + count)
        try:
            self._wait_workers(first)
        except BaseException:
            self._set_workers(first, before)
            raise
        return Grown(job_id=first, merged=True, initial_nodes=1 + before + count)

    def shrink(
        self,
        jobs: Sequence[SessionJob],
        count: int,
        *,
        progress: Progress,
        on_step: Callable[[ShrinkStep], None],
    ) -> None:
        first = next(j for j in jobs if j.initial)
        before = self._worker_replicas(first.job_id)
        if count > before:
            raise UsageError(
                f"the session has {1 + before} pods (the viewer and {before} workers); "
                f"it cannot give back {count}",
                "`hpcrun index stop` ends the whole session",
            )
        progress.step(f"{first.job_id}: worker replicas {before} -> {before - count}")
        self._set_workers(first.job_id, before - count)
        self._wait_workers(first.job_id)
        on_step(ShrinkStep(first.job_id, 1 + before - count))

    def restart_agents(
        self, plan: IndexPlan, job_id: str, first: str, hosts: Sequence[str], log: str
    ) -> None:
        """Delete the worker pods on `hosts`: their Deployment starts new ones."""
        from lightkube.resources.core_v1 import Pod

        labels = {**session_labels(job_id), "app.kubernetes.io/component": "worker"}
        for pod in self.client.list(Pod, namespace=self.namespace, labels=labels):
            if pod.spec and pod.spec.nodeName in hosts and pod.metadata and pod.metadata.name:
                self.client.delete(Pod, pod.metadata.name, namespace=self.namespace)

    # stop ----------------------------------------------------------------------------

    def cancel(self, ids: Sequence[str]) -> None:
        self.stop(ids, timeout_s=60.0)

    def stop(self, ids: Sequence[str], *, timeout_s: float) -> None:
        for job_id in ids:
            self._applier().delete_session(self.namespace, job_id, timeout_s=timeout_s)
            self._credentials.pop(job_id, None)

    # helpers -------------------------------------------------------------------------

    def _applier(self) -> Applier:
        return Applier(self.client, progress=self._progress.step)

    def _counts(self, job_id: str) -> tuple[int, int, int, int] | None:
        """(viewer ready, wanted, workers ready, wanted); None once the viewer is gone.
        Progress hears each change."""
        from lightkube import ApiError

        applier = self._applier()
        try:
            viewer = applier.ready(
                Ref("apps/v1", "StatefulSet", f"{job_id}-viewer", self.namespace)
            )
            workers = applier.ready(
                Ref("apps/v1", "Deployment", f"{job_id}-worker", self.namespace)
            )
        except ApiError as exc:
            if getattr(getattr(exc, "status", None), "code", None) == 404:
                return None
            raise
        counts = (*viewer, *workers)
        if self._seen.get(job_id) != counts:
            self._seen[job_id] = counts
            ready, wanted = viewer[0] + workers[0], viewer[1] + workers[1]
            self._progress.advance(ready, wanted, f"{ready} of {wanted} IndeX pods Ready")
        return counts

    def _worker_replicas(self, job_id: str) -> int:
        from lightkube.resources.apps_v1 import Deployment

        deployment = self.client.get(Deployment, f"{job_id}-worker", namespace=self.namespace)
        return int(deployment.spec.replicas or 0) if deployment.spec else 0

    def _set_workers(self, job_id: str, replicas: int) -> None:
        """The Deployment's scale subresource, as `kubectl scale` changes it: a partial
        server-side apply would drop every field of hpcrun's manager it leaves out."""
        from lightkube import ApiError
        from lightkube.resources.apps_v1 import Deployment
        from lightkube.types import PatchType

        name = f"{job_id}-worker"
        try:
            self.client.patch(
                Deployment.Scale,
                name,
                {"spec": {"replicas": replicas}},
                namespace=self.namespace,
                patch_type=PatchType.MERGE,
            )
        except ApiError as exc:
            raise rejection(Ref("apps/v1", "Deployment", name, self.namespace), exc) from None

    def _wait_workers(self, job_id: str) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            counts = self._counts(job_id)
            if counts is None:
                raise HpcrunError(f"the session's viewer StatefulSet {job_id}-viewer is gone")
            if counts[2] == counts[3]:
                return
            stuck = self._stuck(job_id)
            if stuck is not None:
                raise HpcrunError(
                    f"{counts[2]} of {counts[3]} workers Ready: {stuck}",
                    _stuck_hint(stuck, self._logs.get(job_id)),
                )
            if time.monotonic() > deadline:
                raise HpcrunError(
                    f"{counts[2]} of {counts[3]} workers Ready within {self.ready_timeout_s:g} s",
                    "see `kubectl get pods -l hpcrun.io/session=" + job_id + "`",
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
        from lightkube.resources.core_v1 import Event, Pod

        pods = {
            p.metadata.name
            for p in self.client.list(Pod, namespace=self.namespace, labels=session_labels(job_id))
            if p.metadata and p.metadata.name
        }
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
