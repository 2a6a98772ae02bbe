"""ParallelCluster cluster files: the model, golden renderings, pcluster's schema, import."""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpcrun.config import pcluster
from hpcrun.config.models import load_cluster_file
from hpcrun.config.presets import preset_names, preset_text
from hpcrun.errors import UsageError
from tests.conftest import run_cli
from tests.golden_util import assert_golden

REPO = Path(__file__).resolve().parents[2]
AWS_PRESETS = ["index-aws", "index-g4dn"]


def preset_data(name: str) -> dict[str, Any]:
    data = yaml.safe_load(preset_text(name))
    assert isinstance(data, dict)
    return data


def preset_config(name: str) -> pcluster.ParallelClusterConfig:
    return pcluster.validate_parallelcluster_config(preset_data(name), name)


def problems_of(data: dict[str, Any]) -> list[str]:
    return [str(p) for p in pcluster.validate_data(data).problems]


@pytest.mark.parametrize("name", preset_names())
def test_configs_directory_matches_the_presets(name: str) -> None:
    assert (REPO / "configs" / f"{name}.yaml").read_text() == preset_text(name)


@pytest.mark.parametrize("name", AWS_PRESETS)
@pytest.mark.parametrize(("fmt", "ext"), [("pcluster-v3", "yaml"), ("pcluster-v2", "ini")])
def test_presets_render_as_golden(name: str, fmt: pcluster.Format, ext: str) -> None:
    text = pcluster.render(preset_config(name), fmt, source=f"configs/{name}.yaml")
    assert_golden(f"pcluster/{name}.{fmt}.{ext}", text)


@pytest.mark.parametrize("name", AWS_PRESETS)
def test_pcluster_schema_accepts_every_rendered_preset(name: str) -> None:
    report = pcluster.validate_data(preset_data(name))
    assert report.ok, report.problems
    assert set(report.placeholders) >= {"custom_ami", "key_name", "subnet_id"}


def test_v2_rendering_is_an_ini_pcluster2_reads() -> None:
    ini = configparser.ConfigParser()
    ini.read_string(pcluster.render(preset_config("index-g4dn"), "pcluster-v2"))
    cluster = ini["cluster default"]
    assert cluster["custom_ami"] == "ami-0123456789abcdef0"
    assert cluster["master_instance_type"] == "g4dn.4xlarge"
    assert cluster["compute_instance_type"] == "g4dn.12xlarge"
    assert (cluster["initial_queue_size"], cluster["max_queue_size"]) == ("0", "4")
    assert cluster["placement_group"] == "DYNAMIC"
    assert cluster["post_install"].endswith("pcluster-post-install-job-expansion.sh")
    assert dict(ini["dcv default"]) == {
        "enable": "master",
        "port": "8443",
        "access_from": "0.0.0.0/0",
    }


def test_job_expansion_extends_parallelclusters_own_scheduler_parameters() -> None:
    base = preset_config("index-aws")
    assert pcluster.scheduler_parameters(base) == "permit_job_expansion"
    hosts = base.model_copy(update={"use_ec2_hostnames": True})
    # ParallelCluster's slurm.conf sets nohold_on_prolog_fail then; a later line replaces it.
    assert pcluster.scheduler_parameters(hosts) == "nohold_on_prolog_fail,permit_job_expansion"
    rendered = yaml.safe_load(pcluster.render_v3(hosts))
    assert rendered["Scheduling"]["SlurmSettings"] == {
        "ScaledownIdletime": 10,
        "Dns": {"UseEc2Hostnames": True},
        "CustomSlurmSettings": [
            {"SchedulerParameters": "nohold_on_prolog_fail,permit_job_expansion"}
        ],
    }
    off = base.model_copy(update={"job_expansion": False})
    settings = yaml.safe_load(pcluster.render_v3(off))["Scheduling"]["SlurmSettings"]
    assert settings == {"ScaledownIdletime": 10}


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        ({"custom_ami": "ami-12"}, "custom_ami", "an AMI id"),
        ({"compute_instance_type": "g4dn-12xlarge"}, "compute_instance_type", "instance type"),
        ({"head_node_instance_type": "huge"}, "head_node_instance_type", "instance type"),
        ({"min_count": 5, "max_count": 2}, "max_count", "at least min_count"),
        ({"dcv": {"port": 70000}}, "dcv.port", "65535"),
        ({"colour": "blue"}, "colour", "unknown key"),
        ({"dcv": {"allowed_cidr": "10.0.0.1/8"}}, "dcv.allowed_cidr", "CIDR"),
    ],
)
def test_bad_config_gives_one_message_with_the_key_path(
    change: dict[str, Any], key: str, words: str
) -> None:
    data = preset_data("index-g4dn")
    for k, v in change.items():
        if v is None:
            data.pop(k)
        elif isinstance(v, dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    problems = problems_of(data)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}: ")
    assert words in problems[0]


def test_every_problem_is_reported_at_once() -> None:
    data = {**preset_data("index-aws"), "max_count": 0, "region": "mars", "bogus": 1}
    keys = {p.split(":")[0] for p in problems_of(data)}
    assert keys == {"max_count", "region", "bogus"}


def test_pcluster_schema_errors_map_back_to_hpcrun_keys() -> None:
    config = preset_config("index-aws")
    rendered = pcluster.render_v3(config).replace("Port: 8443", "Port: eighty")
    problems = pcluster.pcluster_schema_problems(rendered, config.name, config.region)
    assert [(p.path, p.pcluster_path) for p in problems] == [("dcv.port", "HeadNode.Dcv.Port")]
    assert "ParallelCluster: HeadNode.Dcv.Port" in str(problems[0])
    assert pcluster.hpcrun_key_for("Scheduling.SlurmQueues.0.ComputeResources.0.MaxCount") == (
        "max_count"
    )
    assert pcluster.hpcrun_key_for("Nope.Nothing") is None


def test_os_pcluster3_dropped_is_reported_for_v3_and_mapped_for_v2() -> None:
    data = {**preset_data("index-aws"), "os": "alinux2"}
    problems = problems_of(data)
    assert len(problems) == 1 and problems[0].startswith("os: ")
    v2 = pcluster.validate_data({**data, "format": "pcluster-v2"})
    assert v2.ok, v2.problems
    ini = pcluster.render_v2(v2.config)  # type: ignore[arg-type]
    assert "base_os = alinux2\n" in ini and "nearest" not in ini


def test_subnet_create_cannot_render_without_a_subnet() -> None:
    config = preset_config("index-aws").model_copy(update={"subnet_id": "create"})
    with pytest.raises(pcluster.RenderError, match="subnet_id: 'create'"):
        pcluster.render_v3(config)
    assert "subnet-0aaaaaaaaaaaaaaaa" in pcluster.render_v3(
        config, subnet_id="subnet-0aaaaaaaaaaaaaaaa"
    )


def test_v2_needs_the_uploaded_post_install_script() -> None:
    data = {k: v for k, v in preset_data("index-aws").items() if k != "post_install_url"}
    problems = problems_of({**data, "format": "pcluster-v2"})
    assert len(problems) == 1 and problems[0].startswith("post_install_url: ")


def test_load_cluster_file_dispatches_on_backend_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(preset_text("index-g4dn"))
    config = load_cluster_file(path)
    assert isinstance(config, pcluster.ParallelClusterConfig)
    assert config.gpus() == 4
    with pytest.raises(UsageError, match="does not act on backend: 'parallelcluster'"):
        load_cluster_file(path, backends=("local",))


NVIDIA_STYLE_V2 = """\
[aws]
aws_region_name = us-west-2

[global]
cluster_template = default
update_check = true
sanity_check = true

[cluster default]
key_name = nvindex-key
base_os = alinux2
custom_ami = ami-0abcdef0123456789
scheduler = slurm
master_instance_type = g4dn.4xlarge
compute_instance_type = p3.8xlarge
initial_queue_size = 2
max_queue_size = 8
maintain_initial_size = true
placement_group = DYNAMIC
placement = compute
vpc_settings = public
dcv_settings = default
post_install = s3://nvindex-bucket/enable-job-expansion.sh
disable_hyperthreading = true

[vpc public]
vpc_id = vpc-0aaaaaaaaaaaaaaaa
master_subnet_id = subnet-0bbbbbbbbbbbbbbbb

[dcv default]
enable = master
port = 8443
access_from = 203.0.113.0/24
"""


def test_import_v2_ini_keeps_what_it_maps_and_lists_the_rest(tmp_path: Path) -> None:
    result = pcluster.import_pcluster_config(NVIDIA_STYLE_V2, name="nvindex")
    config = pcluster.validate_parallelcluster_config(result.data, "imported")
    assert config.format == "pcluster-v2"
    assert (config.region, config.custom_ami, config.os) == (
        "us-west-2",
        "ami-0abcdef0123456789",
        "alinux2",
    )
    assert (config.head_node_instance_type, config.compute_instance_type) == (
        "g4dn.4xlarge",
        "p3.8xlarge",
    )
    assert (config.min_count, config.max_count, config.placement_group) == (2, 8, True)
    assert (config.subnet_id, config.vpc_id) == (
        "subnet-0bbbbbbbbbbbbbbbb",
        "vpc-0aaaaaaaaaaaaaaaa",
    )
    assert config.dcv == pcluster.DcvSettings(
        enabled=True, port=8443, allowed_cidr="203.0.113.0/24"
    )
    assert config.job_expansion and config.post_install_url == (
        "s3://nvindex-bucket/enable-job-expansion.sh"
    )
    assert result.placeholders == []
    assert any("DisableSimultaneousMultithreading" in item for item in result.unmapped)

    # round trip: the imported file renders back to an INI with the same settings
    out = tmp_path / "cluster.yaml"
    out.write_text(result.to_yaml("nvindex.ini"))
    again = load_cluster_file(out, backends=("parallelcluster",))
    assert again == config
    ini = configparser.ConfigParser()
    ini.read_string(pcluster.render_v2(again))  # type: ignore[arg-type]
    original = configparser.ConfigParser()
    original.read_string(NVIDIA_STYLE_V2)
    for key in (
        "key_name",
        "base_os",
        "custom_ami",
        "master_instance_type",
        "compute_instance_type",
        "initial_queue_size",
        "max_queue_size",
        "placement_group",
        "post_install",
        "maintain_initial_size",
    ):
        assert ini["cluster default"][key] == original["cluster default"][key], key
    assert dict(ini["dcv default"]) == dict(original["dcv default"])


NOT_IN_V3 = {"private_key_path", "post_install_url", "vpc_id", "gpus_per_node"}


def test_import_v3_yaml_round_trips_a_rendered_preset() -> None:
    config = preset_config("index-g4dn")
    result = pcluster.import_pcluster_config(pcluster.render_v3(config), name=config.name)
    imported = pcluster.validate_parallelcluster_config(result.data, "imported")
    assert imported.model_dump(exclude=NOT_IN_V3) == (config.model_dump(exclude=NOT_IN_V3))
    assert result.unmapped == []
    assert "custom_ami" in result.placeholders


def test_import_lists_placeholders_for_missing_values() -> None:
    text = (
        "Image:\n  Os: ubuntu2204\n"
        "HeadNode:\n  InstanceType: g4dn.4xlarge\n  Imds:\n    Secured: false\n"
    )
    result = pcluster.import_pcluster_config(text)
    assert {"key_name", "subnet_id"} <= set(result.placeholders)
    assert "custom_ami" not in result.data  # no AMI: ParallelCluster's own of the OS
    # what hpcrun does not model is carried in the overlay, not lost
    assert result.unmapped == []
    assert result.data["parallelcluster"] == {"HeadNode": {"Imds": {"Secured": False}}}


def test_post_install_script_extends_an_existing_value(tmp_path: Path) -> None:
    import subprocess

    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=x\nSchedulerParameters=nohold_on_prolog_fail\n")
    cfn = tmp_path / "cfnconfig"
    cfn.write_text("cfn_node_type=MasterServer\n")
    env = {"SLURM_CONF": str(conf), "CFN_CONFIG": str(cfn), "HPCRUN_NO_RECONFIGURE": "1"}
    script = REPO / "scripts" / "pcluster-post-install-job-expansion.sh"
    for _ in range(2):  # idempotent
        subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True)
    lines = [line for line in conf.read_text().splitlines() if line.startswith("Scheduler")]
    assert lines == ["SchedulerParameters=nohold_on_prolog_fail,permit_job_expansion"]
    cfn.write_text("cfn_node_type=ComputeFleet\n")
    conf.write_text("ClusterName=x\n")
    subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True)
    assert conf.read_text() == "ClusterName=x\n"


# NVIDIA's IndeX template for ParallelCluster 2 in shape: TODO where the user must fill in.
NVIDIA_TODO_V2 = """\
[aws]
aws_region_name = TODO

[global]
cluster_template = default

[cluster default]
key_name = TODO
base_os = alinux2
custom_ami = TODO
scheduler = slurm
master_instance_type = g4dn.4xlarge
compute_instance_type = g4dn.12xlarge
initial_queue_size = 1
max_queue_size = 4
vpc_settings = default

[vpc default]
vpc_id = TODO
master_subnet_id = TODO
"""


def test_import_names_every_todo_on_its_own_line(tmp_path: Path) -> None:
    source = tmp_path / "nvindex.ini"
    source.write_text(NVIDIA_TODO_V2)
    done = run_cli("config", "import", str(source), "-o", str(tmp_path / "c.yaml"), home=tmp_path)
    lines = done.stderr.splitlines()
    for key in ("region", "custom_ami", "key_name", "subnet_id", "vpc_id"):
        assert f"still a placeholder: {key} = 'TODO'" in lines, done.stderr
    report = pcluster.validate_data(yaml.safe_load((tmp_path / "c.yaml").read_text()))
    assert {"region", "custom_ami", "key_name", "subnet_id", "vpc_id"} <= set(report.placeholders)


def test_an_os_the_installed_parallelcluster_dropped_is_named_at_import_and_validate(
    tmp_path: Path,
) -> None:
    from hpcrun.config.pcluster.findings import installed_pcluster

    version, supported = installed_pcluster()
    assert "alinux2" not in supported  # ParallelCluster 3.16 dropped it
    text = "Region: us-east-1\nImage:\n  Os: alinux2\nHeadNode:\n  InstanceType: g4dn.4xlarge\n"
    source = tmp_path / "old.yaml"
    source.write_text(text)
    done = run_cli("config", "import", str(source), "-o", str(tmp_path / "c.yaml"), home=tmp_path)
    refused = [line for line in done.stderr.splitlines() if "will refuse" in line]
    assert len(refused) == 1, done.stderr
    assert refused[0].startswith("ParallelCluster will refuse os: 'alinux2' is not an OS")
    assert f"ParallelCluster {version}" in refused[0] and "alinux2023" in refused[0]
    report = pcluster.validate_data(yaml.safe_load((tmp_path / "c.yaml").read_text()))
    assert any(p.path == "os" and "alinux2023" in p.message for p in report.problems)


def test_a_cluster_without_a_custom_ami_renders_for_parallelclusters_own_ami() -> None:
    data = preset_data("index-g4dn")
    data.pop("custom_ami")
    data["subnet_id"] = "subnet-0abc1234"
    config = pcluster.validate_parallelcluster_config(data)
    assert config.custom_ami is None
    image = yaml.safe_load(pcluster.render_v3(config))["Image"]
    assert image == {"Os": "alinux2023"}
    report = pcluster.validate_data(data)
    assert not [p for p in report.problems if p.path == "custom_ami"], report.problems


def test_s3_access_root_volume_and_elastic_ip_render_validate_and_come_back() -> None:
    data = {
        **preset_data("index-g4dn"),
        "subnet_id": "subnet-0abc1234",
        "vpc_id": "vpc-0abc1234",
        "post_install_url": "s3://my-scripts/expansion.sh",
        "root_volume_gib": 150,
        "elastic_ip": True,
        "s3_access": [
            {"bucket": "nvindex-datasets-us-west2"},
            {"bucket": "results", "key_prefix": "out/", "write": True},
        ],
    }
    config = pcluster.validate_parallelcluster_config(data)
    v3 = yaml.safe_load(pcluster.render_v3(config))
    head, queue = v3["HeadNode"], v3["Scheduling"]["SlurmQueues"][0]
    assert head["Networking"]["ElasticIp"] is True
    assert head["LocalStorage"]["RootVolume"]["Size"] == 150
    assert queue["ComputeSettings"]["LocalStorage"]["RootVolume"]["Size"] == 150
    assert (
        head["Iam"]["S3Access"]
        == queue["Iam"]["S3Access"]
        == [
            {"BucketName": "nvindex-datasets-us-west2", "EnableWriteAccess": False},
            {"BucketName": "results", "KeyName": "out/", "EnableWriteAccess": True},
        ]
    )
    assert pcluster.validate_data(data).problems == []  # ParallelCluster's schema agrees
    again = pcluster.import_pcluster_config(pcluster.render_v3(config), name=config.name)
    assert again.unmapped == []
    for key in ("s3_access", "root_volume_gib", "elastic_ip"):
        assert again.data[key] == data[key], key
    v2 = pcluster.render_v2(config).splitlines()
    assert "s3_read_resource = arn:aws:s3:::nvindex-datasets-us-west2/*" in v2
    assert "s3_read_write_resource = arn:aws:s3:::results/out/*" in v2
    assert "master_root_volume_size = 150" in v2


def test_nvidias_dataset_bucket_is_carried_over_not_dropped(tmp_path: Path) -> None:
    text = NVIDIA_TODO_V2.replace(
        "vpc_settings = default",
        "s3_read_resource = arn:aws:s3:::nvindex-datasets-us-west2/*\n"
        "master_root_volume_size = 200\nvpc_settings = default",
    )
    result = pcluster.import_pcluster_config(text)
    assert result.data["s3_access"] == [{"bucket": "nvindex-datasets-us-west2"}]
    assert result.data["root_volume_gib"] == 200
    assert not [u for u in result.unmapped if "S3Access" in u or "RootVolume" in u]


@pytest.mark.parametrize(
    ("value", "said"),
    [("eip-123", "eipalloc"), (True, "")],
)
def test_elastic_ip_is_true_false_or_an_allocation_id(value: object, said: str) -> None:
    data = {**preset_data("index-g4dn"), "elastic_ip": value}
    problems = problems_of(data)
    assert (said in problems[0]) if said else not problems


# A full ParallelCluster 3 config in the shape of ParallelCluster's own examples: two
# queues, two compute resources in the first, spot, EFS beside the EBS volume, IAM, root
# volumes, custom actions, Slurm settings, a login node pool.
FULL_V3 = """\
Region: us-east-1
Image:
  Os: ubuntu2204
HeadNode:
  InstanceType: c5.2xlarge
  Networking:
    SubnetId: subnet-0aaa1111
    AdditionalSecurityGroups: [sg-0bbb2222]
  Ssh:
    KeyName: lab-key
    AllowedIps: 198.51.100.0/24
  LocalStorage:
    RootVolume:
      Size: 80
      Encrypted: true
  Iam:
    AdditionalIamPolicies:
      - Policy: arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore
  CustomActions:
    OnNodeConfigured:
      Script: s3://lab-scripts/head-setup.sh
Scheduling:
  Scheduler: slurm
  SlurmSettings:
    ScaledownIdletime: 15
  SlurmQueues:
    - Name: gpu
      CapacityType: ONDEMAND
      ComputeResources:
        - Name: g4dn12
          Instances:
            - InstanceType: g4dn.12xlarge
          MinCount: 0
          MaxCount: 4
        - Name: g5
          Instances:
            - InstanceType: g5.12xlarge
          MinCount: 0
          MaxCount: 2
      Networking:
        SubnetIds: [subnet-0aaa1111]
    - Name: cpu
      CapacityType: SPOT
      ComputeResources:
        - Name: c5
          Instances:
            - InstanceType: c5.4xlarge
          MinCount: 1
          MaxCount: 10
      Networking:
        SubnetIds: [subnet-0aaa1111]
LoginNodes:
  Pools:
    - Name: login
      Count: 1
      InstanceType: t3.large
      Networking:
        SubnetIds: [subnet-0aaa1111]
SharedStorage:
  - Name: ebs
    StorageType: Ebs
    MountDir: /shared
    EbsSettings:
      VolumeType: gp3
      Size: 200
      Encrypted: true
  - Name: home
    StorageType: Efs
    MountDir: /home2
Tags:
  - Key: team
    Value: viz
"""

# What import leaves out because it is ParallelCluster's default anyway.
DEFAULTS = {"Scheduling.SlurmQueues.0.CapacityType": "ONDEMAND"}


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(node, list):
        out = {}
        for index, value in enumerate(node):
            out.update(_flat(value, f"{prefix}.{index}"))
        return out
    return {prefix: node}


def test_a_full_v3_config_imports_and_renders_back_with_nothing_lost() -> None:
    result = pcluster.import_pcluster_config(FULL_V3, name="lab")
    assert result.unmapped == [], result.unmapped
    config = pcluster.validate_parallelcluster_config(result.data)
    assert [(q.name, len(q.compute_resources), q.spot) for q in config.slurm_queues()] == [
        ("gpu", 2, False),
        ("cpu", 1, True),
    ]
    # Only the head node names a root volume: hpcrun's one size would give the queues
    # one too, so it stays as the source says it, in the overlay.
    assert config.root_volume_gib is None
    assert config.parallelcluster["HeadNode"]["LocalStorage"]["RootVolume"]["Size"] == 80
    assert config.shared_storage is not None and config.shared_storage.name == "ebs"
    rendered = pcluster.render_v3(config)
    assert "merged in" in rendered.splitlines()[3]
    original, back = _flat(yaml.safe_load(FULL_V3)), _flat(yaml.safe_load(rendered))
    lost = {k: v for k, v in original.items() if back.get(k, DEFAULTS.get(k)) != v}
    assert lost == {}, lost
    assert back["Scheduling.SlurmQueues.1.CapacityType"] == "SPOT"
    assert back["SharedStorage.1.StorageType"] == "Efs"
    assert pcluster.validate_data(result.data).problems == []  # ParallelCluster agrees


def test_an_overlay_may_add_but_not_change_what_hpcrun_sets() -> None:
    data = {
        **preset_data("index-g4dn"),
        "subnet_id": "subnet-0abc1234",
        "parallelcluster": {"HeadNode": {"InstanceType": "c5.large"}},
    }
    report = pcluster.validate_data(data)
    (problem,) = report.problems
    assert problem.path == "parallelcluster.HeadNode.InstanceType"
    assert "would replace 'g4dn.4xlarge'" in problem.message


def test_an_overlay_error_of_parallelclusters_schema_names_the_overlay_key() -> None:
    data = {
        **preset_data("index-g4dn"),
        "subnet_id": "subnet-0abc1234",
        "parallelcluster": {"Scheduling": {"SlurmSettings": {"ScaledownIdletime": "soon"}}},
    }
    problems = pcluster.validate_data(data).problems
    assert [p.path for p in problems] == [
        "parallelcluster.Scheduling.SlurmSettings.ScaledownIdletime"
    ]


def test_parallelclusters_schema_runs_without_an_ec2_client_and_leaves_none_behind() -> None:
    """ParallelCluster's config constructor caches capacity reservations through EC2; the
    offline check answers that (none named: no call) without making a boto3 client."""
    from pcluster.aws.aws_api import AWSApi  # type: ignore[import-untyped]

    data = {**preset_data("index-g4dn"), "subnet_id": "subnet-0abc1234"}
    assert pcluster.validate_data(data).problems == []
    assert AWSApi.instance()._ec2 is None
    reserved = {
        **data,
        "parallelcluster": {
            "Scheduling": {
                "SlurmQueues": [
                    {"CapacityReservationTarget": {"CapacityReservationId": "cr-0123456789abcdef0"}}
                ]
            }
        },
    }
    # Naming one would be an AWS call: refused offline, which ParallelCluster tolerates.
    assert pcluster.validate_data(reserved).problems == []
    assert AWSApi.instance()._ec2 is None


def test_a_v2_vpc_is_the_one_the_cluster_names() -> None:
    text = NVIDIA_STYLE_V2.replace(
        "[vpc public]", "[vpc other]\nvpc_id = vpc-0cccccccccccccccc\n\n[vpc public]"
    )
    result = pcluster.import_pcluster_config(text, name="nvindex")
    assert result.data["vpc_id"] == "vpc-0aaaaaaaaaaaaaaaa"  # vpc_settings = public
