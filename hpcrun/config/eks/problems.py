"""What is wrong with an eks or kubernetes cluster file, by key path in that file.

pydantic's errors are worded for a person (known keys for an unknown one, the expected
shape of a value) and model-level checks land on the key they name
(`node_groups.0.max_size`), not on the node group as a whole.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from hpcrun.config.eks.model import (
    EksClusterConfig,
    Ingress,
    KubernetesClusterConfig,
    NodeGroup,
    ServiceAccount,
)

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a cluster file, named by its key path in that file."""

    path: str
    message: str
    schema_path: str | None = None  # where eksctl's schema saw it, if it did

    @property
    def pcluster_path(self) -> None:
        """`config validate` shows ParallelCluster's path for pcluster files; none here."""
        return None

    def __str__(self) -> str:
        where = f" (eksctl: {self.schema_path})" if self.schema_path else ""
        return f"{self.path}: {self.message}{where}"


@dataclass
class ValidationReport:
    """What `config validate` found: a model (when the checks passed) and the problems."""

    config: EksClusterConfig | KubernetesClusterConfig | None
    problems: list[Problem] = field(default_factory=list)
    placeholders: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


_HINTS = {
    "name": "a letter, then letters, digits or '-'",
    "region": "an AWS region like us-east-1",
    "instance_type": "an EC2 instance type like g4dn.xlarge or m5.large",
    "namespace": "a Kubernetes name: lower case letters, digits or '-'",
}


def _model_at(root: type[BaseModel], parent: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model a key path's parent is (`node_groups.0` -> NodeGroup)."""
    nested: dict[str, type[BaseModel]] = {
        "node_groups": NodeGroup,
        "service_accounts": ServiceAccount,
        "ingress": Ingress,
    }
    model: type[BaseModel] | None = root
    for part in parent:
        if isinstance(part, int):
            continue
        model = nested.get(part) if model is root else None
        if model is None:
            return None
    return model


def pydantic_problems(
    errors: Sequence[ErrorDetails], root: type[BaseModel] = EksClusterConfig
) -> list[Problem]:
    problems = []
    for err in errors:
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            model = _model_at(root, loc[:-1])
            known = list(model.model_fields) if model is not None else []
            message = "unknown key" + (f" (known keys: {', '.join(known)})" if known else "")
        elif err["type"] == "missing":
            message = "required, and missing"
        elif err["type"] == "string_pattern_mismatch":
            hint = _HINTS.get(str(loc[-1]), "see configs/index-eks.yaml")
            message = f"{err['input']!r} is not valid here (expected {hint})"
        elif err["type"] == "value_error":
            text = str(err["ctx"]["error"]) if "ctx" in err else message
            named = re.match(r"^([a-z_]+(?:\.[a-z_]+)*)(:?) ", text)
            model = _model_at(root, loc)
            if named and model is not None and named.group(1).split(".")[0] in model.model_fields:
                # a model-level check: report it on the key it names
                path = ".".join([*(str(p) for p in loc), named.group(1)])
                if named.group(2):
                    text = text[named.end() :]
            message = text
        problems.append(Problem(path, message))
    return problems


def problem_lines(errors: Sequence[ErrorDetails]) -> list[str]:
    """`key.path: message` lines for an eks file (the registry's hook)."""
    return [str(p) for p in pydantic_problems(errors, EksClusterConfig)]


def kubernetes_problem_lines(errors: Sequence[ErrorDetails]) -> list[str]:
    """`key.path: message` lines for a kubernetes file (the registry's hook)."""
    return [str(p) for p in pydantic_problems(errors, KubernetesClusterConfig)]


def check_config(data: Mapping[str, Any]) -> tuple[EksClusterConfig | None, list[Problem]]:
    """hpcrun's own checks of an eks file: the model, or every problem found."""
    try:
        return EksClusterConfig.model_validate(dict(data)), []
    except ValidationError as exc:
        return None, pydantic_problems(exc.errors(), EksClusterConfig)


def check_kubernetes_config(
    data: Mapping[str, Any],
) -> tuple[KubernetesClusterConfig | None, list[Problem]]:
    try:
        return KubernetesClusterConfig.model_validate(dict(data)), []
    except ValidationError as exc:
        return None, pydantic_problems(exc.errors(), KubernetesClusterConfig)
