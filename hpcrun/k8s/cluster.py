"""What a Kubernetes cluster is, as hpcrun checks and shows it: access (the API answers,
the namespace exists, hpcrun may apply there) and nodes with their GPUs.

`check_access` is what attaching to a cluster proves before anything is recorded; its
apply check is a server-side dry run, so it needs the same rights a session needs and
leaves nothing behind. `node_views` is `hpcrun status`: each node's GPUs allocatable and
those the pods on it ask for, as `kubectl describe node` counts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpcrun.errors import HpcrunError
from hpcrun.k8s.apply import FIELD_MANAGER
from hpcrun.k8s.manifests import GPU_RESOURCE

if TYPE_CHECKING:
    from lightkube import Client


def node_gpus(node: Any) -> int:
    """The node's allocatable `nvidia.com/gpu` (0 without NVIDIA's device plugin)."""
    allocatable = (node.status.allocatable if node.status else None) or {}
    try:
        return int(allocatable.get(GPU_RESOURCE, "0"))
    except ValueError:
        return 0


def said(exc: Exception) -> str:
    """The API server's message (or the error's) in one short line."""
    status = getattr(exc, "status", None)
    text = str(getattr(status, "message", None) or exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def check_access(client: Client, namespace: str, *, kubeconfig: str) -> dict[str, Any]:
    """The server, its nodes and GPUs; an HpcrunError saying what is refused, else."""
    from lightkube import codecs
    from lightkube.core.exceptions import ApiError
    from lightkube.resources.core_v1 import Namespace, Node

    server = str(client.config.cluster.server)
    try:
        nodes = list(client.list(Node))
        client.get(Namespace, namespace)
    except Exception as exc:
        raise HpcrunError(
            f"the Kubernetes API at {server} did not let hpcrun in: {said(exc)}",
            f"check `kubectl --kubeconfig {kubeconfig} get nodes` and that namespace "
            f"{namespace} exists",
        ) from None
    probe = codecs.from_dict(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "hpcrun-access-check", "namespace": namespace},
        }
    )
    try:
        client.apply(probe, field_manager=FIELD_MANAGER, dry_run=True, force=True)
    except ApiError as exc:
        raise HpcrunError(
            f"hpcrun may not create objects in namespace {namespace}: {said(exc)}",
            "grant the kubeconfig's user create/patch/delete on configmaps, secrets, "
            "services, statefulsets, deployments and ingresses there (or pick another "
            "namespace)",
        ) from None
    return {"server": server, "nodes": len(nodes), "gpus": sum(node_gpus(n) for n in nodes)}


def node_views(client: Client) -> list[dict[str, Any]]:
    """Each node: Ready, instance type, node group, GPUs allocatable and asked for."""
    from lightkube.resources.core_v1 import Node, Pod

    try:
        nodes = list(client.list(Node))
        pods = list(client.list(Pod, namespace="*"))
    except Exception as exc:
        raise HpcrunError(f"the Kubernetes API did not answer: {said(exc)}") from None
    used: dict[str, int] = {}
    for pod in pods:
        phase = pod.status.phase if pod.status else None
        if not pod.spec or not pod.spec.nodeName or phase in {"Succeeded", "Failed"}:
            continue
        for container in pod.spec.containers:
            limits = (container.resources.limits if container.resources else None) or {}
            used[pod.spec.nodeName] = used.get(pod.spec.nodeName, 0) + int(
                limits.get(GPU_RESOURCE, 0)
            )
    views = []
    for node in nodes:
        meta = node.metadata
        name = (meta.name if meta else None) or "?"
        labels = (meta.labels if meta else None) or {}
        conditions = (node.status.conditions if node.status else None) or []
        views.append(
            {
                "name": name,
                "ready": any(c.type == "Ready" and c.status == "True" for c in conditions),
                "instance_type": labels.get("node.kubernetes.io/instance-type", ""),
                "node_group": labels.get("eks.amazonaws.com/nodegroup", ""),
                "gpus": node_gpus(node),
                "gpus_used": used.get(name, 0),
            }
        )
    return views
