"""How render agents find the viewer of a job: one small JSON file per viewer.

NVIDIA's nvindex-slurm finds the head of the initial job through Slurm; the open
renderer uses a file on storage every node sees (the home directory on a cluster, a tmp
directory in tests): `<dir>/<job id>.json` holding the viewer's host, ports, pid and a
random token. The token is the agents' proof that they were started by someone who can
read the file (mode 0600), so a stranger on the network cannot join and feed the viewer
images. The file is written atomically (tmp + rename) so a waiting agent never reads
half of it, and removed by the viewer when it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from hpcrun.errors import HpcrunError

ENV_DIR = "NVINDEX_OPEN_RENDEZVOUS"
DEFAULT_WAIT_S = 60.0


class RendezvousTimeout(HpcrunError):
    def __init__(self, path: Path, waited_s: float, detail: str) -> None:
        super().__init__(
            f"no viewer found for this job after {waited_s:.0f} s ({path}: {detail})",
            "start the viewer first (rank 0 of the initial job, without -a), and give "
            "every rank the same --rendezvous directory on storage all nodes share",
        )
        self.path = path


@dataclass(frozen=True)
class Rendezvous:
    """Where a job's viewer listens, and the token its agents must present."""

    job_id: str
    host: str
    agent_port: int
    http_port: int
    pid: int
    token: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Rendezvous:
        data = json.loads(text)
        return cls(
            job_id=str(data["job_id"]),
            host=str(data["host"]),
            agent_port=int(data["agent_port"]),
            http_port=int(data["http_port"]),
            pid=int(data["pid"]),
            token=str(data["token"]),
        )


def rendezvous_dir(explicit: str | Path | None = None) -> Path:
    """--rendezvous, else $NVINDEX_OPEN_RENDEZVOUS, else ~/.hpcrun/index-rendezvous."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    return Path.home() / ".hpcrun" / "index-rendezvous"


def rendezvous_path(directory: Path, job_id: str) -> Path:
    return directory / f"{job_id}.json"


def write(directory: Path, info: Rendezvous) -> Path:
    """Publish `info` atomically with mode 0600; returns the file's path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = rendezvous_path(directory, info.job_id)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(info.to_json())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def remove(directory: Path, info: Rendezvous) -> None:
    """Remove the file, but only if it is still ours (a newer viewer may have replaced it)."""
    path = rendezvous_path(directory, info.job_id)
    try:
        current = Rendezvous.from_json(path.read_text())
    except (OSError, ValueError, KeyError):
        return
    if current.token == info.token:
        with contextlib.suppress(OSError):
            path.unlink()


def from_pod(job_id: str) -> Rendezvous | None:
    """In a Kubernetes pod of the release `job_id`, the viewer as its objects name it (its
    headless Service, the fixed agent port, the release's token); None elsewhere."""
    from hpcrun.node.viewer import pod

    host, port, token = os.environ.get(pod.VIEWER_HOST), pod.agent_port(), pod.token()
    if not host or not port or not token or os.environ.get(pod.RELEASE) != job_id:
        return None
    return Rendezvous(job_id, host, port, 0, 0, token)


def read(directory: Path, job_id: str) -> Rendezvous | None:
    """The job's rendezvous, or None while there is none (or it is unreadable)."""
    found = from_pod(job_id)
    if found is not None:
        return found
    try:
        return Rendezvous.from_json(rendezvous_path(directory, job_id).read_text())
    except (OSError, ValueError, KeyError):
        return None


def _tune(sock: socket.socket) -> None:
    """No Nagle delay for small requests; keepalive so an agent whose viewer node
    vanished (no FIN ever comes) notices within about half a minute and exits."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


# Agents start beside the viewer and look for its file every `poll_s` for this long (a
# backoff from the start had an agent find a viewer ~0.3 s after it was up), then less.
STEADY_POLL_S = 5.0


def connect(
    directory: Path, job_id: str, timeout_s: float = DEFAULT_WAIT_S, poll_s: float = 0.05
) -> tuple[Rendezvous, socket.socket]:
    """Wait for the job's viewer and connect to its agent port.

    Waits for the file *and* for a successful connection: a file left by a viewer that
    was killed (SIGKILL cannot clean up) names a port nobody listens on, and the real
    viewer may be about to replace it. Raises `RendezvousTimeout` after `timeout_s`.
    """
    path = rendezvous_path(directory, job_id)
    start = time.monotonic()
    detail = "file does not exist"
    while True:
        info = read(directory, job_id)
        if info is not None:
            try:
                sock = socket.create_connection((info.host, info.agent_port), timeout=5.0)
            except OSError as exc:
                detail = f"viewer at {info.host}:{info.agent_port} does not answer: {exc}"
            else:
                sock.settimeout(None)
                _tune(sock)
                return info, sock
        waited = time.monotonic() - start
        if waited >= timeout_s:
            raise RendezvousTimeout(path, waited, detail)
        time.sleep(min(poll_s, max(0.0, timeout_s - waited)))
        if waited >= STEADY_POLL_S:  # a viewer starts within seconds: poll it steadily
            poll_s = min(poll_s * 1.5, 0.5)
