"""Secrets stay out of disk, logs and argv; files that must hold one are 0600.

One pass over the commands that handle secrets, with distinctive fake ones planted: AWS
keys in every command's environment, a viewer password (`hpcrun index --auth`, whose
0600 copy on a remote cluster is the one place it may be written), a DCV session token
(printed once by `hpcrun dcv --print-url`, never stored). The remote cluster is the ssh
backend on a real sshd in front of the real local Slurm cluster, as in
tests/e2e/test_ssh_cluster.py. Afterwards every file under both HPCRUN_HOMEs (state
databases, Slurm's state and spool, logs, session directories, job scripts, rendered
configs) is searched for each secret, and the modes of what is sensitive are checked.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import (
    HPCRUN,
    Cluster,
    clean_environ,
    free_port,
    processes_mentioning,
    short_tempdir,
)
from tests.node.viewer._launch import write_scene
from tests.sshd import SshServer, sshd_server  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.ssh, pytest.mark.slow]

LAUNCHER = Path(sys.executable).with_name("hpcrun-nvindex-slurm")
AWS = {
    "AWS_ACCESS_KEY_ID": "AKIAHPCRUNLEAKTEST42",
    "AWS_SECRET_ACCESS_KEY": "hpcrun-secret-key-LEAKTEST-b7f3e1",
    "AWS_SESSION_TOKEN": "hpcrun-session-token-LEAKTEST-9c2d",
}
PASSWORD = "viewer-password-LEAKTEST-5e8a"
DCV_TOKEN = "dcv-token-LEAKTEST-0a1b"
SECRETS = [*AWS.values(), PASSWORD, DCV_TOKEN]


def hpcrun(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real CLI with the fake AWS keys in its environment, as a user's shell has them."""
    done = subprocess.run(
        [*HPCRUN, *args], env=clean_environ(HPCRUN_HOME=str(home), **AWS), cwd=home,
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, check=False,
    )
    if check:
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def files_holding(root: Path, secret: str) -> list[str]:
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes():
                found.append(str(path))
        except OSError:  # a socket or a file that went away meanwhile
            continue
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_never_reach_disk_logs_or_argv(
    local_cluster: Cluster, sshd_server: SshServer  # noqa: F811
) -> None:
    home = short_tempdir("hsec")
    inputs = short_tempdir("hsecin")  # what the user holds: the password file, the DCV script
    try:
        _exercise(home, inputs, local_cluster, sshd_server)
    finally:
        hpcrun(home, "index", "stop", check=False)
        subprocess.run(["rm", "-rf", str(home), str(inputs)], check=False)


def _exercise(home: Path, inputs: Path, cluster: Cluster, server: SshServer) -> None:
    dcv_script = inputs / "pcluster_dcv_connect.sh"
    dcv_script.write_text(
        "#!/bin/sh\necho PclusterDcvServerPort=8443 PclusterDcvSessionId=s1 "
        f"PclusterDcvSessionToken={DCV_TOKEN}\n"
    )
    dcv_script.chmod(0o700)
    config = home / "lab.yaml"
    config.write_text(yaml.safe_dump({
        "backend": "ssh", "name": "sec", "host": server.host, "port": server.port,
        "user": server.user, "private_key_path": str(server.key_path),
        "known_hosts_path": str(server.known_hosts_path),
        "slurm_conf": str(cluster.backend.paths.slurm_conf),
        "workspace": str(home / "workspace"), "open_renderer": str(LAUNCHER),
        "dcv_connect_script": str(dcv_script),
    }))
    hpcrun(home, "create", "--config", str(config))
    scene = write_scene(home / "scene", 16)
    port = str(free_port())

    # Without a password a remote viewer is refused before anything is allocated.
    refused = hpcrun(home, "index", "--nodes", "1", "--scene", str(scene), "--port", port,
                     check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--auth USER:PASSWORD_FILE" in refused.stderr
    assert "--insecure-public" in refused.stderr
    assert json.loads(hpcrun(home, "index", "status", "--all", "--json").stdout) == []

    password_file = inputs / "viewer-password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    started = json.loads(hpcrun(
        home, "index", "--nodes", "1", "--scene", str(scene), "--port", port,
        "--auth", f"alice:{password_file}", "--json",
    ).stdout)
    assert started["agents"] == 1  # hpcrun read the status with the password
    # The viewer has the password by file; no process shows it (argv or environment).
    assert processes_mentioning(PASSWORD) == []
    session_dir = home / "workspace" / "index" / str(started["session"])
    copy = session_dir / "auth-password"
    assert copy.read_text().strip() == PASSWORD and mode(copy) == 0o600
    rendezvous = list((session_dir / "rendezvous").glob("*.json"))
    assert rendezvous and all(mode(r) == 0o600 for r in rendezvous)  # the agents' token
    squeue = subprocess.run(["squeue", "-h", "-o", "%i %j %o %k"], env=cluster.env,
                            capture_output=True, text=True, check=True).stdout
    assert PASSWORD not in squeue

    # The DCV URL carries a one-time token: printed, never stored.
    printed = hpcrun(home, "dcv", "--print-url", "--cluster", "sec")
    assert DCV_TOKEN in printed.stdout
    # Batch jobs from a shell holding AWS keys, through SSH and on the local cluster
    # (Slurm keeps a pending or running batch job's environment in its state directory).
    jobs = [
        (home, "sec", hpcrun(home, "submit", "--cluster", "sec", "--chdir", str(home), "--",
                             "sleep", "30").stdout.split()[0]),
        (cluster.home, "itest", hpcrun(cluster.home, "submit", "--cluster", "itest", "--chdir",
                                       str(home), "--", "sleep", "30").stdout.split()[0]),
    ]
    try:
        hpcrun(home, "index", "stop")
        for root in (home, cluster.home):
            leaks = {s: files_holding(root, s) for s in SECRETS}
            leaks[PASSWORD] = [p for p in leaks[PASSWORD] if p != str(copy)]
            assert not any(leaks.values()), leaks
    finally:
        for where, name, job in jobs:
            hpcrun(where, "cancel", "--cluster", name, job, check=False)

    # What may hold something sensitive is the owner's alone.
    for path in (home / "state.db", cluster.home / "state.db"):
        assert mode(path) == 0o600, path
    munge = cluster.backend.paths.munge_key
    assert mode(munge) == 0o600 and mode(munge.parent) == 0o700
