"""An eks cluster file rendered as an eksctl ClusterConfig, checked against eksctl's schema.

The ClusterConfig (apiVersion eksctl.io/v1alpha5) comes from the jinja2 template beside
this module (golden-tested) and is validated offline against eksctl's own JSON schema
(draft-07, `eksctl utils schema`), shipped in schema/ with its licence. Schema findings
carry eksctl's paths (`managedNodeGroups.0.minSize`) and are mapped back to the key of the
hpcrun file that produced them (`node_groups.0.min_size`).

GPU node groups are labelled with their GPU count; they are tainted `nvidia.com/gpu`
only when the cluster also has a group without GPUs, since with NVIDIA's single g4dn
group a taint would leave ingress-nginx and CoreDNS nowhere to run.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcrun.config.eks.model import EksClusterConfig
from hpcrun.config.eks.problems import Problem
from hpcrun.errors import UsageError
from hpcrun.templates import yaml_environment

if TYPE_CHECKING:
    import jinja2

SCHEMA_PATH = Path(__file__).parent / "schema" / "clusterconfig-v1alpha5.schema.json"

# eksctl ClusterConfig paths (list indexes as N) -> the hpcrun key that produced them;
# the longest matching prefix wins.
EKSCTL_PATH_TO_KEY = {
    "metadata.name": "name",
    "metadata.region": "region",
    "metadata.version": "kubernetes_version",
    "metadata.tags": "tags",
    "metadata": "name",
    "iam.withOIDC": "oidc",
    "iam.serviceAccounts.N.metadata.name": "service_accounts.N.name",
    "iam.serviceAccounts.N.metadata.namespace": "service_accounts.N.namespace",
    "iam.serviceAccounts.N.attachPolicyARNs": "service_accounts.N.attach_policy_arns",
    "iam.serviceAccounts.N": "service_accounts.N",
    "iam.serviceAccounts": "service_accounts",
    "iam": "oidc",
    "addons": "oidc",
    "managedNodeGroups.N.name": "node_groups.N.name",
    "managedNodeGroups.N.instanceType": "node_groups.N.instance_type",
    "managedNodeGroups.N.minSize": "node_groups.N.min_size",
    "managedNodeGroups.N.desiredCapacity": "node_groups.N.desired_size",
    "managedNodeGroups.N.maxSize": "node_groups.N.max_size",
    "managedNodeGroups.N.volumeSize": "node_groups.N.volume_size_gib",
    "managedNodeGroups.N.spot": "node_groups.N.spot",
    "managedNodeGroups.N.labels": "node_groups.N.labels",
    "managedNodeGroups.N.taints": "node_groups.N.gpus_per_node",
    "managedNodeGroups.N.tags": "tags",
    "managedNodeGroups.N": "node_groups.N",
    "managedNodeGroups": "node_groups",
}


class RenderError(UsageError):
    """The rendered ClusterConfig is one eksctl's schema refuses."""


def _environment() -> jinja2.Environment:
    return yaml_environment("hpcrun.config.eks")


def render_eksctl(config: EksClusterConfig, *, source: str = "") -> str:
    """The eksctl ClusterConfig YAML for `eksctl create cluster -f`, unchecked."""
    has_cpu_group = any(group.gpus() == 0 for group in config.node_groups)
    groups = []
    for group in config.node_groups:
        gpus = group.gpus() or 0
        labels = {"hpcrun.io/node-group": group.name, **group.labels}
        if gpus:
            labels["hpcrun.io/gpus-per-node"] = str(gpus)
        groups.append({"group": group, "labels": labels, "taint": bool(gpus) and has_cpu_group})
    return (
        _environment()
        .get_template("eksctl.yaml.j2")
        .render(c=config, source=source, groups=groups, tags=dict(sorted(config.tags.items())))
    )


@cache
def eksctl_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def hpcrun_key_for(eksctl_path: str) -> str | None:
    """The hpcrun key behind an eksctl path (`managedNodeGroups.0.minSize` ->
    `node_groups.0.min_size`), or None when nothing maps."""
    generic = re.sub(r"\.[0-9]+(?=\.|$)", ".N", eksctl_path)
    indexes = re.findall(r"\.([0-9]+)(?=\.|$)", eksctl_path)
    best = None
    for prefix in EKSCTL_PATH_TO_KEY:
        if (generic == prefix or generic.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    if best is None:
        return None
    key = EKSCTL_PATH_TO_KEY[best]
    for index in indexes[: key.count(".N")]:
        key = key.replace(".N", f".{index}", 1)
    return key


def schema_problems(rendered: str) -> list[Problem]:
    """Check a rendered ClusterConfig against eksctl's JSON schema, offline; each finding
    on the hpcrun key behind it. jsonschema comes with the `aws` extra."""
    import yaml

    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - the aws extra brings it
        raise UsageError(
            "checking an eksctl ClusterConfig needs the jsonschema package",
            "install the aws extra: pip install 'hpcrun[aws]'",
        ) from None
    validator = jsonschema.Draft7Validator(eksctl_schema())
    problems = []
    for error in sorted(validator.iter_errors(yaml.safe_load(rendered)), key=str):
        path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        key = hpcrun_key_for(path) or "(generated config)"
        problems.append(Problem(key, error.message, path))
    return problems


def render_checked(config: EksClusterConfig, *, source: str = "") -> str:
    """`render_eksctl`, refused with every schema problem by hpcrun key when eksctl's
    schema does not accept the result."""
    rendered = render_eksctl(config, source=source)
    problems = schema_problems(rendered)
    if problems:
        lines = [str(p) for p in problems]
        head = f"{source or config.name}: the eksctl ClusterConfig is not one eksctl accepts"
        raise RenderError(
            f"{head}: {lines[0]}" if len(lines) == 1 else head + ":\n  " + "\n  ".join(lines),
            "this is a bug in hpcrun's eksctl template when the file validates; please report it",
        )
    return rendered
