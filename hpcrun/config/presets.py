"""Starting points for cluster files: `hpcrun config init --preset NAME` prints one.

Presets are commented YAML, kept as package data in templates/ here (named `*.j2` so
the package's data glob ships them; they hold no template syntax and are read
as they are). configs/<name>.yaml in the repository are copies that tests keep equal, so
what the README shows is what `config init` writes.
"""

from __future__ import annotations

from pathlib import Path

from hpcrun.errors import UsageError

TEMPLATES = Path(__file__).parent / "templates"
PRESETS: dict[str, str] = {
    "index-aws": "NVIDIA IndeX on ParallelCluster: g4dn.4xlarge head + DCV, p3.8xlarge compute",
    "index-g4dn": "NVIDIA IndeX on ParallelCluster: g4dn.4xlarge head + DCV, g4dn.12xlarge compute",
    "index-eks": "NVIDIA IndeX on Amazon EKS: g4dn.xlarge GPU node group 1-7, OIDC, nginx ingress",
    "kubernetes": "an existing Kubernetes cluster, through a kubeconfig context",
    "local": "a real Slurm cluster on this machine (no cloud)",
}


def preset_names() -> list[str]:
    return list(PRESETS)


def preset_text(name: str) -> str:
    """The commented YAML of preset `name`; a usage error listing the presets otherwise."""
    if name not in PRESETS:
        raise UsageError(
            f"no preset named {name!r}",
            f"pick one of: {', '.join(PRESETS)}",
        )
    return (TEMPLATES / f"preset-{name}.yaml.j2").read_text(encoding="utf-8")
