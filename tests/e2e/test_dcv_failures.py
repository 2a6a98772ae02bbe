"""`hpcrun dcv` the way users hit it, through the test head node (a real sshd on
loopback): the connect script runs over SSH and fails in each of the three ways
ParallelCluster users report, and each says so in one clear error without a traceback.

The clusters are recorded in a private HPCRUN_HOME as `hpcrun create` leaves them
(attaching would also need Slurm on the head node, which DCV does not use). No browser
exists for the CLI: $BROWSER names no program and there is no display.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcrun.state import ClusterState, StateStore
from tests.conftest import HPCRUN, clean_environ, free_port, short_tempdir
from tests.sshd import SshServer, sshd_server  # noqa: F401

pytestmark = [pytest.mark.ssh]

TOKEN = "tok-SECRET-123"
FAST = ("--attempts", "3", "--retry-wait", "0.05")


class Head:
    """A private HPCRUN_HOME whose clusters are the test sshd's head node, and `node`:
    the head node's side (its home directory, the connect scripts)."""

    def __init__(self, home: Path, node: Path, server: SshServer) -> None:
        self.home, self.node, self.server = home, node, server

    def record(self, name: str, script: Path, backend: str = "ssh", **extra: Any) -> None:
        config = {
            "backend": backend,
            "name": name,
            "host": self.server.host,
            "port": self.server.port,
            "user": self.server.user,
            "private_key_path": str(self.server.key_path),
            "known_hosts_path": str(self.server.known_hosts_path),
            "home": str(self.node),
            "dcv_connect_script": str(script),
            **extra,
        }
        StateStore(self.home).put_cluster(name, backend, config, ClusterState.UP)

    def script(self, name: str, body: str) -> Path:
        path = self.node / f"{name}.sh"
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
        return path

    def dcv(self, *args: str, browser: Path | None = None) -> subprocess.CompletedProcess[str]:
        env = clean_environ(
            HPCRUN_HOME=str(self.home), BROWSER=str(browser or self.home / "no-browser")
        )
        for name in ("DISPLAY", "WAYLAND_DISPLAY"):
            env.pop(name, None)
        return subprocess.run(
            [*HPCRUN, "dcv", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            check=False,
        )


@pytest.fixture
def head(sshd_server: SshServer) -> Iterator[Head]:  # noqa: F811
    home, node = short_tempdir("hdcv"), short_tempdir("hdcvnode")
    try:
        yield Head(home, node, sshd_server)
    finally:
        subprocess.run(["rm", "-rf", str(home), str(node)], check=False)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port that answers on loopback: the DCV server's, as far as a probe can tell."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def session_line(port: int) -> str:
    return (
        f"echo PclusterDcvServerPort={port} PclusterDcvSessionId=session-7 "
        f"PclusterDcvSessionToken={TOKEN}\n"
    )


def assert_clean_failure(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") or "\nerror: " in done.stderr
    assert TOKEN not in done.stderr


def test_a_blocked_dcv_port_names_the_port_the_cidr_and_that_ssh_answered(head: Head) -> None:
    closed = free_port()  # nothing listens: the security group's drop, as seen from here
    script = head.script("connect", 'test -d "$1" || exit 3\n' + session_line(closed))
    head.record(
        "pc",
        script,
        backend="parallelcluster",
        region="us-east-1",
        dcv={"enabled": True, "port": closed, "allowed_cidr": "198.51.100.0/24"},
    )
    done = head.dcv("--cluster", "pc", *FAST)
    assert_clean_failure(done)
    target = f"{head.server.user}@127.0.0.1:{head.server.port}"
    assert (
        f"error: the DCV port {closed} on 127.0.0.1 does not answer from here "
        f"(Connection refused); the head node itself answers SSH ({target})"
    ) in done.stderr
    assert "dcv.allowed_cidr" in done.stderr and "now 198.51.100.0/24" in done.stderr
    assert "HeadNode.Dcv.AllowedIps" in done.stderr and "your address/32" in done.stderr
    assert TOKEN not in done.stdout

    # --print-url is for opening it elsewhere: the URL comes, with the warning.
    printed = head.dcv("--cluster", "pc", "--print-url", *FAST)
    assert printed.returncode == 0, printed
    assert f"https://127.0.0.1:{closed}?authToken={TOKEN}#session-7" in printed.stdout
    assert f"warning: the DCV port {closed} on 127.0.0.1 does not answer" in printed.stderr
    assert TOKEN not in printed.stderr


def test_a_dcv_server_still_starting_is_retried_then_the_url_is_printed_without_a_browser(
    head: Head, listener: int
) -> None:
    count = head.node / "count"
    script = head.script(
        "connect",
        f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}\n"
        'if [ "$n" -lt 2 ]; then echo "ERROR: the dcvserver service is not running" >&2; '
        "exit 1; fi\n" + session_line(listener),
    )
    head.record("desk", script)
    done = head.dcv("--cluster", "desk", "--attempts", "4", "--retry-wait", "0.05")
    assert done.returncode == 0, done
    for attempt in (1, 2):
        assert (
            f"DCV server on 127.0.0.1 not ready yet (attempt {attempt}/4): ERROR: the "
            "dcvserver service is not running; retrying in 0.05 s"
        ) in done.stderr
    assert "attempt 3/4" not in done.stderr
    assert "No graphical web browser here" in done.stdout
    assert "within 30 seconds" in done.stdout
    assert f"https://127.0.0.1:{listener}?authToken={TOKEN}#session-7" in done.stdout
    assert TOKEN not in done.stderr
    assert count.read_text().strip() == "3"

    as_json = head.dcv("--cluster", "desk", "--json", *FAST)
    assert as_json.returncode == 0, as_json
    assert json.loads(as_json.stdout) == {
        "url": f"https://127.0.0.1:{listener}?authToken={TOKEN}#session-7",
        "expires_in_s": 30,
        "port_answers_here": True,
    }
    for path in head.home.rglob("*"):  # the state, and anything else hpcrun wrote
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_a_dcv_server_that_never_comes_up_ends_in_one_clear_error(head: Head) -> None:
    script = head.script("connect", 'echo "no session: dcv list-sessions found none" >&2\nexit 1\n')
    head.record("desk", script)
    done = head.dcv("--cluster", "desk", *FAST)
    assert_clean_failure(done)
    assert done.stderr.count("not ready yet (attempt") == 2
    assert "(attempt 2/3)" in done.stderr
    assert "error: DCV on 127.0.0.1 is not ready after 3 attempts over " in done.stderr
    assert "no session: dcv list-sessions found none" in done.stderr
    assert "hint: " in done.stderr and "--attempts" in done.stderr


def test_a_head_node_that_does_not_answer_ssh_says_so_not_dcv(head: Head) -> None:
    ran = head.node / "ran"
    script = head.script("connect", f"touch {ran}\n" + session_line(8443))
    head.record("gone", script, port=free_port())  # nothing listens on the SSH port
    done = head.dcv("--cluster", "gone", *FAST)
    assert_clean_failure(done)
    assert "error: the head node 127.0.0.1 did not answer SSH" in done.stderr
    assert "not a DCV port problem" in done.stderr
    assert not ran.exists()  # the connect script never ran, no DCV port was tried


def test_with_a_browser_the_url_goes_to_it_and_not_to_the_terminal(
    head: Head, listener: int
) -> None:
    opened = head.node / "opened"
    browser = head.script("firefox", f'echo "$1" > {opened}\n')  # a graphical browser's name
    head.record("desk", head.script("connect", session_line(listener)))
    done = head.dcv("--cluster", "desk", *FAST, browser=browser)
    assert done.returncode == 0, done
    assert opened.read_text().strip() == f"https://127.0.0.1:{listener}?authToken={TOKEN}#session-7"
    assert "Opened the DCV desktop of cluster desk in your browser" in done.stdout
    assert TOKEN not in done.stdout + done.stderr
