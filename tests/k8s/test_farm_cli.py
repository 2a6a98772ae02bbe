"""`hpcrun farm up / status / down` and `hpcrun render` on a Kubernetes cluster, through the
real CLI, against the real control plane, a real moto server (S3 + SQS) and real Blender.
kwok runs no container, so the worker pods are Ready with nothing in them: the workers
here are two real worker processes (`python -m hpcrun.node.farm worker`) on this machine,
fed by the same queue and bucket the Deployment's pods are told to use. Proves: the
farm's objects (Deployment, autoscaler, no Service, no credential), the queues with their
dead-letter redrive, a 6-frame run rendered to PNGs and an mp4 in the bucket, the same
command again sending nothing (every frame there), and `farm down` removing it all."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.aws import MotoServer, client, moto_server
from tests.conftest import HPCRUN, run_cli, short_tempdir
from tests.e2e.test_render import GENERATOR, require_blender
from tests.k8s.conftest import ControlPlane

pytestmark = [pytest.mark.k8s, pytest.mark.aws, pytest.mark.blender, pytest.mark.slow]

BUCKET = "hpcrun-renders"
PLANTED = "hpcrunPlantedFarmSecret0123456789abcdefXYZ"
TINY = ["--resolution", "64x36", "--engine", "BLENDER_WORKBENCH"]


@dataclass(frozen=True)
class Farm:
    home: Path
    moto: MotoServer
    blend: Path
    plane: ControlPlane

    def env(self) -> dict[str, str]:
        return {**self.moto.env(), "HPCRUN_HOME": str(self.home), "AWS_SECRET_ACCESS_KEY": PLANTED}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*HPCRUN, *args, "--cluster", "kube"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done


@pytest.fixture(scope="module")
def farm(control_plane: ControlPlane) -> Iterator[Farm]:
    require_blender()
    home = short_tempdir("hk8r")
    blend = home / "ball.blend"
    subprocess.run(
        ["blender", "-b", "--factory-startup", "--python-exit-code", "1", "--python",
         str(GENERATOR), "--", str(blend), "--frames", "6"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    with moto_server(home) as moto:
        client(moto, "s3").create_bucket(Bucket=BUCKET)
        cluster_file = home / "kube.yaml"
        cluster_file.write_text(
            f"backend: kubernetes\nname: kube\nkubeconfig: {control_plane.kubeconfig}\n"
            f"namespace: default\nfarm:\n  store: s3://{BUCKET}/farm\n"
        )
        run_cli("create", "--config", str(cluster_file), home=home)
        found = Farm(home, moto, blend, control_plane)
        try:
            yield found
        finally:
            found.cli("farm", "down", check=False)
            run_cli("down", "--cluster", "kube", "--yes", "--purge", home=home, check=False)


def workers(
    farm: Farm, queue: str, count: int, path: str | None = None
) -> list[subprocess.Popen[bytes]]:
    """What the Deployment's pods run, as processes here (kwok runs no container)."""
    started = []
    for index in range(count):
        workdir = farm.home / f"worker-{index}"
        workdir.mkdir(exist_ok=True)
        log = (farm.home / f"worker-{index}.log").open("wb")
        started.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hpcrun.node.farm",
                    "worker",
                    "--queue",
                    queue,
                    "--bucket",
                    BUCKET,
                    "--prefix",
                    "farm",
                    "--workdir",
                    str(workdir),
                    "--wait-s",
                    "1",
                ],
                env={**farm.moto.env(), "PATH": path or os.environ["PATH"]},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return started


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_farm_up_makes_the_queues_and_the_scaled_workers_without_credentials(farm: Farm) -> None:
    up = json.loads(
        farm.cli("farm", "up", "--store", f"s3://{BUCKET}/farm", "--max", "4", "--json").stdout
    )
    assert up["status"] == "up" and up["store"] == f"s3://{BUCKET}/farm"
    sqs = client(farm.moto, "sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=up["queue"], AttributeNames=["All"])
    redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert redrive["maxReceiveCount"] == 3 and redrive["deadLetterTargetArn"].endswith("-dead")
    deployment = json.loads(
        farm.plane.kubectl("get", "deployment", "render-farm", "-n", "default", "-o", "json").stdout
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["-m", "hpcrun.node.farm"]
    assert up["queue"] in container["args"] and "ports" not in container
    hpa = json.loads(
        farm.plane.kubectl("get", "hpa", "render-farm", "-n", "default", "-o", "json").stdout
    )
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert farm.plane.kubectl("get", "service", "render-farm", "-n", "default").returncode != 0
    dump = farm.plane.kubectl("get", "all,secrets,configmaps,hpa", "-A", "-o", "yaml")
    assert "render-farm" in dump.stdout and PLANTED not in dump.stdout


def test_a_render_on_the_farm_lands_as_frames_and_an_mp4_and_resumes_to_nothing(
    farm: Farm,
) -> None:
    queue = json.loads(farm.cli("farm", "status", "--json").stdout)["queue"]
    args = ["render", str(farm.blend), "--frames", "1-6", "--chunk", "3", *TINY]
    submitted = json.loads(farm.cli(*args, "--detach", "--json").stdout)
    assert submitted["frames"] == {"total": 6, "done": 0}
    run = submitted["run"]
    running = workers(farm, queue, 2)
    try:
        deadline = time.monotonic() + 240
        while True:
            view: dict[str, Any] = json.loads(
                farm.cli("render", "status", str(run), "--json").stdout
            )
            if view["status"] in ("done", "failed") or time.monotonic() > deadline:
                break
            time.sleep(2)
    finally:
        stop(running)
    logs = "".join((farm.home / f"worker-{i}.log").read_text() for i in range(2))
    assert view["status"] == "done", (view, logs[-3000:])
    assert view["frames"] == {"total": 6, "done": 6}
    keys = {o["Key"] for o in client(farm.moto, "s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
    folder = view["video"].removeprefix(f"s3://{BUCKET}/").removesuffix("video.mp4")
    assert {f"{folder}frames/frame_{n:04d}.png" for n in range(1, 7)} <= keys
    assert f"{folder}video.mp4" in keys

    again = farm.cli(*args)  # the same command: every frame is there
    assert f"render run {run + 1} (ball): done" in again.stdout, again.stdout
    assert "0 message(s)" in again.stderr and "6 of 6 frames already in S3" in again.stderr
    for path in farm.home.rglob("*"):
        if path.is_file() and path.name != "moto.log":
            assert PLANTED.encode() not in path.read_bytes(), path


def follow(farm: Farm, run: int, timeout_s: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        view: dict[str, Any] = json.loads(farm.cli("render", "status", str(run), "--json").stdout)
        if view["status"] in ("done", "failed") or time.monotonic() > deadline:
            return view
        time.sleep(2)


def test_a_chunk_failing_on_every_delivery_fails_the_run_naming_its_frames(farm: Farm) -> None:
    queue = json.loads(farm.cli("farm", "status", "--json").stdout)["queue"]
    fake = farm.home / "fake-bin"
    fake.mkdir(exist_ok=True)
    blender = fake / "blender"  # frames 4-6 never render, wherever they run
    blender.write_text(
        '#!/bin/sh\ncase " $* " in *" -s 4 "*) echo "simulated crash" >&2; exit 1;; esac\n'
        f'exec {shutil.which("blender")} "$@"\n'
    )
    blender.chmod(0o755)
    args = ["render", str(farm.blend), "--frames", "1-6", "--chunk", "3", "--samples", "2"]
    run = json.loads(farm.cli(*args, *TINY, "--detach", "--json").stdout)["run"]
    running = workers(farm, queue, 2, path=f"{fake}:{os.environ['PATH']}")
    try:
        view = follow(farm, run)
    finally:
        stop(running)
    assert view["status"] == "failed", view
    assert "4-6" in view["detail"]
    (failed,) = view["failed_chunks"]
    assert failed["frames"] == "4-6" and "simulated crash" in failed["log_tail"]
    text = farm.cli("render", "status", str(run)).stdout
    assert "chunk 1 (frames 4-6) failed" in text


def waiting(farm: Farm, queue: str) -> int:
    found = client(farm.moto, "sqs").get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(found["Attributes"]["ApproximateNumberOfMessages"])


def test_cancel_takes_the_runs_messages_off_the_queue(farm: Farm) -> None:
    queue = json.loads(farm.cli("farm", "status", "--json").stdout)["queue"]
    args = ["render", str(farm.blend), "--frames", "1-6", "--chunk", "2", "--samples", "3"]
    # A failed run's healthy chunks stay queued (as on Slurm, where the other chunks of a
    # failed run go on): under load the failing test above can leave one behind.
    before = waiting(farm, queue)
    run = json.loads(farm.cli(*args, *TINY, "--detach", "--json").stdout)["run"]
    assert waiting(farm, queue) == before + 3  # no worker runs: every chunk waits
    cancelled = json.loads(farm.cli("render", "status", str(run), "--cancel", "--json").stdout)
    assert cancelled["status"] == "cancelled"
    assert waiting(farm, queue) == before  # the run's own, and only those, are gone
    # workers keep a run's inputs by its folder: an edited scene must get a folder of its own
    edited = farm.home / "edited" / farm.blend.name
    edited.parent.mkdir(exist_ok=True)
    edited.write_bytes(farm.blend.read_bytes() + b"\0")
    again = json.loads(
        farm.cli(*args[:1], str(edited), *args[2:], *TINY, "--detach", "--json").stdout
    )
    assert again["video"] != cancelled["video"] and again["frames"]["done"] == 0
    farm.cli("render", "status", str(again["run"]), "--cancel")
    assert waiting(farm, queue) == before


def test_farm_down_removes_the_workers_and_the_queues(farm: Farm) -> None:
    queue = json.loads(farm.cli("farm", "status", "--json").stdout)["queue"]
    down = json.loads(farm.cli("farm", "down", "--json").stdout)
    assert down["objects_removed"] == 2  # the Deployment and its autoscaler
    assert farm.plane.kubectl("get", "deployment", "render-farm", "-n", "default").returncode != 0
    urls = client(farm.moto, "sqs").list_queues().get("QueueUrls") or []
    assert queue not in urls
    gone = farm.cli("farm", "status", check=False)
    assert gone.returncode != 0 and "no render farm on cluster kube" in gone.stderr


def test_a_render_brings_the_farm_up_when_there_is_none(farm: Farm) -> None:
    args = ["render", str(farm.blend), "--frames", "1-2", "--chunk", "2", "--samples", "4"]
    done = farm.cli(*args, *TINY, "--detach")
    assert "no render farm on kube yet: bringing one up" in done.stderr, done.stderr
    assert "render run" in done.stdout and "submitted (2 frames, 1 chunks)" in done.stdout
    shown = json.loads(farm.cli("farm", "status", "--json").stdout)
    assert shown["store"] == f"s3://{BUCKET}/farm"  # the cluster file's farm.store
    assert farm.plane.kubectl("get", "deployment", "render-farm", "-n", "default").returncode == 0
