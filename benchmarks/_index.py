"""What the IndeX benchmarks share: start a session with `hpcrun index` and time the
moment its viewer's readiness line appears in the step's output, seen from outside."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from typing import Any

from _common import BenchCluster, hpcrun_exe, log

READY_MARKER = "Application layer viewer server is running at "


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_session(
    cluster: BenchCluster, nodes: int, scene: str = "supernova", timeout_s: float = 300.0
) -> tuple[float, float, dict[str, Any]]:
    """Run `hpcrun index`; return (seconds to the readiness line in the viewer's log,
    seconds until the command returned with every agent registered, its JSON)."""
    index_dir = cluster.home / "clusters" / cluster.name / "index"
    known = set(index_dir.glob("*/viewer.log")) if index_dir.exists() else set()
    started = time.perf_counter()
    proc = subprocess.Popen(
        [hpcrun_exe(), "index", "--nodes", str(nodes), "--scene", scene,
         "--port", str(free_port()), "--json", "--timeout", str(timeout_s)],
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ready_s = None
    while ready_s is None and proc.poll() is None:
        for log_path in set(index_dir.glob("*/viewer.log")) - known:
            if READY_MARKER in log_path.read_text(errors="replace"):
                ready_s = time.perf_counter() - started
        time.sleep(0.005)
    out, err = proc.communicate(timeout=timeout_s)
    done_s = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"hpcrun index failed:\n{err}")
    if ready_s is None:  # the command returned before the poll saw the line
        ready_s = done_s
    return ready_s, done_s, json.loads(out)


def viewer_status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.rstrip("/") + "/api/status", timeout=5) as response:
        return dict(json.loads(response.read()))


def stop_session(cluster: BenchCluster) -> None:
    done = cluster.hpcrun("index", "stop", check=False)
    if done.returncode != 0:
        log(f"index stop: {done.stderr.strip()}")
