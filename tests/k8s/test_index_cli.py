"""`hpcrun create / index / scale / index status / index stop / down` on a `backend:
kubernetes` cluster, through the real CLI against the real control plane: the objects of
NVIDIA's chart, Ready on distinct nodes, scaled in place, removed on stop; a GPU request
no node can hold fails with the scheduler's reason and leaves nothing; the session's
password is shown once and written nowhere."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, short_tempdir
from tests.k8s.conftest import ControlPlane

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

NAMESPACE = "index-cli"
HOST = "index.example.test"


@dataclass(frozen=True)
class Attached:
    home: Path
    plane: ControlPlane
    cluster_file: Path

    def cli(self, *args: str, check: bool = True) -> Any:
        return run_cli(*args, "--cluster", "kube", home=self.home, check=check, timeout=240)

    def json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    def labelled(self, selector: str) -> list[str]:
        done = self.plane.kubectl(
            "get", "configmap,secret,service,statefulset,deployment,ingress,pod",
            "-n", NAMESPACE, "-l", selector, "-o", "name",
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()


def write_cluster_file(path: Path, plane: ControlPlane, **extra: str) -> Path:
    lines = [
        "backend: kubernetes",
        "name: kube",
        f"kubeconfig: {plane.kubeconfig}",
        f"namespace: {NAMESPACE}",
        "index:",
        "  image: nvcr.io/nvidia/nvindex:test",
        "  pull_secret: null",
        "ingress:",
        f"  host: {HOST}",
        "  tls_secret: ingress-tls-secret",
    ]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def attached(control_plane: ControlPlane) -> Iterator[Attached]:
    home = short_tempdir("hk8h")
    made = control_plane.kubectl("create", "namespace", NAMESPACE)
    assert made.returncode == 0 or "AlreadyExists" in made.stderr, made.stderr
    cluster_file = write_cluster_file(home / "kube.yaml", control_plane)
    done = run_cli("create", "--config", str(cluster_file), home=home)
    assert "6 nodes, 12 GPUs" in done.stdout + done.stderr
    yield Attached(home, control_plane, cluster_file)
    run_cli("down", "--cluster", "kube", "--yes", "--purge", home=home, check=False)


def test_an_index_session_is_the_charts_objects_ready_scaled_in_place_and_stopped(
    attached: Attached,
) -> None:
    started = attached.json("index", "--nodes", "3", "--scene", "supernova")
    release = started["jobs"][0]["job_id"]
    assert started["status"] == "running"
    assert started["url"] == f"https://{HOST}/{release}"
    assert started["pods_ready"] == 3 and started["agents"] is None
    assert len(set(started["nodes"])) == 3  # the viewer and 2 workers on distinct nodes
    assert {(w["kind"], w["ready"], w["desired"]) for w in started["workloads"]} == {
        ("StatefulSet", 1, 1),
        ("Deployment", 2, 2),
    }
    password = started["login"]["password"]
    assert started["login"]["user"] == "nvindex" and len(password) >= 16

    objects = attached.labelled(f"hpcrun.io/session={release}")
    for wanted in (
        f"configmap/{release}-scenes",
        f"secret/{release}-auth-secret",
        f"service/{release}-viewer-0",
        f"service/{release}-viewer",
        f"statefulset.apps/{release}-viewer",
        f"deployment.apps/{release}-worker",
        f"ingress.networking.k8s.io/{release}",
    ):
        assert wanted in objects, objects
    scene = attached.plane.kubectl(
        "get", "configmap", f"{release}-scenes", "-n", NAMESPACE, "-o", "jsonpath={.data}"
    )
    assert "scene.prj" in scene.stdout

    # Shown once, stored nowhere: no file under HPCRUN_HOME holds the password.
    for path in attached.home.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path
    status = attached.json("index", "status")
    assert "login" not in status and status["pods_ready"] == 3

    grown = attached.json("scale", "+2")
    assert grown["pods_ready"] == 5 and len(set(grown["nodes"])) == 5
    assert grown["jobs"][0]["job_id"] == release  # the same release, resized in place
    shrunk = attached.json("scale", "-1")
    assert shrunk["pods_ready"] == 4
    workers = attached.plane.kubectl(
        "get", "deployment", f"{release}-worker", "-n", NAMESPACE,
        "-o", "jsonpath={.spec.replicas}",
    )
    assert workers.stdout == "3"

    text = attached.cli("index", "status").stdout
    assert f"release {release}: 4/4 pods ready, 4 nodes" in text
    assert "Deployment " + release + "-worker: 3 of 3 Ready" in text

    stopped = attached.json("index", "stop")
    assert stopped["status"] == "stopped"
    assert attached.labelled(f"hpcrun.io/session={release}") == []


def test_more_gpus_than_a_node_has_fail_with_the_schedulers_reason_and_leave_nothing(
    attached: Attached,
) -> None:
    done = attached.cli("index", "--nodes", "2", "--gpus-per-node", "3", check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stderr
    assert "Insufficient nvidia.com/gpu" in said, said
    assert "Traceback" not in said
    assert attached.labelled("app.kubernetes.io/managed-by=hpcrun") == []
    last = attached.json("index", "status", "--all")[-1]
    assert last["status"] == "failed" and "Insufficient nvidia.com/gpu" in last["detail"]


def test_status_shows_nodes_with_gpus_and_slurm_commands_are_refused(attached: Attached) -> None:
    shown = attached.json("status")
    assert shown["backend"] == "kubernetes" and shown["state"] == "up"
    assert len(shown["kube_nodes"]) == 6
    assert all(n["ready"] and n["gpus"] == 2 for n in shown["kube_nodes"])
    refused = attached.cli("submit", "--", "true", check=False)
    assert refused.returncode != 0
    assert "has no Slurm scheduler" in refused.stderr, refused.stderr
    refused = attached.cli("score", "status", check=False)
    assert refused.returncode == 1, refused.stderr
    said = refused.stderr.strip()
    assert said.startswith("error: cluster 'kube' (kubernetes) has no Slurm scheduler, "
                           "which hpcrun score needs"), said
    # render goes to the render farm here (tests/k8s/test_farm_cli.py), which asks for the
    # frames before it makes or uploads anything
    blend = attached.home / "scene.blend"
    blend.write_bytes(b"BLENDER-v304")
    farm = attached.cli("render", str(blend), check=False)
    assert farm.returncode == 2 and "render on the farm needs --frames A-B" in farm.stderr
    none = attached.cli("farm", "status", check=False)  # none was made
    assert none.returncode == 2 and "no render farm on cluster kube" in none.stderr


def test_a_cluster_hpcrun_may_not_reach_is_refused_at_create(control_plane: ControlPlane) -> None:
    home = short_tempdir("hk8x")
    cluster_file = write_cluster_file(home / "kube.yaml", control_plane, namespace="no-such-ns")
    text = cluster_file.read_text().replace(f"namespace: {NAMESPACE}\n", "")
    cluster_file.write_text(text)
    done = run_cli("create", "--config", str(cluster_file), home=home, check=False)
    assert done.returncode == 1
    assert "namespace no-such-ns" in done.stderr and "Traceback" not in done.stderr
    assert run_cli("status", "--cluster", "kube", home=home, check=False).returncode != 0


CHART = Path(__file__).with_name("nvindex-chart")


def test_a_chart_to_nvidias_values_contract_is_installed_scaled_and_uninstalled_by_helm(
    attached: Attached, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{attached.plane.bin}:{os.environ['PATH']}")
    started = attached.json("index", "--nodes", "2", "--chart", str(CHART))
    release = started["jobs"][0]["job_id"]
    # The chart's own names (fullname = release-chart) and its Ingress path, as NVIDIA's.
    assert started["url"] == f"https://{HOST}/{release}-nvindex"
    assert started["pods_ready"] == 2 and len(set(started["nodes"])) == 2
    password = started["login"]["password"]
    helm = [str(attached.plane.bin / "helm"), "--kubeconfig", str(attached.plane.kubeconfig),
            "-n", NAMESPACE]
    values = json.loads(
        subprocess.run([*helm, "get", "values", release, "-o", "json"],
                       capture_output=True, text=True, check=True).stdout
    )
    assert values["nodeCount"] == 2 and values["gpuCount"] == 2
    assert values["scene"] == "scenes/00-supernova_ncsa_small"
    assert values["ingress"] == {"enabled": True, "host": HOST,
                                 "tls": {"secretName": "ingress-tls-secret"}}
    assert values["auth"]["username"] == "nvindex"
    scene = attached.plane.kubectl(
        "get", "configmap", f"{release}-nvindex-scenes", "-n", NAMESPACE,
        "-o", "jsonpath={.data.scene\\.prj}",
    )
    assert "the chart's own copy of the scene" in scene.stdout

    grown = attached.json("scale", "+2")
    assert grown["pods_ready"] == 4 and grown["jobs"][0]["job_id"] == release
    history = subprocess.run([*helm, "history", release, "-o", "json"],
                             capture_output=True, text=True, check=True).stdout
    assert len(json.loads(history)) == 2  # one `helm upgrade --reuse-values --set nodeCount=4`
    assert attached.json("scale", "-1")["pods_ready"] == 3

    for path in attached.home.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path

    assert attached.json("index", "stop")["status"] == "stopped"
    listed = subprocess.run([*helm, "list", "-q"], capture_output=True, text=True, check=True)
    assert release not in listed.stdout
    assert attached.labelled(f"app.kubernetes.io/instance={release}") == []


def test_a_chart_directory_without_chart_yaml_is_refused_before_anything_exists(
    attached: Attached, tmp_path: Path
) -> None:
    done = attached.cli("index", "--nodes", "2", "--chart", str(tmp_path), check=False)
    assert done.returncode == 2
    assert "not a helm chart (no Chart.yaml there)" in done.stderr


def test_index_tunnel_forwards_the_viewer_through_the_apis_port_forward(
    attached: Attached, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No container runs here, so the viewer is a stand-in at the edge: a local HTTP
    server that kwok's PortForward object makes the viewer pod's port 8080."""
    import http.server
    import signal
    import threading
    import urllib.request

    from tests.conftest import HPCRUN, cli_env, free_port

    monkeypatch.setenv("PATH", f"{attached.plane.bin}:{os.environ['PATH']}")
    (tmp_path / "index.html").write_text("the viewer's page\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    viewer = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=viewer.serve_forever, daemon=True).start()
    release = attached.json("index", "--nodes", "2")["jobs"][0]["job_id"]
    forward = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "PortForward",
        "metadata": {"name": f"{release}-viewer-0", "namespace": NAMESPACE},
        "spec": {"forwards": [{"ports": [8080], "target": {
            "port": viewer.server_address[1], "address": "127.0.0.1"}}]},
    }
    spec = tmp_path / "forward.json"
    spec.write_text(json.dumps(forward))
    assert attached.plane.kubectl("apply", "-f", str(spec)).returncode == 0
    port = free_port()
    tunnel = subprocess.Popen(
        [*HPCRUN, "index", "tunnel", "--cluster", "kube", "--tunnel-port", str(port)],
        env=cli_env(attached.home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert tunnel.stdout is not None
        line = tunnel.stdout.readline()
        if not line:
            tunnel.wait(10)
            raise AssertionError(tunnel.stderr.read() if tunnel.stderr else "no output")
        assert f"Tunnel: http://127.0.0.1:{port} -> the viewer at {release}-viewer." in line, line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.read().decode() == "the viewer's page\n"
    finally:
        tunnel.send_signal(signal.SIGINT)
        _, err = tunnel.communicate(timeout=30)
        viewer.shutdown()
    assert tunnel.returncode == 0 and "tunnel closed" in err
    assert attached.json("index", "stop")["status"] == "stopped"


def test_the_open_renderer_runs_from_its_image_with_its_pods_identity(attached: Attached) -> None:
    started = attached.json("index", "--nodes", "3", "--renderer", "open")
    release = started["jobs"][0]["job_id"]
    assert started["renderer"] == "open" and started["pods_ready"] == 3
    # No container runs under the test control plane: no viewer answers, so no agents.
    assert started["agents"] is None
    pods = json.loads(attached.plane.kubectl(
        "get", "pods", "-n", NAMESPACE, "-l", f"app.kubernetes.io/instance={release}",
        "-o", "json").stdout)["items"]
    assert len(pods) == 3
    for item in pods:
        (container,) = item["spec"]["containers"]
        assert container["image"].startswith("hpcrun/open-renderer:")
        env = {e["name"]: e for e in container["env"]}
        assert env["HPCRUN_RELEASE"]["value"] == release
    assert f"secret/{release}-agents" in attached.labelled(f"hpcrun.io/session={release}")
    assert attached.json("index", "stop")["status"] == "stopped"


def test_slurm_only_viewer_flags_are_refused_on_kubernetes(attached: Attached) -> None:
    done = attached.cli("index", "--nodes", "2", "--renderer", "open", "--insecure-public",
                        check=False)
    assert done.returncode == 2 and "the ingress guards every session" in done.stderr
    done = attached.cli("index", "--nodes", "2", "--renderer", "open", "--chart", str(CHART),
                        check=False)
    assert done.returncode == 2 and "leave out --chart or --renderer open" in done.stderr
    assert attached.labelled("app.kubernetes.io/managed-by=hpcrun") == []


def test_down_ends_every_session_of_the_cluster_a_charts_release_too(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{control_plane.bin}:{os.environ['PATH']}")
    home = short_tempdir("hk8d")
    run_cli("create", "--config", str(write_cluster_file(home / "k.yaml", control_plane)),
            home=home)
    own = json.loads(run_cli("index", "--nodes", "2", "--json", home=home).stdout)
    chart = json.loads(
        run_cli("index", "--nodes", "2", "--chart", str(CHART), "--json", home=home).stdout
    )
    run_cli("down", "--yes", home=home)
    for started in (own, chart):
        release = started["jobs"][0]["job_id"]
        left = control_plane.kubectl(
            "get", "statefulset,deployment,service,configmap,secret,ingress", "-n", NAMESPACE,
            "-l", f"app.kubernetes.io/instance={release}", "-o", "name",
        )
        assert left.stdout.split() == [], left.stdout
    helm = subprocess.run(
        [str(control_plane.bin / "helm"), "--kubeconfig", str(control_plane.kubeconfig), "-n",
         NAMESPACE, "list", "-q"], capture_output=True, text=True, check=True,
    )
    assert chart["jobs"][0]["job_id"] not in helm.stdout
