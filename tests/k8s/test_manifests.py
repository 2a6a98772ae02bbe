"""The objects of an IndeX session on Kubernetes, as NVIDIA's chart makes them (golden),
and the properties the issue names: replicas, GPU limits, labels, ports, the Ingress."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml

from hpcrun.k8s.auth import check, htpasswd, new_password
from hpcrun.k8s.manifests import (
    GPU_RESOURCE,
    MANAGED_BY,
    SESSION_LABEL,
    IndexRelease,
    index_objects,
)
from tests.golden_util import assert_golden

RELEASE = IndexRelease(
    name="hpcrun-index-3",
    namespace="hpcrun",
    session="3",
    nodes=3,
    gpus_per_node=1,
    image="nvcr.io/nvidia/nvindex:2024",
    scene_files={"scene.prj": "#! index_app_project 0\n", "nova01.cmap": "0 0 0 0\n"},
    pull_secret="nvindexcr",
    service_account="nvindex-access",
    data_location="s3://nvindex-datasets-us-west2/scenes",
    htpasswd="nvindex:$2b$10$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY",
    ingress_host="a1b2.elb.us-east-1.amazonaws.com",
    tls_secret="ingress-tls-secret",
)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        found.setdefault(obj["kind"], []).append(obj)
    return found


def test_the_release_is_the_objects_of_nvidias_chart() -> None:
    text = yaml.safe_dump_all(index_objects(RELEASE), sort_keys=False)
    assert_golden("k8s/index_release.yaml", text)


def test_one_viewer_and_nodes_minus_one_workers_each_with_its_gpus() -> None:
    kinds = by_kind(index_objects(RELEASE))
    (viewer,) = kinds["StatefulSet"]
    (worker,) = kinds["Deployment"]
    assert viewer["spec"]["replicas"] == 1
    assert worker["spec"]["replicas"] == 2
    for workload in (viewer, worker):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert container["resources"]["limits"] == {GPU_RESOURCE: "1"}
    (container,) = viewer["spec"]["template"]["spec"]["containers"]
    ports = [p["containerPort"] for p in container["ports"]]
    assert ports == [5555, 10000, 10001, 8080]
    assert viewer["spec"]["serviceName"] == "hpcrun-index-3-viewer-0"


def test_workers_find_the_viewer_through_the_headless_discovery_service() -> None:
    kinds = by_kind(index_objects(RELEASE))
    discovery = next(s for s in kinds["Service"] if s["metadata"]["name"].endswith("-viewer-0"))
    assert discovery["spec"]["clusterIP"] == "None"
    args = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("-dice::network::discovery_address") + 1] == "hpcrun-index-3-viewer-0"


def test_the_ingress_routes_the_release_path_to_the_viewer_port_behind_basic_auth() -> None:
    kinds = by_kind(index_objects(RELEASE))
    (ingress,) = kinds["Ingress"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/auth-type"] == "basic"
    assert annotations["nginx.ingress.kubernetes.io/auth-secret"] == "hpcrun-index-3-auth-secret"
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == "/hpcrun-index-3"
    viewer_service = next(
        s for s in kinds["Service"] if s["metadata"]["name"] == "hpcrun-index-3-viewer"
    )
    service_ports = {p["port"] for p in viewer_service["spec"]["ports"]}
    assert path["backend"]["service"]["port"]["number"] in service_ports


def test_every_object_is_labelled_managed_by_hpcrun_with_its_session() -> None:
    for obj in index_objects(RELEASE):
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == MANAGED_BY
        assert obj["metadata"]["labels"][SESSION_LABEL] == "3"
        assert obj["metadata"]["namespace"] == "hpcrun"


def test_without_ingress_or_auth_there_is_neither_and_one_node_has_no_workers() -> None:
    alone = IndexRelease(
        name="s", namespace="n", session="1", nodes=1, gpus_per_node=0, image="i",
        scene_files={"scene.prj": ""},
    )
    kinds = by_kind(index_objects(alone))
    assert "Ingress" not in kinds and "Secret" not in kinds
    assert kinds["Deployment"][0]["spec"]["replicas"] == 0
    container = kinds["StatefulSet"][0]["spec"]["template"]["spec"]["containers"][0]
    assert "resources" not in container  # no GPUs asked: none limited


@pytest.mark.parametrize("nodes", [0, -1])
def test_a_session_needs_a_node(nodes: int) -> None:
    with pytest.raises(ValueError, match="at least 1 node"):
        IndexRelease(
            name="s", namespace="n", session="1", nodes=nodes, gpus_per_node=1, image="i",
            scene_files={"scene.prj": ""},
        )


def test_the_password_is_new_each_time_and_only_its_hash_is_kept() -> None:
    first, second = new_password(), new_password()
    assert first != second and len(first) >= 22
    line = htpasswd("nvindex", first)
    assert first not in line and line.startswith("nvindex:$2")
    assert check(line, "nvindex", first)
    assert not check(line, "nvindex", second)
    with pytest.raises(ValueError, match="cannot be empty or hold"):
        htpasswd("a:b", first)


OPEN = replace(
    RELEASE,
    image="registry.example/hpcrun/open-renderer:0.1.0",
    pull_secret=None,
    data_location=None,
    renderer="open",
    agent_token="agents-token-of-the-release",
)


def test_the_open_renderers_release_is_golden() -> None:
    text = yaml.safe_dump_all(index_objects(OPEN), sort_keys=False)
    assert_golden("k8s/index_release_open.yaml", text)


def test_the_open_renderers_pods_say_who_they_are_in_the_names_its_launcher_reads() -> None:
    from hpcrun.node.viewer import pod

    kinds = by_kind(index_objects(OPEN))
    (viewer,) = kinds["StatefulSet"]
    (worker,) = kinds["Deployment"]
    read = {pod.ROLE, pod.RELEASE, pod.NODE, pod.POD, pod.VIEWER_HOST, pod.AGENT_PORT, pod.TOKEN}
    for workload, role in ((viewer, "viewer"), (worker, "worker")):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert set(env) == read
        assert env[pod.ROLE]["value"] == role
        assert env[pod.VIEWER_HOST]["value"] == OPEN.discovery_name
        assert env[pod.TOKEN]["valueFrom"]["secretKeyRef"]["name"] == OPEN.agents_secret_name
        assert container["command"] == ["hpcrun-nvindex-slurm"]
        assert {"name": "scene-files", "mountPath": "/scenes"} in container["volumeMounts"]
    secrets = {s["metadata"]["name"]: s for s in kinds["Secret"]}
    assert secrets[OPEN.agents_secret_name]["stringData"] == {"token": OPEN.agent_token}
    # The agent port is the one the discovery Service serves.
    (discovery,) = [s for s in kinds["Service"] if s["spec"].get("clusterIP") == "None"]
    ports = {p["port"] for p in discovery["spec"]["ports"]}
    assert int(env[pod.AGENT_PORT]["value"]) in ports


def test_the_open_renderers_image_runs_the_launcher_the_package_installs() -> None:
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert "hpcrun-nvindex-slurm" in scripts
    dockerfile = (root / "scripts" / "docker" / "open-renderer.Dockerfile").read_text()
    assert "pip install '.[viewer]'" in dockerfile
