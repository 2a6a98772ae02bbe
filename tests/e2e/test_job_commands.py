"""`hpcrun cancel` and `hpcrun logs` on jobs that are unknown, ended or never ran, and a
controller that does not answer: real Slurm, real commands, no mocks."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from hpcrun.errors import ControllerDown
from hpcrun.slurm import SlurmClient
from hpcrun.transport.runner import LocalRunner
from tests.conftest import Cluster

pytestmark = pytest.mark.slurm


def _held_job(cluster: Cluster) -> str:
    return subprocess.run(
        ["sbatch", "--parsable", "-H", "--wrap", "true"],
        env=cluster.env,
        cwd=cluster.workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_cancel_and_logs_of_unknown_ended_and_never_started_jobs(local_cluster: Cluster) -> None:
    unknown = local_cluster.cli("cancel", "99999", check=False)
    assert unknown.returncode == 1
    assert "no job 99999 on cluster 'itest'" in unknown.stderr
    assert "cancelled" not in unknown.stderr and "hpcrun jobs" in unknown.stderr

    held = _held_job(local_cluster)
    pending = local_cluster.cli("logs", held, check=False)
    assert pending.returncode == 1
    assert f"job {held} has not started yet" in pending.stderr

    assert f"cancelled {held}" in local_cluster.cli("cancel", held).stderr
    again = local_cluster.cli("cancel", held, check=False)
    assert again.returncode == 1
    assert f"job {held} already ended (CANCELLED)" in again.stderr
    assert "cancelled" not in again.stderr.replace("(CANCELLED)", "")

    never = local_cluster.cli("logs", held, check=False)
    assert never.returncode == 1
    assert f"job {held} never ran (CANCELLED before it started)" in never.stderr


def test_logs_of_an_unknown_job_lists_the_newest_jobs_first(local_cluster: Cluster) -> None:
    first = local_cluster.cli("submit", "--", "true").stdout.strip()
    second = local_cluster.cli("submit", "--", "true").stdout.strip()
    done = local_cluster.cli("logs", "99999", check=False)
    assert done.returncode == 1
    assert f"(recent jobs, newest first: {second}, {first}" in done.stderr


def test_a_controller_that_does_not_answer_is_one_clear_error(tmp_path: Path) -> None:
    conf = tmp_path / "slurm.conf"
    golden = Path(__file__).parents[1] / "golden" / "slurm.conf"
    conf.write_text(golden.read_text().replace("SlurmctldPort=", "SlurmctldPort=1\n#", 1))
    client = SlurmClient(LocalRunner({"SLURM_CONF": str(conf)}))
    started = time.monotonic()
    with pytest.raises(ControllerDown) as raised:
        client.jobs()
    assert raised.value.message == "Slurm's controller (slurmctld) is not answering"
    assert "Unable to contact slurm controller" in raised.value.stderr
    assert time.monotonic() - started < 60


def test_a_wait_on_a_job_slurm_will_never_start_says_why_and_stops(
    local_cluster: Cluster,
) -> None:
    # Issue 14: `submit --wait` waited forever on a job pending as DependencyNeverSatisfied
    # (Slurm keeps it queued: the local cluster does not set kill_invalid_depend).
    failed = local_cluster.cli("submit", "--wait", "--", "false", check=False)
    assert failed.returncode == 1, failed.stderr
    failed_id = failed.stdout.split()[0]

    done = local_cluster.cli(
        "submit", "--wait", "--dependency", f"afterok:{failed_id}", "--", "true", check=False
    )
    job_id = done.stdout.split()[0]
    try:
        assert done.returncode == 1, done.stderr
        error, hint = done.stderr.splitlines()[-2:]
        assert error.startswith(f"error: job {job_id} will never start"), done.stderr
        assert "DependencyNeverSatisfied" in error
        assert f"hpcrun cancel {job_id}" in hint
        (job,) = local_cluster.client.jobs([job_id])
        assert str(job.state) == "PENDING"  # stopped waiting; the job is the user's to cancel

        follow = local_cluster.cli("logs", "--follow", job_id, check=False)
        assert follow.returncode == 1
        assert "DependencyNeverSatisfied" in follow.stderr.splitlines()[0], follow.stderr
    finally:
        local_cluster.client.cancel([job_id])
