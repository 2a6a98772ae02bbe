"""Cluster file models: defaults, one error listing every bad key, YAML loading."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from hpcrun.config.models import (
    MAX_LOCAL_NODES,
    LocalClusterConfig,
    load_cluster_file,
    validate_cluster_config,
)
from hpcrun.errors import UsageError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    return path


def test_defaults() -> None:
    config = LocalClusterConfig()
    assert config.model_dump() == {
        "backend": "local",
        "name": "dev",
        "nodes": 4,
        "cpus_per_node": 8,
        "gpus_per_node": 2,
        "memory_per_node_mib": 4096,
        "accounting": True,
        "port_base": None,
        "partition": "batch",
    }


def test_config_is_frozen() -> None:
    config = LocalClusterConfig()
    with pytest.raises(pydantic.ValidationError):
        config.nodes = 8  # type: ignore[misc]


def test_valid_values_pass() -> None:
    config = validate_cluster_config(
        {"name": "gpu-lab-2", "nodes": MAX_LOCAL_NODES, "gpus_per_node": 0, "port_base": 20000}
    )
    assert (config.name, config.nodes, config.gpus_per_node, config.port_base) == (
        "gpu-lab-2",
        16,
        0,
        20000,
    )


def test_every_bad_key_is_reported_in_one_error() -> None:
    with pytest.raises(UsageError) as err:
        validate_cluster_config({"nodes": 17, "name": "Bad_Name", "colour": "blue"}, "my.yaml")
    message = err.value.message
    assert message.startswith("my.yaml is not a valid cluster config:")
    problems = message.splitlines()[1:]
    assert len(problems) == 3
    assert any(p.strip().startswith("nodes:") and "16" in p for p in problems)
    assert any(p.strip().startswith("name:") for p in problems)
    assert any(p.strip().startswith("colour:") for p in problems)
    assert err.value.hint is not None and "configs/local.yaml" in err.value.hint
    assert err.value.exit_code == 2


def test_wrong_types_are_reported_with_their_key() -> None:
    with pytest.raises(UsageError) as err:
        validate_cluster_config({"cpus_per_node": "many", "accounting": "perhaps"})
    assert "cpus_per_node:" in err.value.message
    assert "accounting:" in err.value.message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("nodes", 0),
        ("cpus_per_node", 257),
        ("gpus_per_node", -1),
        ("memory_per_node_mib", 255),
        ("port_base", 80),
        ("port_base", 65001),
        ("partition", "bad name"),
        ("name", "1abc"),
        ("name", "a" * 33),
    ],
)
def test_out_of_range_values_are_refused(key: str, value: object) -> None:
    # One problem is named on the first line itself.
    with pytest.raises(UsageError, match=f"is not a valid cluster config: {key}: "):
        validate_cluster_config({key: value})


def test_local_yaml_loads_and_equals_the_defaults() -> None:
    assert load_cluster_file(REPO / "configs" / "local.yaml") == LocalClusterConfig()


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_cluster_file(write(tmp_path, "# nothing set\n")) == LocalClusterConfig()


def test_file_values_override_defaults(tmp_path: Path) -> None:
    config = load_cluster_file(write(tmp_path, "nodes: 2\naccounting: false\n"))
    assert (config.nodes, config.accounting, config.name) == (2, False, "dev")


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "nodes: 99\n")
    with pytest.raises(UsageError, match="nodes:") as err:
        load_cluster_file(path)
    assert str(path) in err.value.message


def test_malformed_yaml_is_a_usage_error(tmp_path: Path) -> None:
    path = write(tmp_path, "nodes: [1, 2\nname: dev\n")
    with pytest.raises(UsageError, match="is not valid YAML") as err:
        load_cluster_file(path)
    assert str(path) in err.value.message
    assert "line" in err.value.message  # PyYAML's position, so the user can find it


@pytest.mark.parametrize(
    "text", ["- nodes: 4\n", "just a string\n", "42\n"], ids=["list", "string", "number"]
)
def test_non_mapping_file_is_a_usage_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(UsageError, match="must hold a mapping"):
        load_cluster_file(write(tmp_path, text))


@pytest.mark.parametrize("text", ["[]\n", "false\n", "0\n"], ids=["list", "false", "zero"])
def test_falsy_non_mapping_file_is_a_usage_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(UsageError, match="must hold a mapping"):
        load_cluster_file(write(tmp_path, text))


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"absent\.yaml: cannot read"):
        load_cluster_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize("backend", ["aws", "gke", "slurm"])
def test_unknown_backends_are_refused(tmp_path: Path, backend: str) -> None:
    with pytest.raises(UsageError, match=f"backend: '{backend}' is not one hpcrun knows") as err:
        load_cluster_file(write(tmp_path, f"backend: {backend}\nnodes: 2\n"))
    assert err.value.hint == "use one of: local, ssh, parallelcluster, eks, kubernetes"


def test_ssh_file_loads_and_names_bad_keys(tmp_path: Path) -> None:
    from hpcrun.config.models import SshClusterConfig

    good = load_cluster_file(write(tmp_path, "backend: ssh\nname: lab\nhost: login1\n"))
    assert good == SshClusterConfig(name="lab", host="login1")
    with pytest.raises(UsageError) as err:
        load_cluster_file(write(tmp_path, "backend: ssh\nname: lab\nport: 0\nnodes: 2\n"))
    lines = err.value.message.splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["host", "port", "nodes"]


def test_other_backend_in_flags_is_refused_too() -> None:
    with pytest.raises(UsageError, match="backend:"):
        validate_cluster_config({"backend": "aws"})
