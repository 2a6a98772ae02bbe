"""`hpcrun serve triton / status / stop` through the real CLI, against the real control
plane (kwok runs no container: the pods are Ready without a tritonserver in them) and a
real moto S3: the repository lands in the bucket as FIL expects, the Deployment, Service
and autoscaler exist and the pods are Ready, bad input is refused before anything exists,
and a distinctive AWS secret key planted in the CLI's environment appears in no object,
no file under HPCRUN_HOME and no output."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.aws import MotoServer, client, moto_server
from tests.conftest import HPCRUN, run_cli, short_tempdir
from tests.k8s.conftest import ControlPlane

np = pytest.importorskip("numpy")
xgb = pytest.importorskip("xgboost")

pytestmark = [pytest.mark.k8s, pytest.mark.aws, pytest.mark.slow]

BUCKET = "hpcrun-models"
PLANTED = "hpcrunPlantedSecretKey0123456789abcdefXYZ"  # would show in any dump


@dataclass(frozen=True)
class Setup:
    home: Path
    moto: MotoServer
    model: Path
    plane: ControlPlane

    def env(self) -> dict[str, str]:
        return {**self.moto.env(), "HPCRUN_HOME": str(self.home), "AWS_SECRET_ACCESS_KEY": PLANTED}

    def serve(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*HPCRUN, "serve", *args, "--cluster", "kube"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=240,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def kubectl_json(self, *args: str) -> Any:
        done = self.plane.kubectl("get", *args, "-n", "default", "-o", "json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def setup(control_plane: ControlPlane) -> Iterator[Setup]:
    home = short_tempdir("hk8s")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 6)).astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
        xgb.DMatrix(x, label=(x[:, 0] > 0).astype(np.float32)),
        num_boost_round=5,
    )
    model = home / "model.json"
    booster.save_model(model)
    with moto_server(home) as moto:
        client(moto, "s3").create_bucket(Bucket=BUCKET)
        cluster_file = home / "kube.yaml"
        cluster_file.write_text(
            f"backend: kubernetes\nname: kube\nkubeconfig: {control_plane.kubeconfig}\n"
            f"namespace: default\nserve:\n  store: s3://{BUCKET}/fraud\n"
        )
        run_cli("create", "--config", str(cluster_file), home=home)
        found = Setup(home, moto, model, control_plane)
        try:
            yield found
        finally:
            for name in ("fraud", "triton", "busy"):
                found.serve("stop", name, check=False)
            run_cli("down", "--cluster", "kube", "--yes", "--purge", home=home, check=False)


def test_serve_exports_to_s3_creates_the_objects_and_leaks_no_secret(setup: Setup) -> None:
    done = setup.serve(
        "triton",
        "-m",
        str(setup.model),
        "--name",
        "fraud",
        "--max",
        "3",
        "--cpu",
        "500m",
        "--json",
    )
    up = json.loads(done.stdout)
    assert up["status"] == "up", up
    assert up["repository"] == f"s3://{BUCKET}/fraud/model_repository"
    assert up["live"]["ready"] >= 1 and up["live"]["endpoint"] == "fraud.default.svc:8001"
    keys = {o["Key"] for o in client(setup.moto, "s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {
        "fraud/model_repository/hpcrun_model/config.pbtxt",
        "fraud/model_repository/hpcrun_model/1/xgboost.json",
    }
    config = (
        client(setup.moto, "s3")
        .get_object(Bucket=BUCKET, Key="fraud/model_repository/hpcrun_model/config.pbtxt")["Body"]
        .read()
        .decode()
    )
    assert 'backend: "fil"' in config and "KIND_GPU" in config  # 1 GPU per replica
    deployment = setup.kubectl_json("deployment", "fraud")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "--model-repository=s3://hpcrun-models/fraud/model_repository" in container["args"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    hpa = setup.kubectl_json("hpa", "fraud")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert setup.kubectl_json("service", "fraud")["spec"]["ports"][1]["port"] == 8001

    dump = setup.plane.kubectl("get", "all,secrets,configmaps,hpa", "-A", "-o", "yaml")
    assert dump.returncode == 0 and "fraud" in dump.stdout
    assert PLANTED not in dump.stdout
    assert PLANTED not in done.stdout + done.stderr
    for path in setup.home.rglob("*"):
        if path.is_file() and path.name != "moto.log":
            assert PLANTED.encode() not in path.read_bytes(), path


def test_status_shows_replicas_the_autoscaler_and_the_endpoint(setup: Setup) -> None:
    shown = json.loads(setup.serve("status", "--json").stdout)
    fraud = next(v for v in shown if v["name"] == "fraud")
    assert fraud["status"] == "up"
    live = fraud["live"]
    assert live["exists"] and live["desired"] >= 1
    assert "cpu" in live["metric"] and "target 50%" in live["metric"]
    text = setup.serve("status", "fraud").stdout
    assert "fraud on kube: up" in text and "fraud.default.svc:8001" in text


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--min", "3", "--max", "2"), "--min 3 is above --max 2"),
        (("--gpus-per-replica", "9"), "no node of cluster kube has that many GPUs"),
        (("--store", "s3://no-such-bucket-hpcrun/x"), "no-such-bucket-hpcrun"),
        (("--target-metric", "queue"), "NAME=VALUE"),
        (("--name", "render-farm"), "is the render farm's"),
    ],
)
def test_bad_input_is_refused_before_anything_exists(
    setup: Setup, args: tuple[str, ...], said: str
) -> None:
    done = setup.serve("triton", "-m", str(setup.model), "--name", "bad", *args, check=False)
    assert done.returncode != 0
    assert said in done.stderr, done.stderr
    assert setup.plane.kubectl("get", "deployment", "bad", "-n", "default").returncode != 0


def test_a_repository_triton_would_refuse_is_named(setup: Setup) -> None:
    s3 = client(setup.moto, "s3")
    s3.put_object(Bucket=BUCKET, Key="broken/m/config.pbtxt", Body=b'name: "m"\nbackend: fil\n')
    done = setup.serve(
        "triton", "--model-repository", f"s3://{BUCKET}/broken", "--name", "broken", check=False
    )
    assert done.returncode != 0
    assert f"s3://{BUCKET}/broken/m/config.pbtxt: Triton would refuse" in done.stderr


def test_stop_removes_every_object(setup: Setup) -> None:
    setup.serve("triton", "-m", str(setup.model), "--gpus-per-replica", "0", "--no-wait")
    assert setup.plane.kubectl("get", "deployment", "triton", "-n", "default").returncode == 0
    stopped = json.loads(setup.serve("stop", "triton", "--json").stdout)
    assert stopped["objects_removed"] == 3
    for kind in ("deployment", "service", "hpa"):
        assert setup.plane.kubectl("get", kind, "triton", "-n", "default").returncode != 0
    shown = json.loads(setup.serve("status", "--json").stdout)
    assert "triton" not in [v["name"] for v in shown]


def _metrics_api(plane: ControlPlane) -> None:
    served = plane.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes")
    if served.returncode != 0:
        message = f"the test control plane serves no metrics API: {served.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _use_cpu(setup: Setup, millicores: int) -> None:
    """kwok reports each pod's CPU from this annotation (metrics-server reads it)."""
    done = setup.plane.kubectl(
        "annotate",
        "pods",
        "-n",
        "default",
        "-l",
        "app.kubernetes.io/instance=busy",
        "--overwrite",
        f"kwok.x-k8s.io/usage-cpu={millicores}m",
    )
    assert done.returncode == 0, done.stderr


def _until(what: str, check: Any, timeout_s: float = 240) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s:g} s: {what}"
        time.sleep(1)
    return time.monotonic() - started


def test_the_autoscaler_scales_out_under_load_and_back_in(setup: Setup) -> None:
    _metrics_api(setup.plane)
    setup.serve(
        "triton",
        "-m",
        str(setup.model),
        "--name",
        "busy",
        "--gpus-per-replica",
        "0",
        "--cpu",
        "500m",
        "--max",
        "3",
        "--scale-down-after",
        "0",
    )

    def live() -> dict[str, Any]:
        shown = json.loads(setup.serve("status", "busy", "--json").stdout)
        return dict(shown[0]["live"])

    _use_cpu(setup, 900)  # 180 % of what each replica asks for; the target is 50 %
    out_s = _until(
        "2 replicas ready under load",
        lambda: (_use_cpu(setup, 900), live())[1]["ready"] >= 2,
    )
    now = live()
    assert now["autoscaler_desired"] >= 2 and "cpu" in now["metric"]
    _use_cpu(setup, 10)
    in_s = _until("back to 1 replica when the load is gone", lambda: live()["desired"] == 1)
    print(f"scale out: {out_s:.0f} s to 2 ready; scale in: {in_s:.0f} s to 1")
