"""The ParallelCluster cluster file as a pydantic model, and the values it is checked against.

An hpcrun file with `backend: parallelcluster` says what the user cares about (AMI, node
types and counts, DCV, job expansion); `ParallelClusterConfig` holds it, validated by key
path. Rendering it for ParallelCluster is `render.py`'s job, reporting its problems
`problems.py`'s and `schema.py`'s.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# ParallelCluster 3.16 `pcluster.constants.SUPPORTED_OSES` (alinux2 was dropped in 3.x).
PCLUSTER3_OSES = ("alinux2023", "ubuntu2204", "ubuntu2404", "rhel8", "rocky8", "rhel9", "rocky9")
# ParallelCluster 2.8.0 `base_os` values; accepted so a v2-only file can still be written.
PCLUSTER2_OSES = ("alinux2", "alinux", "centos7", "centos6", "ubuntu1804", "ubuntu1604")
# The nearest OS ParallelCluster 2.8.0 knows for each version-3 OS. With a custom AMI the
# AMI decides what really runs; base_os only tells pcluster 2 which user and packages to use.
PCLUSTER2_OS_FOR = {
    "alinux2023": "alinux2",
    "ubuntu2204": "ubuntu1804",
    "ubuntu2404": "ubuntu1804",
    "rhel8": "centos7",
    "rocky8": "centos7",
    "rhel9": "centos7",
    "rocky9": "centos7",
}
OsName = Literal[
    "alinux2023",
    "ubuntu2204",
    "ubuntu2404",
    "rhel8",
    "rocky8",
    "rhel9",
    "rocky9",
    "alinux2",
    "alinux",
    "centos7",
    "centos6",
    "ubuntu1804",
    "ubuntu1604",
]

# GPUs per instance for the types IndeX clusters use; `gpus_per_node` defaults from here.
GPUS_BY_INSTANCE_TYPE = {
    "g4dn.xlarge": 1,
    "g4dn.2xlarge": 1,
    "g4dn.4xlarge": 1,
    "g4dn.8xlarge": 1,
    "g4dn.16xlarge": 1,
    "g4dn.12xlarge": 4,
    "g4dn.metal": 8,
    "g5.xlarge": 1,
    "g5.12xlarge": 4,
    "g5.48xlarge": 8,
    "p3.2xlarge": 1,
    "p3.8xlarge": 4,
    "p3.16xlarge": 8,
    "p3dn.24xlarge": 8,
    "p4d.24xlarge": 8,
}

# family+generation, optional attributes, then a size: g4dn.12xlarge, p3.8xlarge, m5.large.
INSTANCE_TYPE_RE = (
    r"^[a-z]+[0-9][a-z0-9-]*\.(nano|micro|small|medium|large|[0-9]*xlarge|metal(-[0-9]+xl)?)$"
)
AMI_RE = r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$"
SUBNET_RE = r"^(create|subnet-([0-9a-f]{8}|[0-9a-f]{17}))$"
VPC_RE = r"^vpc-([0-9a-f]{8}|[0-9a-f]{17})$"
REGION_RE = r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$"

# Values the presets ship with that the user must replace; `placeholders()` finds them.
PLACEHOLDERS: dict[str, str] = {
    "custom_ami": "ami-0123456789abcdef0",
    "key_name": "my-key-pair",
    "private_key_path": "~/.ssh/my-key-pair.pem",
    "subnet_id": "subnet-0123456789abcdef0",
    "vpc_id": "vpc-0123456789abcdef0",
    "post_install_url": "s3://my-bucket/hpcrun/pcluster-post-install-job-expansion.sh",
}

Format = Literal["pcluster-v3", "pcluster-v2"]
FORMATS: tuple[Format, ...] = ("pcluster-v3", "pcluster-v2")


class DcvSettings(BaseModel):
    """NICE DCV on the head node: the remote desktop where the IndeX viewer is opened."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="run a DCV server on the head node")
    port: int = Field(
        8443, ge=1024, le=65535, description="HTTPS port of the DCV server (1024-65535)"
    )
    allowed_cidr: str = Field(
        "0.0.0.0/0", description="who may reach the DCV port; narrow it to your address (/32)"
    )

    @field_validator("allowed_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"not a CIDR block like 198.51.100.7/32 ({exc})") from None
        return value


class SharedStorage(BaseModel):
    """One EBS volume exported from the head node to every compute node (scenes, results)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        "shared",
        pattern=r"^[a-zA-Z0-9_-]{1,30}$",
        description="ParallelCluster's name of the volume (an update that renames it replaces it)",
    )
    mount_dir: str = Field("/shared", pattern=r"^/[A-Za-z0-9_./-]*$", description="mount point")
    size_gib: int = Field(100, ge=1, le=16384, description="EBS volume size")
    volume_type: Literal["gp3", "gp2", "io1", "io2", "st1", "sc1"] = Field(
        "gp3", description="EBS type; ParallelCluster 2.8.0 predates gp3 and gets gp2"
    )


class S3Access(BaseModel):
    """A bucket the head and compute nodes may read (and write), through their IAM role:
    ParallelCluster 3's `Iam.S3Access`, 2's `s3_read_resource` / `s3_read_write_resource`
    (NVIDIA's IndeX template reads its datasets this way)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(..., pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="name")
    key_prefix: str | None = Field(
        None, min_length=1, description="only keys under this prefix (null: the whole bucket)"
    )
    write: bool = Field(False, description="write access too")


QUEUE_NAME_RE = r"^[a-z][a-z0-9-]{0,24}$"
# What the one-queue keys are called, for the message that refuses them beside `queues`.
SINGLE_QUEUE_KEYS = (
    "queue_name",
    "compute_instance_type",
    "min_count",
    "max_count",
    "gpus_per_node",
    "placement_group",
)


def compute_resource_name(instance_type: str) -> str:
    """ParallelCluster names compute resources `[a-z][a-z0-9-]*`: g4dn.12xlarge -> g4dn-12xlarge."""
    return re.sub(r"[^a-z0-9-]", "-", instance_type.lower())


def _placement_group_value(value: bool | str) -> bool | str:
    if isinstance(value, str) and not re.match(r"^[A-Za-z0-9_.+=@-]{1,255}$", value):
        raise ValueError("a placement group name (letters, digits, _.+=@-) or true/false")
    return value


class ComputeResource(BaseModel):
    """One kind of compute node in a queue: ParallelCluster's `ComputeResources` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(
        None, pattern=QUEUE_NAME_RE, description="(default: from the instance type)"
    )
    instance_type: str = Field(..., pattern=INSTANCE_TYPE_RE)
    min_count: int = Field(0, ge=0, le=1000, description="nodes kept running")
    max_count: int = Field(4, ge=1, le=1000, description="nodes at most")
    gpus_per_node: int | None = Field(
        None, ge=0, le=16, description="GPUs of one node (default: known for the type)"
    )

    @model_validator(mode="after")
    def _counts(self) -> ComputeResource:
        if self.max_count < self.min_count:
            raise ValueError(
                f"max_count ({self.max_count}) must be at least min_count ({self.min_count})"
            )
        return self

    @property
    def resolved_name(self) -> str:
        return self.name or compute_resource_name(self.instance_type)

    def gpus(self) -> int | None:
        """GPUs per node: the file's value, else what the instance type is known to have."""
        if self.gpus_per_node is not None:
            return self.gpus_per_node
        return GPUS_BY_INSTANCE_TYPE.get(self.instance_type)


class Queue(BaseModel):
    """A Slurm partition of the cluster (`hpcrun index/render/score --partition NAME`):
    ParallelCluster's `SlurmQueues` entry. What hpcrun does not model of it (Efa, spot
    prices, capacity reservations, custom actions) goes in the `parallelcluster:` overlay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(..., pattern=QUEUE_NAME_RE, description="the Slurm partition")
    compute_resources: list[ComputeResource] = Field(..., min_length=1)
    spot: bool = Field(False, description="Spot capacity (CapacityType: SPOT)")
    placement_group: bool | str = Field(
        True, description="true: a new cluster placement group; a string: an existing one's name"
    )
    subnet_id: str | None = Field(
        None,
        pattern=r"^subnet-([0-9a-f]{8}|[0-9a-f]{17})$",
        description="this queue's subnet (null: the cluster's subnet_id)",
    )

    _placement_group = field_validator("placement_group")(_placement_group_value)

    @field_validator("compute_resources")
    @classmethod
    def _unique(cls, value: list[ComputeResource]) -> list[ComputeResource]:
        names = [r.resolved_name for r in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                f"compute resource {twice[0]!r} is named twice; give each a distinct name"
            )
        return value

    @property
    def min_count(self) -> int:
        return sum(r.min_count for r in self.compute_resources)

    @property
    def max_count(self) -> int:
        return sum(r.max_count for r in self.compute_resources)


class ParallelClusterConfig(BaseModel):
    """An AWS ParallelCluster GPU cluster: its queues of compute nodes, DCV, storage.

    One queue of one node type is said with the flat keys (`compute_instance_type`,
    `queue_name`, `min_count`, ...); several with `queues`, never both."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["parallelcluster"] = "parallelcluster"
    name: str = Field(
        ...,
        pattern=r"^[a-zA-Z][a-zA-Z0-9-]{0,59}$",
        description="cluster (and CloudFormation stack) name, as ParallelCluster allows",
    )
    region: str = Field(..., pattern=REGION_RE, description="AWS region, e.g. us-east-1")
    format: Literal["pcluster-v3", "pcluster-v2"] = Field(
        "pcluster-v3",
        description="which ParallelCluster creates the cluster: v2 for AMIs pinned to 2.8.0",
    )
    custom_ami: str | None = Field(
        None,
        pattern=AMI_RE,
        description="AMI id, e.g. NVIDIA's IndeX AMI (null: ParallelCluster's own AMI of os)",
    )
    os: OsName = Field(
        "alinux2023", description="the OS (of custom_ami, if set), in ParallelCluster 3's names"
    )
    key_name: str = Field(..., min_length=1, max_length=255, description="EC2 key pair name")
    private_key_path: str | None = Field(
        None, description="local .pem file of key_name, for SSH and DCV (never copied)"
    )
    head_node_instance_type: str = Field("g4dn.4xlarge", pattern=INSTANCE_TYPE_RE)
    compute_instance_type: str = Field("g4dn.12xlarge", pattern=INSTANCE_TYPE_RE)
    queue_name: str = Field("gpu", pattern=QUEUE_NAME_RE, description="Slurm partition")
    min_count: int = Field(0, ge=0, le=1000, description="compute nodes kept running")
    max_count: int = Field(4, ge=1, le=1000, description="compute nodes at most")
    gpus_per_node: int | None = Field(
        None, ge=0, le=16, description="GPUs of one compute node (default: known for the type)"
    )
    subnet_id: str = Field(
        "create",
        pattern=SUBNET_RE,
        description="subnet of head and compute nodes, or `create` (hpcrun makes the VPC)",
    )
    vpc_id: str | None = Field(None, pattern=VPC_RE, description="VPC of subnet_id (v2 needs it)")
    placement_group: bool | str = Field(
        True, description="true: a new cluster placement group; a string: an existing one's name"
    )
    queues: list[Queue] | None = Field(
        None,
        min_length=1,
        description="several Slurm partitions, each of compute resources (null: the one "
        "queue of queue_name, compute_instance_type, min_count, max_count)",
    )
    dcv: DcvSettings = Field(default_factory=DcvSettings)  # type: ignore[arg-type]
    job_expansion: bool = Field(
        True, description="add permit_job_expansion to SchedulerParameters (hpcrun scale +N)"
    )
    use_ec2_hostnames: bool = Field(
        False, description="Dns.UseEc2Hostnames; ParallelCluster then sets nohold_on_prolog_fail"
    )
    post_install_url: str | None = Field(
        None,
        pattern=r"^(s3|https?)://\S+$",
        description="v2 only: where scripts/pcluster-post-install-job-expansion.sh was uploaded",
    )
    shared_storage: SharedStorage | None = Field(default_factory=SharedStorage)  # type: ignore[arg-type]
    s3_access: list[S3Access] = Field(
        default_factory=list, description="buckets the nodes may read (write) with their role"
    )
    root_volume_gib: int | None = Field(
        None, ge=35, le=16384, description="root volume of head and compute nodes (null: AMI's)"
    )
    elastic_ip: bool | str = Field(
        False,
        description="head node: true for a new Elastic IP, or an eipalloc-... id to reuse",
    )
    scaledown_idle_minutes: int = Field(
        10,
        ge=1,
        le=10080,
        description="a dynamic compute node idle this long is stopped (ScaledownIdletime)",
    )
    idle_down_minutes: int | None = Field(
        None,
        ge=10,
        le=43200,
        description="after this long without a job the head node powers the cluster off "
        "(compute nodes, then itself; null: never; `hpcrun create --idle-down` sets it)",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="tags on every resource")
    parallelcluster: dict[str, Any] = Field(
        default_factory=dict,
        description="ParallelCluster 3 YAML merged into the rendered config: what hpcrun does "
        "not model (more queues, FSx/EFS, login nodes, IAM, ...)",
    )

    _placement_group = field_validator("placement_group")(_placement_group_value)

    @field_validator("elastic_ip")
    @classmethod
    def _elastic_ip(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and not re.match(r"^eipalloc-[0-9a-f]{8,17}$", value):
            raise ValueError("true, false, or an Elastic IP allocation id like eipalloc-0abc1234")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not 1 <= len(key) <= 128 or key.lower().startswith("aws:"):
                raise ValueError(f"tag key {key!r}: 1-128 characters, not starting with aws:")
        return value

    @model_validator(mode="after")
    def _counts(self) -> ParallelClusterConfig:
        if self.queues is None and self.max_count < self.min_count:
            raise ValueError(
                f"max_count ({self.max_count}) must be at least min_count ({self.min_count})"
            )
        return self

    @model_validator(mode="after")
    def _one_way_to_say_the_queues(self) -> ParallelClusterConfig:
        if self.queues is None:
            return self
        both = [k for k in SINGLE_QUEUE_KEYS if k in self.model_fields_set]
        if both:
            raise ValueError(
                f"queues: set beside {', '.join(both)}, which describe the one queue of a "
                "file without `queues`; move them into its queues entries"
            )
        names = [q.name for q in self.queues]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"queues: {twice[0]!r} is named twice; Slurm partitions are unique")
        return self

    def slurm_queues(self) -> list[Queue]:
        """The cluster's queues, the first being Slurm's default partition: `queues`, or
        the one the flat keys describe."""
        if self.queues is not None:
            return list(self.queues)
        only = {
            "instance_type": self.compute_instance_type,
            "min_count": self.min_count,
            "max_count": self.max_count,
            "gpus_per_node": self.gpus_per_node,
        }
        queue = {"name": self.queue_name, "compute_resources": [only]}
        return [Queue.model_validate({**queue, "placement_group": self.placement_group})]

    def queue(self, partition: str | None = None) -> Queue:
        """The queue `--partition` names (None: the default, the first); UsageError naming
        the cluster's queues when it has no such one."""
        queues = self.slurm_queues()
        if partition is None:
            return queues[0]
        for queue in queues:
            if queue.name == partition:
                return queue
        from hpcrun.errors import UsageError

        raise UsageError(
            f"--partition {partition}: cluster {self.name} has no such queue",
            f"its queues: {', '.join(q.name for q in queues)}",
        )

    def gpus(self, partition: str | None = None) -> int | None:
        """GPUs per node of a queue's first compute resource (IndeX's nodes are alike)."""
        return self.queue(partition).compute_resources[0].gpus()

    def summary(self) -> str:
        """One line for `config validate`: the cluster's name and shape."""
        if self.queues is None:
            return (
                f"{self.name}: {self.compute_instance_type} x {self.min_count}-{self.max_count}, "
                f"head {self.head_node_instance_type}, {self.format}"
            )
        shapes = "; ".join(
            f"{q.name}: "
            + ", ".join(
                f"{r.instance_type} x {r.min_count}-{r.max_count}" for r in q.compute_resources
            )
            for q in self.slurm_queues()
        )
        return f"{self.name}: {shapes}, head {self.head_node_instance_type}, {self.format}"
