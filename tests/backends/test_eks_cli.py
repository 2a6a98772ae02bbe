"""`hpcrun create / status / down` of a `backend: eks` cluster through the real CLI against
a real moto server (AWS's stand-in): the cluster and its node groups made and described,
a kubeconfig whose user asks for a token (no secret on disk), a failed create recorded
with its reason and cleaned by `down`, and everything removed in reverse order."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.aws import REGION, MotoServer
from tests.conftest import HPCRUN

pytestmark = pytest.mark.aws


@pytest.fixture(scope="module")
def server(eks_moto: MotoServer) -> MotoServer:
    return eks_moto


def cli(server: MotoServer, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HPCRUN, *args],
        env={**server.env(), "HPCRUN_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )


def cluster_file(path: Path, name: str) -> Path:
    data: dict[str, Any] = {
        "backend": "eks",
        "name": name,
        "region": REGION,
        "kubernetes_version": "1.35",
        "node_groups": [
            {"name": "gpu", "instance_type": "g4dn.xlarge", "min_size": 1,
             "desired_size": 2, "max_size": 4, "spot": True},
            {"name": "cpu", "instance_type": "m5.large", "min_size": 0,
             "desired_size": 0, "max_size": 2},
        ],
        "service_accounts": [],  # IRSA objects need the API server, which moto has not
        "ingress": {"enabled": False},
        "tags": {"project": "hpcrun-test"},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def eks(server: MotoServer) -> Any:
    import boto3

    return boto3.client(
        "eks", endpoint_url=server.url, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )


def test_create_describes_and_down_removes_an_eks_cluster(
    server: MotoServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    made = cli(
        server, home, "create", "--config", str(cluster_file(tmp_path / "e.yaml", "vis")), "--yes"
    )
    assert made.returncode == 0, made.stdout + made.stderr
    said = made.stdout + made.stderr
    assert "cluster vis: ACTIVE" in said and "kubeconfig for vis" in said
    assert "testing" not in said  # the access key of the environment is never printed

    kubeconfig = home / "kubernetes" / "vis" / "kubeconfig"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    config = yaml.safe_load(kubeconfig.read_text())
    user = config["users"][0]["user"]
    assert list(user) == ["exec"]  # a token on demand, no key or token stored
    assert user["exec"]["args"] == ["-m", "hpcrun.k8s.token", "--cluster", "vis",
                                    "--region", REGION]
    assert "testing" not in kubeconfig.read_text()

    shown = json.loads(cli(server, home, "status", "--json").stdout)
    assert shown["backend"] == "eks" and shown["state"] == "up"
    groups = {g["name"]: g for g in shown["node_groups"]}
    assert groups["gpu"]["status"] == "ACTIVE" and groups["gpu"]["capacity_type"] == "SPOT"
    assert (groups["gpu"]["min_size"], groups["gpu"]["desired_size"],
            groups["gpu"]["max_size"]) == (1, 2, 4)
    assert groups["cpu"]["instance_types"] == ["m5.large"]
    text = cli(server, home, "status").stdout
    assert "node group gpu: ACTIVE, g4dn.xlarge SPOT, 1-4 nodes (desired 2)" in text

    # What create found after the cluster (the ingress' load balancer) survives a create
    # again, which would otherwise set ingress-nginx up anew.
    from hpcrun.state import ClusterState, StateStore

    store = StateStore(home)
    record = store.cluster("vis")
    assert record is not None
    store.put_cluster("vis", "eks", {**record.config, "ingress_host": "lb.example.test"},
                      ClusterState.UP)
    again = cli(server, home, "create", "--config", str(tmp_path / "e.yaml"), "--yes")
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stdout
    record = StateStore(home).cluster("vis")
    assert record is not None and record.config["ingress_host"] == "lb.example.test"

    assert cli(server, home, "down").returncode != 0  # it asks; no stdin: refused
    gone = cli(server, home, "down", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert eks(server).list_clusters()["clusters"] == []
    assert not kubeconfig.exists()
    after = json.loads(cli(server, home, "status", "--json").stdout)
    assert after["state"] == "down"


def test_a_failed_create_is_recorded_with_its_reason_and_down_cleans_what_it_made(
    server: MotoServer, tmp_path: Path
) -> None:
    import boto3

    iam = boto3.client("iam", endpoint_url=server.url, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    ec2 = boto3.client("ec2", endpoint_url=server.url, region_name=REGION,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    vpcs_before = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    role = iam.create_role(RoleName="someone-else", AssumeRolePolicyDocument="{}")
    eks(server).create_cluster(
        name="taken", roleArn=role["Role"]["Arn"],
        resourcesVpcConfig={"subnetIds": []},
    )
    home = tmp_path / "home"
    taken = cluster_file(tmp_path / "t.yaml", "taken")
    failed = cli(server, home, "create", "--config", str(taken), "--yes")
    assert failed.returncode == 1
    first = next(ln for ln in failed.stderr.splitlines() if ln.startswith("error:"))
    assert "eks.CreateCluster" in first and "ResourceInUseException" in first, failed.stderr
    assert "Traceback" not in failed.stderr

    shown = json.loads(cli(server, home, "status", "--cluster", "taken", "--json").stdout)
    assert shown["state"] == "failed" and "ResourceInUseException" in shown["detail"]
    made_vpcs = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]} - vpcs_before
    assert made_vpcs  # the network was made before the cluster was refused

    cleaned = cli(server, home, "down", "--cluster", "taken", "--yes")
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]} - vpcs_before == set()
    assert eks(server).describe_cluster(name="taken")["cluster"]["status"] == "ACTIVE"
