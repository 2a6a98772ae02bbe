"""The ParallelCluster cluster file: pydantic model, rendering to pcluster configs, validation.

An hpcrun file with `backend: parallelcluster` says what the user cares about (AMI, node
types and counts, DCV, job expansion); this module turns it into the file ParallelCluster
reads: version 3 YAML, or version 2 INI for AMIs pinned to ParallelCluster 2.8.0 (NVIDIA's
older IndeX AMI). Problems are reported by key path *in the hpcrun file*, all at once:
first hpcrun's own checks, then ParallelCluster's own marshmallow schema run in-process,
with its paths (`HeadNode.Dcv.Port`) mapped back to ours (`dcv.port`). aws-parallelcluster
is imported lazily: it costs about half a second, which only `config validate` pays.

What ParallelCluster's own slurm.conf says about SchedulerParameters (aws-parallelcluster-
cookbook, `templates/default/slurm/slurm.conf.erb`, 3.x): it sets
`SchedulerParameters=nohold_on_prolog_fail` only when the cluster writes node names into
/etc/hosts (`use_private_hostname`, i.e. `Scheduling.SlurmSettings.Dns.UseEc2Hostnames:
true`); otherwise it sets none. CustomSlurmSettings are appended after that file is
included, and for slurm.conf a later `SchedulerParameters=` line replaces the earlier one
rather than adding to it. So `scheduler_parameters()` repeats ParallelCluster's value
whenever it would be set, and adds `permit_job_expansion` to it (extend, never replace).
SchedulerParameters is not on ParallelCluster's CustomSlurmSettings deny list
(`pcluster/validators/slurm_settings_validator.py`). ParallelCluster 2.8.0 has no
CustomSlurmSettings: there, scripts/pcluster-post-install-job-expansion.sh edits
slurm.conf on the head node the same way (append to an existing value, else add the line).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hpcrun.errors import UsageError

if TYPE_CHECKING:
    import jinja2

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

    mount_dir: str = Field("/shared", pattern=r"^/[A-Za-z0-9_./-]*$", description="mount point")
    size_gib: int = Field(100, ge=1, le=16384, description="EBS volume size")
    volume_type: Literal["gp3", "gp2", "io1", "io2", "st1", "sc1"] = Field(
        "gp3", description="EBS type; ParallelCluster 2.8.0 predates gp3 and gets gp2"
    )


class ParallelClusterConfig(BaseModel):
    """An AWS ParallelCluster GPU cluster: one queue of identical compute nodes + DCV."""

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
    custom_ami: str = Field(..., pattern=AMI_RE, description="AMI id, e.g. NVIDIA's IndeX AMI")
    os: OsName = Field("alinux2023", description="the OS of custom_ami (ParallelCluster 3 names)")
    key_name: str = Field(..., min_length=1, max_length=255, description="EC2 key pair name")
    private_key_path: str | None = Field(
        None, description="local .pem file of key_name, for SSH and DCV (never copied)"
    )
    head_node_instance_type: str = Field("g4dn.4xlarge", pattern=INSTANCE_TYPE_RE)
    compute_instance_type: str = Field("g4dn.12xlarge", pattern=INSTANCE_TYPE_RE)
    queue_name: str = Field("gpu", pattern=r"^[a-z][a-z0-9-]{0,24}$", description="Slurm partition")
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
    tags: dict[str, str] = Field(default_factory=dict, description="tags on every resource")

    @field_validator("placement_group")
    @classmethod
    def _placement_group(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and not re.match(r"^[A-Za-z0-9_.+=@-]{1,255}$", value):
            raise ValueError("a placement group name (letters, digits, _.+=@-) or true/false")
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
        if self.max_count < self.min_count:
            raise ValueError(
                f"max_count ({self.max_count}) must be at least min_count ({self.min_count})"
            )
        return self

    def gpus(self) -> int | None:
        """GPUs per compute node: the file's value, else what the instance type is known to have."""
        if self.gpus_per_node is not None:
            return self.gpus_per_node
        return GPUS_BY_INSTANCE_TYPE.get(self.compute_instance_type)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a cluster file, named by its key path in that file."""

    path: str
    message: str
    pcluster_path: str | None = None  # where ParallelCluster's schema saw it, if it did

    def __str__(self) -> str:
        where = f" (ParallelCluster: {self.pcluster_path})" if self.pcluster_path else ""
        return f"{self.path}: {self.message}{where}"


@dataclass
class ValidationReport:
    """What `config validate` found: a model (when hpcrun's checks passed) and the problems."""

    config: ParallelClusterConfig | None
    problems: list[Problem] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class RenderError(UsageError):
    """The file is valid but cannot become this pcluster format (e.g. `subnet_id: create`)."""


# --- hpcrun's own checks -------------------------------------------------------------------


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            parent = err["loc"][:-1]
            known = _known_keys(tuple(str(p) for p in parent))
            message = "unknown key" + (f" (known keys: {', '.join(known)})" if known else "")
        elif err["type"] == "missing":
            message = "required, and missing"
        elif err["type"] == "string_pattern_mismatch":
            message = f"{err['input']!r} is not valid here (expected {_pattern_hint(path)})"
        elif err["type"] == "value_error" and not err["loc"]:
            # model validators (max_count vs min_count) report on the key the user must change
            text = str(err["ctx"]["error"]) if "ctx" in err else message
            path = text.split(" ", 1)[0] if text.startswith("max_count") else path
            message = text
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        problems.append(Problem(path, message))
    return problems


def _pattern_hint(path: str) -> str:
    hints = {
        "custom_ami": "an AMI id like ami-0123456789abcdef0",
        "head_node_instance_type": "an EC2 instance type like g4dn.4xlarge",
        "compute_instance_type": "an EC2 instance type like g4dn.12xlarge or p3.8xlarge",
        "subnet_id": "subnet-... or create",
        "vpc_id": "vpc-...",
        "region": "an AWS region like us-east-1",
        "name": "a letter, then letters, digits or '-', at most 60",
        "queue_name": "lower case letters, digits or '-', at most 25",
        "post_install_url": "an s3:// or https:// URL",
        "shared_storage.mount_dir": "an absolute path",
    }
    return hints.get(path, "see configs/index-aws.yaml")


def _known_keys(parent: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = ParallelClusterConfig
    nested: dict[str, type[BaseModel]] = {"dcv": DcvSettings, "shared_storage": SharedStorage}
    if parent and parent[0] in nested:
        model = nested[parent[0]]
    elif parent:
        return []
    return list(model.model_fields)


def check_config(data: Mapping[str, Any]) -> tuple[ParallelClusterConfig | None, list[Problem]]:
    """hpcrun's own checks: the model, or every problem found (never only the first)."""
    try:
        return ParallelClusterConfig.model_validate(dict(data)), []
    except ValidationError as exc:
        return None, _pydantic_problems(exc)


def validate_parallelcluster_config(
    data: Mapping[str, Any], source: str = "<flags>"
) -> ParallelClusterConfig:
    """Validate like `models.validate_cluster_config`: one UsageError listing every key path."""
    config, problems = check_config(data)
    if config is None:
        raise UsageError(
            f"{source} is not a valid cluster config:\n" + "\n".join(f"  {p}" for p in problems),
            "see configs/index-aws.yaml for a commented example",
        )
    return config


def placeholders(config: ParallelClusterConfig) -> list[str]:
    """Keys still holding a preset's example value, which AWS would refuse or misuse."""
    found = []
    for key, example in PLACEHOLDERS.items():
        if getattr(config, key) == example:
            found.append(key)
    return found


# --- rendering -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["yaml"] = yaml_scalar
    return env


def yaml_scalar(value: object) -> str:
    """A YAML scalar that reads back as the same value: plain when safe, else JSON-quoted."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./@+-]+(:[A-Za-z0-9_./@+-]+)*", text) and not re.fullmatch(
        r"(?i)(true|false|yes|no|on|off|null|~|[-+0-9.eE_:]+)", text
    ):
        return text
    return json.dumps(text)


def scheduler_parameters(config: ParallelClusterConfig) -> str | None:
    """SchedulerParameters for CustomSlurmSettings, extending ParallelCluster's own value.

    See the module docstring: ParallelCluster's slurm.conf sets `nohold_on_prolog_fail`
    when UseEc2Hostnames is on, and a later line would drop it, so it is repeated here.
    """
    if not config.job_expansion:
        return None
    ours = ["nohold_on_prolog_fail"] if config.use_ec2_hostnames else []
    return ",".join([*ours, "permit_job_expansion"])


def compute_resource_name(instance_type: str) -> str:
    """ParallelCluster names compute resources `[a-z][a-z0-9-]*`: g4dn.12xlarge -> g4dn-12xlarge."""
    return re.sub(r"[^a-z0-9-]", "-", instance_type.lower())


def _subnet(config: ParallelClusterConfig, subnet_id: str | None) -> str:
    resolved = subnet_id or config.subnet_id
    if resolved == "create":
        raise RenderError(
            "subnet_id: 'create' is resolved when `hpcrun create` makes the VPC; "
            "a pcluster config needs an existing subnet",
            "set subnet_id (and vpc_id) to an existing subnet-... to render this file",
        )
    return resolved


def render_v3(
    config: ParallelClusterConfig, *, source: str = "", subnet_id: str | None = None
) -> str:
    """ParallelCluster 3 YAML for `pcluster create-cluster --cluster-configuration`."""
    if config.os not in PCLUSTER3_OSES:
        raise RenderError(
            f"os: {config.os!r} is not supported by ParallelCluster 3 "
            f"(it supports {', '.join(PCLUSTER3_OSES)})",
            "use format: pcluster-v2 for a ParallelCluster 2 AMI, or the AMI's OS",
        )
    placement: dict[str, object] = {}
    if config.placement_group is True:
        placement = {"Enabled": True}
    elif isinstance(config.placement_group, str):
        placement = {"Name": config.placement_group}
    return (
        _environment()
        .get_template("pcluster-v3.yaml.j2")
        .render(
            c=config,
            source=source,
            subnet_id=_subnet(config, subnet_id),
            scheduler_parameters=scheduler_parameters(config),
            compute_resource=compute_resource_name(config.compute_instance_type),
            placement=placement,
        )
    )


def render_v2(
    config: ParallelClusterConfig, *, source: str = "", subnet_id: str | None = None
) -> str:
    """ParallelCluster 2.8.0 INI: `pcluster create -c FILE NAME` on the 2.x CLI."""
    if config.vpc_id is None:
        raise RenderError(
            "vpc_id: required for ParallelCluster 2 ([vpc] vpc_id), and missing",
            "set vpc_id to the VPC of subnet_id",
        )
    if config.job_expansion and config.post_install_url is None:
        raise RenderError(
            "post_install_url: ParallelCluster 2 enables job expansion with a post_install "
            "script fetched from S3 or HTTPS, and none is set",
            "upload scripts/pcluster-post-install-job-expansion.sh (aws s3 cp ...) and set "
            "post_install_url, or set job_expansion: false",
        )
    base_os = config.os if config.os in PCLUSTER2_OSES else PCLUSTER2_OS_FOR[config.os]
    storage = config.shared_storage
    volume_type = None
    if storage is not None:
        volume_type = "gp2" if storage.volume_type == "gp3" else storage.volume_type
    import json

    placement = "DYNAMIC" if config.placement_group is True else config.placement_group or None
    return (
        _environment()
        .get_template("pcluster-v2.ini.j2")
        .render(
            c=config,
            source=source,
            subnet_id=_subnet(config, subnet_id),
            base_os=base_os,
            os_mapped=base_os != config.os,
            volume_type=volume_type,
            placement=placement,
            tags_json=json.dumps(config.tags, sort_keys=True) if config.tags else None,
        )
    )


def render(
    config: ParallelClusterConfig,
    fmt: Format | None = None,
    *,
    source: str = "",
    subnet_id: str | None = None,
) -> str:
    """Render in `fmt`, by default the file's own `format`."""
    chosen = fmt or config.format
    if chosen == "pcluster-v2":
        return render_v2(config, source=source, subnet_id=subnet_id)
    return render_v3(config, source=source, subnet_id=subnet_id)


# --- ParallelCluster's own schema ----------------------------------------------------------

# ParallelCluster 3 key paths (list indexes as `0`) -> the hpcrun key that produced them.
# Longest prefix wins, so `HeadNode.Dcv.Port` beats `HeadNode.Dcv`.
PCLUSTER_PATH_TO_KEY = {
    "Region": "region",
    "Image.Os": "os",
    "Image.CustomAmi": "custom_ami",
    "Image": "custom_ami",
    "HeadNode.InstanceType": "head_node_instance_type",
    "HeadNode.Networking.SubnetId": "subnet_id",
    "HeadNode.Ssh.KeyName": "key_name",
    "HeadNode.Dcv.Port": "dcv.port",
    "HeadNode.Dcv.AllowedIps": "dcv.allowed_cidr",
    "HeadNode.Dcv": "dcv",
    "HeadNode": "head_node_instance_type",
    "Scheduling.SlurmSettings.CustomSlurmSettings": "job_expansion",
    "Scheduling.SlurmSettings.Dns": "use_ec2_hostnames",
    "Scheduling.SlurmQueues.0.Name": "queue_name",
    "Scheduling.SlurmQueues.0.Networking.SubnetIds": "subnet_id",
    "Scheduling.SlurmQueues.0.Networking.PlacementGroup": "placement_group",
    "Scheduling.SlurmQueues.0.ComputeResources.0.Instances": "compute_instance_type",
    "Scheduling.SlurmQueues.0.ComputeResources.0.InstanceType": "compute_instance_type",
    "Scheduling.SlurmQueues.0.ComputeResources.0.Name": "compute_instance_type",
    "Scheduling.SlurmQueues.0.ComputeResources.0.MinCount": "min_count",
    "Scheduling.SlurmQueues.0.ComputeResources.0.MaxCount": "max_count",
    "SharedStorage.0.MountDir": "shared_storage.mount_dir",
    "SharedStorage.0.EbsSettings.Size": "shared_storage.size_gib",
    "SharedStorage.0.EbsSettings.VolumeType": "shared_storage.volume_type",
    "SharedStorage": "shared_storage",
    "Tags": "tags",
}


def hpcrun_key_for(pcluster_path: str) -> str | None:
    """The hpcrun key behind a ParallelCluster key path, or None when nothing maps."""
    best: str | None = None
    for prefix in PCLUSTER_PATH_TO_KEY:
        if (pcluster_path == prefix or pcluster_path.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return PCLUSTER_PATH_TO_KEY[best] if best is not None else None


def _flatten(messages: object, prefix: str = "") -> Iterator[tuple[str, str]]:
    """marshmallow's {'HeadNode': {'Dcv': {'Port': ['m']}}} -> ('HeadNode.Dcv.Port', 'm')."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix and key != "_schema" else (prefix or str(key))
            yield from _flatten(value, path)
    elif isinstance(messages, list):
        for item in messages:
            yield from _flatten(item, prefix)
    else:
        yield prefix or "(top level)", str(messages)


def pcluster_schema_problems(rendered_v3: str, cluster_name: str, region: str) -> list[Problem]:
    """Load rendered v3 YAML with ParallelCluster's ClusterSchema, offline and in-process."""
    import yaml

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        from marshmallow import ValidationError as SchemaError
        from pcluster.schemas.cluster_schema import ClusterSchema  # type: ignore[import-untyped]

        try:
            ClusterSchema(cluster_name=cluster_name).load(yaml.safe_load(rendered_v3))
        except SchemaError as exc:
            problems = []
            for path, message in _flatten(exc.messages):
                key = hpcrun_key_for(path)
                problems.append(Problem(key or "(generated config)", message, path))
            return problems
        return []
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


def validate_data(
    data: Mapping[str, Any], *, source: str = "", with_pcluster: bool = True
) -> ValidationReport:
    """Every problem of a parsed cluster file: hpcrun's checks, then ParallelCluster's schema.

    The schema runs on the v3 rendering whatever `format` says: ParallelCluster 2 has no
    in-process schema here, and the v3 schema still catches AMI, OS and type mistakes.
    """
    config, problems = check_config(data)
    if config is None:
        return ValidationReport(None, problems)
    report = ValidationReport(config, [], placeholders(config))
    subnet = PLACEHOLDERS["subnet_id"] if config.subnet_id == "create" else None
    try:
        if config.format == "pcluster-v2":
            render_v2(config, source=source, subnet_id=subnet)
        rendered = render_v3(
            config.model_copy(update={"os": PCLUSTER3_OSES[0]})
            if config.os not in PCLUSTER3_OSES and config.format == "pcluster-v2"
            else config,
            source=source,
            subnet_id=subnet,
        )
    except RenderError as exc:
        path, _, message = exc.message.partition(": ")
        report.problems.append(Problem(path, message))
        return report
    if with_pcluster:
        report.problems.extend(pcluster_schema_problems(rendered, config.name, config.region))
    return report


# --- importing an existing ParallelCluster config ------------------------------------------


@dataclass
class ImportResult:
    """An hpcrun file made from a pcluster config, and what the user must still look at."""

    data: dict[str, Any]
    placeholders: list[str]
    unmapped: list[str]
    notes: list[str]

    def to_yaml(self, source: str) -> str:
        """The hpcrun file, headed by comments listing placeholders and unmapped settings."""
        import yaml

        lines = [f"# Imported by `hpcrun config import` from {source}."]
        if self.placeholders:
            lines.append("# Still placeholders (replace them): " + ", ".join(self.placeholders))
        if self.unmapped:
            lines.append("# Settings of the source that hpcrun does not carry over:")
            lines += [f"#   {item}" for item in self.unmapped]
        lines += [f"# Note: {note}" for note in self.notes]
        body = yaml.safe_dump(self.data, sort_keys=False, default_flow_style=False)
        return "\n".join(lines) + "\n" + body


def _v2_to_v3(text: str) -> tuple[dict[str, Any], list[str]]:
    """Convert a v2 INI with ParallelCluster's own pcluster3-config-converter, offline."""
    import contextlib
    import io

    from pcluster3_config_converter.pcluster3_config_converter import (  # type: ignore[import-untyped]
        Pcluster3ConfigConverter,
    )

    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            converter = Pcluster3ConfigConverter(
                text, None, None, input_as_string=True, force_convert=True
            )
            converter.validate()
            converter.convert_to_pcluster3_config()
    except SystemExit as exc:  # the converter reports errors with sys.exit("ERROR: ...")
        raise UsageError(
            f"ParallelCluster's converter refused this v2 config: {exc.code}",
            "fix the INI (pcluster3-config-converter gives the same message)",
        ) from None
    # The converter's own remarks, minus those about settings hpcrun maps itself.
    handled = ("vpc_id", "post_install", "update_check", "sanity_check", "ssh = ", "/shared")
    warnings = [
        line.split(":", 1)[1].strip()
        for line in captured.getvalue().splitlines()
        if line.startswith(("Warning:", "Note:")) and not any(h in line for h in handled)
    ]
    return dict(converter.pcluster3_configuration), warnings


def import_pcluster_config(text: str, *, name: str = "imported") -> ImportResult:
    """Map a ParallelCluster v2 INI or v3 YAML onto an hpcrun file, saying what was left out.

    A v2 INI goes through ParallelCluster's own converter to v3 first, so both formats share
    one mapping; a v2 INI also sets `format: pcluster-v2` and keeps its post_install URL
    (NVIDIA's IndeX template enables job expansion there).
    """
    import configparser

    import yaml

    is_v2 = bool(re.search(r"^\s*\[(cluster|global|aws)\b", text, re.MULTILINE))
    notes: list[str] = []
    v2: configparser.ConfigParser | None = None
    if is_v2:
        v3, notes = _v2_to_v3(text)
        v2 = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
        v2.read_string(text)
    else:
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"not a ParallelCluster v2 INI nor valid v3 YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError("not a ParallelCluster config: expected a v2 INI or a v3 YAML mapping")
        v3 = loaded

    rest: dict[str, Any] = yaml.safe_load(yaml.safe_dump(v3))  # a deep copy to consume
    data: dict[str, Any] = {"backend": "parallelcluster", "name": name}

    def take(*path: str | int) -> Any:
        """Pop a value at `path` from `rest` (None when absent), pruning emptied parents."""
        node: Any = rest
        parents: list[tuple[Any, str | int]] = []
        for key in path:
            in_dict = isinstance(node, dict) and key in node
            if in_dict or (isinstance(node, list) and isinstance(key, int) and key < len(node)):
                parents.append((node, key))
                node = node[key]
            else:
                return None
        container, last = parents[-1]
        if isinstance(container, dict):
            container.pop(last)
        else:
            container[last] = None  # keep later indexes stable
        for parent, key in reversed(parents[:-1]):
            child = parent[key]
            emptied = child in ({}, []) or (
                isinstance(child, list) and all(item is None for item in child)
            )
            if emptied and isinstance(parent, dict):
                parent.pop(key)
            elif emptied:
                parent[key] = None
        return node

    region = take("Region")
    data["region"] = region or "us-east-1"
    if not region:
        notes.append("region: not in the source; us-east-1 assumed")
    data["format"] = "pcluster-v2" if is_v2 else "pcluster-v3"
    data["custom_ami"] = take("Image", "CustomAmi") or PLACEHOLDERS["custom_ami"]
    os_name = take("Image", "Os")
    if os_name:
        data["os"] = os_name
    data["key_name"] = take("HeadNode", "Ssh", "KeyName") or PLACEHOLDERS["key_name"]
    data["private_key_path"] = f"~/.ssh/{data['key_name']}.pem"
    head_type = take("HeadNode", "InstanceType")
    if head_type:
        data["head_node_instance_type"] = head_type
    subnet = take("HeadNode", "Networking", "SubnetId")
    data["subnet_id"] = subnet or PLACEHOLDERS["subnet_id"]
    if v2 is not None and v2.has_option("vpc default", "vpc_id"):
        data["vpc_id"] = v2.get("vpc default", "vpc_id")
    else:
        vpc_sections = [s for s in (v2.sections() if v2 else []) if s.startswith("vpc ")]
        if v2 is not None and vpc_sections and v2.has_option(vpc_sections[0], "vpc_id"):
            data["vpc_id"] = v2.get(vpc_sections[0], "vpc_id")
    dcv_enabled = take("HeadNode", "Dcv", "Enabled")
    dcv: dict[str, Any] = {"enabled": bool(dcv_enabled)}
    port = take("HeadNode", "Dcv", "Port")
    if port is not None:
        dcv["port"] = port
    allowed = take("HeadNode", "Dcv", "AllowedIps")
    if allowed is not None:
        dcv["allowed_cidr"] = allowed
    data["dcv"] = dcv

    # Post-install scripts: one that enables job expansion is what hpcrun does itself.
    post_install: str | None = None
    for where in (("HeadNode",), ("Scheduling", "SlurmQueues", 0)):
        script = take(*where, "CustomActions", "OnNodeConfigured", "Script")
        post_install = post_install or script
    if post_install and re.search(r"expan", post_install, re.IGNORECASE):
        data["job_expansion"] = True
        if is_v2:
            data["post_install_url"] = post_install
    elif post_install:
        notes.append(
            f"post_install {post_install}: hpcrun does not run custom scripts; "
            "check what it does (job expansion hpcrun enables itself)"
        )

    custom = take("Scheduling", "SlurmSettings", "CustomSlurmSettings") or []
    expansion = is_v2 and data.get("job_expansion") is True
    for entry in custom:
        for key, value in dict(entry).items():
            if key.lower() == "schedulerparameters" and "permit_job_expansion" in str(value):
                expansion = True
            else:
                notes.append(f"CustomSlurmSettings {key}={value}: not mapped")
    if not expansion:
        notes.append("job_expansion: the source does not enable it; hpcrun turns it on")
    data["job_expansion"] = True
    if take("Scheduling", "SlurmSettings", "Dns", "UseEc2Hostnames"):
        data["use_ec2_hostnames"] = True
    take("Scheduling", "Scheduler")

    queue_name = take("Scheduling", "SlurmQueues", 0, "Name")
    if queue_name and queue_name != "default-queue":
        data["queue_name"] = queue_name
    cr = ("Scheduling", "SlurmQueues", 0, "ComputeResources", 0)
    compute_type = take(*cr, "InstanceType") or take(*cr, "Instances", 0, "InstanceType")
    if compute_type:
        data["compute_instance_type"] = compute_type
    take(*cr, "Name")
    for key, ours in (("MinCount", "min_count"), ("MaxCount", "max_count")):
        value = take(*cr, key)
        if value is not None:
            data[ours] = value
    q_net = ("Scheduling", "SlurmQueues", 0, "Networking")
    take(*q_net, "SubnetIds", 0)
    if take(*q_net, "PlacementGroup", "Enabled"):
        data["placement_group"] = True
    else:
        group = take(*q_net, "PlacementGroup", "Name") or take(*q_net, "PlacementGroup", "Id")
        data["placement_group"] = group or False
    if take("Scheduling", "SlurmQueues", 0, "CapacityType") not in (None, "ONDEMAND"):
        notes.append("CapacityType: only on-demand nodes are mapped")

    storage = take("SharedStorage", 0)
    if isinstance(storage, dict) and storage.get("StorageType") == "Ebs":
        settings = storage.get("EbsSettings") or {}
        shared: dict[str, Any] = {"mount_dir": storage.get("MountDir", "/shared")}
        if "Size" in settings:
            shared["size_gib"] = settings["Size"]
        if "VolumeType" in settings:
            shared["volume_type"] = settings["VolumeType"]
        data["shared_storage"] = shared
        leftover = {k: v for k, v in settings.items() if k not in ("Size", "VolumeType")}
        if leftover:
            notes.append(f"SharedStorage EbsSettings {leftover}: not mapped")
    elif storage is not None:
        notes.append(f"SharedStorage {storage.get('StorageType')}: only EBS is mapped")
    else:
        data["shared_storage"] = None
    tags = take("Tags")
    if tags:
        data["tags"] = {str(t["Key"]): str(t["Value"]) for t in tags}

    unmapped = [f"{path}: {value}" for path, value in _leaves(rest)]
    config, problems = check_config(data)
    holders = (
        placeholders(config)
        if config is not None
        else [k for k, v in PLACEHOLDERS.items() if data.get(k) == v]
    )
    notes += [f"{p}" for p in problems]
    return ImportResult(data, holders, unmapped, notes)


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf left in a partly consumed config, as (`HeadNode.Imds.Secured`, value)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if value is not None:
                yield from _leaves(value, f"{prefix}.{index}")
    elif node is not None and node != {} and node != []:
        yield prefix, node
