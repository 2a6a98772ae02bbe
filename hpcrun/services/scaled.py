"""What the services of long-running, autoscaled workloads share (`serve` for a model
server, `farm` for the render farm's workers): the backend's serving driver, refused
where there is none (Slurm), the GPU check before anything is made, and the lifecycle of
the state store's record around the driver's start and stop, so a failed or interrupted
start leaves a record saying why and `stop` is recorded before the objects go."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from hpcrun.backends import refusal
from hpcrun.backends.base import Feature
from hpcrun.errors import HpcrunError, UsageError
from hpcrun.scheduler.serving import ServeDriver, ServeSpec
from hpcrun.services.base import ClusterService
from hpcrun.state import ServedState


class ScaledService(ClusterService):
    COMMAND: ClassVar[str]  # what a Slurm cluster refuses: "hpcrun serve" | "hpcrun farm"

    @property
    def cluster_config(self) -> dict[str, Any]:
        return dict(getattr(self.backend, "config", {}))

    def driver(self) -> ServeDriver:
        """The Kubernetes backends' serving layer (`hpcrun.k8s.serve`), which services
        reach only through the backend; other backends are refused before any work."""
        make = getattr(self.backend, "serve_driver", None)
        if make is None:
            raise refusal(self.cluster, self.backend.name, Feature.SERVE, self.COMMAND)
        driver: ServeDriver = make()
        return driver

    def check_gpus(self, driver: ServeDriver, asked: int, flag: str) -> None:
        """No replica may ask for more GPUs than the biggest node has (named)."""
        if not asked:
            return
        most, where = driver.gpus_available()
        if asked > most:
            raise UsageError(
                f"{flag} {asked}: no node of cluster {self.cluster} has that many GPUs ({where})",
                f"ask for fewer, add a GPU node group, or run on CPUs: {flag} 0",
            )

    def keep_up(
        self,
        driver: ServeDriver,
        spec: ServeSpec,
        plan: Mapping[str, Any],
        timeout_s: float | None,
    ) -> None:
        """Record `spec.name`, then have the driver make it (and wait for its first
        replicas unless `timeout_s` is None)."""
        self.store.put_served_model(self.cluster, spec.name, plan, ServedState.STARTING)
        try:
            driver.start(spec, timeout_s=timeout_s, progress=self.progress)
        except (HpcrunError, KeyboardInterrupt) as exc:
            detail = exc.message if isinstance(exc, HpcrunError) else "interrupted"
            self.store.set_served_model(self.cluster, spec.name, ServedState.FAILED, detail)
            raise
        status = ServedState.UP if timeout_s is not None else ServedState.STARTING
        self.store.set_served_model(self.cluster, spec.name, status, "")

    def take_down(self, driver: ServeDriver, name: str) -> int:
        """Delete `name`'s objects, recorded before and after; how many there were."""
        self.store.set_served_model(self.cluster, name, ServedState.STOPPING, "")
        removed = driver.stop(name, progress=self.progress)
        self.store.set_served_model(self.cluster, name, ServedState.STOPPED, "")
        return removed
