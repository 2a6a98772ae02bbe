"""The local cluster as users see it: real daemons, real jobs, no mocks.

Tests share one 4-node cluster (see conftest.local_cluster). The test that kills a
slurmd runs last in this module and heals the cluster again with `hpcrun create`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from hpcrun.slurm import JobSpec, JobState
from tests.conftest import Cluster

pytestmark = pytest.mark.slurm


def test_srun_runs_on_four_distinct_nodes(local_cluster: Cluster) -> None:
    done = local_cluster.cli(
        "submit", "-N", "4", "--wait", "--", "srun", "printenv", "SLURMD_NODENAME"
    )
    job_id = done.stdout.split()[0]
    out = local_cluster.cli("logs", job_id).stdout.split()
    # Which four depends on what earlier tests left running; that they differ does not.
    assert len(set(out)) == 4 and set(out) <= {f"n{i}" for i in range(1, 7)}, out


def test_array_of_100_tasks_runs_to_completion(local_cluster: Cluster) -> None:
    client = local_cluster.client
    spec = JobSpec(
        command=("bash", "-c", "echo task=$SLURM_ARRAY_TASK_ID"),
        name="hundred",
        array="0-99",
        workdir=str(local_cluster.workdir),
    )
    job_id = client.submit(spec)
    final = client.wait(job_id, timeout_s=240)
    assert len(final) == 100
    assert {j.state for j in final} == {JobState.COMPLETED}
    assert {j.exit_code for j in final} == {0}
    assert sorted(int(j.array_task_id or -1) for j in final) == list(range(100))
    for task in (0, 42, 99):
        assert (
            local_cluster.workdir / f"hpcrun-{job_id}_{task}.out"
        ).read_text() == f"task={task}\n"


def test_logs_of_an_array_task_submitted_by_cli(local_cluster: Cluster) -> None:
    job_id = local_cluster.cli(
        "submit", "--array", "0-2", "--wait", "--", "bash", "-c", "echo from $SLURM_ARRAY_TASK_ID"
    ).stdout.split()[0]
    assert local_cluster.cli("logs", f"{job_id}_2").stdout == "from 2\n"
    whole = local_cluster.cli("logs", job_id, check=False)
    assert whole.returncode == 2
    assert "is an array: name one task" in whole.stderr


def test_two_allocations_get_disjoint_nodes(local_cluster: Cluster) -> None:
    client = local_cluster.client
    first = _allocate(local_cluster, 2, exclusive=True)
    second = _allocate(local_cluster, 2, exclusive=True)
    try:
        jobs = {j.job_id: j for j in client.jobs([first, second])}
        assert jobs[first].state is JobState.RUNNING and jobs[second].state is JobState.RUNNING
        assert jobs[first].node_count == 2 and jobs[second].node_count == 2
        nodes_first = set(client.hostnames(jobs[first].nodelist))
        nodes_second = set(client.hostnames(jobs[second].nodelist))
        assert len(nodes_first) == 2 and len(nodes_second) == 2
        assert not nodes_first & nodes_second
    finally:
        client.cancel([first, second])


def test_resize_shrinks_a_job_and_accounting_allows_a_second_update(local_cluster: Cluster) -> None:
    client = local_cluster.client
    job_id = _allocate(local_cluster, 2)
    try:
        client.resize(job_id, 1)
        (job,) = client.jobs([job_id])
        assert job.node_count == 1
        assert job.state is JobState.RUNNING
        # Slurm 22.05 without slurmdbd refuses any update of a resized job; with it, it works.
        local_cluster.client.runner.run(
            ["scontrol", "update", f"JobId={job_id}", "TimeLimit=30"], timeout_s=20
        ).check()
    finally:
        client.cancel([job_id])


def test_submit_wait_exits_with_the_jobs_status(local_cluster: Cluster) -> None:
    done = local_cluster.cli(
        "submit", "--wait", "--", "bash", "-c", "echo bad >&2; exit 7", check=False
    )
    assert done.returncode == 7
    assert "FAILED (exit 7)" in done.stderr


def test_jobs_json_lists_queued_array_tasks_then_cancel(local_cluster: Cluster) -> None:
    held = subprocess.run(
        ["sbatch", "--parsable", "-H", "--array=0-499", "-o", "/dev/null", "--wrap", "true"],
        env=local_cluster.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    listed = json.loads(local_cluster.cli("jobs", "--json", held).stdout)
    assert len(listed) == 500
    assert {row["state"] for row in listed} == {"PENDING"}
    local_cluster.cli("cancel", held)
    final = local_cluster.client.jobs([held])
    assert final and {j.state for j in final} == {JobState.CANCELLED}


def test_create_on_a_running_cluster_changes_nothing(local_cluster: Cluster) -> None:
    before = {d.name: d.pid for d in local_cluster.backend.status().daemons}
    done = local_cluster.cli("create", "--name", "itest", "--nodes", "6")
    assert "already up; nothing changed" in done.stdout
    after = {d.name: d.pid for d in local_cluster.backend.status().daemons}
    assert after == before


def test_create_by_name_alone_keeps_the_shape_the_cluster_was_created_with(
    local_cluster: Cluster,
) -> None:
    # The hint after every fault is `hpcrun create --name X`: on this 6-node cluster the
    # default of 4 nodes must not make it "a different configuration".
    done = local_cluster.cli("create", "--name", "itest")
    assert "already up; nothing changed" in done.stdout


def test_create_with_a_different_config_is_refused(local_cluster: Cluster) -> None:
    done = local_cluster.cli("create", "--name", "itest", "--nodes", "3", check=False)
    assert done.returncode == 2
    assert "is up with a different configuration" in done.stderr
    assert "hpcrun down" in done.stderr


def test_killed_slurmd_is_reported_down_and_create_heals_it(local_cluster: Cluster) -> None:
    (victim,) = [d for d in local_cluster.backend.status().daemons if d.name == "slurmd-n3"]
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while True:
        status = json.loads(local_cluster.cli("status", "--json").stdout)
        node = {n["name"]: n for n in status["nodes"]}["n3"]
        if node["down"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert node["down"], node
    assert status["state"] == "degraded"
    assert "slurmd exited" in node["summary"]
    human = local_cluster.cli("status").stdout
    assert "n3" in human and "down" in human

    before = {d.name: d.pid for d in local_cluster.backend.status().daemons}
    healed = local_cluster.cli("create", "--name", "itest", "--nodes", "6")
    assert "is up" in healed.stdout
    # Progress names only what it brought back, not the daemons that ran all along.
    steps = [
        line
        for line in healed.stderr.splitlines()
        if line.startswith("•") and not line.startswith("• nodes idle")
    ]
    assert steps == ["• slurmd of n3 restarted"], healed.stderr
    after = {d.name: d.pid for d in local_cluster.backend.status().daemons}
    assert after.pop("slurmd-n3") != before.pop("slurmd-n3")
    assert after == before
    status = json.loads(local_cluster.cli("status", "--json").stdout)
    assert status["state"] == "up"
    assert {n["name"]: n["state"] for n in status["nodes"]}["n3"] == "idle"


def _allocate(cluster: Cluster, nodes: int, exclusive: bool = False) -> str:
    """A step-less allocation, as IndeX sessions and job expansion use."""
    argv = JobSpec(
        command=("true",), nodes=nodes, name="alloc", exclusive=exclusive
    ).to_salloc_argv()
    done = cluster.client.runner.run(argv, timeout_s=60).check()
    for line in (done.stderr + done.stdout).splitlines():
        if "Granted job allocation" in line:
            return line.split()[-1]
    raise AssertionError(f"salloc printed no job id: {done.stderr}")


def test_dcv_on_the_local_cluster_says_where_a_desktop_exists(local_cluster: Cluster) -> None:
    done = local_cluster.cli("dcv", "--print-url", check=False)
    assert done.returncode == 1
    assert "has no remote desktop" in done.stderr
    assert "ParallelCluster" in done.stderr
