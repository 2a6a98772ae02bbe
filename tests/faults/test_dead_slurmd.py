"""The slurmd of a node SIGKILLed while render chunks run there, on the real local cluster
(issue 14): for ~50 s `render status` said `2 running` with no word of the dead node. Now
status (text and --json) names the node and its chunks while its slurmd is dead, and
`hpcrun create` restarts it; the run then completes with every frame."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Cluster
from tests.e2e.test_render import TINY, blend, pngs, render, slow_blender, wait_running
from tests.faults.test_lost_jobs import as_json, follow

__all__ = ["blend"]

pytestmark = [pytest.mark.slurm, pytest.mark.blender, pytest.mark.slow]


def test_a_dead_slurmd_is_named_by_status_and_create_heals_it(
    local_cluster: Cluster, blend: Path, tmp_path: Path
) -> None:
    out = tmp_path / "frames"
    args = [str(blend), "--frames", "1-4", "--chunk", "2", *TINY, "--output", str(out)]
    env = {"HPCRUN_BLENDER": str(slow_blender(tmp_path, 8))}
    started = as_json(render(local_cluster, *args, "--detach", "--json", env=env))
    view = wait_running(local_cluster)
    assert view["run"] == started["run"]
    jobs = local_cluster.client.jobs([view["array_job_id"]])
    running = {j.array_task_id: j.nodelist for j in jobs if str(j.state) == "RUNNING"}
    assert running, jobs
    node = sorted(running.values())[0]
    daemons = {d.name: d for d in local_cluster.backend.status().daemons}
    os.kill(daemons[f"slurmd-{node}"].pid, signal.SIGKILL)
    killed = time.monotonic()
    try:
        deadline = killed + 30
        while True:
            dead = as_json(render(local_cluster, "status", str(view["run"]), "--json"))
            if dead["dead_nodes"]:
                break
            assert time.monotonic() < deadline, f"status never named {node}: {dead}"
            time.sleep(0.2)
        named_s = time.monotonic() - killed
        (entry,) = dead["dead_nodes"]
        # What runs there now (another chunk may have started on it just before the kill).
        jobs = local_cluster.client.jobs([view["array_job_id"]])
        on_node = sorted(
            int(j.array_task_id or 0)
            for j in jobs
            if str(j.state) == "RUNNING" and j.nodelist == node
        )
        assert entry["node"] == node and entry["chunks"] == on_node, (entry, jobs)
        assert entry["why"].startswith("slurmd is not running"), entry
        text = render(local_cluster, "status", str(view["run"])).stdout
        chunks = " and ".join(f"chunk {i}" for i in on_node)
        assert f"{chunks} run{'s' if len(on_node) == 1 else ''} on {node}, whose slurmd" in text
        assert "once it declares the node down" in text
        assert "`hpcrun create --name itest --nodes 6` restarts it" in text, text
    finally:
        healing = time.monotonic()
        local_cluster.cli("create", "--name", "itest", "--nodes", "6", timeout=300)
        healed_s = time.monotonic() - healing

    final = follow(local_cluster, view["run"], timeout_s=120)
    assert final["status"] == "done", final
    assert final["dead_nodes"] == []
    assert pngs(out) == [f"frame_{i:04d}.png" for i in range(1, 5)]
    assert (out / "rolling_ball.mp4").stat().st_size > 0
    attempts = [c["attempts"] for c in final["chunks"]]
    print(
        f"\nstatus named {node} {named_s:.1f} s after its slurmd was killed; `hpcrun create` "
        f"healed it in {healed_s:.1f} s; chunk attempts {attempts}"
    )
