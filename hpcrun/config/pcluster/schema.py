"""ParallelCluster's own schema, run in-process and offline on the v3 rendering.

Its findings carry ParallelCluster's key paths (`HeadNode.Dcv.Port`); they are mapped
back to the hpcrun key that produced them (`dcv.port`). aws-parallelcluster is imported
lazily: it costs about half a second, which only `config validate` pays.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import types
from collections.abc import Iterator, Mapping
from typing import Any

from hpcrun.config.pcluster.findings import placeholder_values
from hpcrun.config.pcluster.model import PCLUSTER3_OSES, PLACEHOLDERS
from hpcrun.config.pcluster.overlay import KEY, has_path
from hpcrun.config.pcluster.problems import (
    Problem,
    ValidationReport,
    check_config,
    placeholders,
)
from hpcrun.config.pcluster.render import RenderError, render_v2, render_v3

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
    "HeadNode.Iam.S3Access": "s3_access",
    "HeadNode.LocalStorage.RootVolume": "root_volume_gib",
    "HeadNode.Networking.ElasticIp": "elastic_ip",
    "Scheduling.SlurmQueues.0.Iam.S3Access": "s3_access",
    "Scheduling.SlurmQueues.0.ComputeSettings.LocalStorage.RootVolume": "root_volume_gib",
    "HeadNode": "head_node_instance_type",
    "Scheduling.SlurmSettings.CustomSlurmSettings": "job_expansion",
    "Scheduling.SlurmSettings.Dns": "use_ec2_hostnames",
    "Scheduling.SlurmSettings.ScaledownIdletime": "scaledown_idle_minutes",
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


# With `queues`, each SlurmQueues entry comes from its own queues entry: paths under
# `Scheduling.SlurmQueues.I` map to `queues.I.<key>` (longest suffix wins here too).
QUEUE_PATH_TO_KEY = {
    "": "",
    "Name": "name",
    "CapacityType": "spot",
    "Networking.SubnetIds": "subnet_id",
    "Networking.PlacementGroup": "placement_group",
    "ComputeResources": "compute_resources",
    "Iam.S3Access": "@s3_access",
    "ComputeSettings.LocalStorage.RootVolume": "@root_volume_gib",
}
RESOURCE_PATH_TO_KEY = {
    "": "",
    "Name": "name",
    "Instances": "instance_type",
    "InstanceType": "instance_type",
    "MinCount": "min_count",
    "MaxCount": "max_count",
}
_QUEUE_PATH_RE = re.compile(r"^Scheduling\.SlurmQueues\.(\d+)(?:\.(.*))?$")
_RESOURCE_PATH_RE = re.compile(r"^ComputeResources\.(\d+)(?:\.(.*))?$")


def _longest(table: Mapping[str, str], path: str) -> str | None:
    best: str | None = None
    for prefix in table:
        matches = not prefix or path == prefix or path.startswith(prefix + ".")
        if matches and (best is None or len(prefix) > len(best)):
            best = prefix
    return None if best is None else table[best]


def _queue_key(index: str, rest: str) -> str | None:
    """`queues.I...` for a path under SlurmQueues.I of a file with `queues`."""
    resource = _RESOURCE_PATH_RE.match(rest)
    if resource is not None:
        suffix = _longest(RESOURCE_PATH_TO_KEY, resource.group(2) or "")
        where = f"queues.{index}.compute_resources.{resource.group(1)}"
        return f"{where}.{suffix}" if suffix else where
    suffix = _longest(QUEUE_PATH_TO_KEY, rest)
    if suffix is None:
        return None
    if suffix.startswith("@"):  # rendered from a cluster-wide key into every queue
        return suffix[1:]
    return f"queues.{index}.{suffix}" if suffix else f"queues.{index}"


def hpcrun_key_for(pcluster_path: str, *, queues: bool = False) -> str | None:
    """The hpcrun key behind a ParallelCluster key path, or None when nothing maps;
    `queues`: the file says its queues with `queues` rather than the one-queue keys."""
    found = _QUEUE_PATH_RE.match(pcluster_path) if queues else None
    if found is not None:
        return _queue_key(found.group(1), found.group(2) or "")
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


class _OfflineEc2:
    """What ParallelCluster's config constructor asks of EC2 when nothing may reach AWS:
    it caches the capacity reservations the file names (`describe_capacity_reservations`),
    which for a file naming none is no call at all. A boto3 EC2 client made for that cost
    about 0.1 s of every `config validate`; anything more would be an AWS call, and is
    answered as one that failed (ParallelCluster then skips that cache)."""

    def describe_capacity_reservations(self, ids: list[str]) -> list[object]:
        if ids:
            raise self._refused("describe_capacity_reservations")
        return []

    def __getattr__(self, name: str) -> Any:
        raise self._refused(name)

    @staticmethod
    def _refused(name: str) -> Exception:
        from pcluster.aws.common import AWSClientError  # type: ignore[import-untyped]

        return AWSClientError(name, f"{name}: the offline check makes no AWS call")  # type: ignore[no-any-return]


class _ImportedOnUse(types.ModuleType):
    """Stands in for boto3 in the modules of ParallelCluster's schema, which only use it
    at call time: the real boto3 is imported on the first attribute asked of this one,
    which then answers from it every time (a test patching boto3 still reaches them).
    During an offline schema load (`offline_region` set) it answers `session` itself
    with `_RegionSession`, the one boto3 call a load makes."""

    offline_region: str | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "session" and self.offline_region is not None:
            return types.SimpleNamespace(Session=lambda: _RegionSession(self.offline_region))
        if sys.modules.get(self.__name__) is self:
            # Asked while ParallelCluster's modules are still being imported: give way
            # to the real module for good (importing it would find this one again).
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


class _RegionSession:
    """`boto3.session.Session()` as a schema load uses it: ParallelCluster's `get_region`
    reads its `region_name`, which boto3 takes from AWS_DEFAULT_REGION, set to the file's
    region for the load, before any config file. A real session cost the load botocore's
    session and client modules; nothing else of it is used offline."""

    def __init__(self, region: str | None) -> None:
        self.region_name = region


class _BotocoreConfig:
    """`botocore.config.Config` as ParallelCluster's AWS client module holds it: it only
    calls it to make a client, and the call makes a real one."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from botocore.config import Config  # type: ignore[import-untyped]

        return Config(*args, **kwargs)


@contextlib.contextmanager
def _boto3_on_use() -> Iterator[None]:
    """Import ParallelCluster's schema without boto3 and botocore's client machinery
    (unless they are imported already).

    `pcluster.schemas.cluster_schema` imports its AWS clients, whose modules `import
    boto3` (with it s3transfer and botocore's session and client) and `from
    botocore.config import Config` (with it urllib3 and http.client, through
    botocore.compat and botocore.endpoint): together ~0.15 s of every `config validate`,
    a quarter of it, for what they use only when they talk to AWS, which the offline
    check never does. While the schema is imported, `boto3` is an `_ImportedOnUse` and
    `botocore.config` holds a `_BotocoreConfig`; what imports them then keeps those."""
    stand_ins: dict[str, types.ModuleType] = {}
    if "boto3" not in sys.modules:
        stand_ins["boto3"] = _ImportedOnUse("boto3")
    if "botocore.config" not in sys.modules:
        config = types.ModuleType("botocore.config")
        config.Config = _BotocoreConfig  # type: ignore[attr-defined]
        stand_ins["botocore.config"] = config
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, stand_in in stand_ins.items():
            if sys.modules.get(name) is stand_in:
                del sys.modules[name]


def _cluster_schema() -> Any:
    with _boto3_on_use():
        from pcluster.schemas.cluster_schema import ClusterSchema  # type: ignore[import-untyped]
    return ClusterSchema


@contextlib.contextmanager
def _offline(region: str) -> Iterator[None]:
    """For one schema load: `_OfflineEc2` as ParallelCluster's EC2 client, and the boto3
    stand-in (when ParallelCluster holds one) answering the region without a session."""
    from pcluster.aws import common  # type: ignore[import-untyped]
    from pcluster.aws.aws_api import AWSApi  # type: ignore[import-untyped]

    boto3 = getattr(common, "boto3", None)
    stand_in = boto3 if isinstance(boto3, _ImportedOnUse) else None
    api = AWSApi.instance()
    own_ec2 = api._ec2 is None  # a real client exists already: leave it be
    if own_ec2:
        api._ec2 = _OfflineEc2()
    if stand_in is not None:
        stand_in.offline_region = region
    try:
        yield
    finally:
        if stand_in is not None:
            stand_in.offline_region = None
        if own_ec2:
            api._ec2 = None


def _load_rendered(text: str) -> Any:
    """The v3 YAML hpcrun rendered, as the mapping the schema loads: with libyaml's safe
    loader where PyYAML has it (the same values as `yaml.safe_load`, ~3 ms sooner); the
    user's own file is always read by the pure-Python loader, whose errors hpcrun shows."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def pcluster_schema_problems(
    rendered_v3: str,
    cluster_name: str,
    region: str,
    extra: Mapping[str, Any] | None = None,
    *,
    queues: bool = False,
) -> list[Problem]:
    """Load rendered v3 YAML with ParallelCluster's ClusterSchema, offline and in-process."""
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        from marshmallow import ValidationError as SchemaError

        schema = _cluster_schema()
        try:
            with _offline(region):
                schema(cluster_name=cluster_name).load(_load_rendered(rendered_v3))
        except SchemaError as exc:
            problems = []
            for path, message in _flatten(exc.messages):
                key = hpcrun_key_for(path, queues=queues)
                if extra and has_path(extra, path):  # from the file's overlay
                    key = f"{KEY}.{path}"
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
    held = [f"{k}" for k, _ in placeholder_values(data)]
    if config is None:
        return ValidationReport(None, problems, held)
    report = ValidationReport(config, [], list(dict.fromkeys([*placeholders(config), *held])))
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
        report.problems.extend(
            pcluster_schema_problems(rendered, config.name, config.region, config.parallelcluster)
        )
    return report
