"""The backend registry: one entry per backend, its model, what it lacks, found by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpcrun.backends import REGISTRY, backend_entry, open_backend, refusal
from hpcrun.backends.base import Feature
from hpcrun.config.models import LocalClusterConfig, load_cluster_file, validate_cluster_data
from hpcrun.config.presets import preset_text
from hpcrun.errors import HpcrunError, UsageError
from hpcrun.state import ClusterState, StateStore

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_every_backend_has_a_config_file_in_the_repository() -> None:
    backends = {yaml.safe_load(p.read_text()).get("backend", "local") for p in CONFIGS}
    assert backends == set(REGISTRY)
    for entry in REGISTRY.values():
        assert (REPO / entry.example).is_file(), entry.example


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_each_entrys_model_validates_its_config_files(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    entry = backend_entry(data.get("backend", "local"))
    model = entry.model()
    direct = model.model_validate(data)
    assert load_cluster_file(path) == direct  # the discriminated union picks this model
    assert direct.summary().startswith(f"{direct.name}: ")  # type: ignore[attr-defined]


def test_the_union_is_made_of_the_registry_models() -> None:
    for entry in REGISTRY.values():
        tag = entry.model().model_fields["backend"].default
        assert tag == entry.name


def test_unknown_backend_names_list_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        backend_entry("slurm-on-mars")
    assert err.value.hint == "use one of: local, ssh, parallelcluster, eks, kubernetes"
    with pytest.raises(UsageError, match="backend 'nomad' is not one hpcrun knows"):
        validate_cluster_data({"backend": "nomad"})
    store = StateStore(tmp_path)
    store.put_cluster("old", "nomad", {"name": "old"}, ClusterState.UP)
    record = store.cluster("old")
    assert record is not None
    with pytest.raises(HpcrunError) as opened:
        open_backend(record, store)
    assert "uses backend 'nomad', which this hpcrun lacks" in opened.value.message
    assert opened.value.hint == "known backends: eks, kubernetes, local, parallelcluster, ssh"


def test_unhashable_backend_values_are_usage_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("backend: [local]\n")
    with pytest.raises(UsageError, match="is not one hpcrun knows"):
        load_cluster_file(path)


SERVE = Feature.SERVE


def _pcluster(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(preset_text("index-g4dn"))
    return {**data, **overrides}


@pytest.mark.parametrize(
    ("backend", "config", "lacks"),
    [
        # Slurm keeps no server up: every Slurm backend lacks SERVE (`hpcrun serve`)
        ("local", LocalClusterConfig().model_dump(), {Feature.DESKTOP, Feature.SHELL, SERVE}),
        (
            "local",
            LocalClusterConfig(accounting=False).model_dump(),
            {Feature.DESKTOP, Feature.SHELL, Feature.ACCOUNTING, SERVE},
        ),
        ("ssh", {"name": "lab", "host": "login1"}, {SERVE}),  # create attaches: CREATE is there
        ("parallelcluster", _pcluster(), {SERVE}),
        ("parallelcluster", _pcluster(dcv={"enabled": False}), {Feature.DESKTOP, SERVE}),
        ("parallelcluster", _pcluster(job_expansion=False), {Feature.JOB_EXPANSION, SERVE}),
    ],
    ids=["local", "local-no-accounting", "ssh", "pc", "pc-no-dcv", "pc-no-expansion"],
)
def test_what_each_backend_lacks_follows_its_config(
    tmp_path: Path, backend: str, config: dict[str, Any], lacks: set[Feature]
) -> None:
    entry = backend_entry(backend)
    assert entry.unsupported(config) == lacks
    store = StateStore(tmp_path)
    store.put_cluster(config["name"], backend, config, ClusterState.DOWN)
    record = store.cluster(config["name"])
    assert record is not None
    assert open_backend(record, store).unsupported == lacks  # the instance says the same


def test_importing_the_registry_imports_no_backend() -> None:
    probe = (
        "import sys\n"
        "import hpcrun.backends\n"
        "heavy = {'boto3', 'pcluster', 'paramiko', 'pydantic', 'hpcrun.backends.local',\n"
        "         'hpcrun.backends.remote', 'hpcrun.backends.parallelcluster'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


KUBERNETES_LACKS = {
    Feature.SLURM,
    Feature.DESKTOP,
    Feature.JOB_EXPANSION,
    Feature.ACCOUNTING,
    Feature.SHELL,
}


@pytest.mark.parametrize("name", ["eks", "kubernetes"])
def test_a_kubernetes_cluster_lacks_slurm_and_a_head_node_but_opens(
    tmp_path: Path, name: str
) -> None:
    entry = backend_entry(name)
    assert entry.unsupported({}) == KUBERNETES_LACKS
    example = load_cluster_file(REPO / entry.example)
    store = StateStore(tmp_path)
    store.put_cluster(example.name, name, example.model_dump(), ClusterState.UP)
    record = store.cluster(example.name)
    assert record is not None
    backend = open_backend(record, store)  # opening connects to nothing yet
    assert backend.name == name and backend.unsupported == KUBERNETES_LACKS
    refused = refusal(example.name, name, Feature.SLURM, "hpcrun submit")
    assert "has no Slurm scheduler, which hpcrun submit needs: it runs Kubernetes" in (
        refused.message
    )
