"""A model server in no scheduler's terms: replicas of one container behind one address,
scaled between a floor and a ceiling by a metric, and the `ServeDriver` that runs it.

`hpcrun serve` is the online half of scoring: the same Triton model repository the score
arrays use, kept up as a service. The workload (`hpcrun.workloads.triton`) says what the
container runs and how its health is read; a driver makes it exist: on Kubernetes a
Deployment, a Service and a HorizontalPodAutoscaler (`hpcrun.k8s.serve`). Nothing here
names credentials: a server reaches its model store through the identity of the account
it runs as (`service_account`, an IAM role on EKS), never through keys handed to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from hpcrun.errors import UsageError
from hpcrun.scheduler import Progress


@dataclass(frozen=True)
class Port:
    name: str
    number: int


@dataclass(frozen=True)
class Scaling:
    """Replicas between `minimum` and `maximum`, at `target_cpu_percent` of the CPU each
    replica asks for, or at an average of `metric` per replica (a pods metric the cluster's
    custom-metrics API serves, e.g. Triton's `nv_inference_queue_duration_us`)."""

    minimum: int = 1
    maximum: int = 4
    target_cpu_percent: int | None = 50
    metric: str | None = None
    metric_value: str | None = None  # a quantity: "100", "250m", "1k"
    # How long load must stay low before replicas go (None: Kubernetes' 300 s), so a
    # short lull does not drop replicas a burst needs again.
    scale_down_window_s: int | None = None

    def __post_init__(self) -> None:
        if self.minimum < 1:
            raise UsageError(f"--min {self.minimum}: at least 1 replica")
        if self.maximum < self.minimum:
            raise UsageError(
                f"--min {self.minimum} is above --max {self.maximum}",
                "the autoscaler keeps the replicas between the two: e.g. --min 1 --max 4",
            )
        if (self.metric is None) == (self.target_cpu_percent is None):
            raise UsageError("scale on --target-cpu or on --target-metric, one of the two")
        if self.scale_down_window_s is not None and not 0 <= self.scale_down_window_s <= 3600:
            raise UsageError(
                f"--scale-down-after {self.scale_down_window_s}: 0 to 3600 seconds "
                "(Kubernetes' limit)"
            )
        if self.target_cpu_percent is not None and not 1 <= self.target_cpu_percent <= 1000:
            raise UsageError(
                f"--target-cpu {self.target_cpu_percent}: a percentage of the CPU each "
                "replica asks for, 1 to 1000"
            )


@dataclass(frozen=True)
class ServeSpec:
    """Replicas kept up and scaled, named `name` in its namespace: a served model, or
    queue workers (the render farm), which take work instead of answering on ports."""

    name: str
    image: str
    args: tuple[str, ...]
    ports: tuple[Port, ...] = ()  # none: no Service, no HTTP probes
    ready_path: str | None = None  # HTTP GET on the first port: ready to take requests
    live_path: str | None = None  # HTTP GET on the first port: alive (restart on failure)
    scaling: Scaling = field(default_factory=Scaling)
    gpus_per_replica: int = 0
    cpu: str = "1"  # what each replica asks for (the CPU target is a share of it)
    memory: str = "4Gi"
    service_account: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    # Seconds between SIGTERM and SIGKILL: a queue worker hands its message back first.
    stop_grace_s: int | None = None
    container: str = "server"  # the container's name in each pod


@dataclass(frozen=True)
class ServeState:
    """What `serve status` shows: the replicas, what the autoscaler sees and wants."""

    name: str
    namespace: str
    ready: int
    desired: int
    autoscaler_current: int | None
    autoscaler_desired: int | None
    metric: str  # e.g. "cpu 73% of 50%", "cpu: no metrics yet"
    endpoint: str  # the address inside the cluster, e.g. triton-m.default.svc:8001
    exists: bool = True
    detail: str = ""


class ServeDriver(Protocol):
    """What a backend does for `hpcrun serve`."""

    namespace: str

    def gpus_available(self) -> tuple[int, str]:
        """The most GPUs one node offers, and a line naming where they are (or are not)."""
        ...

    def start(
        self, spec: ServeSpec, *, timeout_s: float | None, progress: Progress | None = None
    ) -> None:
        """Create or update the server; wait until `minimum` replicas are ready unless
        `timeout_s` is None."""
        ...

    def state(self, name: str) -> ServeState: ...

    def stop(self, name: str, progress: Progress | None = None) -> int:
        """Delete the server's objects; how many there were."""
        ...
