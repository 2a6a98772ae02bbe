"""The ssh backend end to end: a real sshd on loopback is the head node of the real local
Slurm cluster, and every hpcrun command goes through it.

This is what a ParallelCluster cluster looks like from hpcrun once it exists (the AWS
half only finds the head node's address): Slurm commands, job logs, the IndeX viewer
behind a tunnel, the DCV connect script and `hpcrun ssh`, all over SSH. The attached
cluster has its own HPCRUN_HOME, so nothing here sees the local cluster's record.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import (
    HPCRUN,
    Cluster,
    clean_environ,
    free_port,
    run_cli,
    short_tempdir,
)
from tests.sshd import SshServer, sshd_server  # noqa: F401

pytestmark = [pytest.mark.slurm, pytest.mark.ssh, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = Path(sys.executable).with_name("hpcrun-nvindex-slurm")


class Attached:
    def __init__(self, home: Path, config: Path, server: SshServer, work: Path) -> None:
        self.home, self.config, self.server, self.work = home, config, server, work

    def cli(self, *args: str, check: bool = True, timeout: float = 180) -> Any:
        return run_cli(*args, home=self.home, check=check, timeout=timeout, cwd=self.work)


def write_config(path: Path, server: SshServer, cluster: Cluster, **extra: Any) -> Path:
    data = {
        "backend": "ssh",
        "name": "lab",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "private_key_path": str(server.key_path),
        "slurm_conf": str(cluster.backend.paths.slurm_conf),
        "workspace": str(path.parent / "workspace"),
        "open_renderer": str(LAUNCHER),
        "scenes_dir": str(REPO / "scenes"),
        **extra,
    }
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def attached(local_cluster: Cluster, sshd_server: SshServer) -> Iterator[Attached]:  # noqa: F811
    home = short_tempdir("hssh")
    work = home / "work"
    work.mkdir()
    known_hosts = home / "known_hosts"  # empty: the head node is new to this machine
    config = write_config(
        home / "lab.yaml", sshd_server, local_cluster, known_hosts_path=str(known_hosts)
    )
    attached = Attached(home, config, sshd_server, work)
    try:
        yield attached
    finally:
        attached.cli("index", "stop", check=False)
        attached.cli("down", "--yes", "--purge", check=False)
        subprocess.run(["rm", "-rf", str(home)], check=False)


def test_an_unknown_host_key_is_refused_then_trusted_once(attached: Attached) -> None:
    refused = attached.cli("create", "--config", str(attached.config), check=False)
    assert refused.returncode == 1
    assert "unknown SSH host key for [127.0.0.1]" in refused.stderr
    assert attached.server.host_key_fingerprint in refused.stderr
    assert "--trust-new-host" in refused.stderr
    known_hosts = attached.home / "known_hosts"
    assert not known_hosts.exists() or not known_hosts.read_text().strip()

    created = attached.cli("create", "--config", str(attached.config), "--trust-new-host")
    assert "Cluster lab (ssh, ssh " in created.stdout and "6 nodes" in created.stdout
    assert f"[127.0.0.1]:{attached.server.port} ssh-ed25519" in known_hosts.read_text()
    # From now on the recorded key is checked without the flag; attaching again is a no-op.
    again = attached.cli("create", "--config", str(attached.config))
    assert "already up; nothing changed" in again.stdout


def test_status_and_jobs_come_from_slurm_on_the_head_node(attached: Attached) -> None:
    status = json.loads(attached.cli("status", "--json").stdout)
    assert status["backend"] == "ssh" and status["state"] == "up"
    assert [n["name"] for n in status["nodes"]] == [f"n{i}" for i in range(1, 7)]
    outdir = attached.home / "jobs"
    outdir.mkdir()
    done = attached.cli(
        "submit", "-N", "2", "--chdir", str(outdir), "--wait", "--", "srun", "echo", "hello"
    )
    job_id = done.stdout.split()[0]
    assert (outdir / f"hpcrun-{job_id}.out").read_text().count("hello") == 2
    logs = attached.cli("logs", job_id)  # read back over SFTP
    assert logs.stdout.count("hello") == 2


def test_a_missing_launcher_is_named_at_attach_time(
    attached: Attached,
    local_cluster: Cluster,
    sshd_server: SshServer,  # noqa: F811
) -> None:
    config = write_config(
        attached.home / "bad.yaml",
        sshd_server,
        local_cluster,
        name="bad",
        known_hosts_path=str(attached.home / "known_hosts"),
        open_renderer="/nowhere/hpcrun-nvindex-slurm",
    )
    done = attached.cli("create", "--config", str(config), check=False)
    assert done.returncode == 1
    assert "open_renderer: /nowhere/hpcrun-nvindex-slurm is not an executable on 127.0.0.1" in (
        done.stderr
    )


@pytest.fixture(scope="module")
def tunnelled(attached: Attached) -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    """`hpcrun index --nodes 2 --tunnel` held open in the background, as a user runs it
    (--insecure-public: without --auth a remote viewer is refused; tests/security has that)."""
    port = free_port()
    env = clean_environ(HPCRUN_HOME=str(attached.home))
    process = subprocess.Popen(
        [*HPCRUN, "index", "--nodes", "2", "--scene", "supernova", "--port", str(port), "--tunnel",
         "--insecure-public"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=attached.work,
    )
    assert process.stdout is not None
    seen = []
    url = None
    for line in process.stdout:  # blocks until the CLI prints; it exits on failure
        seen.append(line)
        found = re.search(r"Tunnel: (http://127\.0\.0\.1:\d+) ->", line)
        if found:
            url = found.group(1)
            break
    if url is None:
        process.wait(timeout=30)
        raise AssertionError("".join(seen) + (process.stderr.read() if process.stderr else ""))
    try:
        yield process, url, port
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def test_index_over_ssh_is_ready_and_the_tunnel_serves_the_page(
    tunnelled: tuple[subprocess.Popen[str], str, int],
) -> None:
    _, url, viewer_port = tunnelled
    # The viewer holds its own port on this host, so the tunnel took another one.
    assert not url.endswith(f":{viewer_port}")
    with urllib.request.urlopen(url + "/", timeout=10) as response:
        page = response.read().decode()
    assert "<html" in page.lower()
    with urllib.request.urlopen(url + "/api/status", timeout=10) as response:
        status = json.loads(response.read())
    assert status["agents"] == 2


def test_index_status_counts_agents_through_the_head_node(
    attached: Attached, tunnelled: tuple[subprocess.Popen[str], str, int]
) -> None:
    status = json.loads(attached.cli("index", "status", "--json").stdout)
    assert status["status"] == "running"
    assert status["agents"] == 2
    assert status["url"].endswith(f":{tunnelled[2]}")
    workspace = attached.home / "workspace" / "index" / str(status["session"])
    assert (workspace / "viewer.log").is_file()  # session files live on the cluster


def test_scale_over_ssh_attaches_and_removes_nodes(
    attached: Attached, tunnelled: tuple[subprocess.Popen[str], str, int]
) -> None:
    grown = json.loads(attached.cli("scale", "+1", "--json").stdout)
    assert grown["agents"] == 3 and len(grown["nodes"]) == 3
    shrunk = json.loads(attached.cli("scale", "-1", "--json").stdout)
    assert shrunk["agents"] == 2 and len(shrunk["nodes"]) == 2


def test_dcv_print_url_runs_the_connect_script_on_the_head_node(
    attached: Attached,
    local_cluster: Cluster,
    sshd_server: SshServer,  # noqa: F811
) -> None:
    script = attached.home / "pcluster_dcv_connect.sh"
    script.write_text(
        "#!/bin/sh\n"
        'test -d "$1" || exit 3\n'
        "echo PclusterDcvServerPort=8443 PclusterDcvSessionId=session-7 "
        "PclusterDcvSessionToken=tok-SECRET-123\n"
    )
    script.chmod(0o755)
    config = write_config(
        attached.home / "dcv.yaml",
        sshd_server,
        local_cluster,
        name="desk",
        known_hosts_path=str(attached.home / "known_hosts"),
        dcv_connect_script=str(script),
    )
    attached.cli("create", "--config", str(config))
    done = attached.cli("dcv", "--print-url", "--cluster", "desk")
    assert "https://127.0.0.1:8443?authToken=tok-SECRET-123#session-7" in done.stdout
    assert "30 seconds" in done.stdout
    state = (attached.home / "state.db").read_bytes()
    assert b"tok-SECRET-123" not in state


def test_hpcrun_ssh_runs_a_command_on_the_head_node(attached: Attached) -> None:
    done = attached.cli("ssh", "--cluster", "lab", "--", "printenv", "SSH_CONNECTION")
    assert done.returncode == 0
    assert done.stdout.split()[2:4] == ["127.0.0.1", str(attached.server.port)]


def test_flare_over_ssh_ships_kits_keeps_the_admin_kit_here_and_reaches_the_server(
    attached: Attached,
) -> None:
    """The remote path of `hpcrun flare`: kits provisioned here and copied to the cluster
    (keys 0600 there), the admin kit never copied, the admin reaching the server's port
    through an SSH tunnel, nothing left after down."""
    pytest.importorskip("nvflare")
    up = json.loads(
        attached.cli(
            "flare", "up", "--sites", "2", "--python", sys.executable, "--json", timeout=300
        ).stdout
    )
    try:
        assert up["status"] == "running" and all(s["registered"] for s in up["sites"]), up
        remote_kits = Path(up["run_dir"]) / "kits"
        assert sorted(p.name for p in remote_kits.iterdir()) == ["server", "site-1", "site-2"]
        keys = list(remote_kits.rglob("*.key"))
        assert keys and all(k.stat().st_mode & 0o077 == 0 for k in keys)
        admin_kit = Path(up["admin_kit"])
        assert admin_kit.is_relative_to(attached.home) and (admin_kit / "startup").is_dir()
        # FLARE's own answer, through the tunnel to the server's admin port.
        status = json.loads(attached.cli("flare", "status", "--json").stdout)
        assert status["admin_error"] is None, status
        assert [s["registered"] for s in status["sites"]] == [True, True], status
    finally:
        down = attached.cli("flare", "down", "--json", check=False, timeout=300)
    assert json.loads(down.stdout)["status"] == "stopped", down.stderr
    from tests.conftest import processes_mentioning

    assert processes_mentioning(up["run_dir"]) == []
