"""Pydantic models of an hpcrun cluster file, validated before anything is started.

A cluster file is YAML (see configs/); `load_cluster_file` reports every problem with its
key path (`nodes: must be at most 16`) rather than the first one only, as
ParallelCluster's own validators do. Which model a file is checked against is a pydantic
discriminated union on its `backend:` key, made of the models the backend registry
(`hpcrun.backends.REGISTRY`) names. Only `create` and `config` commands import this
module: pydantic costs start-up time that `hpcrun jobs` should not pay.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hpcrun.errors import UsageError
from hpcrun.files import read_text_file

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from hpcrun.config.eks.model import EksClusterConfig, KubernetesClusterConfig
    from hpcrun.config.pcluster.model import ParallelClusterConfig

MAX_LOCAL_NODES = 16


def problem_lines(errors: Sequence[ErrorDetails]) -> list[str]:
    """`key.path: message` for each validation error, in pydantic's order."""
    return [
        f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in errors
    ]


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

    def summary(self) -> str:
        """One line for `config validate`: the cluster's name and shape."""
        return f"{self.name}: local, {self.nodes} nodes"


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

    def summary(self) -> str:
        return f"{self.name}: ssh to {self.host}"


ClusterConfig = LocalClusterConfig
# Any backend's cluster file; the union pydantic validates is built from the registry.
AnyClusterConfig: TypeAlias = (
    "LocalClusterConfig | SshClusterConfig | ParallelClusterConfig | EksClusterConfig"
    " | KubernetesClusterConfig"
)


def _invalid(source: str, what: str, exc: ValidationError) -> str:
    """One problem on the first line itself (`flags: nodes: ...`), several listed below."""
    return _listed(f"{source} is not a valid {what}", problem_lines(exc.errors()))


def _listed(headline: str, lines: list[str]) -> str:
    if len(lines) == 1:
        return f"{headline}: {lines[0]}"
    return f"{headline}:\n" + "\n".join(f"  {line}" for line in lines)


def validate_ssh_config(data: dict[str, Any], source: str = "<flags>") -> SshClusterConfig:
    try:
        return SshClusterConfig.model_validate(data)
    except ValidationError as exc:
        raise UsageError(
            _invalid(source, "ssh cluster config", exc),
            "see configs/ssh.yaml for a commented example",
        ) from None


def validate_cluster_config(data: dict[str, Any], source: str = "<flags>") -> ClusterConfig:
    """Validate a cluster config; on failure raise one error listing every bad key path."""
    try:
        return LocalClusterConfig.model_validate(data)
    except ValidationError as exc:
        raise UsageError(
            _invalid(source, "cluster config", exc),
            "see configs/local.yaml for a commented example",
        ) from None


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    """Read a cluster file as a mapping (an empty file is an empty one: every key takes its
    default); a usage error naming the file otherwise."""
    text = read_text_file(path, "cluster file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a mapping of keys (backend, name, nodes, ...)")
    return data


@cache
def _cluster_file_adapter() -> TypeAdapter[Any]:
    """A discriminated union on `backend` of every registered backend's model."""
    from hpcrun.backends import REGISTRY

    models = tuple(entry.model() for entry in REGISTRY.values())
    union: Any = Annotated[Union[models], Field(discriminator="backend")]  # noqa: UP007
    return TypeAdapter(union)


def validate_cluster_data(data: Mapping[str, Any], source: str = "<flags>") -> AnyClusterConfig:
    """Validate a cluster file's keys against the model of its `backend:` (default local);
    on failure raise one error listing every bad key path, as that backend words them."""
    from hpcrun.backends import backend_entry

    backend = data.get("backend", "local")
    entry = backend_entry(backend)
    try:
        config: AnyClusterConfig = _cluster_file_adapter().validate_python(
            {**data, "backend": backend}
        )
    except ValidationError as exc:
        # The union puts the backend's tag first in every error's key path: drop it.
        errors = [
            {**err, "loc": err["loc"][1:] if err["loc"][:1] == (backend,) else err["loc"]}
            for err in exc.errors()
        ]
        lines = entry.problems(errors)  # type: ignore[arg-type]
        raise UsageError(
            _listed(f"{source} is not a valid {entry.config_noun}", lines),
            f"see {entry.example} for a commented example",
        ) from None
    return config


def load_cluster_file(path: Path, *, backends: Collection[str] | None = None) -> AnyClusterConfig:
    """Load and validate a cluster file, dispatching on its `backend:` key.

    Callers may name the backends they can act on (`hpcrun config render` only makes
    sense for ParallelCluster files); by default every registered one.
    """
    from hpcrun.backends import REGISTRY, known_backends

    data = load_yaml_mapping(path)
    backend = data.get("backend", "local")
    if not isinstance(backend, str) or backend not in REGISTRY:
        raise UsageError(
            f"{path}: backend: {backend!r} is not one hpcrun knows",
            f"use one of: {known_backends()}",
        )
    if backends is not None and backend not in backends:
        raise UsageError(
            f"{path}: this command does not act on backend: {backend!r}",
            f"it takes files with backend: {' or '.join(backends)}",
        )
    return validate_cluster_data(data, str(path))
