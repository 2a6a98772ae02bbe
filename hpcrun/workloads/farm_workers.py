"""The render farm's workers as a scaled service: one container image (Debian's Blender and
ffmpeg plus this package, scripts/docker/render-worker.Dockerfile) running
`python3 -m hpcrun.node.farm worker`, replicas between a floor and a ceiling at a CPU
target, as the render-farm recipe's worker Deployment and its HPA (1 to 10 at 50 %).

The workers reach SQS and S3 as their service account's IAM role (IRSA), so the spec holds
the queue's URL, the bucket, the prefix and the region, and no credential. A worker asks for
the CPUs Blender will use (`cpu`), which is also what the CPU target is a share of; the
grace period lets a worker told to stop (a scale-in) hand its message back first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hpcrun import __version__
from hpcrun.errors import UsageError
from hpcrun.scheduler import CPUS_ENV
from hpcrun.scheduler.serving import Scaling, ServeSpec

WORKER_IMAGE = f"hpcrun/render-worker:{__version__}"  # `make render-worker-image`
FARM_NAME = "render-farm"
DEFAULT_VISIBILITY_S = 1200  # the recipe's 20 minutes; the worker's heartbeat extends it
STOP_GRACE_S = 60


@dataclass(frozen=True)
class FarmPlan:
    queue_url: str
    bucket: str
    prefix: str
    region: str | None = None
    image: str = WORKER_IMAGE
    scaling: Scaling = field(default_factory=lambda: Scaling(1, 10, 50))
    gpus_per_worker: int = 0
    cpu: str = "2"
    memory: str = "4Gi"
    service_account: str | None = None
    visibility_s: int = DEFAULT_VISIBILITY_S
    name: str = FARM_NAME

    def validate(self) -> None:
        if self.gpus_per_worker < 0:
            raise UsageError(f"--gpus-per-worker {self.gpus_per_worker}: 0 or more")
        if not 60 <= self.visibility_s <= 43200:
            raise UsageError(
                f"--visibility {self.visibility_s}: 60 to 43200 seconds (SQS's limit)",
                "a chunk longer than this is kept by the worker's heartbeat anyway",
            )


def whole_cpus(quantity: str) -> int:
    """A Kubernetes CPU quantity ("2", "1.5", "500m") as the whole CPUs a task may use,
    rounded up (the Downward API rounds `requests.cpu` the same way), at least 1."""
    text = quantity.strip()
    try:
        cpus = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise UsageError(
            f"--cpu {quantity!r} is not a CPU quantity", "give e.g. 2, 1.5 or 500m"
        ) from None
    if not math.isfinite(cpus) or cpus <= 0:
        raise UsageError(f"--cpu {quantity!r}: more than 0 CPUs", "give e.g. 2, 1.5 or 500m")
    return max(1, math.ceil(cpus))


def worker_spec(plan: FarmPlan) -> ServeSpec:
    plan.validate()
    args = (
        "python3",
        "-m",
        "hpcrun.node.farm",
        "worker",
        "--queue",
        plan.queue_url,
        "--bucket",
        plan.bucket,
        "--prefix",
        plan.prefix,
        "--visibility-s",
        str(plan.visibility_s),
    )
    # Blender's threads (-t) follow HPCRUN_CPUS, as in a Slurm task: without it Blender
    # starts one per core of the node, far more than the pod's CPU request.
    env = {CPUS_ENV: str(whole_cpus(plan.cpu))}
    if plan.region:
        env |= {"AWS_REGION": plan.region, "AWS_DEFAULT_REGION": plan.region}
    return ServeSpec(
        name=plan.name,
        image=plan.image,
        args=args,
        scaling=plan.scaling,
        gpus_per_replica=plan.gpus_per_worker,
        cpu=plan.cpu,
        memory=plan.memory,
        service_account=plan.service_account,
        env=env,
        labels={
            "app.kubernetes.io/name": "hpcrun-render-worker",
            "app.kubernetes.io/instance": plan.name,
        },
        stop_grace_s=STOP_GRACE_S,
        container="worker",
    )
