"""The head node's remote desktop (NICE DCV): what `pcluster dcv connect` does, over any
`Runner` (SSH to the head node in practice).

ParallelCluster ships `/opt/parallelcluster/scripts/pcluster_dcv_connect.sh <home>` on
the head node: it makes sure a DCV session exists and prints a one-time session token.
The URL built from it works once and only for about 30 seconds, so it is opened at once
(or printed with that warning) and never written to disk or to a log.

The three ways this fails for users (pcluster's own issue tracker is full of them) each
get one clear error: the head node does not answer SSH at all (then it is not a DCV
problem), the DCV server is not up yet on a fresh head node (retried, with a line per
attempt, for a bounded time), and the DCV port is blocked between here and the head
node (the security group, i.e. the cluster file's `dcv.allowed_cidr`).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hpcrun.errors import HpcrunError
from hpcrun.transport.runner import Completed, Runner

DCV_CONNECT_SCRIPT = "/opt/parallelcluster/scripts/pcluster_dcv_connect.sh"
URL_LIFETIME_S = 30
ATTEMPTS = 6  # a fresh head node's DCV server can take a while to come up
RETRY_WAIT_S = 5.0
SCRIPT_TIMEOUT_S = 30.0
PORT_CHECK_TIMEOUT_S = 3.0
_PARAMETERS_RE = re.compile(
    r"PclusterDcvServerPort=(\d+)\s+PclusterDcvSessionId=([\w.-]+)\s+PclusterDcvSessionToken=([\w-]+)"
)
_TOKEN_RE = re.compile(r"(PclusterDcvSessionToken=|authToken=)[^\s#&]*")
# Browsers that run in the terminal: webbrowser picks them on a headless machine or in an
# SSH session, where they would take over the terminal and cannot show a DCV desktop.
TEXT_BROWSERS = frozenset({"www-browser", "links", "links2", "elinks", "lynx", "w3m", "browsh"})


@dataclass(frozen=True)
class DcvSession:
    port: int
    session_id: str
    token: str = ""

    def __repr__(self) -> str:  # the token is a credential: keep it out of tracebacks
        return f"DcvSession(port={self.port}, session_id={self.session_id!r}, token=<hidden>)"

    def url(self, host: str) -> str:
        return f"https://{host}:{self.port}?authToken={self.token}#{self.session_id}"


@dataclass(frozen=True)
class DcvDesktop:
    """A DCV session ready on a head node, and what to say when its port is blocked."""

    host: str
    session: DcvSession
    ssh_target: str  # user@host:port that answered SSH (the connect script ran there)
    dcv_settings: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        return self.session.port

    @property
    def url(self) -> str:
        """The one-time URL (it holds the token: show it to the user, nowhere else)."""
        return self.session.url(self.host)

    def port_problem(self, timeout_s: float = PORT_CHECK_TIMEOUT_S) -> HpcrunError | None:
        """None when the DCV port answers TCP from here, else the error that says so."""
        reason = port_unreachable(self.host, self.port, timeout_s)
        if reason is None:
            return None
        return blocked_port_error(
            self.host, self.port, reason, ssh_target=self.ssh_target, dcv=self.dcv_settings
        )


def parse_connect_output(text: str) -> DcvSession | None:
    """The three values the connect script prints on one line, wherever that line is
    (ssh may add a known-hosts notice before it)."""
    found = _PARAMETERS_RE.search(text)
    if found is None:
        return None
    return DcvSession(int(found.group(1)), found.group(2), found.group(3))


def redact(text: str) -> str:
    """`text` with any session token replaced by <hidden>."""
    return _TOKEN_RE.sub(r"\1<hidden>", text)


def prepare_session(
    runner: Runner,
    host: str,
    home: str,
    *,
    attempts: int = ATTEMPTS,
    wait_s: float = RETRY_WAIT_S,
    sleep: Callable[[float], None] = time.sleep,
    script: str = DCV_CONNECT_SCRIPT,
    progress: Callable[[str], None] | None = None,
    script_timeout_s: float = SCRIPT_TIMEOUT_S,
    clock: Callable[[], float] = time.monotonic,
) -> DcvSession:
    """Run the connect script on the head node until it prints a session, at most
    `attempts` times `wait_s` apart (each run at most `script_timeout_s`), so the whole
    wait is bounded. A failed attempt is reported through `progress`."""
    attempts = max(1, attempts)
    started = clock()
    last = ""
    for attempt in range(1, attempts + 1):
        missing = False
        try:
            done: Completed | None = runner.run([script, home], timeout_s=script_timeout_s)
        except HpcrunError as exc:
            if "command not found" in exc.message:
                missing, done = True, None
            elif "did not finish within" in exc.message:  # the script hung: try again
                done, last = None, redact(exc.message)
            else:
                raise
        output = (done.stdout + done.stderr).strip() if done else ""
        if done is not None and (
            done.returncode == 127 or (script in output and "No such file" in output)
        ):
            missing = True
        if missing:
            raise HpcrunError(
                f"{host} has no {script}: the cluster was made without DCV support",
                "enable DCV on the head node in the cluster file (dcv: enabled: true) and "
                "recreate it, or use `hpcrun ssh`",
            )
        if done is not None and done.ok:
            session = parse_connect_output(output)
            if session is not None:
                return session
            last = "the connect script printed no DCV session parameters" + (
                f" ({_tail(output)})" if output else ""
            )
        elif done is not None:
            last = _tail(output) or f"exit status {done.returncode}"
        if attempt < attempts:
            if progress is not None:
                progress(
                    f"DCV server on {host} not ready yet (attempt {attempt}/{attempts}): "
                    f"{last}; retrying in {wait_s:g} s"
                )
            sleep(wait_s)
    elapsed = clock() - started
    raise HpcrunError(
        f"DCV on {host} is not ready after {attempts} attempts over {elapsed:.0f} s "
        f"(the head node answers SSH; its connect script said: {last})",
        "a freshly created head node can take a few minutes to start its DCV server: run "
        "`hpcrun dcv` again shortly, or wait longer with `--attempts N`; if it persists, "
        "look at /var/log/parallelcluster/ and `systemctl status dcvserver` on the head "
        "node (`hpcrun ssh`)",
    )


def port_unreachable(host: str, port: int, timeout_s: float = PORT_CHECK_TIMEOUT_S) -> str | None:
    """None when `host:port` accepts a TCP connection from here within `timeout_s`,
    else why not (refused, timed out, no route)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__


def blocked_port_error(
    host: str,
    port: int,
    reason: str,
    *,
    ssh_target: str,
    dcv: Mapping[str, Any] | None = None,
) -> HpcrunError:
    """The DCV port does not answer from here although SSH did: the security group (the
    cluster file's dcv.allowed_cidr, ParallelCluster's HeadNode.Dcv.AllowedIps) or a
    firewall between here and the head node drops it."""
    message = (
        f"the DCV port {port} on {host} does not answer from here ({reason}); the head node "
        f"itself answers SSH ({ssh_target}) and its DCV session is ready, so port {port} "
        "is blocked between this machine and the head node"
    )
    if dcv is not None:
        allowed = str(dcv.get("allowed_cidr") or "0.0.0.0/0")
        hint = (
            f"open TCP port {port} to your address: set dcv.allowed_cidr in the cluster file "
            f"(now {allowed}; rendered as HeadNode.Dcv.AllowedIps) to your address/32 "
            "(this machine's public address, which hpcrun cannot know offline) and update "
            "the cluster"
        )
        if allowed in ("0.0.0.0/0", "::/0"):
            hint += (
                f"; {allowed} already admits everyone, so look for what else drops it: "
                "a security group changed by hand, or a firewall or proxy on this network"
            )
    else:
        hint = (
            f"open TCP port {port} on the head node to your address/32 (its security group "
            "or firewall; in a ParallelCluster cluster file that is dcv.allowed_cidr, "
            "rendered as HeadNode.Dcv.AllowedIps)"
        )
    hint += ", then run `hpcrun dcv` again (each run makes a new one-time URL)"
    return HpcrunError(message, hint)


def ssh_failed_error(host: str, exc: HpcrunError) -> HpcrunError:
    """SSH to the head node failed before DCV was asked anything: reachability or the
    key, not the DCV port."""
    return HpcrunError(
        f"the head node {host} did not answer SSH, so no DCV session could be asked for: "
        f"{exc.message}",
        "this is not a DCV port problem (the DCV port was not tried): the head node must be "
        "running and reachable over SSH from here, with the user and key of the cluster file"
        + (f"; {exc.hint}" if exc.hint else ""),
    )


def local_browser() -> webbrowser.BaseBrowser | None:
    """The graphical web browser Python would open here, or None on a machine without
    one (headless, an SSH session, CI): no browser at all, only text browsers, or a
    $BROWSER that names no program."""
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return None
    name = str(getattr(browser, "name", "") or "")
    if os.path.basename(name.split()[0] if name.split() else "") in TEXT_BROWSERS:
        return None
    if isinstance(browser, webbrowser.GenericBrowser) and shutil.which(browser.name) is None:
        return None
    return browser


def _tail(text: str, lines: int = 3) -> str:
    return " / ".join(redact(text).strip().splitlines()[-lines:])
