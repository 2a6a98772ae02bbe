"""The open renderer in Kubernetes pods, run here as plain processes with the environment
hpcrun's objects give its pods (no container runs here): the viewer takes the release's
token and a fixed agent port, a worker learns its role, release and node from the pod
and finds the viewer through that address, with no rendezvous file shared between them;
a worker with another token is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcrun.node.viewer import pod
from hpcrun.node.viewer.options import TaskIdentity
from tests.conftest import free_port
from tests.node.viewer._launch import READY, Session, launch, write_scene

SLURM_FREE = {"SLURM_JOB_ID": "", "SLURM_PROCID": "", "SLURMD_NODENAME": ""}


def pod_env(role: str, name: str, node: str, port: int, token: str) -> dict[str, str]:
    return {
        **SLURM_FREE,
        pod.ROLE: role,
        pod.RELEASE: "index-7-ab12",
        pod.POD: name,
        pod.NODE: node,
        pod.VIEWER_HOST: "127.0.0.1",
        pod.AGENT_PORT: str(port),
        pod.TOKEN: token,
    }


def test_identity_comes_from_the_pod_before_slurm() -> None:
    env = {**pod_env("worker", "index-7-ab12-worker-5d9f-x2", "gpu-node-3", 10000, "t"),
           "SLURM_PROCID": "0", "SLURM_JOB_ID": "99"}
    found = TaskIdentity.from_env(env)
    assert found.job_id == "index-7-ab12" and found.node == "gpu-node-3"
    assert found.rank != 0 and found.rank == TaskIdentity.from_env(env).rank
    viewer = TaskIdentity.from_env(pod_env("viewer", "index-7-ab12-viewer-0", "n1", 1, "t"))
    assert viewer.rank == 0


@pytest.mark.slow  # starts a real viewer and agents (seconds each)
def test_pod_agents_join_the_viewer_by_its_service_address_and_token(tmp_path: Path) -> None:
    prj = write_scene(tmp_path / "scene", 48)
    port = free_port()
    viewer = launch(
        "viewer",
        ["-v", "--add", str(prj), "--port", "0", "--rendezvous", str(tmp_path / "viewer-rdv")],
        job_id="ignored", env=pod_env("viewer", "index-7-ab12-viewer-0", "gpu-node-0", port,
                                      "release-token"),
    )
    session = Session(viewer, "", "index-7-ab12", tmp_path / "viewer-rdv", prj)
    try:
        _, line = viewer.wait_for(READY, timeout_s=60)
        session.url = line.split(READY, 1)[1].strip()
        # Each worker has a rendezvous directory of its own: nothing is shared but the
        # address and the token, as between pods.
        for i, node in enumerate(["gpu-node-1", "gpu-node-2"]):
            session.agents.append(launch(
                f"worker {node}", ["--rendezvous", str(tmp_path / f"rdv-{i}")],
                job_id="ignored", env=pod_env("worker", f"index-7-ab12-worker-{i}", node,
                                              port, "release-token"),
            ))
        status = session.wait_status(lambda s: s["agents"] == 3, timeout_s=60)
        assert status["job_id"] == "index-7-ab12"
        assert status["nodes"] == ["gpu-node-0", "gpu-node-1", "gpu-node-2"]
        stranger = launch(
            "stranger", ["--rendezvous", str(tmp_path / "rdv-x")], job_id="ignored",
            env={**pod_env("worker", "other", "gpu-node-3", port, "not-the-token"),
                 "NVINDEX_OPEN_RENDEZVOUS_TIMEOUT": "5"},
        )
        session.agents.append(stranger)
        viewer.wait_for("wrong token", timeout_s=30)
        assert session.status()["agents"] == 3
    finally:
        session.stop()
