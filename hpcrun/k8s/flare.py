"""An NVIDIA FLARE system on Kubernetes, as NVIDIA's guide to FLARE on EKS runs it: the
server a Deployment with its workspace on a PersistentVolumeClaim and a Service named as
the server (the kits' target, `server:8002`), each site a Deployment that reaches it by
that name, and optionally an admin pod to `kubectl exec` the admin console in.

Every system has its own namespace (`hpcrun-flare-<id>`), so two systems never claim the
same Service name; every object carries hpcrun's managed-by label and the session label
`flare-<id>`. The provisioned kits travel as Secrets, one a participant, each file of
`startup/` and `local/` one key (`startup.server.key`), mounted back at `/kit/startup/...`
and copied into the writable workspace when the container starts: FLARE writes beside its
kit, a Secret volume is read-only, and a ConfigMap would hold private keys in the clear.

`flare_objects` is pure (a golden file pins it); `KubernetesFlareDriver` applies the
objects (server-side apply through `Applier`), reads the participants' states with one
list call per kind, and deletes everything again, the namespace last.
"""

from __future__ import annotations

import base64
import re
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hpcrun.errors import HpcrunError
from hpcrun.k8s.apply import Applier, Ref, rejection, session_labels, status_code
from hpcrun.k8s.manifests import GPU_RESOURCE, MANAGED_BY, SESSION_LABEL
from hpcrun.scheduler import JobRef, NullProgress, Progress, TaskState, TaskStatus

if TYPE_CHECKING:
    from lightkube import Client

NAMESPACE_PREFIX = "hpcrun-flare"
NAME_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
PARTICIPANT_LABEL = "hpcrun.io/flare-participant"
KIT_DIR = "/kit"
WORKSPACE_DIR = "/workspace"
KIT_PARTS = ("startup", "local")  # what FLARE reads of a kit; transfer/ starts empty
WORKSPACE_SIZE = "5Gi"  # NVIDIA's guide's server workspace claim
SECRET_LIMIT_BYTES = 1024 * 1024  # the API server refuses a larger Secret
# Shell scripts keep their execute bit through the copy (fl_admin.sh, start.sh).
SCRIPT_MODE, FILE_MODE = 0o555, 0o444

_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+\Z")
_LABEL_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_SERVICE_RE = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z")


class FlareParticipants(Protocol):
    """Who a provisioned system holds (hpcrun.workloads.flare.Participants is one)."""

    @property
    def server(self) -> str: ...

    @property
    def org(self) -> str: ...

    @property
    def sites(self) -> Sequence[str]: ...

    @property
    def admin(self) -> str: ...

    @property
    def fl_port(self) -> int: ...

    @property
    def admin_port(self) -> int: ...


def session_of(system_id: int) -> str:
    """The value of the session label on every object of the system."""
    return f"flare-{system_id}"


def server_deployment_name(system_id: int) -> str:
    return f"flare-{system_id}-server"


def site_deployment_name(system_id: int, site: str) -> str:
    return f"flare-{system_id}-{dns_label(site)}"


def admin_deployment_name(system_id: int) -> str:
    return f"flare-{system_id}-admin"


def workspace_claim_name(system_id: int) -> str:
    return f"flare-{system_id}-server-workspace"


def kit_secret_name(system_id: int, participant: str) -> str:
    return f"flare-{system_id}-kit-{dns_label(participant)}"


def dns_label(name: str) -> str:
    """A participant's name as Kubernetes names and label values allow it
    (`admin@nvidia.com` -> `admin-nvidia-com`)."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not _LABEL_RE.match(label):
        raise HpcrunError(
            f"participant {name!r} has no name Kubernetes can use (at most 63 letters, "
            "digits and dashes)",
            "rename it in the project file and provision again",
        )
    return label


def kit_files(kit: Path) -> dict[str, tuple[str, bytes]]:
    """Secret key -> (path under the kit, bytes) of every file of startup/ and local/."""
    if not (kit / "startup").is_dir():
        raise HpcrunError(
            f"{kit} has no startup/ folder: it is no FLARE kit",
            "provision the system again (`nvflare provision`)",
        )
    found: dict[str, tuple[str, bytes]] = {}
    for part in KIT_PARTS:
        folder = kit / part
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(kit).as_posix()
            key = relative.replace("/", ".")
            if not _KEY_RE.match(key) or key in found:
                raise HpcrunError(
                    f"{kit / relative}: no Secret key can hold this file "
                    f"({key!r} is {'taken' if key in found else 'not [-._a-zA-Z0-9]+'})",
                    "a kit holds only the files FLARE's provisioner made; remove others",
                )
            found[key] = (relative, path.read_bytes())
    size = sum(len(data) for _, data in found.values())
    if size > SECRET_LIMIT_BYTES:
        raise HpcrunError(
            f"{kit}: {size} bytes of startup/ and local/ files, more than a Secret holds "
            f"({SECRET_LIMIT_BYTES})",
            "remove what FLARE's provisioner did not make from the kit",
        )
    return found


class _System:
    """What every object of one system shares: names, labels, the image."""

    def __init__(self, system_id: int, namespace: str, image: str) -> None:
        self.id = system_id
        self.namespace = namespace
        self.image = image
        self.session = session_of(system_id)

    def labels(self, component: str, participant: str) -> dict[str, str]:
        return {
            NAME_LABEL: "nvflare",
            "app.kubernetes.io/managed-by": MANAGED_BY,
            SESSION_LABEL: self.session,
            COMPONENT_LABEL: component,
            PARTICIPANT_LABEL: dns_label(participant),
        }

    def selector(self, component: str, participant: str) -> dict[str, str]:
        return {
            SESSION_LABEL: self.session,
            COMPONENT_LABEL: component,
            PARTICIPANT_LABEL: dns_label(participant),
        }

    def metadata(self, name: str, component: str, participant: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": self.labels(component, participant),
        }


def namespace_object(system_id: int, namespace: str) -> dict[str, Any]:
    """The system's own namespace, labelled as its objects are."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                SESSION_LABEL: session_of(system_id),
            },
        },
    }


def _kit_secret(
    system: _System, component: str, participant: str, files: Mapping[str, tuple[str, bytes]]
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": system.metadata(
            kit_secret_name(system.id, participant), component, participant
        ),
        "type": "Opaque",
        # `data`, base64: the files' exact bytes, whatever they hold.
        "data": {key: base64.b64encode(data).decode("ascii") for key, (_, data) in files.items()},
    }


def _kit_volume(
    system: _System, participant: str, files: Mapping[str, tuple[str, bytes]]
) -> dict[str, Any]:
    items = []
    for key, (relative, _) in files.items():
        item: dict[str, Any] = {"key": key, "path": relative}
        if relative.endswith(".sh"):
            item["mode"] = SCRIPT_MODE
        items.append(item)
    return {
        "name": "kit",
        "secret": {
            "secretName": kit_secret_name(system.id, participant),
            "defaultMode": FILE_MODE,
            "items": items,
        },
    }


def _copy_kit(into: str, files: Mapping[str, tuple[str, bytes]]) -> str:
    """The shell that puts the kit (again, on a restart) where FLARE runs it."""
    parts = sorted({relative.split("/", 1)[0] for relative, _ in files.values()})
    target = shlex.quote(into)
    old = " ".join(f"{target}/{part}" for part in parts)
    kit = " ".join(f"{KIT_DIR}/{part}" for part in parts)
    return (
        f"mkdir -p {target}/transfer && rm -rf {old} && cp -rL {kit} {target}/ && "
        f"chmod -R go-rwx {target}/startup"
    )


def _deployment(
    system: _System,
    name: str,
    component: str,
    participant: str,
    files: Mapping[str, tuple[str, bytes]],
    script: str,
    *,
    workspace: dict[str, Any],
    ports: Sequence[tuple[str, int]] = (),
    gpus: int | None = None,
    recreate: bool = False,
) -> dict[str, Any]:
    """One participant's Deployment (one pod): the parts the server, sites and admin share."""
    container: dict[str, Any] = {
        "name": component,
        "image": system.image,
        "command": ["sh", "-c", script],
        "workingDir": WORKSPACE_DIR,
        "volumeMounts": [
            {"name": "workspace", "mountPath": WORKSPACE_DIR},
            {"name": "kit", "mountPath": KIT_DIR, "readOnly": True},
        ],
    }
    if ports:
        container["ports"] = [{"name": n, "containerPort": p} for n, p in ports]
        # Ready once FLARE listens; a site's readiness is its process running.
        container["readinessProbe"] = {"tcpSocket": {"port": ports[0][1]}, "periodSeconds": 5}
    pod: dict[str, Any] = {
        # FLARE talks to no Kubernetes API; a Service named `server` would otherwise put
        # SERVER_PORT=tcp://... into every container's environment.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [container],
        "volumes": [{"name": "workspace", **workspace}, _kit_volume(system, participant, files)],
    }
    if gpus:
        container["resources"] = {"limits": {GPU_RESOURCE: str(gpus)}}
        # hpcrun's EKS GPU node groups are tainted for pods that ask for GPUs.
        pod["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    spec: dict[str, Any] = {
        "replicas": 1,
        "selector": {"matchLabels": system.selector(component, participant)},
        "template": {"metadata": {"labels": system.labels(component, participant)}, "spec": pod},
    }
    if recreate:
        # A ReadWriteOnce volume: the old pod lets go before the new one mounts it.
        spec["strategy"] = {"type": "Recreate"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": system.metadata(name, component, participant),
        "spec": spec,
    }


def _participant_command(module: str, home: str, config: str, *settings: str) -> str:
    argv = [
        "python3",
        "-u",
        "-m",
        module,
        "-m",
        home,
        "-s",
        config,
        "--set",
        "secure_train=true",
        *settings,
    ]
    return "exec " + shlex.join(argv)


def flare_objects(
    system_id: int,
    people: FlareParticipants,
    kits: Path,
    *,
    namespace: str,
    image: str,
    gpus_per_site: int | None,
    admin_pod: bool,
) -> list[dict[str, Any]]:
    """Every object of the system but its namespace, in apply order: the kits' Secrets and
    the server's workspace claim (what pods mount) first, then the Service, the server,
    the sites and the admin pod."""
    if gpus_per_site is not None and gpus_per_site < 0:
        raise HpcrunError(f"GPUs per site cannot be negative ({gpus_per_site})")
    if not _SERVICE_RE.match(people.server):
        raise HpcrunError(
            f"server {people.server!r}: the kits name it as the server's host, and no "
            "Kubernetes Service can have that name (a letter, then letters, digits, dashes)",
            "rename the server in the project file and provision again",
        )
    system = _System(system_id, namespace, image)
    org = f"org={people.org}"
    server, sites = people.server, list(people.sites)
    names = [server_deployment_name(system_id)]
    names += [site_deployment_name(system_id, s) for s in sites]
    names += [admin_deployment_name(system_id)] if admin_pod else []
    kit_names = [kit_secret_name(system_id, p) for p in [server, *sites]]
    kit_names += [kit_secret_name(system_id, people.admin)] if admin_pod else []
    for taken in (names, kit_names):
        doubles = sorted({n for n in taken if taken.count(n) > 1})
        if doubles:
            raise HpcrunError(
                f"participants share the Kubernetes name {', '.join(doubles)}",
                "give the sites names that differ in more than case and punctuation, "
                "other than server and admin",
            )

    kit = {p: kit_files(kits / p) for p in [server, *sites]}
    if admin_pod:
        kit[people.admin] = kit_files(kits / people.admin)

    objects = [_kit_secret(system, "server", server, kit[server])]
    objects += [_kit_secret(system, "site", s, kit[s]) for s in sites]
    if admin_pod:
        objects.append(_kit_secret(system, "admin", people.admin, kit[people.admin]))
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": system.metadata(workspace_claim_name(system_id), "server", server),
            # No storageClassName: the cluster's default (gp2 on EKS, as NVIDIA's guide).
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": WORKSPACE_SIZE}},
            },
        }
    )
    ports = (("fl", people.fl_port), ("admin", people.admin_port))
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": system.metadata(server, "server", server),
            "spec": {
                "type": "ClusterIP",
                "selector": system.selector("server", server),
                "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports],
            },
        }
    )
    home = f"{WORKSPACE_DIR}/nvfl/{server}"
    run_server = _participant_command(
        "nvflare.private.fed.app.server.server_train",
        home,
        "fed_server.json",
        "config_folder=config",
        org,
    )
    objects.append(
        _deployment(
            system,
            server_deployment_name(system_id),
            "server",
            server,
            kit[server],
            _copy_kit(home, kit[server]) + " && " + run_server,
            workspace={"persistentVolumeClaim": {"claimName": workspace_claim_name(system_id)}},
            ports=ports,
            recreate=True,
        )
    )
    for site in sites:
        home = f"{WORKSPACE_DIR}/nvfl/{site}"
        run_site = _participant_command(
            "nvflare.private.fed.app.client.client_train",
            home,
            "fed_client.json",
            f"uid={site}",
            "config_folder=config",
            org,
        )
        objects.append(
            _deployment(
                system,
                site_deployment_name(system_id, site),
                "site",
                site,
                kit[site],
                _copy_kit(home, kit[site]) + " && " + run_site,
                workspace={"emptyDir": {}},
                gpus=gpus_per_site,
            )
        )
    if admin_pod:
        home = f"{WORKSPACE_DIR}/admin"
        # Waits to be exec'd into (`kubectl exec -it ... -- /workspace/admin/startup/
        # fl_admin.sh`); the trap ends it at once when the pod is deleted.
        idle = "trap 'exit 0' TERM; while :; do sleep 5 & wait $!; done"
        objects.append(
            _deployment(
                system,
                admin_deployment_name(system_id),
                "admin",
                people.admin,
                kit[people.admin],
                _copy_kit(home, kit[people.admin]) + " && " + idle,
                workspace={"emptyDir": {}},
            )
        )
    return objects


# the driver ------------------------------------------------------------------------------


def _is_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _pod_state(pod: Any) -> tuple[TaskState, str, int | None]:
    """(state, native word, exit code) of one pod of a participant's Deployment."""
    status = pod.status
    if _is_ready(pod):
        return TaskState.RUNNING, "Ready", None
    phase = (status.phase if status else None) or "Pending"
    if phase == "Failed":
        return TaskState.FAILED, f"Failed: {status.reason or status.message or 'pod failed'}", None
    for container in (status.containerStatuses if status else None) or []:
        waiting = container.state.waiting if container.state else None
        if waiting is None or not waiting.reason:
            continue
        if waiting.reason == "CrashLoopBackOff":
            last = container.lastState.terminated if container.lastState else None
            code = last.exitCode if last is not None else None
            said = f" (exit code {code})" if code is not None else ""
            return (
                TaskState.FAILED,
                f"CrashLoopBackOff: restarted {container.restartCount} times{said}",
                code,
            )
        return (
            TaskState.PENDING,
            waiting.reason + (f": {waiting.message}" if waiting.message else ""),
            None,
        )
    for condition in (status.conditions if status else None) or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            # What k8s.apply.pending_reason says, read from the pods already listed.
            return TaskState.PENDING, f"Pending: {condition.message or condition.reason}", None
    return TaskState.PENDING, f"{phase}, not Ready", None


def participant_task(name: str, index: int | None, pods: Sequence[Any]) -> TaskStatus:
    """A participant's Deployment as a task: its best pod (Ready, then failed, then the
    newest), or pending while it has none."""
    if not pods:
        return TaskStatus(
            JobRef(name), index, TaskState.PENDING, "Pending: no pod yet", job_name=name
        )
    rank = {TaskState.RUNNING: 0, TaskState.FAILED: 1, TaskState.PENDING: 2}
    seen = [(_pod_state(p), p) for p in pods]
    seen.sort(key=lambda s: (rank.get(s[0][0], 3), -_created(s[1])))
    (state, native, code), pod = seen[0]
    node = pod.spec.nodeName if pod.spec else None
    return TaskStatus(
        JobRef(name),
        index,
        state,
        native,
        node=node,
        exit_code=code,
        job_name=name,
        nodes=(node,) if node else (),
    )


def _created(pod: Any) -> float:
    stamp = pod.metadata.creationTimestamp if pod.metadata else None
    return stamp.timestamp() if stamp is not None else 0.0


class KubernetesFlareDriver:
    """Start, watch and stop FLARE systems, each in its own namespace of one cluster."""

    def __init__(
        self,
        client: Client,
        *,
        namespace_prefix: str = NAMESPACE_PREFIX,
        service_account_timeout_s: float = 60.0,
    ) -> None:
        self.client = client
        self.namespace_prefix = namespace_prefix
        self.service_account_timeout_s = service_account_timeout_s

    def namespace(self, system_id: int) -> str:
        return f"{self.namespace_prefix}-{system_id}"

    def admin_host(self, system_id: int, server: str = "server") -> str:
        """The server's Service, as KubernetesBackend.reach port-forwards it."""
        return f"{server}.{self.namespace(system_id)}.svc"

    def start(
        self,
        system_id: int,
        people: FlareParticipants,
        kits: Path,
        *,
        image: str,
        gpus_per_site: int | None = None,
        admin_pod: bool = False,
        progress: Progress | None = None,
    ) -> None:
        """Apply the namespace and every object of the system (again: nothing changes).
        Returns once the API server holds them; `states` tells when the pods are Ready.
        A refusal raises Rejected naming the object and field; what was applied before it
        stays for `stop` to remove."""
        progress = progress or NullProgress()
        namespace = self.namespace(system_id)
        objects = flare_objects(
            system_id,
            people,
            kits,
            namespace=namespace,
            image=image,
            gpus_per_site=gpus_per_site,
            admin_pod=admin_pod,
        )  # the kits are read, and checked, before the cluster is touched
        applier = Applier(self.client, progress=progress.step)
        applier.apply([namespace_object(system_id, namespace)])
        self._wait_for_service_account(namespace)
        applied = applier.apply(objects)
        progress.step(f"namespace {namespace}: applied " + ", ".join(str(r) for r in applied))

    def _wait_for_service_account(self, namespace: str) -> None:
        """Pods of a new namespace are refused until the controller manager has made its
        default ServiceAccount (a ReplicaSet would retry, with a growing back-off)."""
        from lightkube import ApiError
        from lightkube.resources.core_v1 import ServiceAccount

        deadline = time.monotonic() + self.service_account_timeout_s
        while True:
            try:
                self.client.get(ServiceAccount, "default", namespace=namespace)
                return
            except ApiError as exc:
                if status_code(exc) != 404:
                    raise rejection(
                        Ref("v1", "ServiceAccount", "default", namespace), exc
                    ) from None
            if time.monotonic() > deadline:
                raise HpcrunError(
                    f"namespace {namespace} has no default ServiceAccount after "
                    f"{self.service_account_timeout_s:g} s",
                    "is the cluster's controller manager running? `kubectl get sa -A`",
                )
            time.sleep(0.2)

    def states(
        self, system_id: int, people: FlareParticipants
    ) -> tuple[TaskStatus | None, dict[int, TaskStatus]]:
        """The server's task (None once its Deployment is gone) and each site's by its
        index (1..N in the project's order; a site whose Deployment is gone is left out),
        from one list of Deployments and one of pods."""
        from lightkube.resources.apps_v1 import Deployment
        from lightkube.resources.core_v1 import Pod

        namespace = self.namespace(system_id)
        labels = session_labels(session_of(system_id))
        deployments = {
            d.metadata.name
            for d in self.client.list(Deployment, namespace=namespace, labels=labels)
            if d.metadata is not None
        }
        pods: dict[tuple[str, str], list[Any]] = {}
        for pod in self.client.list(Pod, namespace=namespace, labels=labels):
            meta = pod.metadata
            if meta is None or meta.deletionTimestamp is not None:
                continue  # on its way out (a restart's old pod)
            tags = meta.labels or {}
            key = (tags.get(COMPONENT_LABEL, ""), tags.get(PARTICIPANT_LABEL, ""))
            pods.setdefault(key, []).append(pod)

        def task(name: str, index: int | None, component: str, who: str) -> TaskStatus | None:
            if name not in deployments:
                return None
            return participant_task(name, index, pods.get((component, dns_label(who)), []))

        server = task(server_deployment_name(system_id), None, "server", people.server)
        sites = {}
        for index, site in enumerate(people.sites, start=1):
            found = task(site_deployment_name(system_id, site), index, "site", site)
            if found is not None:
                sites[index] = found
        return server, sites

    def stop(
        self, system_id: int, progress: Progress | None = None, *, timeout_s: float = 120.0
    ) -> int:
        """Delete every object of the system (its workspace claim among them) and then its
        namespace, and wait until they are gone; how many objects were removed (0: none
        was there)."""
        from lightkube import ApiError
        from lightkube.resources.core_v1 import Namespace

        progress = progress or NullProgress()
        namespace = self.namespace(system_id)
        session = session_of(system_id)
        deadline = time.monotonic() + timeout_s
        applier = Applier(self.client, progress=progress.step)
        removed = applier.delete_session(namespace, session, timeout_s=timeout_s)
        try:
            found = self.client.get(Namespace, namespace)
        except ApiError as exc:
            if status_code(exc) == 404:
                progress.step(f"removed {removed} objects; namespace {namespace} is gone")
                return removed
            raise rejection(Ref("v1", "Namespace", namespace, None), exc) from None
        labels = (found.metadata.labels if found.metadata else None) or {}
        if labels.get(SESSION_LABEL) == session:  # only the namespace hpcrun made for it
            self._delete_and_wait(
                Ref("v1", "Namespace", namespace, None),
                lambda: self.client.get(Namespace, namespace),
                lambda: self.client.delete(Namespace, namespace),
                deadline,
            )
            removed += 1
        progress.step(f"removed {removed} objects, namespace {namespace} with them")
        return removed

    def _delete_and_wait(
        self,
        ref: Ref,
        get: Callable[[], Any],
        delete: Callable[[], Any],
        deadline: float,
    ) -> None:
        from lightkube import ApiError

        try:
            delete()
        except ApiError as exc:
            if status_code(exc) != 404:
                raise rejection(ref, exc) from None
        while True:
            try:
                get()
            except ApiError as exc:
                if status_code(exc) == 404:
                    return
                raise rejection(ref, exc) from None
            if time.monotonic() > deadline:
                raise HpcrunError(
                    f"{ref} is not gone yet",
                    f"run `hpcrun flare down` again, or look with `kubectl get {ref.kind} "
                    f"{ref.name}" + (f" -n {ref.namespace}`" if ref.namespace else "`"),
                )
            time.sleep(0.2)
