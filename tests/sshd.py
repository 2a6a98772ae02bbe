"""A real OpenSSH server on 127.0.0.1 for tests: the stand-in for a cluster's head node.

`start_sshd()` writes a private config (own host key, the test key pair as the only
authorized key, no passwords, no PAM, PidFile in the temp dir) and runs
`/usr/sbin/sshd -D` on a free port, logging in as the current user; `SshServer.stop()`
ends it by PID. The `sshd_server` fixture starts one per test session; it skips when
sshd is not installed, except in CI (CI=true), where a missing sshd must fail loudly
rather than silently skip the SSH half of the runner contract.

Import the fixture into a test module with
`from tests.sshd import sshd_server  # noqa: F401`.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpcrun.transport.ssh import SSHRunner
from tests.conftest import free_port

SSHD = "/usr/sbin/sshd"


@dataclass
class SshServer:
    """A running sshd and everything a client needs to log in to it."""

    host: str
    port: int
    user: str
    key_path: Path
    known_hosts_path: Path  # already holds this server's host key as `[host]:port`
    host_key_fingerprint: str  # OpenSSH style: SHA256:...
    workdir: Path
    pid: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """End this sshd (by PID) and remove its files; sessions it forked end with it."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)


def sshd_missing_reason() -> str | None:
    """Why no sshd can be started here, or None when one can."""
    if not Path(SSHD).exists():
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    if not shutil.which("ssh-keygen"):
        return "ssh-keygen is not installed (apt-get install openssh-client)"
    return None


def require_sshd() -> None:
    """Skip the calling test when sshd is missing; in CI fail instead."""
    reason = sshd_missing_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"ssh test cannot run in CI: {reason}")
    pytest.skip(reason)


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hpcrun-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )


def _fingerprint(public_key_path: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public_key_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.split()[1]


def start_sshd(workdir: Path | None = None, *, start_timeout_s: float = 10.0) -> SshServer:
    """Start sshd on a free loopback port and wait until it accepts connections."""
    work = workdir or Path(tempfile.mkdtemp(prefix="hsshd", dir="/tmp"))
    host_key = work / "ssh_host_ed25519_key"
    client_key = work / "id_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    authorized = work / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    authorized.chmod(0o600)
    port = free_port()
    host_public = Path(f"{host_key}.pub").read_text().split()
    known_hosts = work / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_public[0]} {host_public[1]}\n")
    pid_file = work / "sshd.pid"
    config = work / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                f"PidFile {pid_file}",
                "Subsystem sftp internal-sftp",
                "AllowTcpForwarding yes",
                "MaxSessions 64",
                "MaxStartups 64",
                "LogLevel INFO",
                "",
            ]
        )
    )
    if os.geteuid() == 0:
        # sshd's privilege separation chroots into /run/sshd and refuses to start without it.
        subprocess.run(["install", "-d", "-m0755", "/run/sshd"], check=True)
    log = work / "sshd.log"
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config), "-p", str(port), "-E", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = SshServer(
        host="127.0.0.1",
        port=port,
        user=getpass.getuser(),
        key_path=client_key,
        known_hosts_path=known_hosts,
        host_key_fingerprint=_fingerprint(Path(f"{host_key}.pub")),
        workdir=work,
        pid=process.pid,
        process=process,
    )
    deadline = time.monotonic() + start_timeout_s
    while True:
        if process.poll() is not None:
            said = log.read_text() if log.exists() else ""
            server.stop()
            raise RuntimeError(f"sshd exited {process.returncode}: {said}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.01)


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshServer]:
    """One sshd per test session (per importing module), stopped by PID at the end."""
    require_sshd()
    server = start_sshd()
    try:
        yield server
    finally:
        server.stop()


def runner_for(server: SshServer, **kwargs: object) -> SSHRunner:
    """An `SSHRunner` logged in to `server` with its key and host key; `kwargs` override."""
    options: dict[str, object] = {
        "port": server.port,
        "user": server.user,
        "key_path": server.key_path,
        "known_hosts_path": server.known_hosts_path,
    }
    options.update(kwargs)
    return SSHRunner(server.host, **options)  # type: ignore[arg-type]
