"""`hpcrun flare up / status / down` on a `backend: kubernetes` cluster, through the real
CLI against the real control plane (kwok runs no container, so FLARE itself does not run
here and `up` is asked not to wait for registrations): the namespace of the system holds a
Secret per kit with the kit's own bytes, the server's claim, a Deployment per participant
and the Service `server` on 8002/8003; no ConfigMap holds kit material; the pods are
reported per participant; `down` removes all of it; no key reaches HPCRUN_HOME outside the
run directory's kits."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, short_tempdir
from tests.k8s.conftest import ControlPlane

pytest.importorskip("nvflare")

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

NAMESPACE = "hpcrun-flare-1"  # system 1 of a new HPCRUN_HOME


@pytest.fixture(scope="module")
def home(control_plane: ControlPlane) -> Iterator[Path]:
    home = short_tempdir("hk8f")
    cluster_file = home / "kube.yaml"
    cluster_file.write_text(
        f"backend: kubernetes\nname: kube\nkubeconfig: {control_plane.kubeconfig}\n"
        "namespace: default\n"
    )
    run_cli("create", "--config", str(cluster_file), home=home)
    # No storage provisioner on the test cluster (EKS has gp2): a volume for the claim.
    volume = home / "pv.json"
    volume.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": "flare-cli-test-volume"},
                "spec": {
                    "capacity": {"storage": "5Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": "/tmp/flare-cli-test-volume"},
                    "claimRef": {"namespace": NAMESPACE, "name": "flare-1-server-workspace"},
                },
            }
        )
    )
    assert control_plane.kubectl("apply", "-f", str(volume)).returncode == 0
    try:
        yield home
    finally:
        run_cli("flare", "down", "--cluster", "kube", home=home, check=False, timeout=240)
        control_plane.kubectl("delete", "pv", "flare-cli-test-volume", "--wait=false")
        run_cli("down", "--cluster", "kube", "--yes", "--purge", home=home, check=False)


def flare(home: Path, *args: str) -> Any:
    done = run_cli("flare", *args, "--cluster", "kube", "--json", home=home, timeout=240)
    return json.loads(done.stdout)


def kubectl_json(plane: ControlPlane, *args: str) -> Any:
    done = plane.kubectl("get", *args, "-n", NAMESPACE, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_up_creates_the_guides_objects_with_kits_in_secrets_and_down_removes_them(
    home: Path, control_plane: ControlPlane
) -> None:
    up = flare(home, "up", "--sites", "2", "--gpus-per-site", "1", "--no-wait")
    assert up["status"] == "starting" and up["run_dir"].startswith(str(home))
    kits = Path(up["run_dir"]) / "kits"

    secrets = {s["metadata"]["name"]: s for s in kubectl_json(control_plane, "secrets")["items"]}
    for name in ("server", "site-1", "site-2"):
        secret = secrets[f"flare-1-kit-{name}"]
        data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        for folder in ("startup", "local"):
            for path in (kits / name / folder).iterdir():
                assert data[f"{folder}.{path.name}"] == path.read_bytes(), (name, path)
    # Storage points at the pods' workspace, not FLARE's shared /tmp/nvflare.
    resources = base64.b64decode(secrets["flare-1-kit-server"]["data"]["local.resources.json"])
    assert b"/workspace/nvfl/store/server" in resources and b"/tmp/nvflare" not in resources

    keys = [p.read_bytes() for p in kits.rglob("*.key")]
    for config_map in kubectl_json(control_plane, "configmaps")["items"]:
        text = json.dumps(config_map.get("data") or {})
        assert "PRIVATE KEY" not in text and not any(
            k.decode().strip().splitlines()[1] in text for k in keys
        ), config_map["metadata"]["name"]

    service = kubectl_json(control_plane, "service", "server")
    assert sorted(p["port"] for p in service["spec"]["ports"]) == [8002, 8003]
    claim = kubectl_json(control_plane, "pvc", "flare-1-server-workspace")
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    deployments = {
        d["metadata"]["name"]: d for d in kubectl_json(control_plane, "deployments")["items"]
    }
    assert set(deployments) == {"flare-1-server", "flare-1-site-1", "flare-1-site-2"}
    site = deployments["flare-1-site-1"]["spec"]["template"]["spec"]["containers"][0]
    assert site["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    assert site["image"].startswith("nvflare/nvflare:")

    # kwok marks the pods Running: status tells each participant's pod.
    status = flare(home, "status")
    assert status["server"]["job_id"] == "deployment/flare-1-server"
    assert [s["task"] for s in status["sites"]] == ["flare-1-site-1", "flare-1-site-2"]

    stray = [
        p
        for p in home.rglob("*")
        if p.is_file()
        and b"PRIVATE KEY-----" in p.read_bytes()
        and not p.is_relative_to(kits)
        and not p.is_relative_to(Path(up["run_dir"]) / "provision")
    ]
    assert not stray, stray

    down = flare(home, "down")
    assert down["status"] == "stopped"
    gone = control_plane.kubectl("get", "namespace", NAMESPACE)
    assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stdout


def test_port_and_python_are_refused_on_kubernetes(home: Path) -> None:
    done = run_cli("flare", "up", "--port", "9000", "--cluster", "kube", home=home, check=False)
    assert done.returncode == 2 and "--port and --python are for Slurm" in done.stderr
