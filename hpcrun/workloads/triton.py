"""Triton serving a model repository from S3, as the FIL autoscaling recipe runs it on EKS,
as plain data: a `TritonServe` plan becomes a `ServeSpec` (hpcrun.scheduler.serving).

The recipe pastes AWS keys, base64-encoded, into helm values that become a Secret the pods
read. Here nothing of the kind exists: tritonserver reads `s3://` through the AWS SDK's
default chain, which on EKS finds the web-identity token the pod identity webhook mounts
for the pod's service account (IRSA), so the only AWS setting in the spec is the region.

The repository is the one `hpcrun score --export-model-repo` writes (FIL backend,
config.pbtxt + the model file), under `<store>/model_repository/`; `check_model_config`
parses a config.pbtxt with Triton's own ModelConfig message, so a repository Triton would
refuse is named before any object exists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from hpcrun.errors import UsageError
from hpcrun.scheduler.serving import Port, Scaling, ServeSpec

# NVIDIA's NGC image, which carries the FIL backend (PyPI's tritonserver has none).
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
REPOSITORY_DIR = "model_repository"
DEFAULT_NAME = "triton"
# A Service name is a DNS-1035 label; the Deployment's pods add a suffix to it.
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$")
_QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|Ki|Mi|Gi)?$")


@dataclass(frozen=True)
class TritonServe:
    """`hpcrun serve triton` once its flags are read."""

    repository: str  # s3://bucket/prefix/model_repository
    name: str = DEFAULT_NAME
    image: str = TRITON_IMAGE
    scaling: Scaling = field(default_factory=Scaling)
    gpus_per_replica: int = 1
    cpu: str = "1"
    memory: str = "4Gi"
    service_account: str | None = None
    region: str | None = None

    def validate(self) -> None:
        if not _NAME_RE.match(self.name):
            raise UsageError(
                f"--name {self.name!r}: lower-case letters, digits and '-', starting with a "
                "letter, at most 42 characters",
                "e.g. --name fraud-model",
            )
        if not self.repository.startswith("s3://") or len(self.repository) <= len("s3://"):
            raise UsageError(
                f"--model-repository {self.repository!r}: an s3:// prefix",
                "e.g. --model-repository s3://my-models/fraud/model_repository",
            )
        if self.gpus_per_replica < 0:
            raise UsageError(f"--gpus-per-replica {self.gpus_per_replica}: 0 or more")
        for flag, value in (("--cpu", self.cpu), ("--memory", self.memory)):
            if not _QUANTITY_RE.match(value):
                raise UsageError(
                    f"{flag} {value!r} is not a Kubernetes quantity", "e.g. --cpu 2 --memory 8Gi"
                )


def repository_under(store: str) -> str:
    """Where an exported repository goes under the store prefix (s3://bucket/prefix)."""
    return f"{store.rstrip('/')}/{REPOSITORY_DIR}"


def serve_spec(plan: TritonServe) -> ServeSpec:
    plan.validate()
    args = (
        "tritonserver",
        f"--model-repository={plan.repository}",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        # ready only once every model loaded; a model that fails to load ends the pod,
        # so the Deployment says why instead of a server that answers with no model
        "--strict-readiness=true",
        "--exit-on-error=true",
    )
    env = {"AWS_REGION": plan.region, "AWS_DEFAULT_REGION": plan.region} if plan.region else {}
    return ServeSpec(
        name=plan.name,
        image=plan.image,
        args=args,
        ports=(Port("http", HTTP_PORT), Port("grpc", GRPC_PORT), Port("metrics", METRICS_PORT)),
        ready_path="/v2/health/ready",
        live_path="/v2/health/live",
        scaling=plan.scaling,
        gpus_per_replica=plan.gpus_per_replica,
        cpu=plan.cpu,
        memory=plan.memory,
        service_account=plan.service_account,
        env=env,
        labels={"app.kubernetes.io/name": "triton", "app.kubernetes.io/instance": plan.name},
    )


def check_model_config(path: str, text: str) -> str:
    """The model's name in a config.pbtxt, or a UsageError with Triton's own parse error.

    Triton reads config.pbtxt as a text-format `inference.ModelConfig`; tritonclient ships
    that message, so the check is the server's own grammar, not a guess at it."""
    from google.protobuf import text_format  # type: ignore[import-untyped]
    from tritonclient.grpc import model_config_pb2  # type: ignore[import-untyped]

    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as exc:
        raise UsageError(
            f"{path}: Triton would refuse this model configuration: {exc}",
            "fix the file (Triton's model_config.proto is the reference) or export the "
            "repository with hpcrun: hpcrun score -m MODEL --export-model-repo DIR",
        ) from None
    if not config.backend and not config.platform:
        raise UsageError(
            f'{path}: names no backend (e.g. backend: "fil")',
            "Triton cannot load a model without its backend",
        )
    return str(config.name)


def models_in(files: Mapping[str, str]) -> list[str]:
    """The models of a repository from its config.pbtxt files (relative path -> text):
    each checked, and each in the directory its name says (Triton's rule)."""
    models = []
    for path, text in sorted(files.items()):
        directory = path.rsplit("/", 2)[-2] if path.count("/") else ""
        name = check_model_config(path, text) or directory
        if directory and name != directory:
            raise UsageError(
                f"{path}: the model is named {name!r} but lives in {directory!r}",
                "Triton needs the directory to carry the model's name",
            )
        models.append(name)
    if not models:
        raise UsageError(
            "the model repository holds no model (no <model>/config.pbtxt)",
            "export one: hpcrun score -m MODEL --export-model-repo DIR",
        )
    return models
