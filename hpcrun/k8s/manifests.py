"""An IndeX session on Kubernetes as the objects NVIDIA's chart makes (NVIDIA/nvindex-cloud,
charts/nvindex), built from the same values: `nodeCount`, `gpuCount`, the scene's files,
`ingress.host/tls`, `auth`, the image and its pull secret, the service account.

Pure: a `IndexRelease` in, a list of plain objects (dicts, ready for server-side apply)
out, in the order they are applied; golden files pin them. What differs from the chart,
and why:
- every object carries `app.kubernetes.io/managed-by: hpcrun` and the session label, so
  a stop (or a prune) finds exactly the session's objects;
- the viewer Service serves port 8080, where the chart's Ingress sends traffic (the
  chart's Service listens on 80, so its Ingress names a port the Service does not have);
- the viewer and the workers repel each other (pod anti-affinity by host name): the chart
  gets one pod per node only when `gpuCount` is every GPU of a node; here that holds for
  any `--gpus-per-node`, as `salloc --exclusive` or `--gpus-per-node` does on Slurm;
- no setup init container (it fetched IndeX's licence and data with a cloud CLI image);
  the data location is the container's environment, read through the service account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MANAGED_BY = "hpcrun"
SESSION_LABEL = "hpcrun.io/session"
GPU_RESOURCE = "nvidia.com/gpu"
VIEWER_HTTP_PORT = 8080
# The IndeX cluster ports of NVIDIA's chart: discovery, global and local traffic.
DISCOVERY_PORT, GLOBAL_PORT, LOCAL_PORT = 5555, 10000, 10001
SCENES_DIR = "/scenes"


@dataclass(frozen=True)
class IndexRelease:
    """One IndeX session: what `helm install NAME charts/nvindex --set ...` is told."""

    name: str  # the release name: every object is `<name>-...`
    namespace: str
    session: str  # the value of SESSION_LABEL
    nodes: int  # nodeCount: the viewer and nodes-1 workers, one pod a node
    gpus_per_node: int  # gpuCount: GPUs each pod asks for
    image: str
    scene_files: Mapping[str, str]  # file name -> text: the scene ConfigMap
    pull_secret: str | None = None
    service_account: str | None = None
    data_location: str | None = None  # NVINDEX_DATA_BUCKET, e.g. s3://bucket/scenes
    htpasswd: str | None = None  # `user:hash` for the Ingress' basic auth; None: no auth
    ingress_host: str | None = None  # None: no Ingress (reach it with `index --tunnel`)
    tls_secret: str | None = None
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    service_port: int = VIEWER_HTTP_PORT  # where the viewer Service (and Ingress) serve it
    # "open": hpcrun's open renderer (`hpcrun-nvindex-slurm` in its image), whose agents
    # find the viewer by the discovery Service and prove themselves with `agent_token`.
    renderer: str = "nvindex"
    agent_token: str | None = None

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"an IndeX session needs at least 1 node, not {self.nodes}")
        if self.gpus_per_node < 0:
            raise ValueError(f"GPUs per node cannot be negative ({self.gpus_per_node})")
        if "scene.prj" not in self.scene_files:
            raise ValueError("the scene files must hold scene.prj")
        if self.renderer not in {"nvindex", "open"}:
            raise ValueError(f"renderer {self.renderer!r}: nvindex or open")
        if self.renderer == "open" and not self.agent_token:
            raise ValueError("the open renderer's agents need a token")

    @property
    def workers(self) -> int:
        return self.nodes - 1

    @property
    def viewer_name(self) -> str:
        return f"{self.name}-viewer"

    @property
    def worker_name(self) -> str:
        return f"{self.name}-worker"

    @property
    def discovery_name(self) -> str:
        """The headless Service the workers find the viewer by (`<name>-viewer-0`)."""
        return f"{self.name}-viewer-0"

    @property
    def auth_secret_name(self) -> str:
        return f"{self.name}-auth-secret"

    @property
    def path(self) -> str:
        return f"/{self.name}"

    @property
    def agents_secret_name(self) -> str:
        """The open renderer's agent token, the same in every pod of the release."""
        return f"{self.name}-agents"


def labels(release: IndexRelease, component: str | None = None) -> dict[str, str]:
    found = {
        "app.kubernetes.io/name": "nvindex",
        "app.kubernetes.io/instance": release.name,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        SESSION_LABEL: release.session,
        **release.extra_labels,
    }
    if component is not None:
        found["app.kubernetes.io/component"] = component
    return found


def selector(release: IndexRelease, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "nvindex",
        "app.kubernetes.io/instance": release.name,
        "app.kubernetes.io/component": component,
    }


def _metadata(release: IndexRelease, name: str, component: str | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": release.namespace, "labels": labels(release, component)}


def _ports(*numbers: int) -> list[dict[str, Any]]:
    return [{"containerPort": n} for n in numbers]


def _pod_spec(release: IndexRelease, container: dict[str, Any]) -> dict[str, Any]:
    if release.gpus_per_node:
        container["resources"] = {"limits": {GPU_RESOURCE: str(release.gpus_per_node)}}
    spec: dict[str, Any] = {
        "containers": [container],
        "affinity": {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {
                            "matchLabels": {"app.kubernetes.io/instance": release.name}
                        },
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        },
    }
    if release.pull_secret:
        spec["imagePullSecrets"] = [{"name": release.pull_secret}]
    if release.service_account:
        spec["serviceAccountName"] = release.service_account
    return spec


def _cluster_args(discovery_address: str) -> list[str]:
    return [
        "--cluster",
        "TCP_WITH_DISCOVERY",
        "-dice::network::retention",
        "5",
        "-app::enable_fail_safety",
        "yes",
        "-dice::network::discovery_address",
        discovery_address,
    ]


# Where the open renderer's pods keep what srun tasks keep on shared storage: each pod its
# own (its agents find the viewer through the environment, `hpcrun.node.viewer.pod`).
OPEN_RENDERER_DIRS = (
    "--rendezvous",
    "/tmp/hpcrun/rendezvous",
    "--scene-data",
    "/tmp/hpcrun/scenes",
)


def _open_renderer_env(release: IndexRelease, role: str) -> list[dict[str, Any]]:
    """Who the pod is, for the open renderer's launcher: role, release, node, pod, and
    the viewer's agent address and token (the names `hpcrun.node.viewer.pod` reads)."""

    def field_ref(path: str) -> dict[str, Any]:
        return {"fieldRef": {"fieldPath": path}}

    return [
        {"name": "HPCRUN_POD_ROLE", "value": role},
        {"name": "HPCRUN_RELEASE", "value": release.name},
        {"name": "HPCRUN_NODE_NAME", "valueFrom": field_ref("spec.nodeName")},
        {"name": "HPCRUN_POD_NAME", "valueFrom": field_ref("metadata.name")},
        {"name": "HPCRUN_VIEWER_HOST", "value": release.discovery_name},
        {"name": "HPCRUN_VIEWER_AGENT_PORT", "value": str(GLOBAL_PORT)},
        {
            "name": "HPCRUN_VIEWER_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": release.agents_secret_name, "key": "token"}},
        },
    ]


def _scene_volume(release: IndexRelease) -> list[dict[str, Any]]:
    return [{"name": "scene-files", "configMap": {"name": f"{release.name}-scenes"}}]


def _viewer_container(release: IndexRelease) -> dict[str, Any]:
    mounts = [{"name": "scene-files", "mountPath": SCENES_DIR}]
    if release.renderer == "open":
        return {
            "name": "open-renderer",
            "image": release.image,
            "command": ["hpcrun-nvindex-slurm"],
            # Inside the pod network, reached through the viewer Service: the Ingress'
            # basic auth guards it from outside, as it guards NVIDIA's viewer.
            "args": [
                "-v",
                "--add",
                f"{SCENES_DIR}/scene.prj",
                "--port",
                str(VIEWER_HTTP_PORT),
                "--listen",
                "0.0.0.0",
                "--insecure-public",
                *OPEN_RENDERER_DIRS,
            ],
            "ports": _ports(GLOBAL_PORT, VIEWER_HTTP_PORT),
            "env": _open_renderer_env(release, "viewer"),
            "volumeMounts": mounts,
            "readinessProbe": {
                "httpGet": {"path": "/api/status", "port": VIEWER_HTTP_PORT},
                "periodSeconds": 5,
            },
        }
    env = [{"name": "NVINDEX_SCENES_DIR", "value": SCENES_DIR}]
    if release.data_location:
        env.append({"name": "NVINDEX_DATA_BUCKET", "value": release.data_location})
    return {
        "name": "nvindex",
        "image": release.image,
        "command": ["./nvindex-viewer.sh"],
        "args": ["--add", f"{SCENES_DIR}/scene.prj", *_cluster_args("0.0.0.0")],
        "ports": _ports(DISCOVERY_PORT, GLOBAL_PORT, LOCAL_PORT, VIEWER_HTTP_PORT),
        "env": env,
        "volumeMounts": mounts,
        "readinessProbe": {
            "tcpSocket": {"port": VIEWER_HTTP_PORT},
            "periodSeconds": 5,
        },
    }


def viewer_statefulset(release: IndexRelease) -> dict[str, Any]:
    pod = _pod_spec(release, _viewer_container(release))
    pod["volumes"] = _scene_volume(release)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _metadata(release, release.viewer_name, "viewer"),
        "spec": {
            "replicas": 1,
            "serviceName": release.discovery_name,
            "selector": {"matchLabels": selector(release, "viewer")},
            "template": {
                "metadata": {"labels": labels(release, "viewer")},
                "spec": pod,
            },
        },
    }


def worker_deployment(release: IndexRelease) -> dict[str, Any]:
    if release.renderer == "open":
        container: dict[str, Any] = {
            "name": "open-renderer",
            "image": release.image,
            "command": ["hpcrun-nvindex-slurm"],
            "args": list(OPEN_RENDERER_DIRS),
            "env": _open_renderer_env(release, "worker"),
            # Agents open the scene the viewer assigns them, at the same path.
            "volumeMounts": [{"name": "scene-files", "mountPath": SCENES_DIR}],
        }
    else:
        container = {
            "name": "nvindex",
            "image": release.image,
            "command": ["./nvindex-remote-service.sh"],
            "args": _cluster_args(release.discovery_name),
            "ports": _ports(GLOBAL_PORT, LOCAL_PORT),
        }
    pod = _pod_spec(release, container)
    if release.renderer == "open":
        pod["volumes"] = _scene_volume(release)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(release, release.worker_name, "worker"),
        "spec": {
            "replicas": release.workers,
            "selector": {"matchLabels": selector(release, "worker")},
            "template": {
                "metadata": {"labels": labels(release, "worker")},
                "spec": pod,
            },
        },
    }


def discovery_service(release: IndexRelease) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(release, release.discovery_name, "viewer"),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": "None",
            "ports": [
                {"name": "discovery", "port": DISCOVERY_PORT, "targetPort": DISCOVERY_PORT},
                {"name": "global", "port": GLOBAL_PORT, "targetPort": GLOBAL_PORT},
                {"name": "local", "port": LOCAL_PORT, "targetPort": LOCAL_PORT},
            ],
            "selector": selector(release, "viewer"),
        },
    }


def viewer_service(release: IndexRelease) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(release, release.viewer_name, "viewer"),
        "spec": {
            "type": "ClusterIP",
            "ports": [
                {"name": "http", "port": release.service_port, "targetPort": VIEWER_HTTP_PORT}
            ],
            "selector": selector(release, "viewer"),
        },
    }


def scenes_configmap(release: IndexRelease) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(release, f"{release.name}-scenes"),
        "data": dict(sorted(release.scene_files.items())),
    }


def _secret(release: IndexRelease, name: str, data: dict[str, str]) -> dict[str, Any]:
    """`stringData`, so nothing is base64-encoded by hand."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(release, name),
        "type": "Opaque",
        "stringData": data,
    }


def auth_secret(release: IndexRelease) -> dict[str, Any]:
    """The htpasswd Secret ingress-nginx reads (key `auth`): the password's hash; the
    password itself is never here."""
    assert release.htpasswd is not None
    return _secret(release, release.auth_secret_name, {"auth": release.htpasswd + "\n"})


def agents_secret(release: IndexRelease) -> dict[str, Any]:
    """The open renderer's agent token (made for the session, in no file)."""
    assert release.agent_token is not None
    return _secret(release, release.agents_secret_name, {"token": release.agent_token})


def ingress(release: IndexRelease) -> dict[str, Any]:
    assert release.ingress_host is not None
    annotations = {
        "nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
    }
    if release.htpasswd is not None:
        annotations |= {
            "nginx.ingress.kubernetes.io/auth-type": "basic",
            "nginx.ingress.kubernetes.io/auth-secret": release.auth_secret_name,
            "nginx.ingress.kubernetes.io/auth-realm": "Authentication Required",
        }
    spec: dict[str, Any] = {
        "ingressClassName": "nginx",
        "rules": [
            {
                "host": release.ingress_host,
                "http": {
                    "paths": [
                        {
                            "path": release.path,
                            "pathType": "Prefix",
                            "backend": {
                                "service": {
                                    "name": release.viewer_name,
                                    "port": {"number": release.service_port},
                                }
                            },
                        }
                    ]
                },
            }
        ],
    }
    if release.tls_secret:
        spec["tls"] = [{"hosts": [release.ingress_host], "secretName": release.tls_secret}]
    metadata = _metadata(release, release.name)
    metadata["annotations"] = annotations
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": spec,
    }


def index_objects(release: IndexRelease) -> list[dict[str, Any]]:
    """Every object of the session, in apply order: what the pods mount and find first."""
    objects = [scenes_configmap(release)]
    if release.htpasswd is not None:
        objects.append(auth_secret(release))
    if release.renderer == "open":
        objects.append(agents_secret(release))
    objects += [
        discovery_service(release),
        viewer_service(release),
        viewer_statefulset(release),
        worker_deployment(release),
    ]
    if release.ingress_host is not None:
        objects.append(ingress(release))
    return objects
