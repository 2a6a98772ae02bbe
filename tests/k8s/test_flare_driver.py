"""A FLARE system on the real control plane (tests/k8s/conftest.py): kits that FLARE's own
provisioner made go up as the driver's objects in the system's namespace (its Secrets hold
the kits' bytes, no ConfigMap does), the server and both sites become Ready (kwok runs
no container: the pods are what is tested, not FLARE), a refusal names the field, and a
stop leaves nothing."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcrun.k8s.apply import Applier, Rejected, connect
from hpcrun.k8s.flare import KubernetesFlareDriver
from hpcrun.scheduler import TaskState
from hpcrun.workloads.flare import Participants, default_project, read_project
from tests.k8s.conftest import ControlPlane

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

NVFLARE = Path(sys.executable).parent / "nvflare"
IMAGE = "nvflare/nvflare:2.9.0"
SYSTEM = 41


class Steps:
    def __init__(self) -> None:
        self.said: list[str] = []

    def step(self, message: str) -> None:
        self.said.append(message)

    def advance(self, done: int, total: int, message: str) -> None:
        self.said.append(message)


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Participants, Path]:
    """Two sites' kits from `nvflare provision` of hpcrun's default project."""
    if not NVFLARE.exists():
        pytest.skip(f"no nvflare beside {sys.executable}")
    root = tmp_path_factory.mktemp("flare")
    text = default_project(2)
    (root / "project.yml").write_text(text)
    done = subprocess.run(
        [str(NVFLARE), "provision", "-p", "project.yml", "-w", "WS", "--force"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return read_project(text, "project.yml"), root / "WS" / "hpcrun" / "prod_00"


def kit_files(kit: Path) -> dict[str, bytes]:
    return {
        p.relative_to(kit).as_posix().replace("/", ".", 1): p.read_bytes()
        for part in ("startup", "local")
        for p in (kit / part).rglob("*")
        if p.is_file()
    }


@pytest.fixture
def client(control_plane: ControlPlane) -> Any:
    return connect(str(control_plane.kubeconfig))


@pytest.fixture
def workspace_volume(client: Any) -> Iterator[None]:
    """The volume the server's claim binds to: this cluster has no storage provisioner
    (EKS gives gp2), so a hostPath volume waits for exactly that claim."""
    from lightkube.resources.core_v1 import PersistentVolume

    name = f"flare-{SYSTEM}-test-volume"
    Applier(client).apply(
        [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name},
                "spec": {
                    "capacity": {"storage": "5Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": f"/tmp/{name}"},
                    "claimRef": {
                        "namespace": f"hpcrun-flare-{SYSTEM}",
                        "name": f"flare-{SYSTEM}-server-workspace",
                    },
                },
            }
        ]
    )
    yield
    client.delete(PersistentVolume, name)


def names(client: Any, resource: Any, namespace: str) -> set[str]:
    return {o.metadata.name for o in client.list(resource, namespace=namespace)}


def test_a_system_comes_up_in_its_namespace_ready_and_goes_without_a_trace(
    client: Any, provisioned: tuple[Participants, Path], workspace_volume: None
) -> None:
    from lightkube import ApiError
    from lightkube.resources.apps_v1 import Deployment
    from lightkube.resources.core_v1 import (
        ConfigMap,
        Namespace,
        PersistentVolumeClaim,
        Secret,
        Service,
    )

    people, kits = provisioned
    driver = KubernetesFlareDriver(client)
    namespace = driver.namespace(SYSTEM)
    assert namespace == f"hpcrun-flare-{SYSTEM}"
    assert driver.admin_host(SYSTEM) == f"server.{namespace}.svc"
    # The kits name the server by the Service's name, on its ports.
    assert '"target": "server:8002"' in (kits / "site-1/startup/fed_client.json").read_text()
    steps = Steps()
    began = time.monotonic()
    driver.start(SYSTEM, people, kits, image=IMAGE, gpus_per_site=1, progress=steps)

    labels = client.get(Namespace, namespace).metadata.labels
    assert labels["hpcrun.io/session"] == f"flare-{SYSTEM}"
    assert labels["app.kubernetes.io/managed-by"] == "hpcrun"
    assert names(client, Deployment, namespace) == {
        f"flare-{SYSTEM}-server",
        f"flare-{SYSTEM}-site-1",
        f"flare-{SYSTEM}-site-2",
    }
    assert names(client, PersistentVolumeClaim, namespace) == {f"flare-{SYSTEM}-server-workspace"}
    service = client.get(Service, "server", namespace=namespace)
    assert {p.name: p.port for p in service.spec.ports} == {"fl": 8002, "admin": 8003}

    secrets = {
        s.metadata.name: s
        for s in client.list(
            Secret, namespace=namespace, labels={"hpcrun.io/session": f"flare-{SYSTEM}"}
        )
    }
    assert set(secrets) == {f"flare-{SYSTEM}-kit-{p}" for p in ("server", "site-1", "site-2")}
    material = []
    for who in ("server", "site-1", "site-2"):
        expected = kit_files(kits / who)
        data = secrets[f"flare-{SYSTEM}-kit-{who}"].data
        assert {k: base64.b64decode(v) for k, v in data.items()} == expected
        material += [v.decode().strip() for v in expected.values() if len(v.strip()) > 40]
    assert any("PRIVATE KEY" in m for m in material)
    for config_map in client.list(ConfigMap, namespace=namespace):
        for value in (config_map.data or {}).values():
            assert not [m for m in material if m in value or value.strip() == m], (
                f"ConfigMap {config_map.metadata.name} holds kit material"
            )

    deadline = time.monotonic() + 45
    while True:
        server, sites = driver.states(SYSTEM, people)
        tasks = [server, *sites.values()]
        if len(sites) == 2 and all(t is not None and t.state is TaskState.RUNNING for t in tasks):
            break
        assert time.monotonic() < deadline, f"not Ready: {tasks}"
        time.sleep(0.5)
    assert server is not None
    assert (server.ref.id, server.index, server.native) == (f"flare-{SYSTEM}-server", None, "Ready")
    assert [(i, t.ref.id, t.native) for i, t in sorted(sites.items())] == [
        (1, f"flare-{SYSTEM}-site-1", "Ready"),
        (2, f"flare-{SYSTEM}-site-2", "Ready"),
    ]
    assert all(t.node and t.node.startswith("gpu-node-") for t in [server, *sites.values()])
    up_s = time.monotonic() - began

    removed = driver.stop(SYSTEM, steps)
    # 3 Secrets, the Service, 3 Deployments, the claim, the namespace.
    assert removed == 9, steps.said
    try:
        left = client.get(Namespace, namespace)
        assert left.status.phase == "Terminating"
    except ApiError as exc:
        assert exc.status.code == 404
    for resource in (Deployment, Secret, Service, PersistentVolumeClaim):
        assert not names(client, resource, namespace), resource
    assert driver.states(SYSTEM, people) == (None, {})
    assert driver.stop(SYSTEM, steps) == 0  # again: nothing there, nothing to do
    assert time.monotonic() - began < 60, (
        f"up in {up_s:.1f} s, all in {time.monotonic() - began:.1f} s"
    )


def test_a_refused_object_is_named_by_its_field_and_stop_cleans_up(
    client: Any, provisioned: tuple[Participants, Path]
) -> None:
    people, kits = provisioned
    driver = KubernetesFlareDriver(client)
    with pytest.raises(Rejected, match=r"Deployment flare-42-server: .*image: Required value"):
        driver.start(42, people, kits, image="", gpus_per_site=None, admin_pod=True)
    assert driver.stop(42) >= 1  # the namespace, and what was applied before the refusal
    _server, sites = driver.states(42, people)
    assert sites == {}


def test_what_keeps_a_participant_pending_is_the_schedulers_own_word(
    client: Any, provisioned: tuple[Participants, Path]
) -> None:
    """No node has 99 GPUs for a site; no volume is there for this server's claim."""
    people, kits = provisioned
    driver = KubernetesFlareDriver(client)
    driver.start(43, people, kits, image=IMAGE, gpus_per_site=99)
    try:
        deadline = time.monotonic() + 30
        while True:
            server, sites = driver.states(43, people)
            tasks = [server, *sites.values()]
            if len(sites) == 2 and all(
                t is not None and "nodes are available" in t.native for t in tasks
            ):
                break
            assert time.monotonic() < deadline, f"not refused by the scheduler: {tasks}"
            time.sleep(0.5)
        assert all(t is not None and t.state is TaskState.PENDING and t.node is None for t in tasks)
        assert server is not None and "PersistentVolumeClaim" in server.native, server.native
        assert all("Insufficient nvidia.com/gpu" in t.native for t in sites.values()), sites
        assert server.native.startswith("Pending: 0/6 nodes are available")
    finally:
        assert driver.stop(43) == 9
