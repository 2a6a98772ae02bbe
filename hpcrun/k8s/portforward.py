"""A Kubernetes port-forward as a local port: `kubectl port-forward` held open in a context.

The API server's port-forward is a streaming (SPDY/WebSocket) protocol that lightkube does
not speak; kubectl does, and every user of a Kubernetes cluster has it (eksctl installs
it beside itself). kubectl binds the local port itself and prints `Forwarding from
127.0.0.1:PORT` once it listens, which is when the context opens; it is stopped by its
process group when the context closes.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator

from hpcrun.errors import HpcrunError
from hpcrun.k8s import tool

_FORWARDING_RE = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")


def kubectl() -> str:
    return tool(
        "kubectl",
        needed_for="hpcrun forwards the viewer with `kubectl port-forward`",
        hint="install kubectl (https://kubernetes.io/docs/tasks/tools/), or open the "
        "session through the cluster's ingress (its URL)",
    )


@contextlib.contextmanager
def port_forward(
    kubeconfig: str,
    context: str | None,
    namespace: str,
    target: str,
    port: int,
    local_port: int = 0,
    *,
    timeout_s: float = 20.0,
) -> Iterator[int]:
    """127.0.0.1:<bound> reaches `target` (`svc/NAME`, `pod/NAME`) port `port`."""
    argv = [kubectl(), "--kubeconfig", kubeconfig, "-n", namespace]
    if context:
        argv += ["--context", context]
    argv += ["port-forward", "--address", "127.0.0.1", target, f"{local_port or ''}:{port}"]
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        yield _bound_port(process, target, timeout_s)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _bound_port(process: subprocess.Popen[str], target: str, timeout_s: float) -> int:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    said: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([process.stdout], [], [], left)
        if not ready:
            break
        line = process.stdout.readline()
        if not line:
            break  # kubectl exited
        said.append(line.strip())
        found = _FORWARDING_RE.search(line)
        if found:
            return int(found.group(1))
    process.poll()
    raise HpcrunError(
        f"kubectl port-forward {target} did not start: {' '.join(said[-3:]) or 'no output'}",
        "check that the session's viewer pod is Running (`hpcrun index status`)",
    )
