"""`hpcrun serve triton`: a model kept up behind an autoscaler on a Kubernetes cluster.

What the FIL autoscaling recipe does by hand, in order, with every refusal before anything
is made: the cluster can serve (a Kubernetes backend), the flags make sense, the GPUs
asked for exist on some node, the model store's bucket exists and can be written, the
model repository is one Triton would load. Then the repository is exported from the model
(the same FIL repository `score --export-model-repo` writes) and uploaded to
`<store>/model_repository`, the server is recorded, and the driver creates it and waits
for its first replicas. A failure leaves the record saying what failed and the objects in
place for `serve status` to explain; `serve stop` removes them.

AWS credentials: the upload uses the user's own chain on this machine; the server reads
S3 as its service account's IAM role. Neither ever reaches the plan, the state store or
an object (tests plant a distinctive secret key in the environment and look for it).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hpcrun.errors import UsageError
from hpcrun.scheduler.serving import Scaling, ServeState
from hpcrun.services.scaled import ScaledService
from hpcrun.state import ServedModelRecord
from hpcrun.state import ServedState as Recorded
from hpcrun.workloads.farm_workers import FARM_NAME
from hpcrun.workloads.score import DEFAULT_BATCH_ROWS
from hpcrun.workloads.triton import (
    TRITON_IMAGE,
    TritonServe,
    models_in,
    repository_under,
    serve_spec,
)


@dataclass(frozen=True)
class ServeRequest:
    """`hpcrun serve triton` as its flags give it."""

    model: str | None = None  # exported to the store; None with `repository`
    repository: str | None = None  # s3://... served as it is
    store: str | None = None  # s3://bucket/prefix (default: the cluster file's serve.store)
    name: str = "triton"
    model_format: str | None = None
    predict: str = "proba"
    threshold: float = 0.5
    batch_rows: int = DEFAULT_BATCH_ROWS
    features: int | None = None
    minimum: int = 1
    maximum: int = 4
    target_cpu: int | None = 50
    target_metric: str | None = None  # NAME=VALUE
    scale_down_after_s: int | None = None
    gpus_per_replica: int = 1
    cpu: str = "1"
    memory: str = "4Gi"
    image: str | None = None
    service_account: str | None = None
    timeout_s: float | None = 600.0  # None: return once the objects exist


@dataclass(frozen=True)
class ServeView:
    record: ServedModelRecord
    state: ServeState | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.record.name,
            "cluster": self.record.cluster,
            "status": self.record.status,
            "detail": self.record.detail,
            "repository": self.record.plan.get("repository"),
            "image": self.record.plan.get("image"),
            "live": None if self.state is None else asdict(self.state),
        }


def scaling_of(request: ServeRequest) -> Scaling:
    window = request.scale_down_after_s
    if request.target_metric is None:
        return Scaling(request.minimum, request.maximum, request.target_cpu, None, None, window)
    name, sep, value = request.target_metric.partition("=")
    if not sep or not name or not value:
        raise UsageError(
            f"--target-metric {request.target_metric!r}: NAME=VALUE, the average per replica",
            "e.g. --target-metric nv_inference_queue_duration_us=100",
        )
    return Scaling(request.minimum, request.maximum, None, name, value, window)


class ServeService(ScaledService):
    """Served models of one cluster."""

    COMMAND = "hpcrun serve"

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.cluster_config.get("serve") or {})

    # up -------------------------------------------------------------------------------

    def plan(self, request: ServeRequest, repository: str) -> TritonServe:
        config = self.cluster_config
        index = dict(config.get("index") or {})
        plan = TritonServe(
            repository=repository,
            name=request.name,
            image=request.image or self.settings.get("image") or TRITON_IMAGE,
            scaling=scaling_of(request),
            gpus_per_replica=request.gpus_per_replica,
            cpu=request.cpu,
            memory=request.memory,
            # the IndeX pods' account reads S3 (AmazonS3ReadOnlyAccess on EKS by default)
            service_account=request.service_account
            or self.settings.get("service_account")
            or index.get("service_account"),
            region=config.get("region"),
        )
        plan.validate()
        return plan

    def up(self, request: ServeRequest) -> ServeView:
        driver = self.driver()
        if (request.model is None) == (request.repository is None):
            raise UsageError(
                "serve triton needs --model (exported to the store) or --model-repository",
                "e.g. hpcrun serve triton --model model.json --store s3://bucket/models",
            )
        if request.name == FARM_NAME:
            raise UsageError(
                f"--name {FARM_NAME} is the render farm's (hpcrun farm)",
                "name the server after its model, e.g. --name fraud",
            )
        repository = request.repository or repository_under(self._store(request))
        plan = self.plan(request, repository)  # flags refused before anything is made
        self.check_gpus(driver, plan.gpus_per_replica, "--gpus-per-replica")
        if request.model is not None:
            self._export(request, plan)
        else:
            self._check_repository(repository)
        spec = serve_spec(plan)
        plan_json = {
            "repository": plan.repository,
            "image": plan.image,
            "namespace": driver.namespace,
            "min": plan.scaling.minimum,
            "max": plan.scaling.maximum,
            "gpus_per_replica": plan.gpus_per_replica,
            "service_account": plan.service_account,
        }
        self.keep_up(driver, spec, plan_json, request.timeout_s)
        return self.view(plan.name)

    def _store(self, request: ServeRequest) -> str:
        store = request.store or self.settings.get("store")
        if not store:
            raise UsageError(
                "serve triton --model needs an S3 prefix to put the model repository in",
                "pass --store s3://bucket/prefix, or set serve.store in the cluster file",
            )
        return str(store)

    def _export(self, request: ServeRequest, plan: TritonServe) -> None:
        from hpcrun.services.score import export_model_repository
        from hpcrun.storage import s3

        assert request.model is not None
        s3.check_writable(plan.repository)  # names a missing or read-only bucket
        with tempfile.TemporaryDirectory(prefix="hpcrun-serve-") as tmp:
            model = Path(request.model)
            if s3.is_s3_url(request.model):
                model = Path(tmp) / s3.parse_s3_url(request.model).name
                s3.download(request.model, model)
            target = Path(tmp) / "repository"
            written = export_model_repository(
                model,
                target,
                model_format=request.model_format,
                predict=request.predict,
                threshold=request.threshold,
                batch_rows=request.batch_rows,
                gpus=plan.gpus_per_replica > 0,
                features=request.features,
            )
            configs = {
                str(p.relative_to(target)): p.read_text()
                for p in written
                if p.name == "config.pbtxt"
            }
            models = models_in(configs)
            self.progress.step(f"exporting model {', '.join(models)} to {plan.repository}")
            root = s3.parse_s3_url(plan.repository)
            for path in written:
                s3.upload(path, root.join(str(path.relative_to(target))))

    def _check_repository(self, repository: str) -> None:
        from hpcrun.storage import s3

        keys = s3.list_keys(repository)
        root = s3.parse_s3_url(repository)
        configs = {}
        with tempfile.TemporaryDirectory(prefix="hpcrun-serve-") as tmp:
            for key in sorted(keys):
                relative = key[len(root.folder) :]
                if relative.endswith("config.pbtxt") and relative.count("/") == 1:
                    local = Path(tmp) / relative
                    s3.download(f"s3://{root.bucket}/{key}", local)
                    configs[f"{repository}/{relative}"] = local.read_text()
        if not keys:
            raise UsageError(
                f"--model-repository {repository}: nothing is there",
                "export one: hpcrun serve triton --model MODEL --store s3://bucket/prefix",
            )
        models_in(configs)

    # status / stop ----------------------------------------------------------------------

    def view(self, name: str) -> ServeView:
        record = self.store.served_model(self.cluster, name)
        if record is None or record.plan.get("kind") == "farm":
            known = [r.name for r in self.records()]
            raise UsageError(
                f"no served model {name!r} on cluster {self.cluster}",
                f"served here: {', '.join(known)}" if known else "start one: hpcrun serve triton",
            )
        state = self.driver().state(name) if record.status != Recorded.STOPPED else None
        return ServeView(record, state)

    def views(self, name: str | None = None) -> list[ServeView]:
        if name is not None:
            return [self.view(name)]
        return [self.view(r.name) for r in self.records() if r.status != Recorded.STOPPED]

    def records(self) -> list[ServedModelRecord]:
        """The cluster's served models (the render farm's record is `hpcrun farm`'s)."""
        return [r for r in self.store.served_models(self.cluster) if r.plan.get("kind") != "farm"]

    def stop(self, name: str) -> int:
        record = self.store.served_model(self.cluster, name)
        if record is None or record.plan.get("kind") == "farm":
            self.view(name)  # says which exist
        return self.take_down(self.driver(), name)
