"""eks and kubernetes cluster files: the models, one message per bad file with its key
path, golden eksctl ClusterConfigs (each checked against eksctl's own schema), the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from hpcrun.config import eks
from hpcrun.config.models import load_cluster_file, validate_cluster_data
from hpcrun.config.presets import preset_text
from hpcrun.errors import UsageError
from tests.config.test_config_cli import invoke
from tests.golden_util import assert_golden

REPO = Path(__file__).resolve().parents[2]
SHARED_SCHEMA = REPO.parent / "shared" / "schemas" / "eksctl"  # where the copy came from
PACKAGED_SCHEMA = REPO / "hpcrun" / "config" / "eks" / "schema"
ACM = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"


def preset(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(preset_text("index-eks"))
    return {**data, **overrides}


def group(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(preset()["node_groups"][0])
    return {**base, **overrides}


def two_groups() -> dict[str, Any]:
    """A CPU group for system pods, Spot GPU groups tainted, an ACM certificate."""
    return preset(
        name="index-eks-spot",
        region="us-east-1",
        kubernetes_version="1.34",
        node_groups=[
            {"name": "system", "instance_type": "m5.large", "min_size": 1, "max_size": 2},
            group(name="gpu-spot", instance_type="g5.12xlarge", spot=True, gpus_per_node=None),
            group(name="g6e", instance_type="g6e.2xlarge", gpus_per_node=1, labels={"t": "x"}),
        ],
        ingress={"tls": ACM, "basic_auth": False},
        tags={"project": "hpcrun", "cost-centre": "viz 42"},
    )


def problems(data: dict[str, Any]) -> list[str]:
    """Every problem `config validate` reports, as `key: message` lines."""
    return [str(p) for p in eks.validate_data(data).problems]


def test_the_preset_is_nvidias_provisioning() -> None:
    config = eks.EksClusterConfig.model_validate(preset())
    (gpu,) = config.node_groups
    assert (gpu.instance_type, gpu.min_size, gpu.desired_size, gpu.max_size) == (
        "g4dn.xlarge",
        1,
        1,
        7,
    )
    assert gpu.gpus() == 1 and config.oidc
    (account,) = config.service_accounts
    assert account.name == "nvindex-access"
    assert tuple(account.attach_policy_arns) == eks.NVINDEX_POLICY_ARNS
    assert config.ingress.controller == "nginx" and config.ingress.tls == "self-signed"
    assert config.ingress.basic_auth
    assert config.kubernetes_version in eks.EKS_VERSIONS
    # the defaults are NVIDIA's too: a file with only the node group says the same
    minimal = {k: preset()[k] for k in ("backend", "name", "region", "node_groups")}
    assert eks.EksClusterConfig.model_validate(minimal).service_accounts == config.service_accounts


def test_gpus_per_node_comes_from_the_instance_type() -> None:
    assert eks.NodeGroup(name="a", instance_type="g4dn.12xlarge", max_size=2).gpus() == 4
    assert eks.NodeGroup(name="a", instance_type="p4d.24xlarge").gpus() == 8
    assert eks.NodeGroup(name="a", instance_type="m5.large").gpus() == 0
    assert eks.NodeGroup(name="a", instance_type="g6.xlarge", gpus_per_node=1).gpus() == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"node_groups": [group(min_size=3, desired_size=3, max_size=1)]},
            "node_groups.0.max_size: max_size (1) must be at least min_size (3)",
        ),
        (
            {"node_groups": [group(desired_size=9)]},
            "node_groups.0.desired_size: desired_size (9) must be between min_size (1) "
            "and max_size (7)",
        ),
        (
            {"node_groups": [group(instance_type="g4dn-xlarge")]},
            "node_groups.0.instance_type: 'g4dn-xlarge' is not valid here (expected an EC2 "
            "instance type like g4dn.xlarge or m5.large)",
        ),
        (
            {"node_groups": [group(instance_type="m5.xlarge", gpus_per_node=1)]},
            "node_groups.0.gpus_per_node: gpus_per_node (1) asked of m5.xlarge, which has no "
            "GPU (GPU types: g4dn, g5, g6, p3, p4d, p5, ...)",
        ),
        (
            {"node_groups": [group(instance_type="g9.xlarge", gpus_per_node=None)]},
            "node_groups.0.gpus_per_node: not known for g9.xlarge; set it to its GPU count",
        ),
        (
            {"node_groups": [group(colour="blue")]},
            "node_groups.0.colour: unknown key (known keys: name, instance_type, min_size, "
            "desired_size, max_size, gpus_per_node, spot, volume_size_gib, labels)",
        ),
        ({"colour": "blue"}, "colour: unknown key (known keys: backend, name, region, "),
        (
            {"ingress": {"tls": "self-signed", "auth": True}},
            "ingress.auth: unknown key (known keys: enabled, controller, tls, basic_auth, chart, "
            "repository)",
        ),
        (
            {"region": "us-east"},
            "region: 'us-east' is not valid here (expected an AWS region like us-east-1)",
        ),
        ({"region": "Virginia"}, "region: 'Virginia' is not valid here"),
        (
            {"kubernetes_version": "1.20"},
            "kubernetes_version: '1.20' is not a Kubernetes version EKS supports (it supports ",
        ),
        (
            {"kubernetes_version": 1.3},
            "kubernetes_version: write the version in quotes, e.g. '1.35' (YAML reads 1.3 as",
        ),
        ({"oidc": False}, "oidc: IAM service accounts need oidc: true"),
        (
            {"service_accounts": [{"name": "s3", "attach_policy_arns": ["AmazonS3ReadOnly"]}]},
            "service_accounts.0.attach_policy_arns: 'AmazonS3ReadOnly' is not an IAM policy ARN",
        ),
        (
            {"ingress": {"tls": ACM.replace("us-east-1", "eu-west-1")}},
            "ingress.tls: the ACM certificate is in eu-west-1; the load balancer needs one in "
            "us-east-1",
        ),
        ({"ingress": {"tls": "letsencrypt"}}, "ingress.tls: 'letsencrypt': self-signed, or an ACM"),
        ({"node_groups": [group(), group()]}, "node_groups: names must differ (gpu repeated)"),
        ({"node_groups": []}, "node_groups: List should have at least 1 item"),
        ({"tags": {"aws:x": "y"}}, "tags: tag key 'aws:x': 1-128 characters"),
        (
            {"serve": {"service_account": "models"}},
            "serve.service_account: 'models' is not one of service_accounts (nvindex-access)",
        ),
        ({"serve": {"store": "my-models/prod"}}, "serve.store: 'my-models/prod' is not valid"),
        (
            {"farm": {"service_account": "renderers"}},
            "farm.service_account: 'renderers' is not one of service_accounts (nvindex-access)",
        ),
    ],
    ids=[
        "min-gt-max",
        "desired-out-of-range",
        "bad-instance-type",
        "gpus-on-cpu-type",
        "gpus-unknown",
        "unknown-group-key",
        "unknown-key",
        "unknown-ingress-key",
        "bad-region",
        "region-name",
        "old-version",
        "version-as-number",
        "no-oidc",
        "bad-policy-arn",
        "acm-other-region",
        "bad-tls",
        "repeated-group",
        "no-groups",
        "aws-tag",
        "serve-unknown-account",
        "serve-store-not-s3",
        "farm-unknown-account",
    ],
)
def test_each_bad_file_gives_one_message_with_its_key_path(
    change: dict[str, Any], expected: str
) -> None:
    found = problems(preset(**change))
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]
    # the same one line from the path every command takes (create, status)
    with pytest.raises(UsageError) as err:
        validate_cluster_data(preset(**change), "c.yaml")
    assert err.value.message.startswith(f"c.yaml is not a valid eks cluster config: {expected}")
    assert "\n" not in err.value.message


def test_several_problems_are_listed_together() -> None:
    data = preset(region="mars", node_groups=[group(min_size=5, max_size=2, desired_size=2)])
    assert [p.split(":")[0] for p in problems(data)] == ["region", "node_groups.0.max_size"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"namespace": "Big_NS"}, "namespace: 'Big_NS' is not valid here (expected a Kubernetes"),
        ({"kubeconfig_path": "x"}, "kubeconfig_path: unknown key (known keys: backend, name,"),
        ({"name": None}, "name: Input should be a valid string"),
    ],
    ids=["bad-namespace", "unknown-key", "no-name"],
)
def test_bad_kubernetes_files(change: dict[str, Any], expected: str) -> None:
    data = {**yaml.safe_load(preset_text("kubernetes")), **change}
    found = [str(p) for p in eks.validate_kubernetes_data(data).problems]
    assert len(found) == 1 and found[0].startswith(expected), found


def test_kubernetes_file_loads_through_the_registry() -> None:
    config = load_cluster_file(REPO / "configs" / "kubernetes.yaml")
    assert isinstance(config, eks.KubernetesClusterConfig)
    assert (config.kubeconfig, config.context, config.namespace) == (
        "~/.kube/config",
        None,
        "default",
    )


def _validate_against_eksctl_schema(text: str) -> None:
    where = SHARED_SCHEMA if SHARED_SCHEMA.is_dir() else PACKAGED_SCHEMA
    schema = json.loads((where / "clusterconfig-v1alpha5.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load(text))


@pytest.mark.parametrize(
    ("name", "data"),
    [("index-eks", preset()), ("index-eks-spot", two_groups())],
    ids=["index-eks", "cpu-and-spot-gpu-groups"],
)
def test_eksctl_rendering_is_golden_and_eksctl_accepts_it(name: str, data: dict[str, Any]) -> None:
    config = eks.EksClusterConfig.model_validate(data)
    text = eks.render_checked(config, source=f"{name}.yaml")
    assert_golden(f"eksctl/{name}.eksctl.yaml", text)
    _validate_against_eksctl_schema(text)  # the schema as shared, not only the package's copy


def test_the_ebs_csi_driver_and_its_iam_role_come_with_oidc_only() -> None:
    """A PersistentVolumeClaim of the default StorageClass (gp2; FLARE's server workspace)
    needs the EBS CSI driver; its IAM role (wellKnownPolicies) is IRSA, which needs OIDC."""
    with_oidc = yaml.safe_load(eks.render_checked(eks.EksClusterConfig.model_validate(preset())))
    assert with_oidc["iam"]["withOIDC"] is True
    assert with_oidc["addons"] == [
        {"name": "aws-ebs-csi-driver", "wellKnownPolicies": {"ebsCSIController": True}}
    ]
    plain = preset(oidc=False, service_accounts=[])
    text = eks.render_checked(eks.EksClusterConfig.model_validate(plain))
    assert "addons" not in yaml.safe_load(text)
    _validate_against_eksctl_schema(text)


def test_golden_files_on_disk_are_accepted_by_eksctls_schema() -> None:
    goldens = sorted((REPO / "tests" / "golden" / "eksctl").glob("*.yaml"))
    assert len(goldens) >= 2
    for path in goldens:
        _validate_against_eksctl_schema(path.read_text())


def test_rendering_maps_the_file_onto_eksctl() -> None:
    rendered = yaml.safe_load(eks.render_eksctl(eks.EksClusterConfig.model_validate(two_groups())))
    assert rendered["metadata"] == {
        "name": "index-eks-spot",
        "region": "us-east-1",
        "version": "1.34",
        "tags": {"cost-centre": "viz 42", "project": "hpcrun"},
    }
    system, spot, g6e = rendered["managedNodeGroups"]
    assert "taints" not in system and "hpcrun.io/gpus-per-node" not in system["labels"]
    assert spot["spot"] is True and spot["labels"]["hpcrun.io/gpus-per-node"] == "4"
    # GPU groups are tainted only when a CPU group can run the system pods
    assert spot["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert g6e["labels"]["t"] == "x"
    single = yaml.safe_load(eks.render_eksctl(eks.EksClusterConfig.model_validate(preset())))
    assert "taints" not in single["managedNodeGroups"][0]


def test_the_packaged_schema_is_eksctls_with_its_licence() -> None:
    assert eks.render.SCHEMA_PATH.parent == PACKAGED_SCHEMA
    assert "Apache License" in (PACKAGED_SCHEMA / "LICENSE").read_text()
    if not SHARED_SCHEMA.is_dir():
        pytest.skip("../shared/schemas/eksctl is not beside this checkout")
    for name in ("clusterconfig-v1alpha5.schema.json", "LICENSE"):
        assert (PACKAGED_SCHEMA / name).read_bytes() == (SHARED_SCHEMA / name).read_bytes()


@pytest.mark.parametrize(
    ("eksctl_path", "key"),
    [
        ("managedNodeGroups.2.minSize", "node_groups.2.min_size"),
        ("managedNodeGroups.0.taints.0.effect", "node_groups.0.gpus_per_node"),
        ("iam.serviceAccounts.1.attachPolicyARNs.0", "service_accounts.1.attach_policy_arns"),
        ("metadata.version", "kubernetes_version"),
        ("vpc.cidr", None),
    ],
)
def test_eksctl_paths_map_back_to_the_files_keys(eksctl_path: str, key: str | None) -> None:
    assert eks.hpcrun_key_for(eksctl_path) == key


def test_schema_findings_name_the_hpcrun_key() -> None:
    text = eks.render_eksctl(eks.EksClusterConfig.model_validate(preset()))
    broken = text.replace("minSize: 1", 'minSize: "1"').replace(
        "spot: false", "spot: false\n    x: 1"
    )
    found = sorted(str(p) for p in eks.schema_problems(broken))
    assert found == [
        "node_groups.0.min_size: '1' is not of type 'integer' "
        "(eksctl: managedNodeGroups.0.minSize)",
        "node_groups.0: Additional properties are not allowed ('x' was unexpected) "
        "(eksctl: managedNodeGroups.0)",
    ]


# --- the CLI ---------------------------------------------------------------------------


def test_init_writes_the_eks_preset_as_in_configs(tmp_path: Path) -> None:
    target = tmp_path / "eks.yaml"
    assert invoke("init", "--preset", "index-eks", "-o", str(target))[0] == 0
    assert target.read_text() == (REPO / "configs" / "index-eks.yaml").read_text()
    assert target.read_text().startswith("# NVIDIA IndeX on Amazon EKS")


@pytest.mark.parametrize("name", ["index-eks", "kubernetes"])
def test_validate_accepts_the_configs(name: str) -> None:
    code, out, _ = invoke("validate", str(REPO / "configs" / f"{name}.yaml"))
    assert code == 0 and out.startswith("OK ") and out.count("\n") == 1


def test_validate_gives_one_line_per_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(preset(node_groups=[group(min_size=4, max_size=2)])))
    code, _, err = invoke("validate", str(path))
    assert code == 1
    assert err == f"{path}: node_groups.0.max_size: max_size (2) must be at least min_size (4)\n"
    code, out, _ = invoke("validate", "--json", str(path))
    report = json.loads(out)
    assert code == 1 and report["backend"] == "eks"
    assert [p["key"] for p in report["problems"]] == ["node_groups.0.max_size"]
    k8s = tmp_path / "k8s.yaml"
    k8s.write_text("backend: kubernetes\nname: k\nnamespace: Big_NS\n")
    code, _, err = invoke("validate", str(k8s))
    assert code == 1 and err.startswith(f"{k8s}: namespace: 'Big_NS' is not valid here")


def test_render_eksctl_prints_the_golden_file(tmp_path: Path) -> None:
    code, out, _ = invoke("render", str(REPO / "configs" / "index-eks.yaml"), "--format", "eksctl")
    assert code == 0
    assert out == (REPO / "tests" / "golden" / "eksctl" / "index-eks.eksctl.yaml").read_text()
    assert invoke("render", str(REPO / "configs" / "index-eks.yaml"))[1] == out  # the default


def test_render_refuses_formats_that_do_not_fit_the_backend(tmp_path: Path) -> None:
    eks_file = str(REPO / "configs" / "index-eks.yaml")
    code, _, message = invoke("render", eks_file, "--format", "pcluster-v3")
    assert code == 2 and "--format pcluster-v3 does not apply" in message
    code, _, message = invoke("render", str(REPO / "configs" / "index-aws.yaml"), "-f", "eksctl")
    assert code == 2 and "does not apply" in message
    assert invoke("render", str(REPO / "configs" / "kubernetes.yaml"))[0] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(preset(region="nowhere")))
    code, _, message = invoke("render", str(bad), "-f", "eksctl")
    assert code == 2 and "region: 'nowhere' is not valid here" in message
