"""An existing ParallelCluster config (v2 INI or v3 YAML) brought over as an hpcrun file.

Everything the source says that hpcrun does not carry over is listed, so the user sees
exactly what was left behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from hpcrun.config.pcluster import convert_v2, overlay
from hpcrun.config.pcluster.findings import leaves, os_refusal, placeholder_values
from hpcrun.config.pcluster.model import PLACEHOLDERS, QUEUE_NAME_RE, compute_resource_name
from hpcrun.config.pcluster.problems import check_config, placeholders
from hpcrun.errors import UsageError


@dataclass
class ImportResult:
    """An hpcrun file made from a pcluster config, and what the user must still look at."""

    data: dict[str, Any]
    placeholders: list[str]
    unmapped: list[str]
    notes: list[str]
    refused: list[str] = field(default_factory=list)  # what the installed pcluster refuses

    def value(self, key: str) -> Any:
        """The value at a dotted key path of the hpcrun file (None when absent)."""
        node: Any = self.data
        for part in key.split("."):
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def to_yaml(self, source: str) -> str:
        """The hpcrun file, headed by comments listing placeholders and unmapped settings."""
        import yaml

        lines = [f"# Imported by `hpcrun config import` from {source}."]
        if self.placeholders:
            lines.append("# Still placeholders (replace them): " + ", ".join(self.placeholders))
        lines += [f"# ParallelCluster will refuse: {line}" for line in self.refused]
        if self.unmapped:
            lines.append("# Settings of the source that hpcrun does not carry over:")
            lines += [f"#   {item}" for item in self.unmapped]
        lines += [f"# Note: {note}" for note in self.notes]
        body = yaml.safe_dump(self.data, sort_keys=False, default_flow_style=False)
        return "\n".join(lines) + "\n" + body


def import_pcluster_config(text: str, *, name: str = "imported") -> ImportResult:
    """Map a ParallelCluster v2 INI or v3 YAML onto an hpcrun file, saying what was left out.

    A v2 INI goes through ParallelCluster's own converter to v3 first (`convert_v2`), so
    both formats share one mapping. It keeps `format: pcluster-v2` (and its post_install
    URL, where NVIDIA's IndeX template enables job expansion) only when its custom AMI
    pins it to ParallelCluster 2 and its one queue fits 2.8.0; any other v2 file becomes
    a ParallelCluster 3 cluster, whose overlay can hold everything the INI said.
    """
    import yaml

    v2: convert_v2.V2Source | None = None
    if convert_v2.is_v2_ini(text):
        v2 = convert_v2.convert(text)
        v3, notes = v2.v3, list(v2.notes)
    else:
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"not a ParallelCluster v2 INI nor valid v3 YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise UsageError("not a ParallelCluster config: expected a v2 INI or a v3 YAML mapping")
        v3, notes = loaded, []
    scheduler = _peek(v3, "Scheduling", "Scheduler")
    if scheduler not in (None, "slurm"):
        raise UsageError(
            f"Scheduling.Scheduler: {scheduler}: hpcrun runs Slurm clusters",
            "keep using pcluster for it, or describe a Slurm cluster (Scheduler: slurm)",
        )

    source = _Source(v3)
    take = source.take
    data: dict[str, Any] = {"backend": "parallelcluster", "name": name, "format": ""}

    region = take("Region")
    data["region"] = region or "us-east-1"
    if not region:
        notes.append("region: not in the source; us-east-1 assumed")
    ami = take("Image", "CustomAmi")
    if ami:  # none: ParallelCluster's own AMI of the OS
        data["custom_ami"] = ami
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
    elastic = take("HeadNode", "Networking", "ElasticIp")
    if elastic not in (None, False):
        data["elastic_ip"] = elastic

    queue_count = len(source.peek("Scheduling", "SlurmQueues") or [])
    queues_at = [("Scheduling", "SlurmQueues", index) for index in range(queue_count)]
    # A ParallelCluster 2 output has one queue of one type, and only a custom AMI built
    # for 2.x keeps a cluster there.
    resources = source.peek("Scheduling", "SlurmQueues", 0, "ComputeResources") or []
    keeps_v2 = v2 is not None and bool(ami) and queue_count == 1 and len(resources) == 1
    # hpcrun gives the head node and every queue one root volume size and one list of
    # buckets. A v3 source that says the same for all is mapped, any other stays as it
    # is (the overlay). A v2 file has no overlay: the largest volume and every bucket.
    root_at = [
        ("HeadNode", "LocalStorage", "RootVolume", "Size"),
        *((*q, "ComputeSettings", "LocalStorage", "RootVolume", "Size") for q in queues_at),
    ]
    s3_at = [("HeadNode", "Iam", "S3Access"), *((*q, "Iam", "S3Access") for q in queues_at)]
    if keeps_v2:
        sizes = [int(size) for size in _take_all(source, root_at)]
        if sizes:
            data["root_volume_gib"] = max(sizes)
        if len(set(sizes)) > 1:
            notes.append(f"root volumes of {sorted(set(sizes))} GiB: all get {max(sizes)} GiB")
        access = [a for entries in _take_all(source, s3_at) for a in _s3_access(entries)]
        buckets = [a for i, a in enumerate(access) if a not in access[:i]]
    else:
        root = _uniform(source, root_at)
        if root is not None:
            data["root_volume_gib"] = root
        buckets = _s3_access(_uniform(source, s3_at) or [])
    if buckets:
        data["s3_access"] = buckets
    dcv_enabled = take("HeadNode", "Dcv", "Enabled")
    dcv: dict[str, Any] = {"enabled": bool(dcv_enabled)}
    port = take("HeadNode", "Dcv", "Port")
    if port is not None:
        dcv["port"] = port
    allowed = take("HeadNode", "Dcv", "AllowedIps")
    if allowed is not None:
        dcv["allowed_cidr"] = allowed
    data["dcv"] = dcv

    idle = take("Scheduling", "SlurmSettings", "ScaledownIdletime")
    if idle is not None:
        data["scaledown_idle_minutes"] = idle
    if take("Scheduling", "SlurmSettings", "Dns", "UseEc2Hostnames"):
        data["use_ec2_hostnames"] = True
    take("Scheduling", "Scheduler")
    queues = [_take_queue(source, index, str(data["subnet_id"])) for index in range(queue_count)]
    for queue in queues:
        queue["name"] = _valid_name(queue["name"], f"queue {queue['name']}", notes)
        for resource in queue["compute_resources"]:
            if resource.get("name") in convert_v2.CONVERTER_NAMES:
                resource.pop("name")
            elif resource.get("name"):
                what = f"compute resource {resource['name']}"
                resource["name"] = _valid_name(resource["name"], what, notes)
    if len(queues) == 1 and _is_flat(queues[0]):
        data.update(_flat_keys(queues[0]))
    elif queues:
        data["queues"] = queues
    data["format"] = "pcluster-v2" if keeps_v2 else "pcluster-v3"
    vpc = v2.vpc_id() if v2 is not None and keeps_v2 else None
    if vpc:  # a ParallelCluster 2 file names the VPC; version 3 finds it from the subnet
        data["vpc_id"] = vpc
    if v2 is not None and not keeps_v2:
        why = "several queues or compute resources" if "queues" in data else "no custom AMI"
        notes.append(
            f"format: pcluster-v3, since the source has {why}: ParallelCluster 3 can say "
            "all it does (hpcrun's ParallelCluster 2 output is 2.8.0's, one queue)"
        )

    # Post-install scripts: one that enables job expansion is what hpcrun does itself.
    # Any other script stays where it is, for the overlay (v3) or the list of what is lost.
    post_install: str | None = None
    for where in [("HeadNode",), *queues_at]:
        script = source.peek(*where, "CustomActions", "OnNodeConfigured", "Script")
        if isinstance(script, str) and re.search(r"expan", script, re.IGNORECASE):
            # ParallelCluster's converter gives the head node and each queue the script
            take(*where, "CustomActions", "OnNodeConfigured", "Script")
            post_install = post_install or script
    expansion = post_install is not None
    if post_install and keeps_v2:
        data["post_install_url"] = post_install
    custom = take("Scheduling", "SlurmSettings", "CustomSlurmSettings") or []
    for entry in custom:
        for key, value in dict(entry).items():
            if key.lower() == "schedulerparameters" and "permit_job_expansion" in str(value):
                expansion = True
            else:
                notes.append(f"CustomSlurmSettings {key}={value}: not mapped")
    data["job_expansion"] = expansion or not keeps_v2
    if not expansion and keeps_v2:
        notes.append(
            "job_expansion: off, as in the source; ParallelCluster 2 turns it on with "
            "scripts/pcluster-post-install-job-expansion.sh uploaded to S3 and set as "
            "post_install_url (`hpcrun scale` needs it)"
        )
    elif not expansion:
        notes.append("job_expansion: the source does not enable it; hpcrun turns it on")

    # The first EBS volume is hpcrun's shared_storage; what hpcrun does not model of it
    # (encryption, deletion policy, IOPS) and any FSx or EFS stay for the overlay.
    if _is_ebs(source.peek("SharedStorage", 0)):
        data["shared_storage"] = _take_shared_storage(source, str(data["format"]))
    else:
        data["shared_storage"] = None
    tags = take("Tags")
    if tags:
        data["tags"] = {str(t["Key"]): str(t["Value"]) for t in tags}

    # ParallelCluster 3 takes what is left as the file's overlay, so nothing is lost; a
    # ParallelCluster 2 INI cannot carry it, and it is listed instead.
    left = overlay.cleaned(source.rest)
    if left and not keeps_v2:
        data[overlay.KEY] = left
        left = {}
    unmapped = [f"{path}: {value}" for path, value in leaves(left)]
    config, problems = check_config(data)
    holders = list(placeholders(config)) if config is not None else []
    holders += [k for k, _ in placeholder_values(data) if k not in holders]
    refused = [
        line
        for line in [os_refusal(str(data.get("os") or "alinux2023"), data["format"])]
        if line is not None
    ]
    notes += [f"{p}" for p in problems if p.path != "os" or not refused]
    return ImportResult(data, holders, unmapped, notes, refused)


# ParallelCluster 3's EBS defaults (`pcluster.constants`: EBS_VOLUME_SIZE_DEFAULT,
# EBS_VOLUME_TYPE_DEFAULT; 2.x's type was gp2), written out where the source says nothing,
# so hpcrun's own defaults (100 GiB) do not change the cluster.
PCLUSTER_EBS_SIZE_GIB = 35
PCLUSTER_EBS_TYPE = {"pcluster-v3": "gp3", "pcluster-v2": "gp2"}


def _take_shared_storage(source: _Source, fmt: str) -> dict[str, Any]:
    volume = ("SharedStorage", 0)
    shared: dict[str, Any] = {
        "name": source.take(*volume, "Name") or "shared",
        "mount_dir": source.take(*volume, "MountDir") or "/shared",
    }
    size = source.take(*volume, "EbsSettings", "Size")
    shared["size_gib"] = PCLUSTER_EBS_SIZE_GIB if size is None else size
    volume_type = source.take(*volume, "EbsSettings", "VolumeType")
    shared["volume_type"] = volume_type or PCLUSTER_EBS_TYPE[fmt]
    source.take(*volume, "StorageType")
    return shared


def _valid_name(name: str, what: str, notes: list[str]) -> str:
    """A queue or compute resource name as ParallelCluster 3 accepts it (lower case,
    digits, `-`): ParallelCluster 2 allowed `_`, and its converter keeps it."""
    if re.fullmatch(QUEUE_NAME_RE, name) or name in convert_v2.CONVERTER_NAMES:
        return name
    renamed = re.sub(r"[^a-z0-9-]", "-", name.lower())
    if not re.fullmatch(QUEUE_NAME_RE, renamed):
        return name  # left for the model's message
    notes.append(
        f"{what}: renamed {renamed} (ParallelCluster 3 names have only lower case "
        "letters, digits and '-')"
    )
    return renamed


def _take_all(source: _Source, paths: list[tuple[str | int, ...]]) -> list[Any]:
    """Every value the paths hold, taken out of the source."""
    return [value for path in paths if (value := source.take(*path)) is not None]


def _uniform(source: _Source, paths: list[tuple[str | int, ...]]) -> Any:
    """The one value every path holds (taken out of the source), or None, leaving them
    all in place, when any path lacks it or holds another value."""
    values = [source.peek(*path) for path in paths]
    if values[0] is None or any(value != values[0] for value in values):
        return None
    for path in paths:
        source.take(*path)
    return values[0]


class _Source:
    """The source config as import consumes it: what is mapped to hpcrun keys is taken
    out, and what is left at the end is the overlay (or, for v2, the list of what is lost)."""

    def __init__(self, config: dict[str, Any]) -> None:
        import yaml

        self.rest: dict[str, Any] = yaml.safe_load(yaml.safe_dump(config))  # a copy to consume

    def peek(self, *path: str | int) -> Any:
        """The value at `path` without taking it (None when absent)."""
        return _peek(self.rest, *path)

    def take(self, *path: str | int) -> Any:
        """Pop a value at `path` (None when absent), pruning emptied parents; a list item
        taken becomes None so later indexes stay stable."""
        node: Any = self.rest
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
            container[last] = None
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


def _take_queue(source: _Source, index: int, head_subnet: str) -> dict[str, Any]:
    """One `SlurmQueues` entry as an hpcrun `queues` entry, taken out of the source; what
    hpcrun does not model of it (Efa, spot prices, more instance types, custom actions)
    stays behind for the overlay, at the same list positions."""
    q: tuple[str | int, ...] = ("Scheduling", "SlurmQueues", index)
    take = source.take
    queue: dict[str, Any] = {"name": take(*q, "Name") or f"queue{index + 1}"}
    resources = []
    for j in range(len(source.peek(*q, "ComputeResources") or [])):
        cr = (*q, "ComputeResources", j)
        resource: dict[str, Any] = {}
        name = take(*cr, "Name")
        if name:
            resource["name"] = name
        resource["instance_type"] = take(*cr, "InstanceType") or take(
            *cr, "Instances", 0, "InstanceType"
        )
        for key, ours in (("MinCount", "min_count"), ("MaxCount", "max_count")):
            value = take(*cr, key)
            if value is not None:
                resource[ours] = value
        if "max_count" not in resource:  # ParallelCluster's default, not hpcrun's
            resource["max_count"] = 10
        resources.append(resource)
    queue["compute_resources"] = resources
    capacity = source.peek(*q, "CapacityType")
    if capacity in ("ONDEMAND", "SPOT"):
        take(*q, "CapacityType")
        queue["spot"] = capacity == "SPOT"
    net = (*q, "Networking")
    subnets = source.peek(*net, "SubnetIds")
    if subnets and subnets[0] != head_subnet:
        queue["subnet_id"] = subnets[0]
    if subnets:
        take(*net, "SubnetIds", 0)
    # A group by `Id` (ParallelCluster's older spelling of `Name`) stays as the source
    # says it, in the overlay: hpcrun renders none for the queue then.
    by_id = source.peek(*net, "PlacementGroup", "Id") is not None
    if not by_id and take(*net, "PlacementGroup", "Enabled"):
        queue["placement_group"] = True
    else:
        queue["placement_group"] = (not by_id and take(*net, "PlacementGroup", "Name")) or False
    return queue


def _is_flat(queue: dict[str, Any]) -> bool:
    """A queue the one-queue keys say exactly: one compute resource named after its type
    (or not named), on demand, in the cluster's subnet."""
    (only, *more) = queue["compute_resources"]
    named = only.get("name") in (None, compute_resource_name(str(only["instance_type"])))
    return not more and named and not queue.get("spot") and "subnet_id" not in queue


def _flat_keys(queue: dict[str, Any]) -> dict[str, Any]:
    only = queue["compute_resources"][0]
    flat: dict[str, Any] = {"compute_instance_type": only["instance_type"]}
    if queue["name"] != "default-queue":  # the converter's name for a v2 cluster's queue
        flat["queue_name"] = queue["name"]
    for key in ("min_count", "max_count"):
        if key in only:
            flat[key] = only[key]
    flat["placement_group"] = queue["placement_group"]
    return flat


def _peek(node: Any, *path: str | int) -> Any:
    """The value at `path` without taking it (None when absent)."""
    for key in path:
        if isinstance(node, list):
            if not isinstance(key, int) or key >= len(node):
                return None
            node = node[key]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return None
    return node


def _is_ebs(storage: Any) -> bool:
    return isinstance(storage, dict) and storage.get("StorageType") == "Ebs"


def _s3_access(entries: list[Any]) -> list[dict[str, Any]]:
    """ParallelCluster 3's S3Access entries as hpcrun's `s3_access`."""
    found = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("BucketName"):
            continue
        item: dict[str, Any] = {"bucket": entry["BucketName"]}
        if entry.get("KeyName"):
            item["key_prefix"] = entry["KeyName"]
        if entry.get("EnableWriteAccess"):
            item["write"] = True
        found.append(item)
    return found
