"""A ParallelCluster 2 INI read as ParallelCluster 3 terms, with ParallelCluster's own
pcluster3-config-converter, offline.

The converter is ParallelCluster's word on what a 2.x setting means in 3.x, so import
maps one format (v3) only. Three things it does need help with here:
- it takes the cluster section's label from the command line; a file without
  `[global] cluster_template` names it by its only `[cluster LABEL]` section;
- it asks AWS (STS) for the account id to turn `ec2_iam_role = NAME` into an ARN; import
  never calls AWS, so the ARN gets a placeholder account that import lists for the user;
- a bucket wildcard (`arn:aws:s3:::prefix*`, every bucket starting with `prefix`) comes
  out as the one bucket `prefix`: import says so.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hpcrun.errors import UsageError

# What the ARN of `ec2_iam_role` holds in place of the account id, offline: a value
# `findings.placeholder_values` reports (`<...>`), so the user is told to replace it.
ACCOUNT_PLACEHOLDER = "<ACCOUNT_ID>"
# The converter's names for a 2.8-style cluster's one queue and compute resource: 2.8
# names neither, so they are not the user's.
CONVERTER_NAMES = frozenset({"default-queue", "default-resource"})
# Converter remarks about settings hpcrun maps itself.
_HANDLED = ("vpc_id", "post_install", "update_check", "sanity_check", "ssh = ", "/shared")


@dataclass
class V2Source:
    """A v2 INI: its v3 conversion, the converter's remarks, and the INI itself."""

    v3: dict[str, Any]
    ini: configparser.ConfigParser
    notes: list[str] = field(default_factory=list)
    cluster_label: str = "default"  # the `[cluster LABEL]` section that was read

    def vpc_id(self) -> str | None:
        """The VPC of the cluster's `vpc_settings` (v3 has no such key; v2 rendering needs it):
        the section the cluster names, else `[vpc default]`, else the only one."""
        named = self.ini.get(f"cluster {self.cluster_label}", "vpc_settings", fallback=None)
        sections = [s for s in self.ini.sections() if s.startswith("vpc ")]
        for section in (f"vpc {named}", "vpc default", *sections[:1]):
            if self.ini.has_option(section, "vpc_id"):
                return self.ini.get(section, "vpc_id")
        return None


def is_v2_ini(text: str) -> bool:
    return bool(re.search(r"^\s*\[(cluster|global|aws)\b", text, re.MULTILINE))


def convert(text: str) -> V2Source:
    """The INI as ParallelCluster 3 would have it, without calling AWS."""
    from pcluster3_config_converter import (  # type: ignore[import-untyped]
        pcluster3_config_converter as module,
    )

    ini = configparser.ConfigParser(inline_comment_prefixes=("#", ";"))
    try:
        ini.read_string(text)
    except configparser.Error as exc:
        raise UsageError(f"not a readable ParallelCluster 2 INI: {exc}") from None
    label = _cluster_label(ini)
    named = ini.get("global", "cluster_template", fallback=None)
    chosen = (
        []
        if label in (None, named)
        else [
            f"[global] cluster_template = {named} names no section; read [cluster {label}], "
            "the only cluster section"
        ]
    )
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), _offline_account(module):
            converter = module.Pcluster3ConfigConverter(
                text, label, None, input_as_string=True, force_convert=True
            )
            converter.validate()
            converter.convert_to_pcluster3_config()
    except SystemExit as exc:  # the converter reports errors with sys.exit("ERROR: ...")
        raise UsageError(
            f"ParallelCluster's converter refused this v2 config: {exc.code}",
            "fix the INI (pcluster3-config-converter gives the same message)",
        ) from None
    notes = chosen + [
        line.split(":", 1)[1].strip()
        for line in captured.getvalue().splitlines()
        if line.startswith(("Warning:", "Note:")) and not any(h in line for h in _HANDLED)
    ]
    notes += list(_bucket_wildcards(ini))
    chosen_label = label or named or "default"
    return V2Source(dict(converter.pcluster3_configuration), ini, notes, chosen_label)


def _cluster_label(ini: configparser.ConfigParser) -> str | None:
    """The cluster section to read: `[global] cluster_template` where that section
    exists, else the only `[cluster LABEL]` (None: the converter's own choice, and its
    message when that section is missing)."""
    named = ini.get("global", "cluster_template", fallback=None)
    if named is not None and ini.has_section(f"cluster {named}"):
        return named
    labels = [s.split(None, 1)[1] for s in ini.sections() if re.match(r"cluster\s+\S", s)]
    return labels[0] if len(labels) == 1 else None


@contextlib.contextmanager
def _offline_account(module: Any) -> Iterator[None]:
    """The converter's STS lookup answered with a placeholder for the time of one call."""
    original = module._get_account_id
    module._get_account_id = lambda: ACCOUNT_PLACEHOLDER
    try:
        yield
    finally:
        module._get_account_id = original


def _bucket_wildcards(ini: configparser.ConfigParser) -> Iterator[str]:
    for section in ini.sections():
        for key in ("s3_read_resource", "s3_read_write_resource"):
            value = ini.get(section, key, fallback="")
            found = re.fullmatch(r"arn:[^:]*:s3:::([^/*]+)\*", value.strip())
            if found:
                yield (
                    f"{key} = {value.strip()} (every bucket whose name starts with "
                    f"{found.group(1)}) became the one bucket {found.group(1)}"
                )
