"""The hourly cost estimate `hpcrun create` shows before an AWS cluster is made: the price
table's shape (dated, every preset priced), each preset's estimate with numbers computed
here from the table, the "no price known" path, and the CLI asking (or refusing without a
terminal) before anything exists."""

from __future__ import annotations

import datetime
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from hpcrun.cli.cluster import _cost_before_create, _running_cost
from hpcrun.config.cost import (
    BASIS,
    CostEstimate,
    estimate_cost,
    load_price_table,
    running_cost,
)
from hpcrun.config.eks import EksClusterConfig
from hpcrun.config.models import validate_cluster_data
from hpcrun.config.pcluster import ParallelClusterConfig
from hpcrun.config.presets import preset_names, preset_text
from hpcrun.errors import UsageError
from tests.conftest import run_cli

TABLE = load_price_table()
AWS_PRESETS = [
    name
    for name in preset_names()
    if yaml.safe_load(preset_text(name)).get("backend") in {"parallelcluster", "eks"}
]


def preset_model(name: str, **overrides: Any) -> Any:
    return validate_cluster_data({**yaml.safe_load(preset_text(name)), **overrides}, name)


def money(value: float) -> str:
    return f"${value:,.3f}/h"


def instance_types(model: Any) -> list[str]:
    if isinstance(model, ParallelClusterConfig):
        return [model.head_node_instance_type, model.compute_instance_type]
    return [group.instance_type for group in model.node_groups]


def test_the_table_is_dated_and_says_what_its_prices_are() -> None:
    datetime.date.fromisoformat(TABLE.date)
    assert TABLE.source.startswith(f"{BASIS}, {TABLE.date}")
    assert "list prices" in TABLE.note and "may have changed" in TABLE.note
    assert {"us-east-1", "us-west-2", "eu-west-1"} <= set(TABLE.ec2)
    for region, prices in TABLE.ec2.items():
        assert TABLE.eks_control_plane[region] > 0
        assert prices and all(0 < p < 100 for p in prices.values()), region


def test_the_presets_cover_aws_clusters() -> None:
    assert {"index-aws", "index-g4dn", "index-eks"} <= set(AWS_PRESETS)


@pytest.mark.parametrize("name", AWS_PRESETS)
def test_every_preset_instance_type_is_priced_in_every_region_of_the_table(name: str) -> None:
    model = preset_model(name)
    assert model.region in TABLE.ec2
    for region in TABLE.ec2:
        for instance_type in instance_types(model):
            assert TABLE.instance(region, instance_type) is not None, (instance_type, region)


@pytest.mark.parametrize("name", [n for n in AWS_PRESETS if n != "index-eks"])
def test_a_parallelcluster_preset_is_head_node_plus_compute_at_min_and_max(name: str) -> None:
    model = preset_model(name)
    head = TABLE.instance(model.region, model.head_node_instance_type)
    each = TABLE.instance(model.region, model.compute_instance_type)
    assert head is not None and each is not None
    low, high = head + each * model.min_count, head + each * model.max_count

    cost = estimate_cost(model)
    assert isinstance(cost, CostEstimate) and cost.complete and cost.missing == []
    assert cost.per_hour_min == pytest.approx(low) and cost.per_hour_max == pytest.approx(high)
    text = "\n".join(cost.text_lines())
    print(f"\n{text}")
    assert f"{BASIS}, {model.region}, as of {TABLE.date}" in text.splitlines()[0]
    assert f"1 x {model.head_node_instance_type}" in text and money(head) in text
    assert f"{model.min_count}-{model.max_count} x {model.compute_instance_type}" in text
    assert f"{money(each)} each" in text
    assert (
        f"{money(low)} with {model.min_count} compute nodes, "
        f"{money(high)} with {model.max_count} compute nodes"
    ) in text


def test_the_eks_preset_is_the_control_plane_plus_each_node_group() -> None:
    model = preset_model("index-eks")
    assert isinstance(model, EksClusterConfig)
    fee = TABLE.eks_control_plane[model.region]
    groups = [(TABLE.instance(model.region, g.instance_type), g) for g in model.node_groups]
    low = fee + sum((p or 0) * g.min_size for p, g in groups)
    high = fee + sum((p or 0) * g.max_size for p, g in groups)

    cost = estimate_cost(model)
    assert cost is not None and cost.complete
    assert (cost.per_hour_min, cost.per_hour_max) == (pytest.approx(low), pytest.approx(high))
    text = "\n".join(cost.text_lines())
    print(f"\n{text}")
    assert "EKS control plane" in text and money(fee) in text
    for price, group in groups:
        assert f"node group {group.name}" in text
        assert f"{group.min_size}-{group.max_size} x {group.instance_type}" in text
        assert price is not None and f"{money(price)} each" in text
    assert f"{money(low)} with 1 node, {money(high)} with 7 nodes" in text
    assert cost.to_json()["lines"][0]["what"] == "EKS control plane"


def test_a_spot_node_group_says_the_on_demand_price_is_its_ceiling() -> None:
    data = yaml.safe_load(preset_text("index-eks"))
    data["node_groups"][0]["spot"] = True
    cost = estimate_cost(validate_cluster_data(data))
    assert cost is not None and "(Spot: at most this)" in cost.text_lines()[2]
    assert cost.to_json()["lines"][1]["spot"] is True


def test_a_region_or_type_the_table_lacks_is_said_unknown_not_guessed() -> None:
    elsewhere = estimate_cost(preset_model("index-aws", region="ap-south-1"))
    assert elsewhere is not None and not elsewhere.complete
    assert elsewhere.missing == [
        "no price known for g4dn.4xlarge in ap-south-1",
        "no price known for p3.8xlarge in ap-south-1",
    ]
    text = "\n".join(elsewhere.text_lines())
    assert "no price known for p3.8xlarge in ap-south-1" in text and "at least" in text

    other_type = estimate_cost(preset_model("index-g4dn", compute_instance_type="g5.48xlarge"))
    assert other_type is not None and other_type.missing == [
        "no price known for g5.48xlarge in us-east-1"
    ]
    head = TABLE.instance("us-east-1", "g4dn.4xlarge")
    assert other_type.per_hour_max == head  # the priced part only, said to be a floor
    assert f"at least {money(head or 0)} with 0 compute nodes" in "\n".join(other_type.text_lines())
    as_json = other_type.to_json()
    assert as_json["complete"] is False and as_json["lines"][1]["per_hour_each"] is None

    eks = estimate_cost(preset_model("index-eks", region="ap-south-1"))
    assert eks is not None
    assert "no price known for EKS control plane in ap-south-1" in eks.missing


def test_clusters_aws_does_not_bill_get_no_estimate() -> None:
    for name in ("local", "kubernetes"):
        assert estimate_cost(preset_model(name)) is None


def test_json_is_plain_data_with_the_date_and_basis() -> None:
    cost = estimate_cost(preset_model("index-aws"))
    assert cost is not None
    data = json.loads(json.dumps(cost.to_json()))
    assert data["basis"] == BASIS and data["date"] == TABLE.date
    assert data["region"] == "us-east-1" and data["currency"] == "USD"
    assert [line["item"] for line in data["lines"]] == ["g4dn.4xlarge", "p3.8xlarge"]


def test_running_cost_is_the_head_node_and_the_compute_nodes_up() -> None:
    model = preset_model("index-aws")
    head = TABLE.instance("us-east-1", "g4dn.4xlarge") or 0
    each = TABLE.instance("us-east-1", "p3.8xlarge") or 0
    now = running_cost(model, ["gpu-dy-p3-8xlarge-1", "gpu-st-p3-8xlarge-2"])
    assert now.per_hour_max == pytest.approx(head + 2 * each)
    assert now.running_text().startswith(f"Cost now: {money(head + 2 * each)} (head node")
    assert "2 compute nodes p3.8xlarge up" in now.running_text()


class _Node:
    def __init__(self, state: str, name: str = "gpu-dy-g4dn-12xlarge-1") -> None:
        self.node = type("N", (), {"state": state, "name": name})()


def test_status_counts_the_compute_nodes_slurm_has_not_powered_down() -> None:
    model = preset_model("index-g4dn")
    record = type("R", (), {"backend": "parallelcluster", "config": model.model_dump()})()
    nodes = [_Node("idle~"), _Node("allocated"), _Node("idle#"), _Node("mixed%")]
    current = type("S", (), {"state": "up", "nodes": nodes})()
    cost = _running_cost(record, current)  # type: ignore[arg-type]
    assert cost is not None and cost.lines[1].max_count == 3
    creating = type("S", (), {"state": "creating", "nodes": []})()
    assert _running_cost(record, creating) is None  # type: ignore[arg-type]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_create_asks_on_a_terminal_and_refuses_without_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model = preset_model("index-g4dn")
    monkeypatch.setattr(sys, "stdin", _Terminal("y\n"))
    assert _cost_before_create(model, yes=False, to_stderr=False) is not None
    out = capsys.readouterr().out
    assert "Estimated cost of index-g4dn per hour" in out and "Create it? [y/N]" in out

    monkeypatch.setattr(sys, "stdin", _Terminal("\n"))  # the default is no
    with pytest.raises(typer.Abort):
        _cost_before_create(model, yes=False, to_stderr=False)

    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(UsageError, match="without confirmation") as refused:
        _cost_before_create(model, yes=False, to_stderr=False)
    assert "--yes" in (refused.value.hint or "")
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(UsageError):
        _cost_before_create(model, yes=False, to_stderr=False)
    capsys.readouterr()

    # --yes: the estimate, no question; --json puts it on stderr, stdout stays JSON.
    assert _cost_before_create(model, yes=True, to_stderr=True) is not None
    shown = capsys.readouterr()
    assert shown.out == "" and "Estimated cost" in shown.err and "Create it?" not in shown.err
    # Local clusters: no estimate, no question, even with no terminal.
    assert _cost_before_create(preset_model("local"), yes=False, to_stderr=False) is None
    assert capsys.readouterr().out == ""


def _aws_file(tmp_path: Path, **overrides: Any) -> Path:
    data = {**yaml.safe_load(preset_text("index-g4dn")), "key_name": "mine", **overrides}
    path = tmp_path / "aws.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_create_shows_the_estimate_and_without_yes_refuses_before_anything(
    tmp_path: Path,
) -> None:
    done = run_cli("create", "--config", str(_aws_file(tmp_path)), home=tmp_path, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Estimated cost of index-g4dn per hour" in done.stdout
    assert f"as of {TABLE.date}" in done.stdout and BASIS in done.stdout
    assert "refusing to create cluster 'index-g4dn' without confirmation" in done.stderr
    assert "pass --yes" in done.stderr
    assert "no clusters yet" in run_cli("clusters", home=tmp_path).stdout.lower()


def test_cli_create_with_yes_goes_on_past_the_question(tmp_path: Path) -> None:
    # A v2 file is refused by the backend, before any AWS call: past the question, and
    # still nothing made. --json keeps the estimate off stdout.
    path = _aws_file(
        tmp_path,
        format="pcluster-v2",
        vpc_id="vpc-0123456789abcdef0",
        post_install_url="s3://bucket/post-install.sh",
    )
    done = run_cli("create", "--config", str(path), "-y", "--json", home=tmp_path, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "clusters are made by ParallelCluster 2.x" in done.stderr
    assert "Estimated cost of index-g4dn" in done.stderr and done.stdout == ""
    assert "without confirmation" not in done.stderr


def _two_queues() -> ParallelClusterConfig:
    data = yaml.safe_load(preset_text("index-g4dn"))
    for key in ("queue_name", "compute_instance_type", "min_count", "max_count"):
        data.pop(key)
    data.pop("gpus_per_node")
    data.pop("placement_group")
    data["queues"] = [
        {
            "name": "gpu",
            "compute_resources": [
                {"instance_type": "g4dn.12xlarge", "max_count": 4},
                {"name": "small", "instance_type": "g4dn.xlarge", "min_count": 1, "max_count": 2},
            ],
        },
        {"name": "cpu", "spot": True, "compute_resources": [{"instance_type": "c5.4xlarge"}]},
    ]
    model = validate_cluster_data(data)
    assert isinstance(model, ParallelClusterConfig)
    return model


def test_every_queue_and_compute_resource_is_priced() -> None:
    model = _two_queues()
    cost = estimate_cost(model)
    assert cost is not None
    assert [(line.what, line.item, line.min_count, line.max_count) for line in cost.lines] == [
        ("head node", "g4dn.4xlarge", 1, 1),
        ("compute (gpu/g4dn-12xlarge)", "g4dn.12xlarge", 0, 4),
        ("compute (gpu/small)", "g4dn.xlarge", 1, 2),
        ("compute (cpu)", "c5.4xlarge", 0, 4),
    ]
    assert cost.lines[3].spot and not cost.lines[1].spot
    priced = [TABLE.instance("us-east-1", line.item) for line in cost.lines]
    if all(p is not None for p in priced):
        head, big, small, cpu = (p or 0.0 for p in priced)
        assert cost.per_hour_max == pytest.approx(head + 4 * big + 2 * small + 4 * cpu)
    text = "\n".join(cost.text_lines())
    assert "with 1 compute node," in text and "with 10 compute nodes" in text


def test_running_cost_prices_each_node_as_its_queues_compute_resource() -> None:
    model = _two_queues()
    up = [
        "gpu-st-small-1",
        "gpu-dy-g4dn-12xlarge-3",
        "gpu-dy-g4dn-12xlarge-4",
        "cpu-dy-c5-4xlarge-1",
    ]
    now = running_cost(model, [*up, "login-node-1"])
    counts = {line.what: line.max_count for line in now.lines}
    assert counts == {
        "head node": 1,
        "compute (gpu/g4dn-12xlarge)": 2,
        "compute (gpu/small)": 1,
        "compute (cpu)": 1,
        "compute (unknown queue)": 1,
    }
    assert "no price known for node outside the file's queues in us-east-1" in now.missing
