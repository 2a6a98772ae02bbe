"""`hpcrun create/status/down` on a ParallelCluster file, through the CLI, against a real
moto server standing in for AWS (seeded with a VPC, subnet, key pair and AMI).

moto runs ParallelCluster's validators and takes the CloudFormation call, then rejects
pcluster's template (see tests/backends/test_pcluster_api.py), so these tests walk the
paths a user meets when things go wrong: a config the validators refuse (nothing is
created), a create that fails after the stack call (the error, the recorded state, and
`down` removing what was left). The SSH half of a cluster that came up is covered by
tests/e2e/test_ssh_cluster.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.aws import client as aws_client
from tests.aws import moto_server, pcluster_cluster_data, seed_network
from tests.conftest import HPCRUN

pytestmark = [pytest.mark.aws, pytest.mark.slow]

SECRET = "hpcrun-test-secret-0xC0FFEE"  # must never reach hpcrun's files
SUPPRESS = [
    "--suppress-validators",
    "type:HeadNodeLaunchTemplateValidator",
    "--suppress-validators",
    "type:ComputeResourceLaunchTemplateValidator",
    "--suppress-validators",
    "type:KeyPairValidator",
]


@dataclass
class Aws:
    env: dict[str, str]
    home: Path
    seeded: dict[str, str]
    server: Any

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HPCRUN, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def cluster_file(self, name: str, **overrides: Any) -> Path:
        data = pcluster_cluster_data(self.seeded, name, **overrides)
        path = self.home / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def stacks(self) -> dict[str, str]:
        cfn = aws_client(self.server, "cloudformation")
        return {s["StackName"]: s["StackStatus"] for s in cfn.describe_stacks()["Stacks"]}


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    work = tmp_path_factory.mktemp("pc-e2e")
    home = work / "home"
    home.mkdir()
    with moto_server(work) as server:
        seeded = seed_network(server)
        env = {
            **server.env(),
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "HOME": str(home),  # pcluster writes its log under $HOME
            "HPCRUN_HOME": str(home / "hpcrun"),
        }
        yield Aws(env, home, seeded, server)


def test_validators_refusing_the_config_stop_create_before_anything_exists(aws: Aws) -> None:
    path = aws.cluster_file("badnet", subnet_id="subnet-0123456789abcdef0")
    done = aws.cli("create", "--config", str(path), "--yes", *SUPPRESS)
    assert done.returncode == 1, done.stderr
    assert "ParallelCluster rejects pcluster-config.yaml" in done.stderr
    assert "The subnet ID 'subnet-0123456789abcdef0' does not exist" in done.stderr
    assert "--suppress-validators" in done.stderr  # the hint says how to skip a wrong one
    assert "badnet" not in aws.stacks()
    status = json.loads(aws.cli("status", "--cluster", "badnet", "--json").stdout)
    assert status["state"] == "failed"
    assert "subnet" in status["detail"]


def test_create_runs_pcluster_and_a_failed_create_is_recorded_and_cleaned_up(aws: Aws) -> None:
    path = aws.cluster_file("aws1")
    done = aws.cli("create", "--config", str(path), "--yes", *SUPPRESS)
    assert done.returncode == 1, done.stdout + done.stderr
    # Progress names each step; the error is pcluster's own (moto rejects the template).
    assert "ParallelCluster's validators" in done.stderr
    assert "creating aws1 in us-east-1" in done.stderr
    assert "pcluster could not create cluster 'aws1'" in done.stderr
    assert "HeadNodeHealthAlarm" in done.stderr
    rendered = aws.home / "hpcrun" / "clusters" / "aws1" / "pcluster-config.yaml"
    assert yaml.safe_load(rendered.read_text())["Image"]["CustomAmi"] == aws.seeded["ami_id"]
    listed = json.loads(aws.cli("clusters", "--json").stdout)
    assert {c["name"]: c["status"] for c in listed}["aws1"] == "failed"

    # moto keeps the stack pcluster asked for; status reports what AWS says of it.
    assert aws.stacks().get("aws1") == "CREATE_IN_PROGRESS"
    status = json.loads(aws.cli("status", "--cluster", "aws1", "--json").stdout)
    assert status["state"] == "creating"
    assert "stack CREATE_IN_PROGRESS" in status["detail"]

    refused = aws.cli("down", "--cluster", "aws1")
    assert refused.returncode != 0 and "pass --yes" in refused.stderr
    deleted = aws.cli("down", "--cluster", "aws1", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert "Cluster aws1 deleted" in deleted.stdout
    assert "aws1" not in aws.stacks()
    after = json.loads(aws.cli("status", "--cluster", "aws1", "--json").stdout)
    assert after["state"] == "deleted"


def test_no_credentials_are_written_to_hpcrun_files(aws: Aws) -> None:
    written = [p for p in (aws.home / "hpcrun").rglob("*") if p.is_file()]
    assert written  # the state and the rendered configs of the tests above
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path


def test_a_cluster_without_head_node_has_no_shell_yet(aws: Aws) -> None:
    done = aws.cli("ssh", "--cluster", "aws1")
    assert done.returncode == 1
    assert "has no head node address yet" in done.stderr
