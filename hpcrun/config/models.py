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


ClusterConfig = LocalClusterConfig


def validate_cluster_config(data: dict[str, Any], source: str = "<flags>") -> ClusterConfig:
    """Validate a cluster config; on failure raise one error listing every bad key path."""
    try:
        return LocalClusterConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"  {path}: {err['msg']}")
        raise UsageError(
            f"{source} is not a valid cluster config:\n" + "\n".join(problems),
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


def load_cluster_file(
    path: Path, *, backends: Collection[str] = ("local",)
) -> ClusterConfig | ParallelClusterConfig:
    """Load and validate a cluster file, dispatching on its `backend:` key.

    Callers name the backends they can act on, so `hpcrun create` keeps refusing
    ParallelCluster files until that lifecycle exists, while `hpcrun config` accepts them.
    """
    data = load_yaml_mapping(path)
    backend = data.get("backend", "local")
    if backend not in backends or backend not in ("local", "parallelcluster"):
        raise UsageError(
            f"{path}: backend {backend!r} is not available yet",
            "this hpcrun creates local clusters (backend: local)",
        )
    if backend == "parallelcluster":
        from hpcrun.config.pcluster import validate_parallelcluster_config

        return validate_parallelcluster_config(data, str(path))
    return validate_cluster_config(data, str(path))
