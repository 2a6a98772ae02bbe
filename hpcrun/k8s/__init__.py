"""How hpcrun speaks Kubernetes: the objects it makes (`manifests`), and, beside them, the
server-side-apply layer and the scheduler that run them. Only this package knows
Kubernetes' object grammar, as only hpcrun.slurm knows Slurm's."""

from __future__ import annotations

import shutil

from hpcrun.errors import HpcrunError


def tool(name: str, *, needed_for: str, hint: str) -> str:
    """The path of a command hpcrun runs for what lightkube does not do (kubectl's
    port-forward, helm's charts); an error naming what needs it when it is missing."""
    found = shutil.which(name)
    if found is None:
        raise HpcrunError(f"{name} is not on PATH: {needed_for}", hint)
    return found
