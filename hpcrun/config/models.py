"""Pydantic models of an hpcrun cluster file, validated before anything is started.

A cluster file is YAML (see configs/); `load_cluster_file` reports every problem with its
key path (`nodes: must be at most 16`) rather than the first one only, as
ParallelCluster's own validators do. Only `create` and `config` commands import this
module: pydantic costs start-up time that `hpcrun jobs` should not pay.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hpcrun.errors import UsageError

if TYPE_CHECKING:
    from hpcrun.config.pcluster import ParallelClusterConfig

MAX_LOCAL_NODES = 16


class LocalClusterConfig(BaseModel):
    """A real Slurm cluster on this host: one slurmd per node, all on 127.0.0.1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["local"] = "local"
    name: str = Field("dev", pattern=r"^[a-z][a-z0-9-]{0,31}$", description="cluster name")
    nodes: int = Field(4, ge=1, le=MAX_LOCAL_NODES, description="slurmd nodes n1..nN")
    cpus_per_node: int = Field(8, ge=1, le=256, description="CPUs each node declares")
    gpus_per_node: int = Field(
        2,
        ge=0,
        le=16,
        description="GPUs each node declares (Gres=gpu:N), so GPU-shaped "
        "requests schedule; there is no real GPU behind them",
    )
    memory_per_node_mib: int = Field(4096, ge=256, description="RealMemory each node declares")
    accounting: bool = Field(
        True, description="run MariaDB + slurmdbd: sacct history and repeated job resizes"
    )
    port_base: int | None = Field(
        None,
        ge=1024,
        le=65000,
        description="first of the nodes+3 TCP ports (default: a free block)",
    )
    partition: str = Field("batch", pattern=r"^[A-Za-z0-9_-]+$")


class SshClusterConfig(BaseModel):
    """A Slurm cluster someone else runs (a lab cluster, a ParallelCluster head node made
    outside hpcrun), reached over SSH: hpcrun runs Slurm's commands on `host`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["ssh"] = "ssh"
    name: str = Field(..., pattern=r"^[a-z][a-z0-9-]{0,31}$", description="cluster name")
    host: str = Field(..., min_length=1, description="head (login) node address")
    port: int = Field(22, ge=1, le=65535, description="SSH port")
    user: str | None = Field(None, description="login user (default: this user's name)")
    private_key_path: str | None = Field(
        None, description="private key (default: ssh-agent and ~/.ssh keys)"
    )
    known_hosts_path: str | None = Field(
        None, description="known_hosts to verify the host key (default: hpcrun's own)"
    )
    slurm_conf: str | None = Field(
        None, description="SLURM_CONF on the head node, when not Slurm's default"
    )
    workspace: str | None = Field(
        None,
        description="directory for hpcrun's session files, seen by every node "
        "(default: ~/.hpcrun on the head node)",
    )
    open_renderer: str | None = Field(
        None,
        description="path of hpcrun-nvindex-slurm on the cluster (default: found on PATH)",
    )
    scenes_dir: str | None = Field(
        None, description="hpcrun's scenes/ directory on the cluster, for scene names"
    )
    dcv_connect_script: str = Field(
        "/opt/parallelcluster/scripts/pcluster_dcv_connect.sh",
        description="prints a DCV session's port, id and token (ParallelCluster's script)",
    )


ClusterConfig = LocalClusterConfig


def _problems(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {path}: {err['msg']}")
    return "\n".join(lines)


def validate_ssh_config(data: dict[str, Any], source: str = "<flags>") -> SshClusterConfig:
    try:
        return SshClusterConfig.model_validate(data)
    except ValidationError as exc:
        raise UsageError(
            f"{source} is not a valid ssh cluster config:\n" + _problems(exc),
            "see configs/ssh.yaml for a commented example",
        ) from None


def validate_cluster_config(data: dict[str, Any], source: str = "<flags>") -> ClusterConfig:
    """Validate a cluster config; on failure raise one error listing every bad key path."""
    try:
        return LocalClusterConfig.model_validate(data)
    except ValidationError as exc:
        raise UsageError(
            f"{source} is not a valid cluster config:\n" + _problems(exc),
            "see configs/local.yaml for a commented example",
        ) from None


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a cluster file as a mapping (an empty file is an empty one: every key takes its
    default); a usage error naming the file otherwise."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read cluster file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a mapping of keys (backend, name, nodes, ...)")
    return data


CLUSTER_BACKENDS = ("local", "ssh", "parallelcluster")


def load_cluster_file(
    path: Path, *, backends: Collection[str] = CLUSTER_BACKENDS
) -> ClusterConfig | SshClusterConfig | ParallelClusterConfig:
    """Load and validate a cluster file, dispatching on its `backend:` key.

    Callers name the backends they can act on (`hpcrun config render` only makes sense
    for ParallelCluster files).
    """
    data = load_yaml_mapping(path)
    backend = data.get("backend", "local")
    if backend not in CLUSTER_BACKENDS:
        raise UsageError(
            f"{path}: backend: {backend!r} is not one hpcrun knows",
            f"use one of: {', '.join(CLUSTER_BACKENDS)}",
        )
    if backend not in backends:
        raise UsageError(
            f"{path}: this command does not act on backend: {backend!r}",
            f"it takes files with backend: {' or '.join(backends)}",
        )
    if backend == "parallelcluster":
        from hpcrun.config.pcluster import validate_parallelcluster_config

        return validate_parallelcluster_config(data, str(path))
    if backend == "ssh":
        return validate_ssh_config(data, str(path))
    return validate_cluster_config(data, str(path))
