"""The local cluster's supervisor: parent of every daemon, reaper of every orphan.

This host's PID 1 does not reap orphans, so daemons that fork themselves into the
background leave zombies, and nobody notices when one dies. hpcrun therefore runs each
daemon (munged, mariadbd, slurmdbd, slurmctld, one slurmd per node) in the foreground
under this process, which `hpcrun create` starts in a session of its own so it outlives
the command. It marks itself a child subreaper, so job steps orphaned by a slurmd are
reparented to it and reaped too, and it records every daemon's PID and exit in
`daemons.json` for `hpcrun status` and for `hpcrun down` when the supervisor itself is gone.

Requests arrive on a unix socket, one JSON object per connection:
`{"op": "start", "name", "argv", "env", "log"}`, `{"op": "stop", "name"}`,
`{"op": "adopt", "name", "argv", "log", "pid", "started_at"}`, `{"op": "status"}`,
`{"op": "shutdown"}`. Run as `python -m hpcrun.backends.supervisor DIR`.

A supervisor that was killed leaves its daemons running, parented to PID 1; the next one
adopts them (`adopt`) rather than have `hpcrun create` end them with the jobs they run.
It cannot wait() for a process it did not start, so it watches an adopted daemon in /proc
(gone, or a zombie nobody reaps: ended, exit status unknown) and signals it by PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
SOCKET_NAME = "supervisor.sock"
STATE_NAME = "daemons.json"
PID_NAME = "supervisor.pid"


@dataclass
class Daemon:
    name: str
    argv: list[str]
    log: str
    env: dict[str, str] = field(default_factory=dict)
    pid: int = 0
    started_at: float = 0.0
    ended_at: float | None = None
    returncode: int | None = None  # exit status, or -N when killed by signal N
    stop_requested: bool = False
    adopted: bool = False  # started by an earlier supervisor: watched in /proc, not wait()ed

    @property
    def running(self) -> bool:
        return self.pid > 0 and self.ended_at is None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("env")
        data["running"] = self.running
        data["died"] = not self.running and not self.stop_requested and self.pid > 0
        return data


class Supervisor:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.daemons: dict[str, Daemon] = {}
        self.exiting = False
        self.log = open(run_dir / "supervisor.events", "a", buffering=1)  # noqa: SIM115

    # lifecycle ------------------------------------------------------------------------

    def serve(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        sock_path = self.run_dir / SOCKET_NAME
        sock_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(sock_path))
        # Every `hpcrun status` asks here; a deep queue lets a burst wait rather than be
        # refused (clients also retry a full queue, see SupervisorClient._connect).
        listener.listen(128)
        (self.run_dir / PID_NAME).write_text(f"{os.getpid()}\n")
        self._event(f"supervisor {os.getpid()} listening on {sock_path}")
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        try:
            while not self.exiting:
                for _key, _mask in selector.select(timeout=0.2):
                    conn, _ = listener.accept()
                    with conn:
                        self._handle(conn)
                self.reap()
        finally:
            self.stop_all()
            listener.close()
            sock_path.unlink(missing_ok=True)
            (self.run_dir / PID_NAME).unlink(missing_ok=True)
            self._save()
            self._event("supervisor exits")

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.exiting = True

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10.0)
        try:
            request = json.loads(receive_line(conn) or b"{}")
            reply = self._dispatch(request)
        except Exception as exc:  # a bad request must never take the daemons down
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(reply).encode() + b"\n")

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "start":
            daemon = self.start(
                request["name"], list(request["argv"]), request["log"], dict(request.get("env", {}))
            )
            return {"ok": True, "daemon": daemon.to_json()}
        if op == "adopt":
            daemon = self.adopt(
                request["name"],
                list(request["argv"]),
                request["log"],
                int(request["pid"]),
                float(request.get("started_at", time.time())),
            )
            return {"ok": True, "daemon": daemon.to_json()}
        if op == "stop":
            self.stop(request["name"], float(request.get("timeout_s", 10.0)))
            return {"ok": True}
        if op == "status":
            return {"ok": True, "pid": os.getpid(), "daemons": self._daemon_list()}
        if op == "shutdown":
            self.exiting = True
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}

    # daemons --------------------------------------------------------------------------

    def start(self, name: str, argv: list[str], log: str, env: dict[str, str]) -> Daemon:
        current = self.daemons.get(name)
        if current is not None and current.running:
            return current
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        pid = os.posix_spawnp(
            argv[0],
            argv,
            {**os.environ, **env},
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log, flags, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
        )
        daemon = Daemon(name=name, argv=argv, log=log, env=env, pid=pid, started_at=time.time())
        self.daemons.pop(name, None)
        self.daemons[name] = daemon  # re-inserted last: stop_all goes in reverse start order
        self._event(f"started {name} pid {pid}: {' '.join(argv)}")
        self._save()
        return daemon

    def adopt(self, name: str, argv: list[str], log: str, pid: int, started_at: float) -> Daemon:
        """Watch a daemon an earlier supervisor started and that still runs (`pid`)."""
        current = self.daemons.get(name)
        if current is not None and current.running:
            return current
        daemon = Daemon(name=name, argv=argv, log=log, pid=pid, started_at=started_at, adopted=True)
        self.daemons.pop(name, None)
        self.daemons[name] = daemon
        self._event(f"adopted {name} pid {pid}")
        self.reap()  # it may have ended between the caller's look and now
        self._save()
        return daemon

    def stop(self, name: str, timeout_s: float) -> None:
        daemon = self.daemons.get(name)
        if daemon is None or not daemon.running:
            return
        daemon.stop_requested = True
        self._signal(daemon.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while daemon.running and time.monotonic() < deadline:
            time.sleep(0.02)
            self.reap()
        if daemon.running:
            self._event(f"{name} pid {daemon.pid} ignored SIGTERM for {timeout_s:g} s: SIGKILL")
            self._signal(daemon.pid, signal.SIGKILL)
            while daemon.running:
                time.sleep(0.02)
                self.reap()

    def stop_all(self) -> None:
        for name in reversed(list(self.daemons)):
            self.stop(name, timeout_s=10.0)
        # Whatever is left (job steps orphaned by a slurmd) was reparented to us: end it too.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            children = _children(os.getpid())
            for pid in children:
                self._signal(pid, sig)
            deadline = time.monotonic() + 3.0
            while _children(os.getpid()) and time.monotonic() < deadline:
                time.sleep(0.05)
                self.reap()
        self.reap()

    def reap(self) -> None:
        changed = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            for daemon in self.daemons.values():
                if daemon.pid == pid and daemon.running:
                    daemon.ended_at = time.time()
                    daemon.returncode = os.waitstatus_to_exitcode(status)
                    how = "stopped" if daemon.stop_requested else "DIED"
                    self._event(f"{daemon.name} pid {pid} {how} (status {daemon.returncode})")
                    changed = True
        for daemon in self.daemons.values():
            state = proc_state(daemon.pid) if daemon.adopted and daemon.running else ("R", 0)
            if state is None or state[0] == "Z":  # PID 1 reaps no one: a zombie has ended
                daemon.ended_at = time.time()
                how = "stopped" if daemon.stop_requested else "DIED"
                self._event(f"{daemon.name} pid {daemon.pid} (adopted) {how}")
                changed = True
        if changed:
            self._save()

    # bookkeeping ----------------------------------------------------------------------

    def _daemon_list(self) -> list[dict[str, Any]]:
        return [d.to_json() for d in self.daemons.values()]

    def _save(self) -> None:
        state = {"supervisor_pid": os.getpid(), "daemons": self._daemon_list()}
        tmp = self.run_dir / f".{STATE_NAME}.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.run_dir / STATE_NAME)

    def _event(self, message: str) -> None:
        self.log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def receive_line(conn: socket.socket) -> bytes:
    """One newline-terminated message of the supervisor protocol (either direction)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent PID) of `pid` from /proc, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _children(parent: int) -> list[int]:
    """Live (non-zombie) direct children of `parent`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        state = proc_state(int(entry))
        if state is not None and state[1] == parent and state[0] != "Z":
            found.append(int(entry))
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m hpcrun.backends.supervisor RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    run_dir.mkdir(parents=True, exist_ok=True)
    Supervisor(run_dir).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
