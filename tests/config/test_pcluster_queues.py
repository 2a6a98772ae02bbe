"""Several Slurm queues in a ParallelCluster cluster file (issue 18, item 2): modelled,
rendered, checked by ParallelCluster's own schema, imported, and chosen with --partition."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from hpcrun.config import pcluster
from hpcrun.errors import UsageError
from tests.config.test_pcluster import preset_data
from tests.golden_util import assert_golden


def _two_queues() -> dict[str, Any]:
    data = preset_data("index-g4dn")
    for key in pcluster.model.SINGLE_QUEUE_KEYS:
        data.pop(key, None)
    data["subnet_id"] = "subnet-0abc1234"
    data["queues"] = [
        {
            "name": "gpu",
            "compute_resources": [
                {"instance_type": "g4dn.12xlarge", "max_count": 4},
                {"name": "big", "instance_type": "g5.48xlarge", "min_count": 1, "max_count": 2},
            ],
        },
        {
            "name": "cpu",
            "spot": True,
            "placement_group": False,
            "subnet_id": "subnet-0def5678",
            "compute_resources": [{"instance_type": "c5.4xlarge", "max_count": 10}],
        },
    ]
    return data


def test_several_queues_render_as_golden_and_parallelcluster_accepts_them() -> None:
    data = _two_queues()
    report = pcluster.validate_data(data)
    assert report.problems == []
    config = report.config
    assert config is not None
    rendered = pcluster.render_v3(config)
    assert_golden("pcluster/queues.pcluster-v3.yaml", rendered)
    queues = yaml.safe_load(rendered)["Scheduling"]["SlurmQueues"]
    assert [q["Name"] for q in queues] == ["gpu", "cpu"]
    assert [r["Name"] for r in queues[0]["ComputeResources"]] == ["g4dn-12xlarge", "big"]
    assert queues[1]["CapacityType"] == "SPOT" and "CapacityType" not in queues[0]
    assert queues[1]["Networking"] == {"SubnetIds": ["subnet-0def5678"]}
    assert queues[0]["Networking"]["PlacementGroup"] == {"Enabled": True}
    assert config.summary() == (
        "index-g4dn: gpu: g4dn.12xlarge x 0-4, g5.48xlarge x 1-2; cpu: c5.4xlarge x 0-10, "
        "head g4dn.4xlarge, pcluster-v3"
    )


def test_the_partition_names_a_queue_and_its_gpus() -> None:
    config = pcluster.validate_parallelcluster_config(_two_queues())
    assert config.queue().name == "gpu"  # the first queue is Slurm's default partition
    assert config.queue("cpu").spot
    assert (config.gpus(), config.gpus("cpu")) == (4, None)
    with pytest.raises(UsageError) as refused:
        config.queue("fast")
    assert refused.value.message == "--partition fast: cluster index-g4dn has no such queue"
    assert refused.value.hint == "its queues: gpu, cpu"


def test_a_file_without_queues_is_one_queue_of_its_flat_keys() -> None:
    config = pcluster.validate_parallelcluster_config(preset_data("index-g4dn"))
    (queue,) = config.slurm_queues()
    assert (queue.name, queue.min_count, queue.max_count) == ("gpu", 0, 4)
    assert queue.compute_resources[0].resolved_name == "g4dn-12xlarge"


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        ({"compute_instance_type": "p3.8xlarge"}, "queues", "beside compute_instance_type"),
        ({"queues": [{"name": "a", "compute_resources": []}]}, "queues.0.compute_resources", ""),
        (
            {"queues": [{"name": "Big", "compute_resources": [{"instance_type": "c5.large"}]}]},
            "queues.0.name",
            "lower case letters",
        ),
        (
            {
                "queues": [
                    {"name": "a", "compute_resources": [{"instance_type": "c5.large"}]},
                    {"name": "a", "compute_resources": [{"instance_type": "c5.xlarge"}]},
                ]
            },
            "queues",
            "'a' is named twice",
        ),
        (
            {
                "queues": [
                    {
                        "name": "a",
                        "compute_resources": [
                            {"instance_type": "c5.large"},
                            {"instance_type": "c5.large", "max_count": 2},
                        ],
                    }
                ]
            },
            "queues.0.compute_resources",
            "'c5-large' is named twice",
        ),
        (
            {
                "queues": [
                    {"name": "a", "compute_resources": [{"instance_type": "c5.large", "x": 1}]}
                ]
            },
            "queues.0.compute_resources.0.x",
            "known keys: name, instance_type",
        ),
    ],
)
def test_bad_queues_give_one_message_with_the_key(
    change: dict[str, Any], path: str, words: str
) -> None:
    data = {**_two_queues(), **change}
    (problem,) = pcluster.validate_data(data, with_pcluster=False).problems
    assert problem.path == path and words in problem.message, problem


def test_parallelclusters_schema_errors_in_a_queue_name_its_queues_key() -> None:
    data = _two_queues()
    data["queues"][1]["compute_resources"][0]["max_count"] = 0  # hpcrun: >= 1
    (problem,) = pcluster.validate_data(data, with_pcluster=False).problems
    assert problem.path == "queues.1.compute_resources.0.max_count"
    text = pcluster.render_v3(pcluster.validate_parallelcluster_config(_two_queues()))
    broken = text.replace("MinCount: 1", "MinCount: -1")
    (schema,) = pcluster.pcluster_schema_problems(broken, "c", "us-east-1", queues=True)
    assert schema.path == "queues.0.compute_resources.1.min_count"
    assert schema.pcluster_path == "Scheduling.SlurmQueues.0.ComputeResources.1.MinCount"


def test_parallelcluster_2_has_one_queue() -> None:
    config = pcluster.validate_parallelcluster_config(
        {**_two_queues(), "format": "pcluster-v2", "vpc_id": "vpc-0abc1234", "job_expansion": False}
    )
    with pytest.raises(pcluster.RenderError) as refused:
        pcluster.render_v2(config)
    assert refused.value.message.startswith("queues: ParallelCluster 2.8.0 has one compute queue")


def test_import_keeps_every_queue_and_compute_resource_by_name() -> None:
    config = pcluster.validate_parallelcluster_config(_two_queues())
    result = pcluster.import_pcluster_config(pcluster.render_v3(config), name="index-g4dn")
    assert result.unmapped == [] and "parallelcluster" not in result.data
    again = pcluster.validate_parallelcluster_config(result.data)
    assert [q.name for q in again.slurm_queues()] == ["gpu", "cpu"]
    assert [r.resolved_name for r in again.queue("gpu").compute_resources] == [
        "g4dn-12xlarge",
        "big",
    ]
    assert pcluster.render_v3(again).splitlines()[3:] == pcluster.render_v3(config).splitlines()[3:]


def test_one_queue_of_one_type_imports_as_the_flat_keys() -> None:
    config = pcluster.validate_parallelcluster_config(
        {**preset_data("index-g4dn"), "subnet_id": "subnet-0abc1234"}
    )
    result = pcluster.import_pcluster_config(pcluster.render_v3(config), name="index-g4dn")
    assert "queues" not in result.data
    assert result.data["compute_instance_type"] == "g4dn.12xlarge"
    assert result.data["scaledown_idle_minutes"] == 10
