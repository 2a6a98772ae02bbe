"""An existing ParallelCluster config (v2 INI or v3 YAML) brought over as an hpcrun file.

Everything the source says that hpcrun does not carry over is listed, so the user sees
exactly what was left behind.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hpcrun.config.pcluster import overlay
from hpcrun.config.pcluster.findings import os_refusal, placeholder_values
from hpcrun.config.pcluster.model import PLACEHOLDERS
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
    if v2 is not None and v2.has_option("vpc default", "vpc_id"):
        data["vpc_id"] = v2.get("vpc default", "vpc_id")
    else:
        vpc_sections = [s for s in (v2.sections() if v2 else []) if s.startswith("vpc ")]
        if v2 is not None and vpc_sections and v2.has_option(vpc_sections[0], "vpc_id"):
            data["vpc_id"] = v2.get(vpc_sections[0], "vpc_id")
    elastic = take("HeadNode", "Networking", "ElasticIp")
    if elastic not in (None, False):
        data["elastic_ip"] = elastic
    root = take("HeadNode", "LocalStorage", "RootVolume", "Size")
    compute_root = take(
        "Scheduling", "SlurmQueues", 0, "ComputeSettings", "LocalStorage", "RootVolume", "Size"
    )
    if root is not None or compute_root is not None:
        data["root_volume_gib"] = max(int(root or 0), int(compute_root or 0))
        if root is not None and compute_root is not None and root != compute_root:
            notes.append(
                f"root volumes: head {root} GiB, compute {compute_root} GiB; both get "
                f"{data['root_volume_gib']} GiB"
            )
    access = _s3_access(take("HeadNode", "Iam", "S3Access") or [])
    queue_access = _s3_access(take("Scheduling", "SlurmQueues", 0, "Iam", "S3Access") or [])
    for entry in queue_access:  # the converter gives head and compute the same buckets
        if entry not in access:
            access.append(entry)
    if access:
        data["s3_access"] = access
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
    # Any other script stays where it is, for the overlay (v3) or the list of what is lost.
    post_install: str | None = None
    for where in (("HeadNode",), ("Scheduling", "SlurmQueues", 0)):
        script = _peek(rest, *where, "CustomActions", "OnNodeConfigured", "Script")
        if isinstance(script, str) and re.search(r"expan", script, re.IGNORECASE):
            post_install = post_install or take(
                *where, "CustomActions", "OnNodeConfigured", "Script"
            )
    if post_install:
        data["job_expansion"] = True
        if is_v2:
            data["post_install_url"] = post_install

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
    if _peek(rest, "Scheduling", "SlurmQueues", 0, "CapacityType") in (None, "ONDEMAND"):
        take("Scheduling", "SlurmQueues", 0, "CapacityType")  # else: SPOT stays, for the overlay

    # The first EBS volume is hpcrun's shared_storage; what hpcrun does not model of it
    # (encryption, deletion policy, IOPS) and any FSx or EFS stay for the overlay.
    if _is_ebs(_peek(rest, "SharedStorage", 0)):
        shared: dict[str, Any] = {"mount_dir": take("SharedStorage", 0, "MountDir") or "/shared"}
        size = take("SharedStorage", 0, "EbsSettings", "Size")
        if size is not None:
            shared["size_gib"] = size
        volume_type = take("SharedStorage", 0, "EbsSettings", "VolumeType")
        if volume_type is not None:
            shared["volume_type"] = volume_type
        take("SharedStorage", 0, "Name")  # hpcrun names it `shared`
        take("SharedStorage", 0, "StorageType")
        data["shared_storage"] = shared
    else:
        data["shared_storage"] = None
    tags = take("Tags")
    if tags:
        data["tags"] = {str(t["Key"]): str(t["Value"]) for t in tags}

    # ParallelCluster 3 takes what is left as the file's overlay, so nothing is lost; a
    # ParallelCluster 2 INI cannot carry it, and it is listed instead.
    left = overlay.cleaned(rest)
    if left and not is_v2:
        data[overlay.KEY] = left
        left = {}
    unmapped = [f"{path}: {value}" for path, value in _leaves(left)]
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
