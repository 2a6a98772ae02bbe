"""What is wrong with a ParallelCluster cluster file, by key path in that file, all at once.

hpcrun's own checks (the pydantic model, with messages that name known keys and the
expected shape of a value) come first; `schema.py` adds ParallelCluster's own schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from hpcrun.config.pcluster.model import (
    PLACEHOLDERS,
    ComputeResource,
    DcvSettings,
    ParallelClusterConfig,
    Queue,
    S3Access,
    SharedStorage,
)
from hpcrun.errors import UsageError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


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


def pydantic_problems(errors: Sequence[ErrorDetails]) -> list[Problem]:
    """The model's validation errors as problems, worded for a person: the keys a mapping
    knows, what shape a value must have, model-level checks on the key to change."""
    problems = []
    for err in errors:
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
            head, sep, rest = text.partition(": ")
            if sep and head in ParallelClusterConfig.model_fields:  # "queues: ..."
                path, text = head, rest
            elif text.startswith("max_count"):
                path = "max_count"
            message = text
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        problems.append(Problem(path, message))
    return problems


def problem_lines(errors: Sequence[ErrorDetails]) -> list[str]:
    """`pydantic_problems` as the lines a cluster-file error lists (the registry's hook)."""
    return [str(problem) for problem in pydantic_problems(errors)]


def _pattern_hint(path: str) -> str:
    """What a value at `path` must look like; list indexes do not matter
    (`queues.1.compute_resources.0.name` is a compute resource's name)."""
    key = ".".join(part for part in path.split(".") if not part.isdigit())
    hints = {
        "custom_ami": "an AMI id like ami-0123456789abcdef0",
        "head_node_instance_type": "an EC2 instance type like g4dn.4xlarge",
        "compute_instance_type": "an EC2 instance type like g4dn.12xlarge or p3.8xlarge",
        "subnet_id": "subnet-... or create",
        "vpc_id": "vpc-...",
        "region": "an AWS region like us-east-1",
        "name": "a letter, then letters, digits or '-', at most 60",
        "queue_name": "lower case letters, digits or '-', at most 25",
        "queues.name": "lower case letters, digits or '-', at most 25",
        "queues.compute_resources.name": "lower case letters, digits or '-', at most 25",
        "queues.compute_resources.instance_type": "an EC2 instance type like g4dn.12xlarge",
        "queues.subnet_id": "subnet-...",
        "post_install_url": "an s3:// or https:// URL",
        "shared_storage.mount_dir": "an absolute path",
    }
    return hints.get(key, "see configs/index-aws.yaml")


def _known_keys(parent: tuple[str, ...]) -> list[str]:
    key = ".".join(part for part in parent if not part.isdigit())
    nested: dict[str, type[BaseModel]] = {
        "": ParallelClusterConfig,
        "dcv": DcvSettings,
        "shared_storage": SharedStorage,
        "s3_access": S3Access,
        "queues": Queue,
        "queues.compute_resources": ComputeResource,
    }
    model = nested.get(key)
    return [] if model is None else list(model.model_fields)


def check_config(data: Mapping[str, Any]) -> tuple[ParallelClusterConfig | None, list[Problem]]:
    """hpcrun's own checks: the model, or every problem found (never only the first)."""
    try:
        return ParallelClusterConfig.model_validate(dict(data)), []
    except ValidationError as exc:
        return None, pydantic_problems(exc.errors())


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
