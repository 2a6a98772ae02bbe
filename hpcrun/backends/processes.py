"""Talking to the supervisor, and finding our own processes when it is gone.

`SupervisorClient` sends one JSON request per connection to the supervisor's socket.
When the supervisor has crashed, `daemons.json` still lists the PIDs it started; before
anything signals such a PID we check in /proc that it is alive (not a zombie) and still
belongs to this cluster, since PIDs are reused.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hpcrun.backends import supervisor as sv
from hpcrun.errors import HpcrunError


class SupervisorUnavailable(HpcrunError):
    pass


class SupervisorClient:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.socket_path = run_dir / sv.SOCKET_NAME

    def request(self, op: str, timeout_s: float = 30.0, **fields: Any) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(timeout_s)
                self._connect(conn, time.monotonic() + timeout_s)
                conn.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
                data = sv.receive_line(conn)
        except OSError as exc:
            raise SupervisorUnavailable(
                f"the cluster's supervisor does not answer at {self.socket_path}: {exc}",
                "run `hpcrun create` again to restart it",
            ) from None
        reply: dict[str, Any] = json.loads(data or b"{}")
        if not reply.get("ok"):
            raise HpcrunError(f"supervisor refused {op!r}: {reply.get('error', 'no answer')}")
        return reply

    def _connect(self, conn: socket.socket, deadline: float) -> None:
        """Connect, waiting while the supervisor's accept queue is full: a unix socket with
        a timeout answers a full queue with EAGAIN at once, and 64 `hpcrun status` at a
        time made a live supervisor look gone (580 of 1280 requests, issue 14), so
        `status` said "down" and `create` would have ended every daemon as stale."""
        while True:
            try:
                conn.connect(str(self.socket_path))
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)

    def alive(self) -> bool:
        try:
            self.request("status", timeout_s=5.0)
        except SupervisorUnavailable:
            return False
        return True

    def start_supervisor(self, log_path: Path, timeout_s: float = 15.0) -> None:
        """Start the supervisor in a session of its own, so it outlives this command."""
        with open(log_path, "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "hpcrun.backends.supervisor", str(self.run_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.alive():
                return
            time.sleep(0.05)
        raise SupervisorUnavailable(
            f"the supervisor did not start within {timeout_s:g} s",
            f"see {log_path}",
        )

    def recorded_daemons(self) -> list[dict[str, Any]]:
        """Daemons as the supervisor last recorded them (readable when it is gone)."""
        try:
            state = json.loads((self.run_dir / sv.STATE_NAME).read_text())
        except (OSError, ValueError):
            return []
        daemons: list[dict[str, Any]] = state.get("daemons", [])
        return daemons

    def recorded_supervisor_pid(self) -> int | None:
        try:
            return int((self.run_dir / sv.PID_NAME).read_text().strip())
        except (OSError, ValueError):
            return None


def process_alive(pid: int) -> bool:
    """True when `pid` runs and is not a zombie (kill(pid, 0) says yes to zombies)."""
    state = sv.proc_state(pid)
    return state is not None and state[0] != "Z"


def process_belongs(pid: int, marker: str) -> bool:
    """Does `pid` mention `marker` (the cluster's directory) in its argv or environment?"""
    for name in ("cmdline", "environ"):
        try:
            data = Path(f"/proc/{pid}/{name}").read_bytes()
        except OSError:
            continue
        if marker.encode() in data:
            return True
    return False


def processes_mentioning(marker: str) -> list[int]:
    """Every process (but this one) whose argv or environment names `marker`: the jobs'
    tasks and the `srun` steps hpcrun started (SLURM_CONF points into the cluster)."""
    me = os.getpid()
    pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
    return [p for p in pids if p != me and process_belongs(p, marker)]


def kill_stale(pids: list[int], marker: str, timeout_s: float = 10.0) -> list[int]:
    """End processes of ours left by a crashed supervisor; return the PIDs signalled."""
    ours = [p for p in pids if p > 0 and process_alive(p) and process_belongs(p, marker)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while any(process_alive(p) for p in ours) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not any(process_alive(p) for p in ours):
            break
    return ours
