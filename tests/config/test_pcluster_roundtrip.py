"""Golden round trips over real ParallelCluster configs that no one here wrote (issue 18).

Each file in tests/data/pcluster/ (provenance in its README.md) is imported with
`import_pcluster_config` (what `hpcrun config import` does) and rendered back. The render
must be the same cluster: every leaf of the source comes back with the same value, except
a small allow-list per file of what import changes on purpose, each entry with its reason;
whatever the render adds beyond the source must be one of hpcrun's own additions (job
expansion, ParallelCluster's defaults written out, a region assumed).

A v3 YAML is compared with `render_v3`. A v2 INI is compared in ParallelCluster 3 terms on
both sides: the source through ParallelCluster's own pcluster3-config-converter (as import
does, `convert_v2.convert`) against hpcrun's v2 render (the file's own `format`) through
the same converter, so the converter's own choices cancel out.

The goldens (tests/golden/pcluster/roundtrip/) are the review of what import and render
make of each file; regenerate them with UPDATE_GOLDEN=1 and read `git diff`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpcrun.config import pcluster
from hpcrun.config.pcluster import convert_v2
from hpcrun.errors import UsageError
from tests.config.test_pcluster import _flat
from tests.golden_util import assert_golden

DATA = Path(__file__).resolve().parents[1] / "data" / "pcluster"
MISSING = "<missing>"

# What ParallelCluster 3.16 says when a file keeps the OS it dropped (all of its own
# v3 example configs still say `Os: alinux2`).
ALINUX2_REFUSED = "os: 'alinux2' is not an OS ParallelCluster"


@dataclass(frozen=True)
class Case:
    file: str
    # hpcrun keys set before the import is validated and rendered: values the source
    # leaves as placeholders, or that the installed ParallelCluster refuses. Each one is
    # also in `changed`, since the render then says something else than the source.
    fill: dict[str, Any] = field(default_factory=dict)
    # Flattened source paths (`Scheduling.SlurmQueues.0.Name`) that may come back changed
    # or not at all, each with its reason. Keep this small: it is the list of what
    # import changes on purpose, not of what it loses.
    changed: dict[str, str] = field(default_factory=dict)
    # Flattened paths the render may add beyond the source, with their reason (on top of
    # HPCRUN_ADDS, which every file may get).
    added: dict[str, str] = field(default_factory=dict)
    # The one problem ParallelCluster's schema reports for the unfilled import (a source
    # invalid for the installed ParallelCluster), or None: the import must be accepted.
    refused: str | None = None

    @property
    def is_v2(self) -> bool:
        return not self.file.endswith(".yaml")


ALINUX2 = "ParallelCluster 3.16 dropped alinux2; the test renders with alinux2023"

CASES = [
    Case(
        "slurm.required.yaml",
        fill={"os": "alinux2023"},
        changed={"Image.Os": ALINUX2},
        added={"Region": "not in the source: hpcrun assumes us-east-1 and notes it"},
        refused=ALINUX2_REFUSED,
    ),
    Case(
        "slurm.full.yaml",
        fill={"os": "alinux2023"},
        changed={"Image.Os": ALINUX2},
        # Its own problems with ParallelCluster 3.16 stay (see _source_problems):
        # LoginNodes.Pools.N.Ssh.KeyName (not for login nodes since 3.15) and
        # DevSettings.AwsBatchCliPackage (a field 3.16 no longer has).
        refused=ALINUX2_REFUSED,
    ),
    Case(
        # ParallelCluster's own converter test input: two queues, three compute resources,
        # EBS + RAID + EFS + FSx, DCV, custom actions, an IAM role by name.
        "slurm_full.ini",
        # `custom_ami = ami-12345` is too short for an AMI id, and hpcrun refuses it
        fill={"custom_ami": "ami-12345678", "os": "alinux2023"},
        changed={
            "Image.CustomAmi": "a made-up id in ParallelCluster's test data; the test fills it",
            "Image.Os": ALINUX2,
            # ParallelCluster 2 allowed `_` in its section labels; ParallelCluster 3
            # refuses it in a name, and import renames them (and says so)
            **{
                f"Scheduling.SlurmQueues.{q}.ComputeResources.{r}.Name": "renamed: `_` -> `-`"
                for q, r in ((0, 0), (0, 1), (1, 0))
            },
        },
    ),
    Case(
        # The minimal v2 INI of the converter's tests: its cluster section is
        # `[cluster cluster_label1]` (the converter's tests pass that label).
        "slurm_required.ini",
        fill={"os": "alinux2023"},
        changed={"Image.Os": ALINUX2},
        added={"Region": "not in the source: hpcrun assumes us-east-1 and notes it"},
    ),
    Case(
        # NVIDIA's IndeX template for ParallelCluster 2: TODO for what the user must fill.
        "nvindex_pcluster_template.config",
        fill={
            "region": "us-west-2",
            "custom_ami": "ami-0123456789abcdef0",
            "key_name": "index-key",
            "subnet_id": "subnet-0123456789abcdef0",
            "vpc_id": "vpc-0123456789abcdef0",
        },
        changed={
            "Region": "TODO in the template; the test fills it",
            "Image.CustomAmi": "TODO in the template; the test fills it",
            "HeadNode.Ssh.KeyName": "TODO in the template; the test fills it",
            "HeadNode.Networking.SubnetId": "TODO in the template; the test fills it",
            "Scheduling.SlurmQueues.0.Networking.SubnetIds.0": "TODO; the test fills it",
        },
    ),
]
IDS = [case.file for case in CASES]
BY_FILE = {case.file: case for case in CASES}

# What every render may add beyond the source (a pattern over flattened paths), with the
# value it must have (None: any).
CR = r"Scheduling\.SlurmQueues\.\d+\.ComputeResources\.\d+"
HPCRUN_ADDS: dict[re.Pattern[str], Any] = {
    # job expansion, hpcrun's reason to exist on ParallelCluster (checked below)
    re.compile(r"Scheduling\.SlurmSettings\.CustomSlurmSettings\.0\.SchedulerParameters"): None,
    # ParallelCluster's own defaults, written out (pcluster.constants.DEFAULT_MAX_COUNT,
    # and SlurmSettings' scaledown_idletime default in pcluster.config.cluster_config)
    re.compile(rf"{CR}\.MinCount"): 0,
    re.compile(rf"{CR}\.MaxCount"): 10,
    re.compile(r"Scheduling\.SlurmSettings\.ScaledownIdletime"): 10,
    # ... and ParallelCluster's EBS defaults (pcluster.constants EBS_VOLUME_SIZE_DEFAULT,
    # EBS_VOLUME_TYPE_DEFAULT; gp2 in a ParallelCluster 2 file)
    re.compile(r"SharedStorage\.0\.EbsSettings\.Size"): 35,
    re.compile(r"SharedStorage\.0\.EbsSettings\.VolumeType"): None,
    # ... and S3Access's (read only unless EnableWriteAccess)
    re.compile(r".*\.Iam\.S3Access\.\d+\.EnableWriteAccess"): False,
}
# ParallelCluster's defaults: a source leaf saying one of these may be left out of the render.
DEFAULTS = {re.compile(r"Scheduling\.SlurmQueues\.\d+\.CapacityType"): "ONDEMAND"}


def _default(key: str, value: Any) -> bool:
    return any(pattern.fullmatch(key) and value == v for pattern, v in DEFAULTS.items())


def _hpcrun_adds(key: str, value: Any) -> bool:
    return any(
        pattern.fullmatch(key) and expected in (None, value)
        for pattern, expected in HPCRUN_ADDS.items()
    )


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Import never calls AWS (ParallelCluster's converter would ask STS for the account
    of an IAM role name): no credentials here, so a call would fail the test."""
    _no_aws(monkeypatch)


def _no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials, no region, no metadata service: nothing reaches AWS."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _source(case: Case) -> str:
    return (DATA / case.file).read_text(encoding="utf-8")


def _import(case: Case) -> pcluster.ImportResult:
    return pcluster.import_pcluster_config(_source(case), name="roundtrip")


def _filled(case: Case, result: pcluster.ImportResult) -> dict[str, Any]:
    data = dict(result.data)
    data.update(case.fill)
    if "key_name" in case.fill:
        data["private_key_path"] = f"~/.ssh/{case.fill['key_name']}.pem"
    return data


def _render(case: Case, result: pcluster.ImportResult) -> str:
    config = pcluster.validate_parallelcluster_config(_filled(case, result))
    return pcluster.render(config, source=f"tests/data/pcluster/{case.file}")


def _as_v3(text: str) -> dict[str, Any]:
    """A config in ParallelCluster 3 terms: a v2 INI through ParallelCluster's converter."""
    if convert_v2.is_v2_ini(text):
        return convert_v2.convert(text).v3
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def _normalized(config: dict[str, Any]) -> dict[str, Any]:
    """One spelling of one thing: a compute resource's `InstanceType: X` is ParallelCluster's
    `Instances: [{InstanceType: X}]` (hpcrun renders the second)."""
    config = yaml.safe_load(yaml.safe_dump(config))
    for queue in config.get("Scheduling", {}).get("SlurmQueues") or []:
        for resource in queue.get("ComputeResources") or []:
            if isinstance(resource, dict) and "InstanceType" in resource:
                resource["Instances"] = [{"InstanceType": resource.pop("InstanceType")}]
    return config


def _differences(case: Case, rendered: str) -> Iterator[str]:
    original = _flat(_normalized(_as_v3(_source(case))))
    back = _flat(_normalized(_as_v3(rendered)))
    for key, value in original.items():
        if key in case.changed or (key not in back and _default(key, value)):
            continue
        if back.get(key, MISSING) != value:
            yield f"lost/changed {key}: {value!r} -> {back.get(key, MISSING)!r}"
    for key, value in back.items():
        if key in original or key in case.added:
            continue
        if _hpcrun_adds(key, value):
            continue
        yield f"added {key}: {value!r}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_import_matches_its_golden(case: Case, offline: None) -> None:
    text = _import(case).to_yaml(f"tests/data/pcluster/{case.file}")
    assert_golden(f"pcluster/roundtrip/{case.file}.hpcrun.yaml", text)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_render_matches_its_golden(case: Case, offline: None) -> None:
    rendered = _render(case, _import(case))
    suffix = "pcluster-v2.ini" if convert_v2.is_v2_ini(rendered) else "pcluster-v3.yaml"
    assert_golden(f"pcluster/roundtrip/{case.file}.{suffix}", rendered)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_render_is_the_same_cluster(case: Case, offline: None) -> None:
    rendered = _render(case, _import(case))
    differences = list(_differences(case, rendered))
    assert differences == [], "\n".join(differences)
    if convert_v2.is_v2_ini(rendered):  # ParallelCluster 2: the source's post_install script
        assert "slurm_enable_job_expansion.sh" in rendered
        return
    expansion = _as_v3(rendered)["Scheduling"]["SlurmSettings"]["CustomSlurmSettings"][0]
    assert "permit_job_expansion" in expansion["SchedulerParameters"]


@pytest.mark.parametrize("case", [c for c in CASES if not c.is_v2], ids=lambda c: c.file)
def test_a_v3_import_leaves_nothing_unmapped(case: Case) -> None:
    assert _import(case).unmapped == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_parallelclusters_schema_accepts_the_import(case: Case, offline: None) -> None:
    result = _import(case)
    if case.refused is not None:  # the source itself is refused: say so, once, clearly
        problems = [str(p) for p in pcluster.validate_data(result.data).problems]
        assert len(problems) == 1 and problems[0].startswith(case.refused), problems
        assert len(result.refused) == 1 and result.refused[0].startswith(case.refused)
    problems = pcluster.validate_data(_filled(case, result)).problems
    own = _source_problems(case)
    added = [str(p) for p in problems if p.pcluster_path not in own]
    assert added == [], "\n".join(added)


def _source_problems(case: Case) -> set[str]:
    """The ParallelCluster paths its schema refuses in the source itself (with the OS and
    AMI the test fills): ParallelCluster's test data is made up (`sg-xxx`, `string`), and
    the installed ParallelCluster refuses some of it. A render may keep those, not add any."""
    v3 = _as_v3(_source(case))
    image = v3.setdefault("Image", {})
    if "os" in case.fill:
        image["Os"] = case.fill["os"]
    if "custom_ami" in case.fill:
        image["CustomAmi"] = case.fill["custom_ami"]
    region = str(case.fill.get("region") or v3.get("Region") or "us-east-1")
    problems = pcluster.pcluster_schema_problems(yaml.safe_dump(v3), "roundtrip", region)
    return {p.pcluster_path or "" for p in problems}


def test_the_template_placeholders_are_named() -> None:
    result = _import(BY_FILE["nvindex_pcluster_template.config"])
    assert set(result.placeholders) >= {"region", "custom_ami", "key_name", "subnet_id", "vpc_id"}


def test_an_awsbatch_config_is_refused_clearly() -> None:
    with pytest.raises(UsageError, match="awsbatch"):
        pcluster.import_pcluster_config((DATA / "awsbatch.simple.yaml").read_text())


def test_a_v2_ini_naming_an_iam_role_imports_without_aws_and_says_what_to_fill(
    offline: None,
) -> None:
    """slurm_full.ini says `ec2_iam_role = role_name`: ParallelCluster's converter asks
    STS for the account to make an ARN of it. Import asks nothing: the account is a
    placeholder, listed for the user."""
    result = pcluster.import_pcluster_config(_source(BY_FILE["slurm_full.ini"]))
    role = result.value("parallelcluster.HeadNode.Iam.InstanceRole")
    assert role == "arn:aws:iam::<ACCOUNT_ID>:role/role_name"
    assert "parallelcluster.HeadNode.Iam.InstanceRole" in result.placeholders
