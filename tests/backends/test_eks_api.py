"""hpcrun's own EKS lifecycle (no eksctl) and its EKS tokens against a real moto server.

moto answers every call the lifecycle makes (IAM roles and OIDC providers, VPC, internet
gateway, route table, subnets, EKS clusters and managed node groups) but makes clusters
and node groups ACTIVE at once and deletes them at once, so only the ACTIVE / deleted
progress lines can be seen, and it has no health issues to report. AWS's managed
policies (AmazonEKSClusterPolicy, ...) exist in moto only when it loads them:
MOTO_IAM_LOAD_MANAGED_POLICIES=true in the server's environment.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from hpcrun.backends.eks_api import (
    CPU_AMI_TYPE,
    GPU_AMI_TYPE,
    EksLifecycle,
    role_name,
    write_kubeconfig,
)
from hpcrun.config.eks.model import EksClusterConfig
from hpcrun.errors import HpcrunError
from hpcrun.k8s import token as eks_token
from tests.aws import REGION, MotoServer, client, moto_server

pytestmark = pytest.mark.aws

POLL_S = 0.05


@pytest.fixture(scope="module")
def server(eks_moto: MotoServer) -> MotoServer:
    return eks_moto


def point_at(server: MotoServer, patch: pytest.MonkeyPatch) -> None:
    """This process's boto3 credential chain pointed at `server`, and nothing else."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            patch.delenv(key)
    for key, value in server.env().items():
        if key.startswith("AWS_"):
            patch.setenv(key, value)


@pytest.fixture
def aws(server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    point_at(server, monkeypatch)
    return server


def eks_config(name: str, **overrides: Any) -> EksClusterConfig:
    data: dict[str, Any] = {
        "name": name,
        "region": REGION,
        "kubernetes_version": "1.35",
        "node_groups": [
            {
                "name": "gpu",
                "instance_type": "g4dn.xlarge",
                "min_size": 0,
                "desired_size": 1,
                "max_size": 3,
                "spot": True,
                "volume_size_gib": 120,
                "labels": {"role": "render"},
            },
            {"name": "cpu", "instance_type": "m5.large", "min_size": 1, "max_size": 2},
        ],
        "tags": {"project": "hpcrun-test"},
    }
    data.update(overrides)
    return EksClusterConfig.model_validate(data)


@dataclass
class Run:
    lifecycle: EksLifecycle
    progress: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


def lifecycle(config: EksClusterConfig, existing: dict[str, Any] | None = None) -> Run:
    progress: list[str] = []
    records: list[dict[str, Any]] = []
    made = EksLifecycle(
        config,
        progress=progress.append,
        record=records.append,
        poll_s=POLL_S,
        existing=existing,
        timeout_s=10,
    )
    return Run(made, progress, records)


def vpc_count(server: MotoServer) -> int:
    return len(client(server, "ec2").describe_vpcs()["Vpcs"])


@pytest.fixture(scope="module")
def made(server: MotoServer) -> tuple[Run, dict[str, Any]]:
    """One cluster made once for the tests that only look at it."""
    with pytest.MonkeyPatch.context() as patch:
        point_at(server, patch)
        run = lifecycle(eks_config("render-farm"))
        resources = run.lifecycle.create()
    return run, resources


def test_create_records_every_resource_as_it_is_made(made: tuple[Run, dict[str, Any]]) -> None:
    run, resources = made
    assert resources["vpc_id"].startswith("vpc-")
    assert len(resources["subnet_ids"]) == 2
    assert resources["internet_gateway_id"].startswith("igw-")
    assert resources["cluster_role_arn"].endswith(":role/render-farm-cluster-role")
    assert resources["node_role_arn"].endswith(":role/render-farm-node-role")
    assert resources["cluster_arn"] == "arn:aws:eks:us-east-1:123456789012:cluster/render-farm"
    assert resources["nodegroups"] == ["gpu", "cpu"]
    assert resources["oidc_provider_arn"].startswith("arn:aws:iam::123456789012:oidc-provider/")
    assert set(resources["service_account_roles"]) == {"default/nvindex-access"}
    # Recorded one by one, each record the whole picture so far, the last one all of it.
    assert run.records[-1] == resources
    in_order = (
        "cluster_role_arn",
        "node_role_arn",
        "vpc_id",
        "subnet_ids",
        "cluster_arn",
        "nodegroups",
        "oidc_provider_arn",
        "service_account_roles",
    )
    firsts = [next(i for i, r in enumerate(run.records) if key in r) for key in in_order]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts)
    # Each node group and subnet is recorded the moment it exists, before the next one.
    assert next(r["nodegroups"] for r in run.records if "nodegroups" in r) == ["gpu"]
    first_subnets = next(r["subnet_ids"] for r in run.records if "subnet_ids" in r)
    assert first_subnets == resources["subnet_ids"][:1]
    assert "cluster render-farm: ACTIVE" in run.progress
    assert "node group gpu: ACTIVE" in run.progress
    assert "node group cpu: ACTIVE" in run.progress
    assert not any("testing" in line for line in run.progress)  # no credentials shown


Made = tuple[Run, dict[str, Any]]


def test_node_groups_as_aws_reports_them(server: MotoServer, made: Made) -> None:
    eks = client(server, "eks")
    gpu = eks.describe_nodegroup(clusterName="render-farm", nodegroupName="gpu")["nodegroup"]
    cpu = eks.describe_nodegroup(clusterName="render-farm", nodegroupName="cpu")["nodegroup"]
    assert (gpu["status"], cpu["status"]) == ("ACTIVE", "ACTIVE")
    assert gpu["scalingConfig"] == {"minSize": 0, "desiredSize": 1, "maxSize": 3}
    assert cpu["scalingConfig"] == {"minSize": 1, "desiredSize": 1, "maxSize": 2}
    assert (gpu["capacityType"], cpu["capacityType"]) == ("SPOT", "ON_DEMAND")
    assert (gpu["amiType"], cpu["amiType"]) == (GPU_AMI_TYPE, CPU_AMI_TYPE)
    assert gpu["instanceTypes"] == ["g4dn.xlarge"] and gpu["diskSize"] == 120
    assert gpu["labels"]["role"] == "render"
    assert gpu["nodeRole"] == made[1]["node_role_arn"]
    assert gpu["tags"]["project"] == "hpcrun-test"
    cluster = eks.describe_cluster(name="render-farm")["cluster"]
    assert cluster["version"] == "1.35"
    assert cluster["roleArn"] == made[1]["cluster_role_arn"]
    assert sorted(cluster["resourcesVpcConfig"]["subnetIds"]) == sorted(made[1]["subnet_ids"])


def test_network_and_roles_as_aws_reports_them(
    server: MotoServer, made: tuple[Run, dict[str, Any]]
) -> None:
    resources = made[1]
    ec2 = client(server, "ec2")
    subnets = ec2.describe_subnets(SubnetIds=resources["subnet_ids"])["Subnets"]
    assert len({s["AvailabilityZone"] for s in subnets}) == 2
    for subnet in subnets:
        tags = {t["Key"]: t["Value"] for t in subnet["Tags"]}
        assert tags["kubernetes.io/role/elb"] == "1"
        assert tags["kubernetes.io/cluster/render-farm"] == "shared"
        assert subnet["VpcId"] == resources["vpc_id"] and subnet["MapPublicIpOnLaunch"]
    vpc = ec2.describe_vpcs(VpcIds=[resources["vpc_id"]])["Vpcs"][0]
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    iam = client(server, "iam")
    attached = iam.list_attached_role_policies(RoleName="render-farm-node-role")
    assert {p["PolicyName"] for p in attached["AttachedPolicies"]} == {
        "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly",
    }
    trust = iam.get_role(RoleName="render-farm-cluster-role")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"] == {"Service": "eks.amazonaws.com"}
    role_arn = resources["service_account_roles"]["default/nvindex-access"]
    role = iam.get_role(RoleName=role_arn.rsplit("/", 1)[-1])["Role"]
    statement = role["AssumeRolePolicyDocument"]["Statement"][0]
    issuer = resources["oidc_issuer"].removeprefix("https://")
    assert statement["Principal"] == {"Federated": resources["oidc_provider_arn"]}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"]["StringEquals"][f"{issuer}:sub"] == (
        "system:serviceaccount:default:nvindex-access"
    )
    policies = iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"]
    assert {p["PolicyName"] for p in policies} == {
        "AmazonS3ReadOnlyAccess", "AWSMarketplaceMeteringRegisterUsage",
    }
    provider = iam.get_open_id_connect_provider(
        OpenIDConnectProviderArn=resources["oidc_provider_arn"]
    )
    assert provider["ClientIDList"] == ["sts.amazonaws.com"]


def test_describe_shows_cluster_and_node_groups(aws: MotoServer, made: Made) -> None:
    seen = made[0].lifecycle.describe()
    assert seen["status"] == "ACTIVE" and seen["version"] == "1.35"
    assert seen["endpoint"].startswith("https://")
    groups = {g["name"]: g for g in seen["nodegroups"]}
    assert groups["gpu"]["status"] == "ACTIVE"
    assert groups["gpu"]["instance_types"] == ["g4dn.xlarge"]
    gpu = groups["gpu"]
    assert (gpu["min_size"], gpu["desired_size"], gpu["max_size"]) == (0, 1, 3)
    assert groups["cpu"]["capacity_type"] == "ON_DEMAND"


def test_create_again_with_what_was_recorded_reuses_it(
    aws: MotoServer, made: tuple[Run, dict[str, Any]]
) -> None:
    before = vpc_count(aws)
    again = lifecycle(eks_config("render-farm"), existing=made[1])
    assert again.lifecycle.create() == made[1]
    assert vpc_count(aws) == before
    assert not any("created" in line for line in again.progress)
    providers = client(aws, "iam").list_open_id_connect_providers()
    assert len(providers["OpenIDConnectProviderList"]) == 1


def test_kubeconfig_runs_the_token_command_and_holds_no_secret(
    aws: MotoServer, made: tuple[Run, dict[str, Any]], tmp_path: Path
) -> None:
    config = made[0].lifecycle.kubeconfig(made[1])
    arn = made[1]["cluster_arn"]
    cluster = client(aws, "eks").describe_cluster(name="render-farm")["cluster"]
    assert config["apiVersion"] == "v1" and config["kind"] == "Config"
    assert config["current-context"] == arn
    assert config["clusters"] == [
        {
            "name": arn,
            "cluster": {
                "server": cluster["endpoint"],
                "certificate-authority-data": cluster["certificateAuthority"]["data"],
            },
        }
    ]
    assert config["contexts"] == [{"name": arn, "context": {"cluster": arn, "user": arn}}]
    (user,) = config["users"]
    assert set(user["user"]) == {"exec"}
    exec_entry = user["user"]["exec"]
    assert exec_entry["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert exec_entry["command"] == sys.executable
    assert exec_entry["args"] == [
        "-m", "hpcrun.k8s.token", "--cluster", "render-farm", "--region", REGION,
    ]
    text = json.dumps(config)
    for secret in ("testing", "token\":", "client-key", "password", "k8s-aws-v1"):
        assert secret not in text
    path = tmp_path / "kube" / "config"
    write_kubeconfig(path, config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_text()) == config


def test_an_oidc_provider_already_there_for_the_issuer_is_reused(
    aws: MotoServer, made: tuple[Run, dict[str, Any]]
) -> None:
    # moto gives this second cluster the issuer URL of the first (see `fresh_aws`): as
    # after a create that stopped between making the provider and recording it.
    cpu_only = [{"name": "cpu", "instance_type": "m5.large"}]
    run = lifecycle(eks_config("second-farm", node_groups=cpu_only))
    resources = run.lifecycle.create()
    assert resources["oidc_issuer"] == made[1]["oidc_issuer"]
    assert resources["oidc_provider_arn"] == made[1]["oidc_provider_arn"]
    assert f"OIDC provider {resources['oidc_issuer']}: already there, reused" in run.progress
    iam = client(aws, "iam")
    assert len(iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]) == 1
    assert resources["service_account_roles"]["default/nvindex-access"].endswith(
        ":role/second-farm-sa-default-nvindex-access"
    )


def test_a_failed_create_names_the_call_and_keeps_what_it_made(aws: MotoServer) -> None:
    taken = "taken-name"
    ec2 = client(aws, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.1.0.0/24")["Subnet"]["SubnetId"]
    client(aws, "eks").create_cluster(
        name=taken,
        roleArn="arn:aws:iam::123456789012:role/someone-else",
        resourcesVpcConfig={"subnetIds": [subnet]},
    )
    run = lifecycle(eks_config(taken, oidc=False, service_accounts=[]))
    with pytest.raises(HpcrunError) as caught:
        run.lifecycle.create()
    assert "eks.CreateCluster" in caught.value.message
    assert "ResourceInUseException" in caught.value.message
    assert "already exists" in caught.value.message
    assert caught.value.hint
    recorded = run.records[-1]
    assert {"cluster_role_arn", "node_role_arn", "vpc_id", "subnet_ids"} <= set(recorded)
    assert "cluster_arn" not in recorded
    # The half-made cluster cleans up, and someone else's cluster of that name stays.
    run.lifecycle.delete(recorded)
    assert client(aws, "eks").describe_cluster(name=taken)["cluster"]["status"] == "ACTIVE"
    vpcs = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    assert recorded["vpc_id"] not in vpcs and vpc in vpcs


@pytest.fixture
def fresh_aws(
    server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MotoServer]:
    """A moto server of its own: moto gives every cluster of one server process the same
    OIDC issuer URL, so a test that counts what is left needs a server with one cluster."""
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    with moto_server(tmp_path) as started:
        point_at(started, monkeypatch)
        yield started


def test_delete_removes_everything_and_tolerates_what_is_gone(fresh_aws: MotoServer) -> None:
    aws = fresh_aws
    vpcs = vpc_count(aws)
    run = lifecycle(eks_config("short-lived"))
    resources = run.lifecycle.create()
    assert vpc_count(aws) == vpcs + 1
    run.lifecycle.delete(resources)
    assert run.lifecycle.describe() == {
        "name": "short-lived", "region": REGION, "status": "gone", "nodegroups": [],
    }
    iam = client(aws, "iam")
    roles = {r["RoleName"] for r in iam.list_roles()["Roles"]}
    assert not any(r.startswith("short-lived-") for r in roles)
    providers = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert resources["oidc_provider_arn"] not in {p["Arn"] for p in providers}
    ec2 = client(aws, "ec2")
    assert resources["vpc_id"] not in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    assert vpc_count(aws) == vpcs
    assert all(s["VpcId"] != resources["vpc_id"] for s in ec2.describe_subnets()["Subnets"])
    assert resources["internet_gateway_id"] not in {
        g["InternetGatewayId"] for g in ec2.describe_internet_gateways()["InternetGateways"]
    }
    assert "cluster short-lived: deleted" in run.progress
    assert "node group gpu: deleted" in run.progress
    # Deleting again (a retry after a crash) finds everything gone and says so.
    again = lifecycle(eks_config("short-lived"))
    again.lifecycle.delete(resources)
    assert any("already gone" in line for line in again.progress)


def test_an_aws_refusal_is_one_error_without_a_traceback(aws: MotoServer) -> None:
    run = lifecycle(eks_config("nobody-home"))
    with pytest.raises(HpcrunError) as caught:
        run.lifecycle.kubeconfig({})
    assert caught.value.message.startswith(
        "AWS eks.DescribeCluster failed: ResourceNotFoundException"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --- tokens ------------------------------------------------------------------------


def decoded(value: str) -> str:
    assert value.startswith("k8s-aws-v1.")
    body = value.removeprefix("k8s-aws-v1.")
    assert "=" not in body
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def test_token_is_a_presigned_get_caller_identity_url(aws: MotoServer) -> None:
    value, expiration = eks_token.token("render-farm", REGION)
    url = decoded(value)
    query = parse_qs(urlsplit(url).query)
    assert query["Action"] == ["GetCallerIdentity"]
    assert query["X-Amz-Expires"] == ["60"]
    assert "x-k8s-aws-id" in query["X-Amz-SignedHeaders"][0].split(";")
    credential = query["X-Amz-Credential"][0]
    assert credential.startswith("testing/") and f"/{REGION}/sts/" in credential

    expires = datetime.strptime(expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(minutes=13) < expires - datetime.now(UTC) <= timedelta(minutes=14)
    # (moto cannot answer the URL itself: without an Authorization header its server
    # routes a request for 127.0.0.1 to S3.)


def test_token_command_prints_an_exec_credential(server: MotoServer) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hpcrun.k8s.token", "--cluster", "render-farm", "--region", REGION],
        env=server.env(), capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    credential = json.loads(done.stdout)
    assert credential["kind"] == "ExecCredential"
    assert credential["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert credential["spec"] == {}
    assert set(credential["status"]) == {"expirationTimestamp", "token"}
    assert "GetCallerIdentity" in decoded(credential["status"]["token"])


def test_token_command_without_credentials_says_so_in_one_line(
    server: MotoServer, tmp_path: Path
) -> None:
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    env = {k: v for k, v in server.env().items() if k not in keys}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    done = subprocess.run(
        [sys.executable, "-m", "hpcrun.k8s.token", "--cluster", "x", "--region", REGION],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "no AWS credentials" in done.stderr


# --- what moto cannot show -----------------------------------------------------------


def test_a_failed_status_raises_with_the_reason_aws_gives() -> None:
    # moto never fails a cluster or node group; the wait is fed AWS-shaped answers.
    run = lifecycle(eks_config("doomed"))
    answers = iter([("CREATING", ""), ("CREATE_FAILED", "Ec2SubnetInvalidConfiguration: no IP")])
    with pytest.raises(HpcrunError) as caught:
        run.lifecycle._wait("node group gpu", lambda: next(answers), "ACTIVE")
    assert caught.value.message == (
        "node group gpu is CREATE_FAILED: Ec2SubnetInvalidConfiguration: no IP"
    )
    assert run.progress == ["node group gpu: CREATING", "node group gpu: CREATE_FAILED"]


def test_long_cluster_names_give_distinct_iam_role_names() -> None:
    long_name = "a" * 90
    first = role_name(long_name, "sa", "default", "one")
    second = role_name(long_name, "sa", "default", "two")
    assert len(first) == len(second) == 64 and first != second
    assert role_name("short", "node-role") == "short-node-role"
