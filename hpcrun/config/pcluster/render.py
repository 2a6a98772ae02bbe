"""A ParallelCluster cluster file rendered to the file ParallelCluster reads: version 3
YAML, or version 2 INI for AMIs pinned to ParallelCluster 2.8.0 (NVIDIA's older IndeX
AMI), from the jinja2 templates beside this module (golden-tested).

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

import contextlib
import functools
from typing import TYPE_CHECKING, Any

from hpcrun.config.pcluster import overlay
from hpcrun.config.pcluster.findings import os_refusal
from hpcrun.config.pcluster.model import (
    PCLUSTER2_OS_FOR,
    PCLUSTER2_OSES,
    Format,
    ParallelClusterConfig,
)
from hpcrun.errors import UsageError
from hpcrun.templates import yaml_environment

if TYPE_CHECKING:
    import jinja2


class RenderError(UsageError):
    """The file is valid but cannot become this pcluster format (e.g. `subnet_id: create`)."""


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates' environment, with their compiled code kept between processes:
    compiling pcluster-v3.yaml.j2 took ~30 ms of every `config validate` (~5 %)."""
    env = yaml_environment("hpcrun.config.pcluster")
    if env.bytecode_cache is None:
        env.bytecode_cache = _bytecode_cache()
    return env


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """jinja2's own cache of compiled templates, in its private per-user directory under
    the temporary one (made 0700 and checked to be the user's). jinja2 keys a template by
    name and file, not by the environment's options, so these files have a name of
    their own. A template whose source changed is compiled again (the cache keeps its
    checksum); a cache that cannot be read or written is no cache: never an error."""
    import jinja2

    class QuietCache(jinja2.FileSystemBytecodeCache):
        def load_bytecode(self, bucket: Any) -> None:
            with contextlib.suppress(OSError):
                super().load_bytecode(bucket)

        def dump_bytecode(self, bucket: Any) -> None:
            with contextlib.suppress(OSError):
                super().dump_bytecode(bucket)

    try:
        return QuietCache(pattern="hpcrun-pcluster-%s.cache")
    except (OSError, RuntimeError):  # no private directory to be had
        return None


def scheduler_parameters(config: ParallelClusterConfig) -> str | None:
    """SchedulerParameters for CustomSlurmSettings, extending ParallelCluster's own value.

    See the module docstring: ParallelCluster's slurm.conf sets `nohold_on_prolog_fail`
    when UseEc2Hostnames is on, and a later line would drop it, so it is repeated here.
    """
    if not config.job_expansion:
        return None
    ours = ["nohold_on_prolog_fail"] if config.use_ec2_hostnames else []
    return ",".join([*ours, "permit_job_expansion"])


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
    refused = os_refusal(config.os, "pcluster-v3")
    if refused is not None:
        raise RenderError(refused)
    text = (
        _environment()
        .get_template("pcluster-v3.yaml.j2")
        .render(
            c=config,
            source=source,
            subnet_id=_subnet(config, subnet_id),
            scheduler_parameters=scheduler_parameters(config),
            queues=config.slurm_queues(),
        )
    )
    if not config.parallelcluster:
        return text
    import yaml

    try:
        merged = overlay.merge(yaml.safe_load(text), config.parallelcluster)
    except overlay.OverlayConflict as exc:
        raise RenderError(exc.message, exc.hint) from None
    header = [line for line in text.splitlines() if line.startswith("#")][:3]
    header.append(f"# with the cluster file's `{overlay.KEY}:` settings merged in")
    return "\n".join(header) + "\n" + yaml.safe_dump(merged, sort_keys=False)


def render_v2(
    config: ParallelClusterConfig, *, source: str = "", subnet_id: str | None = None
) -> str:
    """ParallelCluster 2.8.0 INI: `pcluster create -c FILE NAME` on the 2.x CLI."""
    if config.parallelcluster:
        raise RenderError(
            f"{overlay.KEY}: ParallelCluster 3 settings cannot go into a ParallelCluster 2 INI",
            "use format: pcluster-v3, or move what it says into hpcrun's keys",
        )
    if isinstance(config.elastic_ip, str):
        raise RenderError(
            "elastic_ip: ParallelCluster 2 cannot reuse an Elastic IP allocation",
            "set elastic_ip: true (use_public_ips: a new one), or use format: pcluster-v3",
        )
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
    queues = config.slurm_queues()
    if len(queues) > 1 or len(queues[0].compute_resources) > 1:
        raise RenderError(
            "queues: ParallelCluster 2.8.0 has one compute queue of one instance type",
            "use format: pcluster-v3 for several queues, or keep one queue of one type",
        )
    base_os = config.os if config.os in PCLUSTER2_OSES else PCLUSTER2_OS_FOR[config.os]
    storage = config.shared_storage
    volume_type = None
    if storage is not None:
        volume_type = "gp2" if storage.volume_type == "gp3" else storage.volume_type
    import json

    group = queues[0].placement_group
    placement = "DYNAMIC" if group is True else group or None
    return (
        _environment()
        .get_template("pcluster-v2.ini.j2")
        .render(
            c=config,
            q=queues[0],
            r=queues[0].compute_resources[0],
            source=source,
            subnet_id=_subnet(config, subnet_id),
            base_os=base_os,
            os_mapped=base_os != config.os,
            volume_type=volume_type,
            placement=placement,
            tags_json=json.dumps(config.tags, sort_keys=True) if config.tags else None,
            s3_read=_s3_arns(config, write=False),
            s3_read_write=_s3_arns(config, write=True),
        )
    )


def _s3_arns(config: ParallelClusterConfig, *, write: bool) -> str | None:
    """ParallelCluster 2 takes one resource ARN per kind of access: with several buckets
    of one kind, `*` (every bucket) is the only value that covers them all."""
    arns = [
        f"arn:aws:s3:::{a.bucket}/{(a.key_prefix or '').rstrip('*')}*"
        for a in config.s3_access
        if a.write == write
    ]
    if not arns:
        return None
    return arns[0] if len(arns) == 1 else "*"


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
