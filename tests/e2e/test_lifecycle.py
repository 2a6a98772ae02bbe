"""Create, crash, recover, stop: a cluster of its own, so the shared one stays untouched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import processes_mentioning, run_cli, short_tempdir, slurm_installed

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture
def home() -> Iterator[Path]:
    if not slurm_installed():
        pytest.skip("Slurm is not installed: run `make setup`")
    path = short_tempdir("hrl")
    try:
        yield path
    finally:
        run_cli("down", "--yes", "--cluster", "life", home=path, check=False)
        shutil.rmtree(path, ignore_errors=True)


def test_crash_recovery_then_down_leaves_nothing(home: Path) -> None:
    run_cli("create", "--name", "life", "--nodes", "2", "--no-accounting", home=home)
    cluster_dir = home / "clusters" / "life"
    supervisor_pid = int((cluster_dir / "run" / "supervisor.pid").read_text())

    # A crash: the supervisor dies hard and its daemons are left running, orphaned.
    os.kill(supervisor_pid, signal.SIGKILL)
    time.sleep(0.3)
    status = json.loads(run_cli("status", "--json", home=home).stdout)
    # Not "down": the daemons run on (issue 14), and create takes them back, not ends them.
    assert status["state"] == "degraded"
    assert "supervisor is gone" in status["detail"]
    assert processes_mentioning(str(cluster_dir)), "the orphaned daemons should still run"

    recovered = run_cli("create", "--name", "life", "--nodes", "2", "--no-accounting", home=home)
    assert "took back" in recovered.stderr and "stale process" not in recovered.stderr
    status = json.loads(run_cli("status", "--json", home=home).stdout)
    assert status["state"] == "up"
    assert [n["state"] for n in status["nodes"]] == ["idle", "idle"]
    job = run_cli("submit", "-N", "2", "--wait", "--", "srun", "true", home=home, cwd=home)
    assert job.returncode == 0

    (home / "user-output.txt").write_text("keep me")
    run_cli("down", "--yes", "--cluster", "life", home=home)
    assert processes_mentioning(str(cluster_dir)) == []
    assert (cluster_dir / "log" / "slurmctld.log").exists(), "down keeps the cluster directory"
    assert (home / "user-output.txt").read_text() == "keep me"
    listed = json.loads(run_cli("clusters", "--json", home=home).stdout)
    assert [(c["name"], c["status"]) for c in listed] == [("life", "down")]

    run_cli("down", "--yes", "--purge", "--cluster", "life", home=home)
    assert not cluster_dir.exists()
    assert json.loads(run_cli("clusters", "--json", home=home).stdout) == []
