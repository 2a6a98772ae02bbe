"""How hpcrun makes an Amazon EKS cluster without eksctl: boto3 calls to IAM, EC2 and EKS.

`EksLifecycle.create` makes, in order, the cluster's IAM role, the nodes' IAM role, a VPC
with an internet gateway and two public subnets in two availability zones, the cluster,
its managed node groups, and (with `oidc`) the IAM OIDC provider and one IRSA role per
service account. Each resource is handed to `record` the moment AWS answers its create
call, as part of the full dict of what exists so far, so a crash or Ctrl-C never hides
one: `delete` of that dict cleans a half-made cluster, and `create` given it as
`existing` continues where it stopped instead of making a second VPC. Waits poll the
describe calls every `poll_s` and print one progress line per status change. Every AWS
refusal becomes an `HpcrunError` naming the call and AWS's error code and message;
credentials are never logged (nothing here reads or prints them). boto3 is imported
inside the methods, so `hpcrun --help` never pays for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from hpcrun.config.eks.model import EksClusterConfig, NodeGroup, is_gpu_instance_type
from hpcrun.errors import HpcrunError

Progress = Callable[[str], None]
Record = Callable[[dict[str, Any]], None]

VPC_CIDR = "10.0.0.0/16"
SUBNET_CIDRS = ("10.0.0.0/18", "10.0.64.0/18")

CLUSTER_POLICY_ARNS = ("arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",)
NODE_POLICY_ARNS = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
)
GPU_AMI_TYPE = "AL2023_x86_64_NVIDIA"
CPU_AMI_TYPE = "AL2023_x86_64_STANDARD"
STS_AUDIENCE = "sts.amazonaws.com"

# Availability zones where EKS refuses control-plane subnets ("Cannot create cluster ...
# because us-east-1e, the targeted availability zone, does not currently have sufficient
# capacity"), by zone ID, as eksctl avoids them.
EKS_UNSUPPORTED_ZONE_IDS = frozenset({"use1-az3", "usw1-az2", "cac1-az3"})

# Creating a cluster takes ~10 min on AWS, a node group ~3-5 min; deleting one about as
# long. Half an hour each is the point where something is wrong, not slow.
DEFAULT_TIMEOUT_S = 1800.0

FAILED_STATUSES = frozenset({"FAILED", "CREATE_FAILED", "DELETE_FAILED", "DEGRADED"})
NOT_FOUND_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "NoSuchEntity",
        "InvalidVpcID.NotFound",
        "InvalidSubnetID.NotFound",
        "InvalidInternetGatewayID.NotFound",
        "InvalidRouteTableID.NotFound",
        "InvalidAssociationID.NotFound",
        "Gateway.NotAttached",
    }
)
RETRY_HINT = (
    "fix the cause, then run `hpcrun create` again: what was made so far is recorded and "
    "is reused (or `hpcrun destroy` removes it)"
)
NO_CREDENTIALS = "no AWS credentials found"
CREDENTIALS_HINT = "set AWS_PROFILE or run `aws configure` / `aws sso login`"


def _trust(principal: Mapping[str, Any], condition: Mapping[str, Any] | None = None) -> str:
    action = "sts:AssumeRoleWithWebIdentity" if "Federated" in principal else "sts:AssumeRole"
    statement: dict[str, Any] = {"Effect": "Allow", "Principal": dict(principal), "Action": action}
    if condition:
        statement["Condition"] = dict(condition)
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def irsa_trust_policy(provider_arn: str, issuer_url: str, namespace: str, name: str) -> str:
    """The trust policy of an IAM role for a Kubernetes service account (IRSA): only tokens
    the cluster's OIDC issuer signed for `system:serviceaccount:NS:NAME` may assume it."""
    issuer = issuer_url.removeprefix("https://")
    return _trust(
        {"Federated": provider_arn},
        {
            "StringEquals": {
                f"{issuer}:sub": f"system:serviceaccount:{namespace}:{name}",
                f"{issuer}:aud": STS_AUDIENCE,
            }
        },
    )


def role_name(*parts: str) -> str:
    """An IAM role name from `parts` (64 characters at most: a long cluster name is cut
    and an 8-character hash of the whole keeps it unique)."""
    name = "-".join(parts)
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:55]}-{digest}"


def ami_type(group: NodeGroup) -> str:
    return GPU_AMI_TYPE if is_gpu_instance_type(group.instance_type) else CPU_AMI_TYPE


def sa_key(namespace: str, name: str) -> str:
    """How `service_account_roles` names a service account: NAMESPACE/NAME."""
    return f"{namespace}/{name}"


class EksLifecycle:
    """Create, describe and delete one EKS cluster (and what it needs) over boto3."""

    def __init__(
        self,
        config: EksClusterConfig,
        *,
        progress: Progress,
        record: Record,
        env: Mapping[str, str] | None = None,
        poll_s: float = 5.0,
        existing: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.config = config
        self.progress = progress
        self.record = record
        self.env = dict(env or {})
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.resources: dict[str, Any] = json.loads(json.dumps(dict(existing or {})))
        self._clients: dict[str, Any] = {}

    # --- AWS plumbing --------------------------------------------------------------

    def _client(self, service: str) -> Any:
        """A client honouring the AWS_* overrides in `env` on top of the usual chain,
        without touching this process's environment."""
        if service in self._clients:
            return self._clients[service]
        try:
            import boto3  # type: ignore[import-untyped]
        except ImportError:
            raise HpcrunError(
                "boto3 is not installed (an optional dependency)", "pip install 'hpcrun[aws]'"
            ) from None
        get = self.env.get
        session = boto3.session.Session(
            aws_access_key_id=get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=get("AWS_SESSION_TOKEN"),
            profile_name=get("AWS_PROFILE"),
            region_name=self.config.region,
        )
        endpoint = get(f"AWS_ENDPOINT_URL_{service.upper()}") or get("AWS_ENDPOINT_URL")
        client = session.client(service, endpoint_url=endpoint)
        self._clients[service] = client
        return client

    def _call(self, service: str, operation: str, **params: Any) -> Any:
        """One AWS call; any refusal becomes an HpcrunError naming it (`iam.CreateRole`)."""
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        method = getattr(self._client(service), operation)
        try:
            return method(**params)
        except ClientError as exc:
            raise AwsCallFailed(service, exc) from None
        except NoCredentialsError:
            raise HpcrunError(NO_CREDENTIALS, CREDENTIALS_HINT) from None
        except EndpointConnectionError as exc:
            raise HpcrunError(
                f"cannot reach AWS in {self.config.region}: {exc}",
                "check the network, the region, and AWS_ENDPOINT_URL if it is set",
            ) from None
        except BotoCoreError as exc:
            raise HpcrunError(f"{service} {operation} failed: {exc}", RETRY_HINT) from None

    def _try(self, service: str, operation: str, **params: Any) -> Any | None:
        """`_call`, but "it is already gone" answers None instead of raising."""
        try:
            return self._call(service, operation, **params)
        except AwsCallFailed as exc:
            if exc.code in NOT_FOUND_CODES:
                return None
            raise

    def _save(self, **found: Any) -> None:
        self.resources.update(found)
        self.record(json.loads(json.dumps(self.resources)))

    def _tags(self, **extra: str) -> dict[str, str]:
        return {"hpcrun:cluster": self.config.name, **self.config.tags, **extra}

    def _ec2_tags(self, resource: str, **extra: str) -> list[dict[str, Any]]:
        tags = self._tags(Name=f"{self.config.name}-{resource}", **extra)
        return [
            {"ResourceType": resource, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]

    def _wait(
        self, what: str, status_of: Callable[[], tuple[str | None, str]], target: str | None
    ) -> None:
        """Poll `status_of` (status, None when gone; and why it failed) until `target`,
        one progress line per change; a failed status or the timeout raises."""
        deadline = time.monotonic() + self.timeout_s
        last: str | None = ""
        while True:
            status, reason = status_of()
            if status != last:
                self.progress(f"{what}: {status or 'deleted'}")
                last = status
            if status == target:
                return
            if status is None:
                raise HpcrunError(
                    f"{what} does not exist (any more): something deleted it", RETRY_HINT
                )
            if status in FAILED_STATUSES:
                raise HpcrunError(
                    f"{what} is {status}: {reason or 'AWS gave no reason'}", RETRY_HINT
                )
            if time.monotonic() > deadline:
                raise HpcrunError(
                    f"{what} is still {status} after {self.timeout_s:g} s",
                    "look at it in the EKS console; `hpcrun create` again keeps waiting",
                )
            time.sleep(self.poll_s)

    # --- create --------------------------------------------------------------------

    def create(self) -> dict[str, Any]:
        """Make (or, for what `existing` records, reuse) everything; return the record."""
        cfg = self.config
        self._save(cluster_name=cfg.name, region=cfg.region)
        self._role("cluster_role", {"Service": "eks.amazonaws.com"}, CLUSTER_POLICY_ARNS)
        self._role("node_role", {"Service": "ec2.amazonaws.com"}, NODE_POLICY_ARNS)
        self._network()
        self._cluster()
        for group in cfg.node_groups:
            self._nodegroup(group)
        if cfg.oidc:
            self._oidc_provider()
            for account in cfg.service_accounts:
                self._service_account_role(
                    account.namespace, account.name, account.attach_policy_arns
                )
        return json.loads(json.dumps(self.resources))  # type: ignore[no-any-return]

    def _role(self, key: str, principal: Mapping[str, str], policies: tuple[str, ...]) -> None:
        name = role_name(self.config.name, key.replace("_", "-"))
        if f"{key}_arn" not in self.resources:
            role = self._call(
                "iam",
                "create_role",
                RoleName=name,
                AssumeRolePolicyDocument=_trust(principal),
                Description=f"hpcrun: EKS cluster {self.config.name}",
                Tags=[{"Key": k, "Value": v} for k, v in self._tags().items()],
            )["Role"]
            self._save(**{f"{key}_name": name, f"{key}_arn": role["Arn"]})
            self.progress(f"IAM role {name}: created")
        # Attaching twice is a no-op: a create that stopped between the two calls heals.
        for arn in policies:
            self._call("iam", "attach_role_policy", RoleName=name, PolicyArn=arn)

    def _zones(self) -> list[str]:
        zones = self._call(
            "ec2",
            "describe_availability_zones",
            Filters=[
                {"Name": "state", "Values": ["available"]},
                {"Name": "zone-type", "Values": ["availability-zone"]},
            ],
        )["AvailabilityZones"]
        usable = sorted(
            z["ZoneName"] for z in zones if z.get("ZoneId") not in EKS_UNSUPPORTED_ZONE_IDS
        )
        if len(usable) < 2:
            raise HpcrunError(
                f"EKS needs two availability zones; {self.config.region} offers "
                f"{', '.join(usable) or 'none'} to this account",
                "pick another region",
            )
        return usable[:2]

    def _network(self) -> None:
        name = self.config.name
        if "vpc_id" not in self.resources:
            vpc = self._call(
                "ec2", "create_vpc", CidrBlock=VPC_CIDR, TagSpecifications=self._ec2_tags("vpc")
            )["Vpc"]
            self._save(vpc_id=vpc["VpcId"])
            self.progress(f"VPC {vpc['VpcId']} ({VPC_CIDR}): created")
        vpc_id = self.resources["vpc_id"]
        # Nodes resolve the cluster endpoint by name (EKS requires both).
        self._call("ec2", "modify_vpc_attribute", VpcId=vpc_id, EnableDnsSupport={"Value": True})
        self._call("ec2", "modify_vpc_attribute", VpcId=vpc_id, EnableDnsHostnames={"Value": True})
        if "internet_gateway_id" not in self.resources:
            igw = self._call(
                "ec2",
                "create_internet_gateway",
                TagSpecifications=self._ec2_tags("internet-gateway"),
            )["InternetGateway"]["InternetGatewayId"]
            self._save(internet_gateway_id=igw)
            self._call("ec2", "attach_internet_gateway", InternetGatewayId=igw, VpcId=vpc_id)
            self.progress(f"internet gateway {igw}: attached")
        if "route_table_id" not in self.resources:
            table = self._call(
                "ec2",
                "create_route_table",
                VpcId=vpc_id,
                TagSpecifications=self._ec2_tags("route-table"),
            )["RouteTable"]["RouteTableId"]
            self._save(route_table_id=table)
            self._call(
                "ec2",
                "create_route",
                RouteTableId=table,
                DestinationCidrBlock="0.0.0.0/0",
                GatewayId=self.resources["internet_gateway_id"],
            )
        subnets: list[str] = list(self.resources.get("subnet_ids", []))
        zones = self._zones()
        for index in range(len(subnets), len(SUBNET_CIDRS)):
            subnet = self._call(
                "ec2",
                "create_subnet",
                VpcId=vpc_id,
                CidrBlock=SUBNET_CIDRS[index],
                AvailabilityZone=zones[index],
                TagSpecifications=self._ec2_tags(
                    "subnet",
                    **{"kubernetes.io/role/elb": "1", f"kubernetes.io/cluster/{name}": "shared"},
                ),
            )["Subnet"]["SubnetId"]
            subnets.append(subnet)
            self._save(subnet_ids=subnets)
            self.progress(f"subnet {subnet} ({zones[index]}): created")
            # Managed nodes in a public subnet need a public address to reach EKS.
            self._call(
                "ec2",
                "modify_subnet_attribute",
                SubnetId=subnet,
                MapPublicIpOnLaunch={"Value": True},
            )
            self._call(
                "ec2",
                "associate_route_table",
                RouteTableId=self.resources["route_table_id"],
                SubnetId=subnet,
            )

    def _cluster_status(self) -> tuple[str | None, str]:
        found = self._try("eks", "describe_cluster", name=self.config.name)
        if found is None:
            return None, ""
        cluster = found["cluster"]
        issues = (cluster.get("health") or {}).get("issues") or []
        reason = "; ".join(f"{i.get('code')}: {i.get('message')}" for i in issues)
        return str(cluster["status"]), reason

    def _cluster(self) -> None:
        cfg = self.config
        if "cluster_arn" not in self.resources:
            cluster = self._call(
                "eks",
                "create_cluster",
                name=cfg.name,
                version=cfg.kubernetes_version,
                roleArn=self.resources["cluster_role_arn"],
                resourcesVpcConfig={
                    "subnetIds": self.resources["subnet_ids"],
                    "endpointPublicAccess": True,
                    "endpointPrivateAccess": True,
                },
                tags=self._tags(),
            )["cluster"]
            self._save(cluster_arn=cluster["arn"])
        self._wait(f"cluster {cfg.name}", self._cluster_status, "ACTIVE")

    def _nodegroup_status(self, name: str) -> tuple[str | None, str]:
        found = self._try(
            "eks", "describe_nodegroup", clusterName=self.config.name, nodegroupName=name
        )
        if found is None:
            return None, ""
        group = found["nodegroup"]
        issues = (group.get("health") or {}).get("issues") or []
        reason = "; ".join(f"{i.get('code')}: {i.get('message')}" for i in issues)
        return str(group["status"]), reason

    def _nodegroup(self, group: NodeGroup) -> None:
        made: list[str] = list(self.resources.get("nodegroups", []))
        if group.name not in made:
            self._call(
                "eks",
                "create_nodegroup",
                clusterName=self.config.name,
                nodegroupName=group.name,
                scalingConfig={
                    "minSize": group.min_size,
                    "desiredSize": group.desired_size,
                    "maxSize": group.max_size,
                },
                diskSize=group.volume_size_gib,
                subnets=self.resources["subnet_ids"],
                instanceTypes=[group.instance_type],
                amiType=ami_type(group),
                nodeRole=self.resources["node_role_arn"],
                labels={"hpcrun.io/nodegroup": group.name, **group.labels},
                capacityType="SPOT" if group.spot else "ON_DEMAND",
                tags=self._tags(),
            )
            made.append(group.name)
            self._save(nodegroups=made)
        self._wait(
            f"node group {group.name}", lambda: self._nodegroup_status(group.name), "ACTIVE"
        )

    def _issuer(self) -> str:
        cluster = self._call("eks", "describe_cluster", name=self.config.name)["cluster"]
        issuer = ((cluster.get("identity") or {}).get("oidc") or {}).get("issuer")
        if not issuer:
            raise HpcrunError(
                f"EKS gave cluster {self.config.name} no OIDC issuer URL", RETRY_HINT
            )
        return str(issuer)

    def _oidc_provider(self) -> None:
        issuer = self._issuer()
        self._save(oidc_issuer=issuer)
        if "oidc_provider_arn" in self.resources:
            return
        # No thumbprint: IAM trusts the EKS issuers' certificate authority itself
        # (ThumbprintList is optional since 2023 and then ignored for them).
        try:
            arn = self._call(
                "iam",
                "create_open_id_connect_provider",
                Url=issuer,
                ClientIDList=[STS_AUDIENCE],
                Tags=[{"Key": k, "Value": v} for k, v in self._tags().items()],
            )["OpenIDConnectProviderArn"]
        except AwsCallFailed as exc:
            # The issuer URL is this cluster's own, so a provider for it was made for this
            # cluster: by a create that stopped before recording it, or by eksctl
            # (`utils associate-iam-oidc-provider`). It goes when the cluster goes.
            arn = self._provider_for(issuer) if exc.code == "EntityAlreadyExists" else None
            if arn is None:
                raise
            self._save(oidc_provider_arn=arn)
            self.progress(f"OIDC provider {issuer}: already there, reused")
            return
        self._save(oidc_provider_arn=arn)
        self.progress(f"OIDC provider {issuer}: created")

    def _provider_for(self, issuer: str) -> str | None:
        suffix = ":oidc-provider/" + issuer.removeprefix("https://")
        listed = self._call("iam", "list_open_id_connect_providers")
        for provider in listed.get("OpenIDConnectProviderList", []):
            if str(provider["Arn"]).endswith(suffix):
                return str(provider["Arn"])
        return None

    def _service_account_role(self, namespace: str, name: str, policies: list[str]) -> None:
        roles: dict[str, str] = dict(self.resources.get("service_account_roles", {}))
        key = sa_key(namespace, name)
        role = role_name(self.config.name, "sa", namespace, name)
        if key not in roles:
            arn = self._call(
                "iam",
                "create_role",
                RoleName=role,
                AssumeRolePolicyDocument=irsa_trust_policy(
                    self.resources["oidc_provider_arn"],
                    self.resources["oidc_issuer"],
                    namespace,
                    name,
                ),
                Description=f"hpcrun: service account {key} of EKS cluster {self.config.name}",
                Tags=[{"Key": k, "Value": v} for k, v in self._tags().items()],
            )["Role"]["Arn"]
            roles[key] = arn
            self._save(service_account_roles=roles)
            self.progress(f"IAM role {role} for service account {key}: created")
        for policy in policies:
            self._call("iam", "attach_role_policy", RoleName=role, PolicyArn=policy)

    # --- describe ------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """What `hpcrun status` shows: the cluster and each of its node groups."""
        name = self.config.name
        found = self._try("eks", "describe_cluster", name=name)
        if found is None:
            return {"name": name, "region": self.config.region, "status": "gone", "nodegroups": []}
        cluster = found["cluster"]
        groups = []
        listed = self._call("eks", "list_nodegroups", clusterName=name).get("nodegroups", [])
        for group_name in listed:
            answer = self._try(
                "eks", "describe_nodegroup", clusterName=name, nodegroupName=group_name
            )
            if answer is None:
                continue
            group = answer["nodegroup"]
            scaling = group.get("scalingConfig") or {}
            groups.append(
                {
                    "name": group_name,
                    "status": group.get("status"),
                    "instance_types": list(group.get("instanceTypes") or []),
                    "capacity_type": group.get("capacityType"),
                    "ami_type": group.get("amiType"),
                    "min_size": scaling.get("minSize"),
                    "desired_size": scaling.get("desiredSize"),
                    "max_size": scaling.get("maxSize"),
                }
            )
        return {
            "name": name,
            "region": self.config.region,
            "status": cluster.get("status"),
            "version": cluster.get("version"),
            "endpoint": cluster.get("endpoint"),
            "arn": cluster.get("arn"),
            "nodegroups": groups,
        }

    # --- delete --------------------------------------------------------------------

    def delete(self, resources: Mapping[str, Any]) -> None:
        """Remove what `create` recorded in `resources`, newest first; what is already
        gone is skipped, so a half-made cluster is cleaned as well as a whole one."""
        name = self.config.name
        for key, arn in dict(resources.get("service_account_roles") or {}).items():
            self._delete_role(arn.rsplit("/", 1)[-1], f"service account {key}")
        if resources.get("oidc_provider_arn"):
            self._try(
                "iam",
                "delete_open_id_connect_provider",
                OpenIDConnectProviderArn=resources["oidc_provider_arn"],
            )
            self.progress("OIDC provider: deleted")
        groups = list(resources.get("nodegroups") or [])
        for group in groups:
            self._try("eks", "delete_nodegroup", clusterName=name, nodegroupName=group)
        for group in groups:
            self._wait(
                f"node group {group}",
                partial(self._nodegroup_status, group),
                None,
            )
        if resources.get("cluster_arn"):
            self._try("eks", "delete_cluster", name=name)
            self._wait(f"cluster {name}", self._cluster_status, None)
        for key in ("node_role", "cluster_role"):
            if resources.get(f"{key}_arn"):
                role = resources.get(f"{key}_name") or resources[f"{key}_arn"].rsplit("/", 1)[-1]
                self._delete_role(role, key.replace("_", " "))
        self._delete_network(resources)

    def _delete_role(self, role: str, purpose: str) -> None:
        attached = self._try("iam", "list_attached_role_policies", RoleName=role)
        if attached is None:
            self.progress(f"IAM role {role} ({purpose}): already gone")
            return
        for policy in attached.get("AttachedPolicies", []):
            self._try("iam", "detach_role_policy", RoleName=role, PolicyArn=policy["PolicyArn"])
        self._try("iam", "delete_role", RoleName=role)
        self.progress(f"IAM role {role} ({purpose}): deleted")

    def _delete_network(self, resources: Mapping[str, Any]) -> None:
        vpc_id = resources.get("vpc_id")
        table = resources.get("route_table_id")
        if table:
            found = self._try("ec2", "describe_route_tables", RouteTableIds=[table])
            for entry in (found or {}).get("RouteTables", []):
                for association in entry.get("Associations", []):
                    if not association.get("Main"):
                        self._try(
                            "ec2",
                            "disassociate_route_table",
                            AssociationId=association["RouteTableAssociationId"],
                        )
            self._retry_dependency("ec2", "delete_route_table", RouteTableId=table)
            self.progress(f"route table {table}: deleted")
        igw = resources.get("internet_gateway_id")
        if igw:
            if vpc_id:
                self._try("ec2", "detach_internet_gateway", InternetGatewayId=igw, VpcId=vpc_id)
            self._retry_dependency("ec2", "delete_internet_gateway", InternetGatewayId=igw)
            self.progress(f"internet gateway {igw}: deleted")
        for subnet in resources.get("subnet_ids") or []:
            self._retry_dependency("ec2", "delete_subnet", SubnetId=subnet)
            self.progress(f"subnet {subnet}: deleted")
        if vpc_id:
            self._retry_dependency("ec2", "delete_vpc", VpcId=vpc_id)
            self.progress(f"VPC {vpc_id}: deleted")

    def _retry_dependency(self, service: str, operation: str, **params: Any) -> None:
        """Network pieces stay in use for minutes after a cluster is deleted (its network
        interfaces and security group are released late): retry DependencyViolation."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self._try(service, operation, **params)
                return
            except AwsCallFailed as exc:
                if exc.code != "DependencyViolation" or time.monotonic() > deadline:
                    raise
            time.sleep(self.poll_s)

    # --- kubeconfig ----------------------------------------------------------------

    def kubeconfig(self, resources: Mapping[str, Any]) -> dict[str, Any]:
        """A kubeconfig for the cluster whose user runs `python -m hpcrun.k8s.token` for
        a 15-minute token: no long-lived secret is ever on disk."""
        name = self.config.name
        cluster = self._call("eks", "describe_cluster", name=name)["cluster"]
        context = str(resources.get("cluster_arn") or cluster.get("arn") or name)
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [
                {
                    "name": context,
                    "cluster": {
                        "server": cluster["endpoint"],
                        "certificate-authority-data": cluster["certificateAuthority"]["data"],
                    },
                }
            ],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
            "users": [
                {
                    "name": context,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": sys.executable,
                            "args": [
                                "-m",
                                "hpcrun.k8s.token",
                                "--cluster",
                                name,
                                "--region",
                                self.config.region,
                            ],
                            "interactiveMode": "Never",
                            "provideClusterInfo": False,
                        }
                    },
                }
            ],
        }


class AwsCallFailed(HpcrunError):
    """AWS refused one call; `code` is its error code (ResourceInUseException, ...)."""

    def __init__(self, service: str, exc: Any) -> None:
        error = exc.response.get("Error", {})
        self.code = str(error.get("Code", "Unknown"))
        self.aws_message = str(error.get("Message", "") or exc)
        self.operation = f"{service}.{exc.operation_name}"
        super().__init__(
            f"AWS {self.operation} failed: {self.code}: {self.aws_message}", _hint(self.code)
        )


def _hint(code: str) -> str:
    if code in {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}:
        return "the AWS identity in use lacks this permission; " + RETRY_HINT
    if code in {"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId"}:
        return "refresh the credentials (`aws sso login`, or new keys in AWS_PROFILE's profile)"
    if code in {"ResourceInUseException", "EntityAlreadyExists"}:
        return "something of that name already exists: delete it or pick another cluster name"
    return RETRY_HINT


def write_kubeconfig(path: Path, data: Mapping[str, Any]) -> None:
    """Write a kubeconfig as YAML, readable by its owner only (0600 from the start)."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dict(data), sort_keys=False)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
