"""The local cluster's supervisor SIGKILLed while a small job array runs, on the real
local cluster (issue 14, fault 4a).

The supervisor is the parent of every daemon; killed, it leaves them running without a
parent that watches them. `hpcrun status` must say so (not "down" while jobs run),
`hpcrun create` must bring a supervisor back without ending the daemons and the jobs
they run, and every task of the array must finish with its output.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from hpcrun.backends.processes import process_alive
from tests.conftest import Cluster

pytestmark = [pytest.mark.slurm]

TASKS = 6


def _states(cluster: Cluster, job_id: str) -> list[str]:
    return [t["state"] for t in json.loads(cluster.cli("jobs", job_id, "--json").stdout)]


def test_a_killed_supervisor_is_reported_and_recovered_and_the_array_finishes(
    local_cluster: Cluster, tmp_path: Path
) -> None:
    job_id = local_cluster.cli(
        "submit",
        "--array",
        f"0-{TASKS - 1}%3",
        "--output",
        str(tmp_path / "t-%a.out"),
        "--",
        "sh",
        "-c",
        "sleep 4; echo finished",
    ).stdout.strip()
    deadline = time.monotonic() + 60
    while "RUNNING" not in _states(local_cluster, job_id):
        assert time.monotonic() < deadline, "no task started"
        time.sleep(0.2)

    backend = local_cluster.backend
    supervisor = backend.supervisor.recorded_supervisor_pid()
    daemons = {d.name: d.pid for d in backend.status().daemons}
    assert supervisor is not None
    os.kill(supervisor, signal.SIGKILL)
    while process_alive(supervisor):
        time.sleep(0.05)

    status = local_cluster.cli("status", check=False)
    first = status.stdout.splitlines()[0]
    assert "degraded" in first and "supervisor" in first, status.stdout
    assert "hpcrun create" in first
    assert "Jobs: unknown" not in status.stdout  # the controller still answers

    local_cluster.cli("create", "--name", "itest", "--nodes", "6", timeout=300)
    after = local_cluster.backend.status()
    assert after.state == "up", after
    assert local_cluster.backend.supervisor.alive()
    # Adopted, not restarted: the daemons that ran all along still do, jobs and all.
    assert {d.name: d.pid for d in after.daemons} == daemons

    deadline = time.monotonic() + 90
    while not all(s == "COMPLETED" for s in _states(local_cluster, job_id)):
        states = _states(local_cluster, job_id)
        assert not any(s in {"FAILED", "NODE_FAIL", "CANCELLED"} for s in states), states
        assert time.monotonic() < deadline, f"the array did not finish: {states}"
        time.sleep(0.5)
    outputs = sorted(p.read_text() for p in tmp_path.glob("t-*.out"))
    assert outputs == ["finished\n"] * TASKS
