"""A served model on Kubernetes: a Deployment, a Service and an autoscaling/v2
HorizontalPodAutoscaler, made from a `ServeSpec` (what the Triton FIL recipe's helm chart
makes, without its credentials Secret).

The Deployment leaves `spec.replicas` to the autoscaler: applying it again (a new image,
a new ceiling) never resets what the autoscaler chose. Probes are Triton's own: a startup
probe on `live` allows five minutes to fetch and load the models from S3, readiness on
`ready` keeps a replica out of the Service until its models answer. Every object carries
the session label `serve-<name>`, so `serve stop` deletes exactly these objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hpcrun.errors import HpcrunError
from hpcrun.k8s.apply import (
    Applier,
    Ref,
    pending_reason,
    readiness,
    session_labels,
    status_code,
)
from hpcrun.k8s.manifests import GPU_RESOURCE
from hpcrun.scheduler import NullProgress, Progress
from hpcrun.scheduler.serving import ServeSpec, ServeState

if TYPE_CHECKING:
    from lightkube import Client

STARTUP_PERIOD_S, STARTUP_FAILURES = 5, 60  # up to 5 minutes to load the models


def session_of(name: str) -> str:
    return f"serve-{name}"


def _metadata(spec: ServeSpec, namespace: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "namespace": namespace,
        "labels": {**session_labels(session_of(spec.name)), **spec.labels},
    }


def _selector(spec: ServeSpec) -> dict[str, str]:
    return {**session_labels(session_of(spec.name)), "app.kubernetes.io/instance": spec.name}


def _probe(path: str, port: str, period_s: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period_s,
        "failureThreshold": failures,
    }


def deployment(spec: ServeSpec, namespace: str) -> dict[str, Any]:
    limits: dict[str, Any] = {"memory": spec.memory}
    if spec.gpus_per_replica:
        limits[GPU_RESOURCE] = spec.gpus_per_replica
    container: dict[str, Any] = {
        "name": spec.container,
        "image": spec.image,
        "command": [spec.args[0]],
        "args": list(spec.args[1:]),
        "ports": [{"name": p.name, "containerPort": p.number} for p in spec.ports],
        "env": [{"name": k, "value": v} for k, v in sorted(spec.env.items())],
        "resources": {"requests": {"cpu": spec.cpu, "memory": spec.memory}, "limits": limits},
    }
    if spec.ports and spec.live_path:
        http = spec.ports[0].name
        container["startupProbe"] = _probe(spec.live_path, http, STARTUP_PERIOD_S, STARTUP_FAILURES)
        container["livenessProbe"] = _probe(spec.live_path, http, 10, 3)
    if spec.ports and spec.ready_path:
        container["readinessProbe"] = _probe(spec.ready_path, spec.ports[0].name, 5, 2)
    if not container["ports"]:
        del container["ports"]
    if not container["env"]:
        del container["env"]
    pod: dict[str, Any] = {"containers": [container]}
    if spec.service_account:
        pod["serviceAccountName"] = spec.service_account
    if spec.stop_grace_s is not None:
        pod["terminationGracePeriodSeconds"] = spec.stop_grace_s
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec, namespace),
        "spec": {
            "selector": {"matchLabels": _selector(spec)},
            "template": {
                "metadata": {"labels": {**_selector(spec), **spec.labels}},
                "spec": pod,
            },
        },
    }


def service(spec: ServeSpec, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, namespace),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(spec),
            "ports": [{"name": p.name, "port": p.number, "targetPort": p.name} for p in spec.ports],
        },
    }


def autoscaler(spec: ServeSpec, namespace: str) -> dict[str, Any]:
    scaling = spec.scaling
    if scaling.metric is not None:
        metric: dict[str, Any] = {
            "type": "Pods",
            "pods": {
                "metric": {"name": scaling.metric},
                "target": {"type": "AverageValue", "averageValue": scaling.metric_value},
            },
        }
    else:
        metric = {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {
                    "type": "Utilization",
                    "averageUtilization": scaling.target_cpu_percent,
                },
            },
        }
    hpa: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
        "minReplicas": scaling.minimum,
        "maxReplicas": scaling.maximum,
        "metrics": [metric],
    }
    if scaling.scale_down_window_s is not None:
        window = scaling.scale_down_window_s
        hpa["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": window}}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(spec, namespace),
        "spec": hpa,
    }


def serve_objects(spec: ServeSpec, namespace: str) -> list[dict[str, Any]]:
    """In the order they are applied: the autoscaler last, once what it scales exists;
    a Service only for what answers on ports."""
    front = [service(spec, namespace)] if spec.ports else []
    return [*front, deployment(spec, namespace), autoscaler(spec, namespace)]


def endpoint(name: str, namespace: str, port: int) -> str:
    return f"{name}.{namespace}.svc:{port}"


class KubernetesServeDriver:
    """`hpcrun serve` on one namespace of a cluster."""

    def __init__(self, client: Client, namespace: str) -> None:
        self.client = client
        self.namespace = namespace

    def gpus_available(self) -> tuple[int, str]:
        from hpcrun.k8s.cluster import node_views

        nodes = node_views(self.client)
        most = max((int(n["gpus"] or 0) for n in nodes), default=0)
        groups = sorted({n["node_group"] or n["instance_type"] or n["name"] for n in nodes})
        where = ", ".join(groups) if groups else "no nodes"
        return most, f"{len(nodes)} nodes ({where}), at most {most} GPUs on one"

    def start(
        self, spec: ServeSpec, *, timeout_s: float | None, progress: Progress | None = None
    ) -> None:
        say = (progress or NullProgress()).step
        applier = Applier(self.client, progress=say)
        refs = applier.apply(serve_objects(spec, self.namespace))
        say(f"applied {', '.join(str(r) for r in refs)} in namespace {self.namespace}")
        if timeout_s is None:
            return
        workload = Ref("apps/v1", "Deployment", spec.name, self.namespace)
        applier.wait_ready(
            [workload],
            timeout_s=timeout_s,
            why_not=lambda: pending_reason(self.client, self.namespace, _selector(spec)),
        )

    def state(self, name: str) -> ServeState:
        from lightkube import ApiError
        from lightkube.resources.apps_v1 import Deployment
        from lightkube.resources.autoscaling_v2 import HorizontalPodAutoscaler

        try:
            found = self.client.get(Deployment, name, namespace=self.namespace)
        except ApiError as exc:
            if status_code(exc) == 404:
                return ServeState(name, self.namespace, 0, 0, None, None, "", "", False)
            raise HpcrunError(f"the Kubernetes API did not answer: {exc}") from None
        address = self._grpc_address(name)
        ready, desired = readiness("Deployment", found)
        current = wanted = None
        metric = "no autoscaler"
        try:
            hpa = self.client.get(HorizontalPodAutoscaler, name, namespace=self.namespace)
        except ApiError:
            hpa = None
        if hpa is not None:
            current, wanted, metric = _autoscaler_view(hpa)
        detail = pending_reason(self.client, self.namespace, {"app.kubernetes.io/instance": name})
        return ServeState(
            name, self.namespace, ready, desired, current, wanted, metric, address, True, detail
        )

    def _grpc_address(self, name: str) -> str:
        """The Service's gRPC port as an address inside the cluster ("" without one)."""
        from lightkube import ApiError
        from lightkube.resources.core_v1 import Service

        try:
            found = self.client.get(Service, name, namespace=self.namespace)
        except ApiError:
            return ""
        ports = (found.spec.ports if found.spec else None) or []
        grpc = next((p for p in ports if p.name == "grpc"), ports[0] if ports else None)
        return endpoint(name, self.namespace, grpc.port) if grpc is not None else ""

    def stop(self, name: str, progress: Progress | None = None) -> int:
        applier = Applier(self.client, progress=(progress or NullProgress()).step)
        return applier.delete_session(self.namespace, session_of(name))


def _autoscaler_view(hpa: Any) -> tuple[int | None, int | None, str]:
    """(current replicas, desired replicas, what it measures against its target)."""
    status = hpa.status
    spec_metrics = (hpa.spec.metrics if hpa.spec else None) or []
    target = ""
    if spec_metrics and spec_metrics[0].resource is not None:
        target = f"{spec_metrics[0].resource.target.averageUtilization}%"
        name = "cpu"
    elif spec_metrics and spec_metrics[0].pods is not None:
        target = str(spec_metrics[0].pods.target.averageValue)
        name = spec_metrics[0].pods.metric.name
    else:
        name = "?"
    if status is None:
        return None, None, f"{name}: not measured yet (target {target})"
    now = ""
    for measured in status.currentMetrics or []:
        if measured.resource is not None and measured.resource.current is not None:
            now = f"{measured.resource.current.averageUtilization}%"
        elif measured.pods is not None and measured.pods.current is not None:
            now = str(measured.pods.current.averageValue)
    if not now:
        why = next(
            (
                c.message
                for c in status.conditions or []
                if c.type == "ScalingActive" and c.status == "False"
            ),
            "",
        )
        now = "no metrics yet" + (f" ({why})" if why else "")
    return status.currentReplicas, status.desiredReplicas, f"{name} {now} (target {target})"
