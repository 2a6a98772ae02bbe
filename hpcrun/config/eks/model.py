"""The Kubernetes cluster files as pydantic models: `backend: eks` and `backend: kubernetes`.

An `eks` file says what NVIDIA's EKS provisioning makes (a GPU managed node group, OIDC and
IAM service accounts, an nginx ingress with TLS and basic auth); `render.py` turns it into
an eksctl ClusterConfig. A `kubernetes` file names a cluster that already exists, through
a kubeconfig context. Model-level checks (min <= desired <= max, GPUs on a non-GPU type)
start their message with the key to change, so `problems.py` reports them on that key.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hpcrun import __version__
from hpcrun.config.pcluster.model import GPUS_BY_INSTANCE_TYPE, INSTANCE_TYPE_RE, REGION_RE

# Kubernetes minor versions Amazon EKS offers for new clusters (standard or extended
# support) as of December 2026: 1.31 left extended support on 26 Nov 2026. Update this
# when EKS adds or drops one (`eksctl utils describe-cluster-versions`).
EKS_VERSIONS: tuple[str, ...] = ("1.32", "1.33", "1.34", "1.35", "1.36")
DEFAULT_EKS_VERSION = "1.35"

# GPUs per instance beyond the ParallelCluster table (same source: EC2 instance type specs).
EKS_GPUS_BY_INSTANCE_TYPE: dict[str, int] = {
    **GPUS_BY_INSTANCE_TYPE,
    "g5.2xlarge": 1,
    "g5.4xlarge": 1,
    "g5.8xlarge": 1,
    "g5.16xlarge": 1,
    "g5.24xlarge": 4,
    "g6.xlarge": 1,
    "g6.2xlarge": 1,
    "g6.4xlarge": 1,
    "g6.8xlarge": 1,
    "g6.12xlarge": 4,
    "g6.48xlarge": 8,
    "g6e.xlarge": 1,
    "g6e.12xlarge": 4,
    "g6e.48xlarge": 8,
    "p4de.24xlarge": 8,
    "p5.48xlarge": 8,
}
# EC2 families with NVIDIA GPUs: g (graphics: g4dn, g5, g6, g6e, gr6) and p (p3, p4d, p5).
GPU_FAMILY_RE = r"^(g|p)[0-9]"

DNS_LABEL_RE = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
POLICY_ARN_RE = r"^arn:aws[a-z-]*:iam::(aws|[0-9]{12}):policy/[A-Za-z0-9+=,.@_/-]+$"
ACM_ARN_RE = r"^arn:aws[a-z-]*:acm:([a-z]{2}(-gov)?-[a-z]+-[0-9]):[0-9]{12}:certificate/[0-9a-f-]+$"

# NVIDIA's provisioning: IndeX reads scenes from S3 and meters through AWS Marketplace.
NVINDEX_POLICY_ARNS = (
    "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
    "arn:aws:iam::aws:policy/AWSMarketplaceMeteringRegisterUsage",
)


def is_gpu_instance_type(instance_type: str) -> bool:
    return re.match(GPU_FAMILY_RE, instance_type) is not None


def _check_tags(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
            raise ValueError(f"tag key {key!r}: 1-128 characters, not starting with aws:")
    return value


class NodeGroup(BaseModel):
    """One EKS managed node group of identical instances."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$", description="node group name")
    instance_type: str = Field(..., pattern=INSTANCE_TYPE_RE, description="e.g. g4dn.xlarge")
    min_size: int = Field(1, ge=0, le=1000, description="nodes kept running")
    desired_size: int = Field(1, ge=0, le=1000, description="nodes at creation")
    max_size: int = Field(1, ge=1, le=1000, description="nodes at most")
    gpus_per_node: int | None = Field(
        None, ge=0, le=16, description="GPUs per node (default: known for the instance type)"
    )
    spot: bool = Field(False, description="Spot instances (cheaper, may be taken back)")
    volume_size_gib: int = Field(80, ge=20, le=16384, description="root volume of each node")
    labels: dict[str, str] = Field(default_factory=dict, description="extra Kubernetes labels")

    @model_validator(mode="after")
    def _sizes_and_gpus(self) -> NodeGroup:
        if self.min_size > self.max_size:
            raise ValueError(
                f"max_size ({self.max_size}) must be at least min_size ({self.min_size})"
            )
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"desired_size ({self.desired_size}) must be between min_size "
                f"({self.min_size}) and max_size ({self.max_size})"
            )
        gpu_type = is_gpu_instance_type(self.instance_type)
        if self.gpus_per_node and not gpu_type:
            raise ValueError(
                f"gpus_per_node ({self.gpus_per_node}) asked of {self.instance_type}, "
                "which has no GPU (GPU types: g4dn, g5, g6, p3, p4d, p5, ...)"
            )
        if gpu_type and self.gpus_per_node is None and self.gpus() is None:
            raise ValueError(
                f"gpus_per_node: not known for {self.instance_type}; set it to its GPU count"
            )
        return self

    def gpus(self) -> int | None:
        """GPUs per node: the file's value, else what the instance type is known to have
        (0 for a type without GPUs)."""
        if self.gpus_per_node is not None:
            return self.gpus_per_node
        if not is_gpu_instance_type(self.instance_type):
            return 0
        return EKS_GPUS_BY_INSTANCE_TYPE.get(self.instance_type)


class ServiceAccount(BaseModel):
    """A Kubernetes service account bound to an IAM role (IRSA) with these policies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=DNS_LABEL_RE, description="service account name")
    namespace: str = Field("default", pattern=DNS_LABEL_RE)
    attach_policy_arns: list[str] = Field(..., min_length=1, description="IAM policy ARNs")

    @field_validator("attach_policy_arns")
    @classmethod
    def _arns(cls, value: list[str]) -> list[str]:
        for arn in value:
            if not re.match(POLICY_ARN_RE, arn):
                raise ValueError(
                    f"{arn!r} is not an IAM policy ARN like "
                    "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
                )
        return value


def _nvindex_access() -> list[ServiceAccount]:
    return [
        ServiceAccount(
            name="nvindex-access", namespace="default", attach_policy_arns=list(NVINDEX_POLICY_ARNS)
        )
    ]


# NVIDIA's chart (charts/nvindex/values.yaml): its image in NVIDIA's ECR registry, pulled
# with the secret `nvindexcr` that NVIDIA's provisioning makes from the Marketplace login.
NVINDEX_IMAGE = "185367027512.dkr.ecr.us-east-1.amazonaws.com/nvindex:360141"
NVINDEX_PULL_SECRET = "nvindexcr"
# Built from this package by `make open-renderer-image` (scripts/docker/); push it where
# the cluster pulls from and name it in the cluster file.
OPEN_RENDERER_IMAGE = f"hpcrun/open-renderer:{__version__}"


class IndexImage(BaseModel):
    """What IndeX pods run: the image, its pull secret, their service account and data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(NVINDEX_IMAGE, min_length=1, description="NVIDIA IndeX container image")
    pull_secret: str | None = Field(
        NVINDEX_PULL_SECRET, pattern=DNS_LABEL_RE, description="image pull secret (null: none)"
    )
    service_account: str | None = Field(
        None, pattern=DNS_LABEL_RE, description="service account of the pods (IRSA for S3)"
    )
    data_location: str | None = Field(
        None, pattern=r"^s3://[a-z0-9.-]{3,63}(/.*)?$", description="scene data in S3"
    )
    open_image: str = Field(
        OPEN_RENDERER_IMAGE,
        min_length=1,
        description="hpcrun's open renderer image (`make open-renderer-image`), --renderer open",
    )


class ScaledSettings(BaseModel):
    """Defaults of a workload kept up by replicas (`serve`, `farm`), unless flags say other."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: str | None = Field(
        None, pattern=r"^s3://[a-z0-9.-]{3,63}(/.*)?$", description="s3://bucket/prefix it uses"
    )
    image: str | None = Field(None, min_length=1, description="its image (null: hpcrun's default)")
    service_account: str | None = Field(
        None, pattern=DNS_LABEL_RE, description="service account whose IAM role reaches the store"
    )


class ServeSettings(ScaledSettings):
    """`hpcrun serve triton`: the store holds model repositories; the image is a
    tritonserver with FIL (null: NVIDIA's NGC image); the account reads the store (null:
    index.service_account)."""


class FarmSettings(ScaledSettings):
    """`hpcrun farm up` and the first `hpcrun render` here: the store holds the runs
    (scenes, frames, videos); the image is the worker's (null: hpcrun/render-worker:VERSION);
    the account reads and writes the store and the queue."""


class Ingress(BaseModel):
    """ingress-nginx in front of the sessions: TLS at the load balancer, basic auth."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="install ingress-nginx (helm) at create")
    controller: Literal["nginx"] = Field("nginx", description="the ingress controller")
    tls: str = Field(
        "self-signed",
        description="self-signed (a certificate made for the load balancer's host name) "
        "or an ACM certificate ARN",
    )
    basic_auth: bool = Field(True, description="basic auth (user nvindex) on every session")
    chart: str = Field("ingress-nginx", min_length=1, description="the controller's chart")
    repository: str | None = Field(
        "https://kubernetes.github.io/ingress-nginx",
        description="its helm repository (null: `chart` is a local path, e.g. a mirror)",
    )

    @field_validator("tls")
    @classmethod
    def _tls(cls, value: str) -> str:
        if value != "self-signed" and not re.match(ACM_ARN_RE, value):
            raise ValueError(
                f"{value!r}: self-signed, or an ACM certificate ARN like "
                "arn:aws:acm:us-east-1:123456789012:certificate/<id>"
            )
        return value


class EksClusterConfig(BaseModel):
    """An Amazon EKS cluster made by hpcrun (eksctl or the EKS API): GPU node groups, IRSA,
    an ingress, as NVIDIA's IndeX provisioning makes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["eks"] = "eks"
    name: str = Field(..., pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,99}$", description="EKS cluster name")
    region: str = Field(..., pattern=REGION_RE, description="AWS region, e.g. us-east-1")
    kubernetes_version: str = Field(DEFAULT_EKS_VERSION, description="a version EKS supports")
    node_groups: list[NodeGroup] = Field(..., min_length=1, description="managed node groups")
    oidc: bool = Field(True, description="an IAM OIDC provider (needed by service accounts)")
    service_accounts: list[ServiceAccount] = Field(default_factory=_nvindex_access)
    ingress: Ingress = Field(default_factory=Ingress)  # type: ignore[arg-type]
    index: IndexImage = Field(
        default_factory=lambda: IndexImage(service_account="nvindex-access"),  # type: ignore[call-arg]
    )
    tags: dict[str, str] = Field(default_factory=dict, description="tags on every resource")
    serve: ServeSettings = Field(default_factory=ServeSettings)  # type: ignore[arg-type]
    farm: FarmSettings = Field(default_factory=FarmSettings)  # type: ignore[arg-type]

    @field_validator("kubernetes_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if isinstance(value, float | int) and not isinstance(value, bool):
            raise ValueError(
                f"write the version in quotes, e.g. {DEFAULT_EKS_VERSION!r} "
                f"(YAML reads {value} as a number)"
            )
        if isinstance(value, str) and value not in EKS_VERSIONS:
            raise ValueError(
                f"{value!r} is not a Kubernetes version EKS supports "
                f"(it supports {', '.join(EKS_VERSIONS)})"
            )
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_tags(value)

    @model_validator(mode="after")
    def _whole(self) -> EksClusterConfig:
        names = [group.name for group in self.node_groups]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"node_groups: names must differ ({', '.join(repeated)} repeated)")
        if self.service_accounts and not self.oidc:
            raise ValueError("oidc: IAM service accounts need oidc: true")
        accounts = [a.name for a in self.service_accounts]
        for key, named, needs in (
            ("serve", self.serve.service_account, "reads serve.store"),
            ("farm", self.farm.service_account, "reads and writes farm.store and SQS"),
        ):
            if named and named not in accounts:
                raise ValueError(
                    f"{key}.service_account: {named!r} is not one of service_accounts "
                    f"({', '.join(accounts) or 'none'}): add it there with a policy that "
                    f"{needs}"
                )
        cert = re.match(ACM_ARN_RE, self.ingress.tls)
        if cert and cert.group(1) != self.region:
            raise ValueError(
                f"ingress.tls: the ACM certificate is in {cert.group(1)}; the load "
                f"balancer needs one in {self.region}"
            )
        return self

    def summary(self) -> str:
        """One line for `config validate`: the cluster's name and shape."""
        groups = ", ".join(
            f"{g.name} {g.instance_type} x {g.min_size}-{g.max_size}" for g in self.node_groups
        )
        return f"{self.name}: eks {self.kubernetes_version} in {self.region}, {groups}"


class ExistingIngress(BaseModel):
    """The ingress-nginx controller the cluster already runs (IngressClass nginx), which
    sessions are published on, as the EKS backend's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        ...,
        pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$",
        description="its host name (the load balancer's)",
    )
    tls_secret: str | None = Field(
        None, pattern=DNS_LABEL_RE, description="TLS secret for the host (null: plain http)"
    )
    basic_auth: bool = Field(True, description="basic auth (user nvindex) on every session")


class KubernetesClusterConfig(BaseModel):
    """A Kubernetes cluster that already exists (an EKS cluster made by someone else, or
    any other), reached through a kubeconfig context."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["kubernetes"] = "kubernetes"
    name: str = Field(..., pattern=r"^[a-z][a-z0-9-]{0,31}$", description="cluster name")
    kubeconfig: str = Field("~/.kube/config", min_length=1, description="kubeconfig file")
    context: str | None = Field(None, min_length=1, description="context (default: current)")
    namespace: str = Field("default", pattern=DNS_LABEL_RE, description="hpcrun's namespace")
    index: IndexImage = Field(default_factory=IndexImage)  # type: ignore[arg-type]
    ingress: ExistingIngress | None = Field(
        None, description="an ingress-nginx the cluster runs already (null: none; --tunnel)"
    )
    serve: ServeSettings = Field(default_factory=ServeSettings)  # type: ignore[arg-type]
    farm: FarmSettings = Field(default_factory=FarmSettings)  # type: ignore[arg-type]

    def summary(self) -> str:
        context = self.context or "current context"
        return f"{self.name}: kubernetes via {self.kubeconfig} ({context}), ns {self.namespace}"
