"""The head-node idle guard, as shipped (its zipapp, run by a plain python3), against the
real local Slurm cluster with a harmless action in place of powering off: idle, the
action runs; a job running, it does not; Slurm silent, it does nothing. Its installer
writes the systemd timer (or cron entry) under a scratch root."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcrun.node.zipapp import build_zipapp
from hpcrun.slurm.client import IDLE_QUERIES
from tests.conftest import Cluster, clean_environ, started_cluster

# The oldest python3 a ParallelCluster head node may run it with (Amazon Linux 2), when
# this machine has one (pyenv); the guard must not use anything newer.
OLD_PYTHON = Path("/root/.pyenv/versions/3.7.16/bin/python3")
PYTHONS = [sys.executable, *([str(OLD_PYTHON)] if OLD_PYTHON.exists() else [])]


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guard's zipapp, with its plan beside it, as `create --idle-down` ships them."""
    folder = tmp_path_factory.mktemp("guard")
    (folder / "plan.json").write_text(json.dumps(IDLE_QUERIES))
    path = folder / "idle-guard.pyz"
    path.write_bytes(build_zipapp("hpcrun.node.idle", name="hpcrun_idle"))
    return path


@pytest.fixture(scope="module")
def quiet_cluster() -> Iterator[Cluster]:
    """A cluster no other test submits to: the guard judges by every job of the cluster,
    and the shared `local_cluster` carries other tests' jobs (in the suite it had two)."""
    with started_cluster("guard", "--nodes", "2", "--gpus-per-node", "0", prefix="hrg") as c:
        yield c


def plan_of(guard: Path) -> str:
    return str(guard.with_name("plan.json"))


def run_guard(
    guard: Path,
    tmp: Path,
    env: dict[str, str],
    *args: str,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [python, str(guard), "check", "--plan", plan_of(guard), "--state", str(tmp / "state.json"),
         "--log", str(tmp / "guard.log"), *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


def action(tmp: Path) -> str:
    """A harmless stand-in for powering off: write what the guard said into a file."""
    return f'echo "$HPCRUN_IDLE_S $HPCRUN_IDLE_TEXT" > {shlex.quote(str(tmp / "acted"))}'


@pytest.mark.slurm
@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: Path(p).parent.parent.name)
def test_an_idle_cluster_gets_the_action(
    quiet_cluster: Cluster, guard: Path, tmp_path: Path, python: str
) -> None:
    done = run_guard(
        guard, tmp_path, quiet_cluster.env, "--idle-minutes", "0", "--action",
        action(tmp_path), python=python,
    )  # fmt: skip
    assert (tmp_path / "acted").read_text().startswith("0 no job for 0 min")
    log = (tmp_path / "guard.log").read_text()
    assert "limit 0 min reached: powering off" in log
    assert "exited 0" in log.splitlines()[-1]
    assert "powering off" in done.stdout  # the journal's copy, under systemd
    assert "installed_at" in json.loads((tmp_path / "state.json").read_text())


@pytest.mark.slurm
def test_a_running_job_keeps_the_cluster_up(
    quiet_cluster: Cluster, guard: Path, tmp_path: Path
) -> None:
    job = quiet_cluster.cli("submit", "--", "sleep", "300").stdout.strip()
    try:
        run_guard(
            guard, tmp_path, quiet_cluster.env, "--idle-minutes", "0", "--action",
            action(tmp_path),
        )  # fmt: skip
    finally:
        quiet_cluster.cli("cancel", job)
    assert not (tmp_path / "acted").exists()
    line = (tmp_path / "guard.log").read_text().strip()
    assert "idle: no (1 job " in line and line.endswith("limit 0 min: left up")
    # It remembers seeing a job: without accounting that is all it would know.
    assert json.loads((tmp_path / "state.json").read_text())["last_job_seen"] > 0


@pytest.mark.slurm
def test_a_limit_not_yet_reached_and_the_action_from_the_environment(
    quiet_cluster: Cluster, guard: Path, tmp_path: Path
) -> None:
    env = {**quiet_cluster.env, "HPCRUN_IDLE_ACTION": action(tmp_path)}
    run_guard(guard, tmp_path, env, "--idle-minutes", "60")
    assert not (tmp_path / "acted").exists()
    assert (tmp_path / "guard.log").read_text().strip().endswith("limit 60 min: left up")
    run_guard(guard, tmp_path, env, "--idle-minutes", "0")
    assert (tmp_path / "acted").exists()


def test_without_an_answer_from_slurm_nothing_happens(guard: Path, tmp_path: Path) -> None:
    env = clean_environ(SLURM_CONF=str(tmp_path / "no-such-slurm.conf"))
    run_guard(guard, tmp_path, env, "--idle-minutes", "0", "--action", action(tmp_path))
    assert not (tmp_path / "acted").exists()
    line = (tmp_path / "guard.log").read_text().strip()
    assert "idle: unknown (Slurm's queue: " in line and line.endswith("unknown idle time: left up")


@pytest.mark.parametrize("scheduler", ["systemd", "cron"])
def test_install_writes_a_timer_or_a_cron_entry(
    guard: Path, tmp_path: Path, scheduler: str
) -> None:
    root = tmp_path / "root"
    done = subprocess.run(
        [sys.executable, str(guard), "install", "--idle-minutes", "45", "--root", str(root),
         "--scheduler", scheduler, "--slurm-conf", "/opt/slurm/etc/slurm.conf",
         "--plan", plan_of(guard)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    check = f"{sys.executable} {guard} check --idle-minutes 45 --plan {plan_of(guard)} --state "
    if scheduler == "systemd":
        assert done.stdout.startswith("systemd timer hpcrun-idle-guard.timer every 5 min")
        units = root / "etc/systemd/system"
        service = (units / "hpcrun-idle-guard.service").read_text()
        assert f"ExecStart={check}/var/lib/hpcrun/idle-guard.json" in service
        assert "Environment=PATH=/opt/slurm/bin:" in service
        assert "Environment=SLURM_CONF=/opt/slurm/etc/slurm.conf" in service
        timer = (units / "hpcrun-idle-guard.timer").read_text()
        assert "OnUnitActiveSec=5min" in timer and "WantedBy=timers.target" in timer
    else:
        assert done.stdout.startswith("cron entry /etc/cron.d/hpcrun-idle-guard")
        cron = (root / "etc/cron.d/hpcrun-idle-guard").read_text()
        assert f"*/5 * * * * root {check}" in cron and "PATH=/opt/slurm/bin:" in cron
    state = json.loads((root / "var/lib/hpcrun/idle-guard.json").read_text())
    assert state["idle_minutes"] == 45 and state["installed_at"] > 0
    removed = subprocess.run(
        [sys.executable, str(guard), "uninstall", "--root", str(root)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert removed.stdout.startswith("removed /etc/")
    assert not any(p.is_file() for p in root.rglob("*"))


def test_a_file_that_is_not_the_plan_is_refused(guard: Path, tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text("{}")
    done = subprocess.run(
        [sys.executable, str(guard), "check", "--idle-minutes", "0",
         "--plan", str(tmp_path / "plan.json")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "not the guard's plan" in done.stderr
