"""Idle time through the CLI on real local Slurm clusters: `status` and `clusters` say
how long a cluster has had no job, `down --if-idle` takes down only an idle one, and
`create --idle-down` is refused where there is no head node to power off.

Each test makes a small cluster of its own (the shared `local_cluster` must not be taken
down). Limits are in minutes, so the tests use real elapsed time with `--if-idle 0` (no
job now) against a limit no test lasts (`--if-idle 60`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import own_cluster, run_cli, slurm_installed

without_slurm = pytest.mark.skipif(not slurm_installed(), reason="no Slurm: make setup")
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LEFT_UP = 3  # `down --if-idle`: the cluster stays up (busy, or not idle long enough)


def two_nodes(name: str, *flags: str) -> Any:
    """A 2-node GPU-less cluster of the test's own."""
    return own_cluster(name, "--nodes", "2", "--gpus-per-node", "0", *flags)


def _json(done: Any) -> Any:
    return json.loads(done.stdout)


def _wait_ended(hpcrun: Callable[..., Any], job: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = _json(hpcrun("status", "--json"))["jobs"]
        if any(j["job_id"] == job and j["state"] == "CANCELLED" for j in rows):
            return
        time.sleep(0.3)
    raise AssertionError(f"job {job} did not end")


@pytest.mark.slurm
@without_slurm
def test_status_clusters_and_down_if_idle_follow_the_jobs() -> None:
    with two_nodes("idl") as hpcrun:
        # Fresh: idle since it came up, known exactly (the cluster keeps accounting).
        text = hpcrun("status").stdout
        assert "Idle: no job for 0 min (no job seen since " in text
        idle = _json(hpcrun("status", "--json"))["idle"]
        assert idle["known"] and idle["idle"] and not idle["approximate"]
        listed = hpcrun("clusters")
        assert "idle" in listed.stdout.splitlines()[0] and "0 min" in listed.stdout
        assert _json(hpcrun("clusters", "--json"))[0]["idle"]["idle_minutes"] == 0

        job = hpcrun("submit", "--", "sleep", "300").stdout.strip()
        assert "Idle: no (1 job " in hpcrun("status").stdout  # pending or running
        assert "no (1 job " in hpcrun("clusters").stdout
        busy = hpcrun("down", "--if-idle", "0", check=False)
        assert busy.returncode == LEFT_UP, busy.stderr
        assert busy.stdout.startswith("cluster idl is not idle (1 job ")
        assert busy.stdout.rstrip().endswith("left up")
        assert _json(hpcrun("status", "--json"))["state"] == "up"

        hpcrun("cancel", job)
        _wait_ended(hpcrun, job)
        text = hpcrun("status").stdout
        assert f"Idle: no job for 0 min (last job {job} ended " in text
        assert _json(hpcrun("status", "--json"))["idle"]["last_job_id"] == job
        short = hpcrun("down", "--if-idle", "60", check=False)
        assert short.returncode == LEFT_UP
        assert short.stdout.strip() == "cluster idl is idle 0 min < 60: left up"

        # No job now and none for 0 minutes: it goes, with no question asked (no tty).
        gone = hpcrun("down", "--if-idle", "0")
        assert f"cluster idl: no job for 0 min (last job {job} ended " in gone.stdout
        assert "taking it down" in gone.stdout and "Cluster idl stopped" in gone.stdout
        assert _json(hpcrun("status", "--json"))["state"] == "down"
        again = hpcrun("down", "--if-idle", "0")
        assert again.stdout.strip() == "cluster idl is already down: nothing to do"
        assert hpcrun("clusters").stdout.splitlines()[1].split()[-1] == "-"


@pytest.mark.slurm
@without_slurm
def test_without_accounting_idle_is_estimated_and_said_to_be() -> None:
    with two_nodes("idlnodb", "--no-accounting") as hpcrun:
        hpcrun("submit", "--wait", "--", "true")
        idle = _json(hpcrun("status", "--json"))["idle"]
        assert idle["known"] and idle["idle"] and idle["approximate"]
        assert idle["last_job_id"] is not None  # squeue still lists it (MinJobAge)
        assert "no Slurm accounting: estimated" in hpcrun("status").stdout
        assert "~0 min" in hpcrun("clusters").stdout
        gone = hpcrun("down", "--if-idle", "0")
        assert "taking it down" in gone.stdout


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ((), "--idle-down: a local cluster costs nothing while idle"),
        (("--config", str(CONFIGS / "ssh.yaml")), "--idle-down: an ssh cluster is not hpcrun's"),
        (("--config", str(CONFIGS / "index-eks.yaml")), "applies to ParallelCluster clusters"),
    ],
    ids=["local", "ssh", "eks"],
)
def test_idle_down_is_refused_where_there_is_no_head_node_of_ours(
    tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    """Before anything is made or connected to."""
    done = run_cli("create", *args, "--idle-down", "30", home=tmp_path, check=False)
    assert done.returncode == 2, done.stderr
    assert said in done.stderr


def test_idle_down_is_held_to_the_cluster_files_limits(tmp_path: Path) -> None:
    done = run_cli(
        "create", "--config", str(CONFIGS / "index-aws.yaml"), "--idle-down", "5",
        home=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "idle_down_minutes" in done.stderr and not (tmp_path / "clusters").exists()
