"""Where clusters come from: one backend per kind, each declared once in `REGISTRY`.

An entry names a backend, the class that runs it and the pydantic model of its cluster
files (both as "module:name", imported on first use: ParallelCluster's pull in paramiko,
pcluster and boto3, which `hpcrun --help` and commands on a local cluster must not pay
for), and the features it lacks, each with why and what to do instead (as SkyPilot's
unsupported-features tables). `hpcrun create`, `open_backend` and `config validate` find
backends here; the CLI refuses a command whose feature the cluster lacks before any work.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpcrun.backends.base import Feature
from hpcrun.errors import FeatureMissing, HpcrunError, UsageError

if TYPE_CHECKING:
    from pydantic import BaseModel
    from pydantic_core import ErrorDetails

    from hpcrun.backends.base import Backend
    from hpcrun.state import ClusterRecord, StateStore

# What each feature gives, as a refusal names it ("cluster dev (local) has no ...").
FEATURE_NOUNS: Mapping[Feature, str] = {
    Feature.CREATE: "way to be created or attached",
    Feature.SLURM: "Slurm scheduler",
    Feature.DESKTOP: "remote desktop (NICE DCV)",
    Feature.JOB_EXPANSION: "Slurm job expansion (SchedulerParameters=permit_job_expansion)",
    Feature.ACCOUNTING: "Slurm accounting (slurmdbd)",
    Feature.SHELL: "login shell on a head node",
    Feature.SERVE: "way to keep a server up behind an autoscaler (Kubernetes)",
}


@dataclass(frozen=True)
class Lack:
    """A feature a backend lacks: why (completing "it ..."), and what to do instead.

    `when` limits it to the clusters whose config it holds for (a ParallelCluster file
    with `dcv.enabled: false`); `hint` may be computed from the opened backend when the
    useful advice names something of it (the local cluster's SLURM_CONF).
    """

    reason: str
    hint: str | Callable[[Backend], str]
    when: Callable[[Mapping[str, Any]], bool] | None = None


@dataclass(frozen=True)
class BackendEntry:
    name: str
    # "module:Class"; the class has `from_record(record, store)`. None: no backend is
    # built yet (the files validate and render; `create` is refused through Feature.CREATE).
    backend_class: str | None
    config_model: str  # "module:Model" of its cluster files; `backend` is its Literal tag
    description: str
    example: str  # a commented cluster file in the repository
    lacks: Mapping[Feature, Lack] = field(default_factory=dict)
    config_noun: str = "cluster config"  # "FILE is not a valid <noun>"
    # "module:function" wording the model's validation errors as `key.path: message` lines.
    problem_lines: str = "hpcrun.config.models:problem_lines"
    # Cluster-file keys `hpcrun create` flags may set (the rest live in the file), and
    # the keyword options (from flags) its constructor takes when creating.
    flag_keys: frozenset[str] = frozenset({"name"})
    create_options: frozenset[str] = frozenset()
    needs_file: bool = True  # `create --backend NAME` needs a cluster file (--config)
    on_this_machine: bool = False  # its daemons run here; there is no head node
    down_verbs: tuple[str, str] = ("stop", "stopped")  # what `hpcrun down` does to it
    # A check deeper than the model for `config validate`: "module:function" taking
    # (data, source=, with_pcluster=) and returning a `ValidationReport` (ParallelCluster's
    # own schema, run offline).
    deep_check: str | None = None

    def unsupported(self, config: Mapping[str, Any]) -> frozenset[Feature]:
        """The features a cluster of this backend with `config` lacks."""
        return frozenset(
            f for f, lack in self.lacks.items() if lack.when is None or lack.when(config)
        )

    def load_class(self) -> Any:
        if self.backend_class is None:
            raise HpcrunError(
                f"backend {self.name!r} has no implementation in this hpcrun yet",
                f"its cluster files validate and render (`hpcrun config validate`); "
                f"see {self.example}",
            )
        return _load(self.backend_class)

    def model(self) -> type[BaseModel]:
        model: type[BaseModel] = _load(self.config_model)
        return model

    def problems(self, errors: Sequence[ErrorDetails]) -> list[str]:
        """The model's validation errors, worded as this backend's files explain them."""
        lines: list[str] = _load(self.problem_lines)(errors)
        return lines

    def report(self, data: Mapping[str, Any], *, source: str, thorough: bool = True) -> Any:
        """Every problem of a cluster file by the backend's deeper check; None when it has
        none beyond its model (`thorough` False skips the slow part: pcluster's schema)."""
        if self.deep_check is None:
            return None
        return _load(self.deep_check)(data, source=source, with_pcluster=thorough)

    def open(self, record: ClusterRecord, store: StateStore) -> Backend:
        backend: Backend = self.load_class().from_record(record, store)
        return backend

    def new(self, config: Mapping[str, Any], store: StateStore, **options: Any) -> Backend:
        """A backend for a cluster about to be created, with the `create` options it takes
        (others, such as --trust-new-host for a local cluster, do not apply to it)."""
        taken = {k: v for k, v in options.items() if k in self.create_options}
        backend: Backend = self.load_class()(dict(config), store, **taken)
        return backend


def _load(target: str) -> Any:
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _local_shell_hint(backend: Backend) -> str:
    # The local backend's environment for Slurm's commands (read, not imported: the
    # backend modules import this registry).
    conf = (getattr(backend, "env", None) or {}).get("SLURM_CONF")
    if conf:
        return f"use this shell after `export SLURM_CONF={conf}`"
    return "use this shell: Slurm's commands reach the cluster (`hpcrun status` shows how)"


_NO_HEAD_NODE_DESKTOP = Lack(
    "runs on this machine: there is no head node to run a remote desktop on",
    "DCV runs on the head node of an AWS ParallelCluster cluster "
    "(`hpcrun create --config configs/index-aws.yaml`); here, open the URLs "
    "hpcrun prints in a local browser",
)


# Slurm runs jobs to their end; a server kept up and scaled is Kubernetes' work.
_SLURM_NO_SERVE = Lack(
    "runs Slurm: it has no Services or autoscalers to keep a model server up",
    "batch scoring runs here (hpcrun score, a Triton per task); to serve online, use an "
    "eks or kubernetes cluster: hpcrun serve triton --cluster <it>",
)


def _kubernetes_lacks() -> dict[Feature, Lack]:
    """What eks and kubernetes clusters lack: Slurm, and with it job arrays (render and
    score on Kubernetes come with their own workers), DCV and a head node."""
    not_slurm = "runs Kubernetes, not Slurm"
    on_slurm = "use a Slurm cluster (local, ssh or parallelcluster) for it"
    return {
        Feature.SLURM: Lack(not_slurm, on_slurm),
        Feature.JOB_EXPANSION: Lack(
            not_slurm, "leave --merge out: a scale changes the worker replicas in place"
        ),
        Feature.ACCOUNTING: Lack(not_slurm, on_slurm),
        Feature.DESKTOP: Lack(
            "has no head node to run a remote desktop on",
            "open the session URLs hpcrun prints (through the ingress) in a local browser, "
            "or `hpcrun index tunnel`",
        ),
        Feature.SHELL: Lack("has no head node to log in to", "use kubectl with its kubeconfig"),
    }


REGISTRY: Mapping[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry(
            name="local",
            backend_class="hpcrun.backends.local:LocalBackend",
            config_model="hpcrun.config.models:LocalClusterConfig",
            description="a real Slurm cluster on this machine (no cloud)",
            example="configs/local.yaml",
            lacks={
                Feature.SERVE: _SLURM_NO_SERVE,
                Feature.DESKTOP: _NO_HEAD_NODE_DESKTOP,
                Feature.SHELL: Lack(
                    "runs on this machine: there is no head node to log in to",
                    _local_shell_hint,
                ),
                Feature.ACCOUNTING: Lack(
                    "runs without MariaDB and slurmdbd (accounting: false)",
                    "take it down with `hpcrun down --purge` and create it again with --accounting",
                    when=lambda config: not config.get("accounting", True),
                ),
            },
            flag_keys=frozenset(
                {"name", "nodes", "cpus_per_node", "gpus_per_node", "accounting", "port_base"}
            ),
            needs_file=False,
            on_this_machine=True,
        ),
        BackendEntry(
            # Creating one attaches to it: the host key is checked, Slurm must answer.
            name="ssh",
            backend_class="hpcrun.backends.remote:SshBackend",
            config_model="hpcrun.config.models:SshClusterConfig",
            description="a Slurm cluster someone else runs, reached over SSH",
            example="configs/ssh.yaml",
            config_noun="ssh cluster config",
            lacks={Feature.SERVE: _SLURM_NO_SERVE},
            create_options=frozenset({"trust_new_host"}),
            down_verbs=("detach from", "detached"),
        ),
        BackendEntry(
            name="parallelcluster",
            backend_class="hpcrun.backends.parallelcluster:ParallelClusterBackend",
            config_model="hpcrun.config.pcluster:ParallelClusterConfig",
            problem_lines="hpcrun.config.pcluster.problems:problem_lines",
            description="an AWS ParallelCluster cluster (pcluster + SSH + DCV)",
            example="configs/index-aws.yaml",
            lacks={
                Feature.SERVE: _SLURM_NO_SERVE,
                Feature.DESKTOP: Lack(
                    "was made with its remote desktop turned off (dcv.enabled: false)",
                    "set dcv.enabled: true in its cluster file and create the cluster again",
                    when=lambda config: not (config.get("dcv") or {}).get("enabled", True),
                ),
                Feature.JOB_EXPANSION: Lack(
                    "was made without job expansion (job_expansion: false)",
                    "scale without --merge (the new nodes join as a second allocation), "
                    "or set job_expansion: true and create the cluster again",
                    when=lambda config: not config.get("job_expansion", True),
                ),
            },
            create_options=frozenset({"trust_new_host", "suppress_validators"}),
            down_verbs=("delete (every AWS resource of)", "deleted"),
            deep_check="hpcrun.config.pcluster:validate_data",
        ),
        BackendEntry(
            name="eks",
            backend_class="hpcrun.backends.eks:EksBackend",
            config_model="hpcrun.config.eks:EksClusterConfig",
            problem_lines="hpcrun.config.eks:problem_lines",
            description="an Amazon EKS cluster (the EKS API + kubeconfig)",
            example="configs/index-eks.yaml",
            config_noun="eks cluster config",
            lacks=_kubernetes_lacks(),
            down_verbs=("delete (every AWS resource of)", "deleted"),
            deep_check="hpcrun.config.eks:validate_data",
        ),
        BackendEntry(
            # Creating one attaches to it: the API must answer and let hpcrun apply.
            name="kubernetes",
            backend_class="hpcrun.backends.kubernetes:KubernetesBackend",
            config_model="hpcrun.config.eks:KubernetesClusterConfig",
            problem_lines="hpcrun.config.eks:kubernetes_problem_lines",
            description="an existing Kubernetes cluster, through a kubeconfig context",
            example="configs/kubernetes.yaml",
            config_noun="kubernetes cluster config",
            lacks=_kubernetes_lacks(),
            down_verbs=("detach from", "detached"),
            deep_check="hpcrun.config.eks:validate_kubernetes_data",
        ),
    )
}


def known_backends() -> str:
    return ", ".join(REGISTRY)


def backend_entry(name: str) -> BackendEntry:
    """The registry entry of backend `name`; a usage error listing the known ones."""
    entry = REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None:
        raise UsageError(
            f"backend {name!r} is not one hpcrun knows", f"use one of: {known_backends()}"
        )
    return entry


def previous_record(store: StateStore, name: str, backend: str) -> ClusterRecord | None:
    """What the store holds of cluster `name` before a create: None, or a record of the
    same backend (which create then reuses); a cluster of another backend is refused."""
    previous = store.cluster(name)
    if previous is not None and previous.backend != backend:
        raise HpcrunError(
            f"a {previous.backend} cluster named {name!r} already exists",
            "pick another name in the cluster file",
        )
    return previous


def open_backend(record: ClusterRecord, store: StateStore) -> Backend:
    entry = REGISTRY.get(record.backend)
    if entry is None:
        raise HpcrunError(
            f"cluster {record.name!r} uses backend {record.backend!r}, which this hpcrun lacks",
            f"known backends: {', '.join(sorted(REGISTRY))}",
        )
    return entry.open(record, store)


def refusal(
    cluster: str, backend_name: str, feature: Feature, what: str, backend: Backend | None = None
) -> FeatureMissing:
    """The error that refuses `what` (e.g. "hpcrun dcv") on a cluster lacking `feature`:
    what is missing, on which cluster and backend, and what to do instead."""
    entry = REGISTRY.get(backend_name)
    lack = entry.lacks.get(feature) if entry is not None else None
    if lack is None:  # an instance lacking more than its entry declares
        having = [e.name for e in REGISTRY.values() if feature not in e.lacks]
        lack = Lack(
            "does not provide it",
            f"run it on a cluster of a backend that has it ({', '.join(having) or 'none'})",
        )
    if callable(lack.hint):
        hint = lack.hint(backend) if backend is not None else None
    else:
        hint = lack.hint
    return FeatureMissing(
        f"cluster {cluster!r} ({backend_name}) has no {FEATURE_NOUNS[feature]}, which {what} "
        f"needs: it {lack.reason}",
        hint,
        feature=feature,
    )
