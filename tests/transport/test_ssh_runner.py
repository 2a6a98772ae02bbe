"""SSHRunner beyond the shared Runner contract: host keys, reconnects, remote timeouts,
Slurm commands through SSH, and port forwarding (the `hpcrun index --tunnel` path).

Everything runs against a real sshd on loopback started by `tests/sshd.py`.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hpcrun.errors import HpcrunError
from hpcrun.slurm import SlurmClient
from hpcrun.transport.ssh import SSHRunner, command_line, known_hosts_label
from tests.conftest import processes_mentioning
from tests.sshd import SshServer, runner_for, sshd_server  # noqa: F401


@pytest.fixture
def ssh(sshd_server: SshServer) -> Iterator[SSHRunner]:  # noqa: F811
    runner = runner_for(sshd_server)
    yield runner
    runner.close()


def test_command_line_quotes_every_word_and_puts_env_first() -> None:
    assert command_line(["echo", "a b", "$x"]) == "echo 'a b' '$x'"
    assert command_line(["sinfo"], {"SLURM_CONF": "/a b/slurm.conf"}) == (
        "env 'SLURM_CONF=/a b/slurm.conf' sinfo"
    )
    with pytest.raises(ValueError):
        command_line([])
    with pytest.raises(ValueError):
        command_line(["true"], {"A=B": "c"})
    assert known_hosts_label("head", 22) == "head"
    assert known_hosts_label("127.0.0.1", 2222) == "[127.0.0.1]:2222"


@pytest.mark.ssh
def test_unknown_host_key_is_rejected_with_its_fingerprint(
    sshd_server: SshServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    runner = runner_for(sshd_server, known_hosts_path=empty)
    with pytest.raises(HpcrunError) as err:
        runner.run(["true"])
    assert f"[127.0.0.1]:{sshd_server.port}" in err.value.message
    assert sshd_server.host_key_fingerprint in err.value.message
    assert err.value.hint is not None and "--trust-new-host" in err.value.hint
    assert empty.read_text() == ""  # nothing recorded without consent


@pytest.mark.ssh
def test_trust_new_host_records_the_key_once(
    sshd_server: SshServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    known = tmp_path / "hpcrun" / "known_hosts"
    with runner_for(sshd_server, known_hosts_path=known, trust_new_host=True) as trusting:
        assert trusting.run(["true"]).ok
    lines = known.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"[127.0.0.1]:{sshd_server.port} ssh-ed25519 ")
    # From now on the key is known: a strict runner connects, and nothing is added again.
    with runner_for(sshd_server, known_hosts_path=known) as strict:
        assert strict.run(["true"]).ok
    assert known.read_text().splitlines() == lines


@pytest.mark.ssh
def test_changed_host_key_is_refused(sshd_server: SshServer, tmp_path: Path) -> None:  # noqa: F811
    other = tmp_path / "other"
    other.mkdir()
    # A different key recorded for the same [host]:port, as after a head node was replaced.
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other / "k")], check=True
    )
    kind, blob = (other / "k.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd_server.port} {kind} {blob}\n")
    with pytest.raises(HpcrunError, match="has CHANGED"):
        runner_for(sshd_server, known_hosts_path=known).run(["true"])


@pytest.mark.ssh
def test_wrong_key_is_a_clear_login_error(sshd_server: SshServer, tmp_path: Path) -> None:  # noqa: F811
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "stranger")],
        check=True,
    )
    with pytest.raises(HpcrunError, match="refused") as err:
        runner_for(sshd_server, key_path=tmp_path / "stranger").run(["true"])
    assert err.value.hint is not None and "private key" in err.value.hint


def test_unreachable_host_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connection refused
        with pytest.raises(HpcrunError, match="cannot reach SSH server"):
            SSHRunner(
                "127.0.0.1",
                port=port,
                known_hosts_path=tmp_path / "known_hosts",
                connect_timeout_s=2,
            ).run(["true"])


@pytest.mark.ssh
def test_socket_has_nodelay_and_keepalive(ssh: SSHRunner) -> None:
    transport = ssh.connect()
    sock = transport.sock
    assert isinstance(sock, socket.socket)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    # paramiko keeps the interval private; it is what makes a NAT keep the idle tunnel.
    assert getattr(transport.packetizer, "_Packetizer__keepalive_interval", 30) == 30


@pytest.mark.ssh
def test_reconnects_once_when_the_connection_dropped(ssh: SSHRunner) -> None:
    assert ssh.run(["echo", "one"]).stdout == "one\n"
    first = ssh.connect()
    first.sock.close()  # type: ignore[union-attr]  # the network went away under us
    deadline = time.monotonic() + 5
    while first.is_active() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ssh.run(["echo", "two"]).stdout == "two\n"
    assert ssh.connect() is not first
    # SFTP reopens on the new transport too.
    ssh.put("/tmp/hpcrun-ssh-reconnect-probe", b"ok")
    assert ssh.get("/tmp/hpcrun-ssh-reconnect-probe") == b"ok"
    Path("/tmp/hpcrun-ssh-reconnect-probe").unlink()


@pytest.mark.ssh
def test_timeout_ends_the_remote_command(ssh: SSHRunner) -> None:
    marker = f"hpcrun-timeout-{uuid.uuid4().hex[:8]}"
    with pytest.raises(HpcrunError, match=r"did not finish within 0\.3 s"):
        ssh.run(["bash", "-c", f"exec -a {marker} sleep 30"], timeout_s=0.3)
    deadline = time.monotonic() + 3
    while processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_mentioning(marker), "timed-out command left running on the host"
    assert ssh.run(["true"]).ok  # the connection is still usable


@pytest.mark.ssh
@pytest.mark.skipif(not shutil.which("sinfo"), reason="Slurm client commands not installed")
def test_slurm_client_commands_run_through_ssh(ssh: SSHRunner, tmp_path: Path) -> None:
    conf = tmp_path / "slurm dir" / "slurm.conf"
    conf.parent.mkdir()
    conf.write_text("ClusterName=sshtest\nSlurmctldHost=localhost\n")  # enough for --version
    with runner_for_env(ssh, {"SLURM_CONF": str(conf)}) as remote:
        assert remote.run(["printenv", "SLURM_CONF"]).check().stdout == f"{conf}\n"
        assert SlurmClient(remote).version().startswith(("slurm ", "slurm-wlm ", "2"))


def runner_for_env(base: SSHRunner, env: dict[str, str]) -> SSHRunner:
    return SSHRunner(
        base.host,
        port=base.port,
        user=base.user,
        key_path=base.key_path,
        known_hosts_path=base.known_hosts_path,
        env=env,
    )


class _Page(http.server.BaseHTTPRequestHandler):
    """A stand-in for the viewer: a page, and a long-lived echo stream like its websocket."""

    def do_GET(self) -> None:
        if self.path == "/stream":
            self.send_response(101)
            self.send_header("Upgrade", "echo")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while line := self.rfile.readline():
                self.wfile.write(b"echo:" + line)
                self.wfile.flush()
            return
        body = b"<html><title>hpcrun viewer</title></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.mark.ssh
def test_forward_local_port_serves_the_page_and_a_long_lived_stream(
    ssh: SSHRunner, page_server: int, sshd_server: SshServer  # noqa: F811
) -> None:
    local_port, close = ssh.forward_local_port("127.0.0.1", page_server)
    try:
        assert local_port != page_server
        url = f"http://127.0.0.1:{local_port}/"
        for _ in range(3):  # several connections through one transport
            with urllib.request.urlopen(url, timeout=5) as page:
                assert b"hpcrun viewer" in page.read()
        with socket.create_connection(("127.0.0.1", local_port), timeout=5) as stream:
            stream.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = stream.makefile("rb")
            assert reader.readline().startswith(b"HTTP/1.")
            while reader.readline() not in (b"\r\n", b""):
                pass
            for i in range(5):
                stream.sendall(f"frame {i}\n".encode())
                # Once in CI the stream ended here with paramiko's "Broken pipe": sshd
                # closed the connection. Its log says why, should that happen again.
                assert reader.readline() == f"echo:frame {i}\n".encode(), _sshd_log(
                    sshd_server
                )
                # meanwhile other requests still pass
                if i == 2:
                    with urllib.request.urlopen(url, timeout=5) as page:
                        assert page.status == 200
    finally:
        close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", local_port), timeout=1).close()


def _sshd_log(server: SshServer) -> str:
    log = server.workdir / "sshd.log"
    tail = log.read_text().splitlines()[-15:] if log.exists() else ["(no sshd log)"]
    return "sshd log:\n" + "\n".join(tail)


@pytest.mark.ssh
def test_forward_to_a_closed_port_drops_only_that_connection(ssh: SSHRunner) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    local_port, close = ssh.forward_local_port("127.0.0.1", dead_port)
    try:
        with socket.create_connection(("127.0.0.1", local_port), timeout=5) as conn:
            conn.settimeout(5)
            assert conn.recv(10) == b""  # closed by the tunnel, no hang
        assert ssh.run(["true"]).ok
    finally:
        close()


@pytest.mark.ssh
def test_concurrent_commands_share_one_connection(ssh: SSHRunner) -> None:
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda i: ssh.run(["echo", str(i)]).stdout, range(16)))
    assert outs == [f"{i}\n" for i in range(16)]
    assert ssh.get("/proc/self/comm")  # SFTP alongside


@pytest.mark.ssh
def test_a_command_the_connection_drops_under_runs_once_and_its_outcome_comes(
    ssh: SSHRunner, tmp_path: Path
) -> None:
    """The network goes away while `sbatch` (here: a script that counts its runs) runs:
    hpcrun reconnects and returns what the command really did, instead of guessing or
    running it again."""
    runs = tmp_path / "runs"
    script = f"echo run >> {runs}; sleep 1.5; echo out; echo err >&2; exit 3"
    transport = ssh.connect()

    def drop() -> None:
        time.sleep(0.5)
        transport.sock.close()  # type: ignore[union-attr]

    dropper = threading.Thread(target=drop)
    dropper.start()
    done = ssh.run(["sh", "-c", script], timeout_s=30)
    dropper.join()
    assert ssh.connect() is not transport  # it did reconnect
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert runs.read_text() == "run\n"  # once
    # With input too: the script reaches the command whole, once.
    counted = ssh.run(["sh", "-c", f"cat >> {runs}"], input="second\n")
    assert counted.ok and runs.read_text() == "run\nsecond\n"


@pytest.mark.ssh
def test_spools_are_removed_once_read(ssh: SSHRunner) -> None:
    home = Path(ssh.run(["sh", "-c", "echo $HOME"]).stdout.strip())
    spool = home / ".hpcrun" / "ssh-spool"
    # The spool root is shared with every other hpcrun (the suite's other worker too):
    # only this runner's own spools, as it names them, are looked at.
    mine = []
    for _ in range(3):
        ssh.run(["true"])
        (read,) = ssh._read_spools  # read, kept until the next command removes it
        mine.append(Path(read).name)
    present = {p.name for p in spool.iterdir()}
    assert mine[0] not in present and mine[1] not in present  # removed by the next command
    assert mine[2] in present  # the last one's, removed by the next command or close
    ssh.close()
    assert mine[2] not in {p.name for p in spool.iterdir()}


@pytest.mark.ssh
def test_a_new_connection_sweeps_what_ended_processes_left(
    ssh: SSHRunner, sshd_server: SshServer  # noqa: F811
) -> None:
    home = Path(ssh.run(["sh", "-c", "echo $HOME"]).stdout.strip())
    spool = home / ".hpcrun" / "ssh-spool"
    ended, running = spool / f"ended-{uuid.uuid4().hex}", spool / f"running-{uuid.uuid4().hex}"
    for directory in (ended, running):
        directory.mkdir(parents=True)
        (directory / "out").write_text("")
    (ended / "rc").write_text("0\n")
    old = time.time() - 20 * 60
    os.utime(ended / "rc", (old, old))
    os.utime(running, (old, old))
    fresh = runner_for(sshd_server)
    try:
        assert fresh.run(["true"]).ok
    finally:
        fresh.close()
    assert not ended.exists()  # ended 20 minutes ago: nobody will read it any more
    assert running.exists()  # no exit status yet: its command may still run
    shutil.rmtree(running)
