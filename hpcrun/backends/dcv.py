"""The head node's remote desktop (NICE DCV): what `pcluster dcv connect` does, over any
`Runner` (SSH to the head node in practice).

ParallelCluster ships `/opt/parallelcluster/scripts/pcluster_dcv_connect.sh <home>` on
the head node: it makes sure a DCV session exists and prints a one-time session token.
The URL built from it works once and only for about 30 seconds, so it is opened at once
(or printed with that warning) and never written to disk or to a log.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from hpcrun.errors import HpcrunError
from hpcrun.transport.runner import Runner

DCV_CONNECT_SCRIPT = "/opt/parallelcluster/scripts/pcluster_dcv_connect.sh"
URL_LIFETIME_S = 30
_PARAMETERS_RE = re.compile(
    r"PclusterDcvServerPort=(\d+)\s+PclusterDcvSessionId=([\w.-]+)\s+PclusterDcvSessionToken=([\w-]+)"
)


@dataclass(frozen=True)
class DcvSession:
    port: int
    session_id: str
    token: str = ""

    def __repr__(self) -> str:  # the token is a credential: keep it out of tracebacks
        return f"DcvSession(port={self.port}, session_id={self.session_id!r}, token=<hidden>)"

    def url(self, host: str) -> str:
        return f"https://{host}:{self.port}?authToken={self.token}#{self.session_id}"


def parse_connect_output(text: str) -> DcvSession | None:
    """The three values the connect script prints on one line, wherever that line is
    (ssh may add a known-hosts notice before it)."""
    found = _PARAMETERS_RE.search(text)
    if found is None:
        return None
    return DcvSession(int(found.group(1)), found.group(2), found.group(3))


def connect(
    runner: Runner,
    host: str,
    home: str,
    *,
    attempts: int = 4,
    wait_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    script: str = DCV_CONNECT_SCRIPT,
) -> str:
    """Prepare the head node's DCV session and return its one-time URL.

    Tries `attempts` times, as pcluster does: the DCV server may still be starting on a
    freshly created head node.
    """
    last = ""
    for attempt in range(attempts):
        try:
            done = runner.run([script, home], timeout_s=60.0)
        except HpcrunError as exc:
            if "command not found" not in exc.message:
                raise
            done = None
        output = (done.stdout + done.stderr).strip() if done else ""
        if done is None or "No such file or directory" in output or done.returncode == 127:
            raise HpcrunError(
                f"{host} has no {script}: the cluster was made without DCV support",
                "enable DCV on the head node in the cluster file (dcv: enabled: true) and "
                "recreate it, or use `hpcrun ssh`",
            )
        if done.ok:
            session = parse_connect_output(output)
            if session is not None:
                return session.url(host)
            last = "the connect script printed no DCV session parameters"
        else:
            last = _tail(output) or f"exit status {done.returncode}"
        if attempt + 1 < attempts:
            sleep(wait_s)
    raise HpcrunError(
        f"could not prepare a DCV session on {host} after {attempts} attempts: {last}",
        "check /var/log/parallelcluster/ on the head node (`hpcrun ssh`)",
    )


def _tail(text: str, lines: int = 3) -> str:
    return " / ".join(text.strip().splitlines()[-lines:])
