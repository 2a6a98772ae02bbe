"""What a cluster file still needs before ParallelCluster will take it, said per key: values
left as placeholders, and values the installed ParallelCluster refuses.

Placeholders are what templates ship for the user to replace: NVIDIA's IndeX INI has `TODO`
for the region, AMI, key pair, subnet and VPC; other templates use `<your-key>`,
`CHANGE_ME` or `REPLACE_ME`; hpcrun's presets use example ids (`PLACEHOLDERS`). Left in,
they fail much later (at CloudFormation) or, worse, name someone else's resource, so
`config import` and `config validate` name each one on the terminal, with its key.

The OS check asks the installed ParallelCluster for the OSes it supports
(`pcluster.constants.SUPPORTED_OSES`): ParallelCluster 3.16 dropped alinux2, and a file
saying `Os: alinux2` would import cleanly and only fail at render otherwise.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

from hpcrun.config.pcluster.model import PCLUSTER2_OSES, PCLUSTER3_OSES, PLACEHOLDERS

# TODO / TBD / FIXME as the value or a word of it, <...>, CHANGE_ME, REPLACE_ME, XXXX
PLACEHOLDER_RE = re.compile(
    r"\b(TODO|TBD|FIXME)\b|<[^<>]+>|\b(CHANGE|REPLACE)[_-]?ME\b|\bX{4,}\b", re.IGNORECASE
)


def leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of a config as (`HeadNode.Imds.Secured`, value); empty slots (None, `{}`,
    `[]`: what import leaves where it took a value) are not leaves."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from leaves(value, f"{prefix}.{index}")
    elif node is not None and node != {} and node != []:
        yield prefix, node


def placeholder_values(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key path, value) of every value still a placeholder, in the file's order."""
    found = []
    for key, value in leaves(data):
        if not isinstance(value, str):
            continue
        if PLACEHOLDER_RE.search(value) or PLACEHOLDERS.get(key) == value:
            found.append((key, value))
    return found


@functools.cache
def installed_pcluster() -> tuple[str | None, tuple[str, ...]]:
    """(version, supported OSes) of the installed ParallelCluster 3; without it, the
    OSes of the version this hpcrun was checked against (3.16)."""
    supported = supported_oses()
    if supported is PCLUSTER3_OSES:
        return None, supported
    try:
        from importlib.metadata import version

        return version("aws-parallelcluster"), supported
    except Exception:  # not installed, or a layout this code does not know
        return None, PCLUSTER3_OSES


@functools.cache
def supported_oses() -> tuple[str, ...]:
    """The OSes of `installed_pcluster`, without its version: that takes a scan of the
    installed packages' metadata (~4 ms), which only a refusal's message needs."""
    try:
        from pcluster.constants import SUPPORTED_OSES  # type: ignore[import-untyped]

        return tuple(SUPPORTED_OSES)
    except Exception:  # not installed, or a layout this code does not know
        return PCLUSTER3_OSES


def os_refusal(os_name: str, file_format: str) -> str | None:
    """Why ParallelCluster will refuse `os` for this format (None: it will not)."""
    if file_format == "pcluster-v2":
        if os_name in PCLUSTER2_OSES or os_name in PCLUSTER3_OSES:
            return None  # a v3 name maps to the nearest v2 base_os at render
        return f"os: {os_name!r} is not an OS ParallelCluster 2 knows"
    if os_name in supported_oses():
        return None
    version, supported = installed_pcluster()
    who = f"ParallelCluster {version}" if version else "ParallelCluster 3"
    return (
        f"os: {os_name!r} is not an OS {who} supports (it supports {', '.join(supported)}); "
        "use the AMI's OS from that list, or format: pcluster-v2 for an AMI pinned to "
        "ParallelCluster 2"
    )
