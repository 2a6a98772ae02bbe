"""hpcrun's ParallelCluster layer against a real moto server: the real `pcluster` CLI of
this venv runs as a subprocess with moto's environment (HOME in a temp dir, where pcluster
writes its log), seeded with a VPC, subnet, key pair, AMI and pcluster's bucket.

moto goes as far as CloudFormation's CreateStack: it then rejects pcluster's template
("Template error: instance of Fn::GetAtt references undefined resource
HeadNodeHealthAlarm...") yet keeps the stack, stuck in CREATE_IN_PROGRESS for good, and
it never produces CREATE_FAILED. The lifecycle test walks that path (create error ->
describe -> events -> wait times out showing them -> delete); how failed events are put
first is checked on CloudFormation-shaped event records.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hpcrun.backends import pcluster_api as api
from hpcrun.config import pcluster
from hpcrun.errors import HpcrunError
from tests.aws import REGION, MotoServer, moto_server, pcluster_cluster_data, seed_network

pytestmark = pytest.mark.aws

BAD_SUBNET = "subnet-0123456789abcdef0"


@dataclass(frozen=True)
class Moto:
    server: MotoServer
    seeded: dict[str, str]
    env: dict[str, str]  # moto's environment with HOME in a temp dir
    workdir: Path


def _missing_tools() -> list[str]:
    missing = [tool for tool in ("pcluster", "moto_server") if not _beside_python(tool)]
    if shutil.which("node") is None:
        missing.append("node")
    return missing


def _beside_python(tool: str) -> bool:
    return Path(sys.executable).with_name(tool).exists()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    missing = _missing_tools()
    if missing:
        message = f"not installed: {', '.join(missing)} (pip install -e '.[dev]'; Node.js)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("pcluster")
    home = workdir / "home"
    home.mkdir()
    with moto_server(workdir) as server:
        seeded = seed_network(server)
        yield Moto(server, seeded, {**server.env(), "HOME": str(home)}, workdir)


def cluster_file(moto: Moto, name: str, **overrides: str) -> Path:
    """The index-g4dn preset, pointed at moto's AMI, subnet and key, rendered as v3 YAML."""
    data = pcluster_cluster_data(moto.seeded, name, **overrides)
    config = pcluster.validate_parallelcluster_config(data, name)
    path = moto.workdir / f"{name}.yaml"
    path.write_text(pcluster.render_v3(config))
    return path


def test_dry_run_passes_for_a_valid_config_against_seeded_moto(moto: Moto) -> None:
    path = cluster_file(moto, "dry-ok")
    result = api.dry_run(path, "dry-ok", REGION, suppress=api.SUPPRESS_FOR_MOTO, env=moto.env)
    assert result.ok, result.raw
    assert result.message == api.DRY_RUN_OK
    assert result.errors == ()
    # Findings below ERROR still come back, parsed: DCV open to the world is one.
    dcv = [m for m in result.messages if m.type == "DcvValidator"]
    assert dcv and dcv[0].level == "WARNING" and "8443" in dcv[0].message
    assert (Path(moto.env["HOME"]) / ".parallelcluster" / "pcluster-cli.log").exists()


def test_dry_run_fails_clearly_on_a_subnet_moto_does_not_have(moto: Moto) -> None:
    path = cluster_file(moto, "dry-bad", subnet_id=BAD_SUBNET)
    result = api.dry_run(path, "dry-bad", REGION, suppress=api.SUPPRESS_FOR_MOTO, env=moto.env)
    assert not result.ok
    assert result.message == (
        f"Invalid cluster configuration: The subnet ID '{BAD_SUBNET}' does not exist"
    )


def test_dry_run_lists_validator_errors_by_type(moto: Moto) -> None:
    # Without suppression, the validators moto cannot satisfy fail at ERROR level: this
    # is what SUPPRESS_FOR_MOTO is for, and shows ERROR findings are parsed.
    path = cluster_file(moto, "dry-strict")
    result = api.dry_run(path, "dry-strict", REGION, env=moto.env)
    assert not result.ok
    assert result.message == "Invalid cluster configuration."
    assert {m.type for m in result.errors} == {
        suppressed.removeprefix("type:") for suppressed in api.SUPPRESS_FOR_MOTO
    }


def test_create_describe_wait_delete_as_far_as_moto_goes(moto: Moto) -> None:
    name = "life"
    path = cluster_file(moto, name)
    with pytest.raises(api.PclusterError) as created:
        api.create_cluster(path, name, REGION, suppress=api.SUPPRESS_FOR_MOTO, env=moto.env)
    # pcluster validated, synthesised the template with CDK, uploaded it to the seeded
    # bucket and called CreateStack, which moto's CloudFormation rejected.
    assert "Fn::GetAtt references undefined resource HeadNodeHealthAlarm" in created.value.message
    assert created.value.hint is not None
    assert f"a stack {name!r} was left in CREATE_IN_PROGRESS" in created.value.hint

    described = api.describe_cluster(name, REGION, env=moto.env)
    assert (described.name, described.status, described.stack_status) == (
        name,
        "CREATE_IN_PROGRESS",
        "CREATE_IN_PROGRESS",
    )
    assert described.stack_name == name
    assert described.stack_arn is not None
    assert described.stack_arn.startswith(f"arn:aws:cloudformation:{REGION}:")
    assert described.head_node_public_ip is None  # moto started no head node
    assert described.failure_reason is None

    events = api.stack_events(name, REGION, 10, env=moto.env)
    assert [(e.logical_id, e.status, e.reason) for e in events] == [
        (name, "CREATE_IN_PROGRESS", "User Initiated")
    ]

    seen: list[str] = []
    with pytest.raises(api.PclusterError) as waited:
        api.wait_for(
            name,
            REGION,
            {"CREATE_COMPLETE"},
            lambda status, _elapsed: seen.append(status),
            timeout_s=1.5,
            poll_s=0.5,
            env=moto.env,
        )
    assert seen == ["CREATE_IN_PROGRESS"]
    assert f"cluster {name!r} still CREATE_IN_PROGRESS after" in waited.value.message
    assert "latest stack events" in waited.value.message
    assert "(AWS::CloudFormation::Stack) CREATE_IN_PROGRESS: User Initiated" in waited.value.message

    deleted = api.delete_cluster(name, REGION, env=moto.env)
    assert deleted is not None
    assert deleted.stack_arn == described.stack_arn
    # moto deletes synchronously; on AWS this is DELETE_IN_PROGRESS.
    assert deleted.stack_status == "DELETE_COMPLETE"
    gone = api.wait_for(name, REGION, {"DELETE_COMPLETE"}, timeout_s=5, poll_s=0.5, env=moto.env)
    assert gone.status == "DELETE_COMPLETE"
    by_arn = api.stack_events(described.stack_arn, REGION, env=moto.env)
    assert [e.status for e in by_arn][:2] == ["DELETE_COMPLETE", "DELETE_IN_PROGRESS"]
    with pytest.raises(api.ClusterNotFound):
        api.delete_cluster(name, REGION, env=moto.env)
    assert api.delete_cluster(name, REGION, missing_ok=True, env=moto.env) is None


def test_describe_of_a_missing_cluster_raises_a_clear_error(moto: Moto) -> None:
    with pytest.raises(HpcrunError) as raised:
        api.describe_cluster("no-such-cluster", REGION, env=moto.env)
    assert isinstance(raised.value, api.ClusterNotFound)
    assert raised.value.message == f"no ParallelCluster cluster named 'no-such-cluster' in {REGION}"
    assert raised.value.hint is not None and "list-clusters" in raised.value.hint
    with pytest.raises(api.ClusterNotFound):
        api.wait_for("no-such-cluster", REGION, {"CREATE_COMPLETE"}, env=moto.env)


def test_missing_credentials_are_named_with_the_fix(moto: Moto, tmp_path: Path) -> None:
    no_keys = {
        k: v for k, v in moto.env.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    no_keys.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
    )
    if any(k in os.environ for k in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE")):
        pytest.skip("this process has AWS credentials in its environment")
    with pytest.raises(api.PclusterError) as raised:
        api.describe_cluster("any-cluster", REGION, env=no_keys)
    assert raised.value.message == "no AWS credentials found"
    assert raised.value.hint is not None and "aws sso login" in raised.value.hint


def test_missing_pcluster_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(api.PclusterError) as raised:
        api.pcluster_executable()
    assert raised.value.hint is not None and "pip install 'hpcrun[aws]'" in raised.value.hint


def test_failed_stack_events_come_first() -> None:
    at = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    records = [  # DescribeStackEvents order: newest first
        {
            "Timestamp": at,
            "LogicalResourceId": "c",
            "ResourceType": "AWS::CloudFormation::Stack",
            "ResourceStatus": "ROLLBACK_IN_PROGRESS",
            "ResourceStatusReason": "resource failed",
        },
        {
            "Timestamp": at,
            "LogicalResourceId": "HeadNode",
            "ResourceType": "AWS::EC2::Instance",
            "ResourceStatus": "CREATE_FAILED",
            "ResourceStatusReason": "InsufficientInstanceCapacity",
        },
        {
            "Timestamp": at,
            "LogicalResourceId": "c",
            "ResourceType": "AWS::CloudFormation::Stack",
            "ResourceStatus": "CREATE_IN_PROGRESS",
            "ResourceStatusReason": "User Initiated",
        },
    ]
    events = [api.StackEvent.from_api(r) for r in records]
    assert [e.failed for e in events] == [False, True, False]
    lines = api.format_events(events).splitlines()
    assert lines[0] == (
        "  12:00:00 HeadNode (AWS::EC2::Instance) CREATE_FAILED: InsufficientInstanceCapacity"
    )
    assert len(lines) == 3
    assert api.format_events(events, limit=1).count("\n") == 0
