"""Fixtures that start real components once per session and stop them by PID.

`local_cluster` is a real 4-node Slurm cluster (munged, MariaDB, slurmdbd, slurmctld,
slurmd x4) created through the hpcrun CLI in a private `$HPCRUN_HOME`, exactly as a
user would; tests talk to it through the CLI or through `SlurmClient`, never through
mocks. It is torn down with `hpcrun down`, and the teardown checks nothing survived.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hpcrun.backends import open_backend
from hpcrun.backends.local import LocalBackend
from hpcrun.slurm import SlurmClient
from hpcrun.state import StateStore

HPCRUN = [sys.executable, "-m", "hpcrun"]


def slurm_installed() -> bool:
    return all(shutil.which(p) for p in ("slurmctld", "slurmd", "munged", "slurmdbd", "mariadbd"))


# Settings a user may keep in their shell that would point a test's child process at the
# user's own state or cluster: hpcrun's (HPCRUN_HOME, HPCRUN_CLUSTER, ...) and Slurm's
# (SLURM_CONF, an allocation's SLURM_JOB_ID, the input variables of its commands).
USER_SETTING_PREFIXES = (
    "HPCRUN_",
    "SLURM_",
    "SBATCH_",
    "SALLOC_",
    "SRUN_",
    "SQUEUE_",
    "SINFO_",
    "SACCT_",
    "SCANCEL_",
)


def clean_environ(**overrides: str) -> dict[str, str]:
    """This process's environment without the user's hpcrun and Slurm settings, plus
    `overrides`: the base of every environment a test hands a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(USER_SETTING_PREFIXES)}
    env.update(overrides)
    return env


def cli_env(home: Path) -> dict[str, str]:
    """The environment `run_cli` gives hpcrun: `home` as HPCRUN_HOME, no user settings."""
    return clean_environ(HPCRUN_HOME=str(home))


def run_cli(
    *args: str, home: Path, check: bool = True, timeout: float = 180, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `hpcrun` CLI in a child process with `home` as HPCRUN_HOME."""
    done = subprocess.run(
        [*HPCRUN, *args],
        env=cli_env(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"hpcrun {' '.join(args)} exited {done.returncode}\nstdout:\n{done.stdout}\n"
            f"stderr:\n{done.stderr}"
        )
    return done


def processes_mentioning(marker: str) -> list[str]:
    """Live processes whose argv or environment mention `marker` (zombies excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            data = Path(f"/proc/{entry}/cmdline").read_bytes()
            data += Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in data:
            found.append(f"{entry}: {Path(f'/proc/{entry}/cmdline').read_bytes()!r}")
    return found


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the programs the tests start. A suite started in the background of
    a non-interactive shell (`make test &`, a CI runner's script) inherits SIGINT ignored,
    and an ignored signal stays ignored through exec: the tests that press Ctrl-C on
    hpcrun, salloc or a shell would find it deaf. A handled signal is reset by exec."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# `make test` runs the suite on two workers (pytest-xdist, --dist loadgroup). What shares a
# machine-wide resource stays on one worker, in order, as in a plain run: every test of
# the real local Slurm cluster (one cluster a session, and clusters made by hand take the
# default ports) in one group, every test of the Kubernetes control plane in another;
# the rest (in-process, moto, sshd, Chromium, Blender) spreads over both.
SERIAL_GROUPS = (("slurm", "local_cluster"), ("k8s", "control_plane"))


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the groups into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for group, fixture in SERIAL_GROUPS:
            if fixture in fixtures or item.get_closest_marker(group) is not None:
                item.add_marker(pytest.mark.xdist_group(group))
                break


@dataclass
class Cluster:
    home: Path
    name: str
    workdir: Path

    @property
    def store(self) -> StateStore:
        return StateStore(self.home)

    @property
    def backend(self) -> LocalBackend:
        store = self.store
        record = store.cluster(self.name)
        assert record is not None
        backend = open_backend(record, store)
        assert isinstance(backend, LocalBackend)
        return backend

    @property
    def client(self) -> SlurmClient:
        return self.backend.slurm()

    @property
    def env(self) -> dict[str, str]:
        return clean_environ(**self.backend.env)

    def cli(
        self, *args: str, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, home=self.home, check=check, timeout=timeout, cwd=self.workdir)

    def workload(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`hpcrun ARGS` as a user in the cluster's shell runs it (its Slurm environment,
        the current cluster rather than HPCRUN_CLUSTER), `env` on top (a moto server's)."""
        full = {**self.env, **(env or {}), "HPCRUN_HOME": str(self.home)}
        full.pop("HPCRUN_CLUSTER", None)
        done = subprocess.run(
            [sys.executable, "-m", "hpcrun", *args],
            env=full,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done


def free_port() -> int:
    """A port the kernel just handed out on loopback (tiny race; fine on a test host)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_supervisor(run_dir: Path) -> subprocess.Popen[bytes]:
    """The local cluster's real supervisor process on `run_dir`, once it answers."""
    from hpcrun.backends.processes import SupervisorClient

    process = subprocess.Popen(
        [sys.executable, "-m", "hpcrun.backends.supervisor", str(run_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = SupervisorClient(run_dir)
    deadline = time.monotonic() + 30
    while not client.alive():
        assert process.poll() is None and time.monotonic() < deadline, "no supervisor"
        time.sleep(0.05)
    return process


def short_tempdir(prefix: str) -> Path:
    """A short path under /tmp: unix socket paths must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@contextlib.contextmanager
def started_cluster(name: str, *flags: str, prefix: str = "hrt") -> Iterator[Cluster]:
    """A real local cluster in its own HPCRUN_HOME (`hpcrun create --name NAME FLAGS...`),
    taken down after; fails the test if any of its daemons survives `down`."""
    if not slurm_installed():
        if os.environ.get("CI"):
            pytest.fail("Slurm is not installed; `make test` installs it (as root: make setup)")
        pytest.skip("Slurm is not installed: run `make setup`")
    home = short_tempdir(prefix)
    workdir = home / "work"
    workdir.mkdir()
    cluster = Cluster(home=home, name=name, workdir=workdir)
    try:
        cluster.cli("create", "--name", name, *flags, timeout=300)
        yield cluster
    finally:
        run_cli("down", "--yes", "--cluster", name, home=home, check=False)
        leftovers = processes_mentioning(str(home))
        shutil.rmtree(home, ignore_errors=True)
        assert not leftovers, f"daemons survived `hpcrun down`: {leftovers}"


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[Cluster]:
    with started_cluster("itest", "--nodes", "6") as cluster:
        yield cluster


@contextlib.contextmanager
def own_cluster(name: str, *flags: str) -> Iterator[Callable[..., Any]]:
    """A small local cluster of a kind the shared one is not (no GPUs, no accounting) or
    that a test may take down (`started_cluster`); yields `hpcrun` for it."""
    with started_cluster(name, *flags, prefix="hro") as cluster:

        def hpcrun(*args: str, check: bool = True) -> Any:
            return cluster.cli(*args, check=check, timeout=240)

        yield hpcrun


def scontrol_tasks(cluster: Cluster, job_id: str) -> list[dict[str, str]]:
    """Each array task of `job_id` as `scontrol -o show job` reports it (finished ones stay
    MinJobAge=300 s), its `Key=Value` words as a dict."""
    done = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [
        dict(word.split("=", 1) for word in line.split() if "=" in word)
        for line in done.stdout.splitlines()
        if line.strip()
    ]
