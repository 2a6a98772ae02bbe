"""A job the controller lost, or whose id it handed to someone else, on the real local
cluster with real Blender.

A slurmctld killed between two state saves forgets the jobs submitted since the last
save, and hands their ids to the next jobs submitted (issue 14: the encode job of a render
was purged and its id reused by an array task). These tests put a run in exactly that
position, with real jobs: the run's recorded encode job is cancelled and the record then
names a job Slurm never had, or a stranger's running job. The run must resubmit its
encode once (recorded), finish with a video, and never read or cancel the stranger's job.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from hpcrun.slurm import JobSpec
from hpcrun.state import RunState
from tests.conftest import Cluster
from tests.e2e.test_render import TINY, blend, pngs

__all__ = ["blend"]  # the .blend fixture, shared with the render tests

pytestmark = [pytest.mark.slurm, pytest.mark.blender, pytest.mark.slow]


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return dict(json.loads(done.stdout))


def start_render(cluster: Cluster, blend: Path, out: Path) -> dict[str, Any]:
    args = [str(blend), "--frames", "1-2", *TINY, "--output", str(out), "--detach", "--json"]
    return as_json(cluster.workload("render", *args))


def lose_the_encode_job(cluster: Cluster, run: dict[str, Any], now_named: str) -> None:
    """What a controller restart does to a job it had not saved: gone, its id elsewhere."""
    cluster.client.cancel([run["encode_job_id"]])
    store = cluster.store
    record = store.array_run(run["run"])
    assert record is not None
    store.set_array_run(
        record.id, RunState(record.status), detail=record.detail, final_job_id=now_named
    )


def follow(cluster: Cluster, run_id: int, timeout_s: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        view = as_json(cluster.workload("render", "status", str(run_id), "--json"))
        if view["status"] in {"done", "failed", "cancelled"}:
            return view
        assert time.monotonic() < deadline, f"run {run_id} did not end: {view}"
        time.sleep(0.5)


def stranger(cluster: Cluster) -> str:
    """Someone else's job, running on the same cluster."""
    return cluster.client.submit(JobSpec(command=("sleep", "300"), name="someone-else"))


def test_an_encode_job_slurm_never_knew_is_resubmitted_once_and_the_video_comes(
    local_cluster: Cluster, blend: Path, tmp_path: Path
) -> None:
    out = tmp_path / "frames"
    run = start_render(local_cluster, blend, out)
    lose_the_encode_job(local_cluster, run, now_named="4000000")

    view = follow(local_cluster, run["run"])

    assert view["status"] == "done", view
    assert pngs(out) == ["frame_0001.png", "frame_0002.png"]
    assert (out / "rolling_ball.mp4").stat().st_size > 0
    record = local_cluster.store.array_run(run["run"])
    assert record is not None
    history = record.plan["resubmitted"]
    assert [h["lost"] for h in history] == ["4000000"]
    assert record.final_job_id == history[0]["resubmitted"] != "4000000"


def test_an_encode_id_reused_by_a_stranger_is_neither_followed_nor_cancelled(
    local_cluster: Cluster, blend: Path, tmp_path: Path
) -> None:
    other = stranger(local_cluster)
    try:
        out = tmp_path / "frames"
        run = start_render(local_cluster, blend, out)
        lose_the_encode_job(local_cluster, run, now_named=other)

        view = follow(local_cluster, run["run"])
        assert view["status"] == "done", view  # not "encoding" for as long as sleep runs
        assert (out / "rolling_ball.mp4").stat().st_size > 0
        assert view["encode_job_id"] != other

        # A cancel of a run whose record still names the stranger's id leaves it alone.
        second = start_render(local_cluster, blend, tmp_path / "second")
        lose_the_encode_job(local_cluster, second, now_named=other)
        cancelled = as_json(
            local_cluster.workload("render", "status", str(second["run"]), "--cancel", "--json")
        )
        assert cancelled["status"] == "cancelled"
        states = {j.job_id: str(j.state) for j in local_cluster.client.jobs([other])}
        assert states[other] in {"RUNNING", "PENDING"}, states
    finally:
        local_cluster.client.cancel([other])


def test_a_run_whose_encode_was_lost_twice_fails_and_says_how_to_resume(
    local_cluster: Cluster, blend: Path, tmp_path: Path
) -> None:
    out = tmp_path / "frames"
    run = start_render(local_cluster, blend, out)
    lose_the_encode_job(local_cluster, run, now_named="4000001")
    resubmitted = as_json(local_cluster.workload("render", "status", str(run["run"]), "--json"))
    assert resubmitted["encode_job_id"] != "4000001"
    lose_the_encode_job(local_cluster, resubmitted, now_named="4000002")

    view = follow(local_cluster, run["run"])

    assert view["status"] == "failed"
    assert "resubmitted once already" in view["detail"]
    assert "run the same command again to resume" in view["detail"]


def test_a_run_whose_array_and_encode_were_both_lost_submits_both_again(
    local_cluster: Cluster, blend: Path, tmp_path: Path
) -> None:
    """A controller SIGKILLed seconds after a submit saved neither job (seen in the
    slurmctld fault test under load): the unfinished chunks and the encode come again."""
    out = tmp_path / "frames"
    run = start_render(local_cluster, blend, out)
    local_cluster.client.cancel([run["array_job_id"], run["encode_job_id"]])
    store = local_cluster.store
    record = store.array_run(run["run"])
    assert record is not None
    store.set_array_run(
        record.id,
        RunState(record.status),
        detail=record.detail,
        array_job_id="4000010",
        final_job_id="4000011",
    )

    view = follow(local_cluster, run["run"])

    assert view["status"] == "done", view
    assert pngs(out) == ["frame_0001.png", "frame_0002.png"]
    assert (out / "rolling_ball.mp4").stat().st_size > 0
    record = store.array_run(run["run"])
    assert record is not None
    (entry,) = record.plan["resubmitted"]
    assert entry["lost_array"] == "4000010" and entry["lost"] == "4000011"
    assert record.array_job_id == entry["array"] and record.final_job_id == entry["resubmitted"]
