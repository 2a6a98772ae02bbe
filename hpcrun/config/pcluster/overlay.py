"""`parallelcluster:` in a cluster file: ParallelCluster 3 YAML merged into what hpcrun
renders, for everything hpcrun does not model (more queues and compute resources, FSx and
EFS, login nodes, IAM, security groups, custom actions, Slurm settings), so importing a
real config and rendering it gives the same cluster back.

The merge is by structure: mappings key by key, lists element by element (so
`SlurmQueues: [{}, {Name: cpu, ...}]` adds a second queue after hpcrun's own, and
`SlurmQueues: [{CapacityType: SPOT}]` adds a key to it). The overlay may add, never change:
a value hpcrun already sets from one of its keys is refused, naming that key, because two
places saying two things about one setting is how configs drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpcrun.errors import UsageError

KEY = "parallelcluster"


class OverlayConflict(UsageError):
    """The overlay sets a value hpcrun renders from one of its own keys."""


def merge(base: Any, overlay: Any, path: str = KEY) -> Any:
    """`overlay` merged into `base` (which it changes and returns)."""
    if isinstance(base, dict) and isinstance(overlay, Mapping):
        for key, value in overlay.items():
            base[key] = merge(base[key], value, f"{path}.{key}") if key in base else value
        return base
    if isinstance(base, list) and isinstance(overlay, list):
        for index, value in enumerate(overlay):
            if index < len(base):
                base[index] = merge(base[index], value, f"{path}.{index}")
            else:
                base.append(value)
        return base
    if base == overlay:
        return base
    raise OverlayConflict(
        f"{path}: {overlay!r} would replace {base!r}, which hpcrun renders from its own keys",
        f"set it with hpcrun's key for it (see `hpcrun config validate`), or leave it out of {KEY}",
    )


def has_path(overlay: Any, path: str) -> bool:
    """Whether a ParallelCluster key path (`Scheduling.SlurmQueues.1.Name`) is in the overlay."""
    node = overlay
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def cleaned(rest: Any) -> Any:
    """What import left over, as an overlay: list slots it consumed become `{}` (so later
    elements keep their place), empty mappings and trailing empty slots go."""
    if isinstance(rest, Mapping):
        out = {k: cleaned(v) for k, v in rest.items()}
        return {k: v for k, v in out.items() if v not in ({}, [], None)}
    if isinstance(rest, list):
        items = [{} if v is None else cleaned(v) for v in rest]
        while items and items[-1] in ({}, []):
            items.pop()
        return items
    return rest
