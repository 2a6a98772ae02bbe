"""The Kubernetes cluster files: `backend: eks` (made by hpcrun) and `backend: kubernetes`
(an existing cluster through a kubeconfig context). One module per job:

- `model`: the pydantic models and the values they are checked against
- `problems`: the models' errors as `Problem`s by key path in the hpcrun file
- `render`: the eksctl ClusterConfig, from the template beside it, checked against
  eksctl's own JSON schema (schema/, Apache-2.0, with its licence)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpcrun.config.eks.model import (
    DEFAULT_EKS_VERSION,
    EKS_GPUS_BY_INSTANCE_TYPE,
    EKS_VERSIONS,
    NVINDEX_POLICY_ARNS,
    EksClusterConfig,
    Ingress,
    KubernetesClusterConfig,
    NodeGroup,
    ServiceAccount,
    is_gpu_instance_type,
)
from hpcrun.config.eks.problems import (
    Problem,
    ValidationReport,
    check_config,
    check_kubernetes_config,
    kubernetes_problem_lines,
    problem_lines,
)
from hpcrun.config.eks.render import (
    EKSCTL_PATH_TO_KEY,
    RenderError,
    eksctl_schema,
    hpcrun_key_for,
    render_checked,
    render_eksctl,
    schema_problems,
)

FORMATS = ("eksctl",)


def validate_data(
    data: Mapping[str, Any], *, source: str = "", with_pcluster: bool = True
) -> ValidationReport:
    """Every problem of an eks file: the model's checks, then eksctl's schema on the
    rendering (`with_pcluster`, the registry's name for the slower deep check)."""
    config, problems = check_config(data)
    if config is None:
        return ValidationReport(None, problems)
    report = ValidationReport(config)
    if with_pcluster:
        report.problems.extend(schema_problems(render_eksctl(config, source=source)))
    return report


def validate_kubernetes_data(
    data: Mapping[str, Any], *, source: str = "", with_pcluster: bool = True
) -> ValidationReport:
    """Every problem of a kubernetes file (the model has them all)."""
    config, problems = check_kubernetes_config(data)
    return ValidationReport(config, problems)


__all__ = [
    "DEFAULT_EKS_VERSION",
    "EKSCTL_PATH_TO_KEY",
    "EKS_GPUS_BY_INSTANCE_TYPE",
    "EKS_VERSIONS",
    "FORMATS",
    "NVINDEX_POLICY_ARNS",
    "EksClusterConfig",
    "Ingress",
    "KubernetesClusterConfig",
    "NodeGroup",
    "Problem",
    "RenderError",
    "ServiceAccount",
    "ValidationReport",
    "check_config",
    "check_kubernetes_config",
    "eksctl_schema",
    "hpcrun_key_for",
    "is_gpu_instance_type",
    "kubernetes_problem_lines",
    "problem_lines",
    "render_checked",
    "render_eksctl",
    "schema_problems",
    "validate_data",
    "validate_kubernetes_data",
]
