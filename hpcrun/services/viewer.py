"""Reaching a session's viewer from this machine: its HTTP status API and the tunnel.

The viewer listens on a cluster node. `ViewerClient` turns the session's URL into one on
127.0.0.1 through the backend's `reach` (the port itself on the local cluster, an SSH
tunnel through the head node on remote ones, a port-forward on Kubernetes), and reads the
open renderer's `/api/status` (how many render agents have registered) with the
session's basic-auth credentials.
"""

from __future__ import annotations

import base64
import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hpcrun.backends.base import Backend
from hpcrun.errors import HpcrunError
from hpcrun.state import IndexSessionRecord


class ViewerClient:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @staticmethod
    def address(session: IndexSessionRecord) -> tuple[str, int] | None:
        """Where the viewer listens: the host and port of its URL, or the address recorded
        beside a URL that an Ingress publishes (Kubernetes); None before it is up."""
        recorded = session.plan.get("viewer_address")
        if recorded:
            return str(recorded[0]), int(recorded[1])
        parts = urllib.parse.urlsplit(session.url or "")
        return (parts.hostname, parts.port) if parts.hostname and parts.port else None

    @contextlib.contextmanager
    def link(self, session: IndexSessionRecord) -> Iterator[str | None]:
        """A base URL on this machine that reaches the session's viewer for the duration;
        None when the session has no URL yet or the tunnel cannot open."""
        address = self.address(session)
        with contextlib.ExitStack() as links:
            port = None
            if address is not None:
                with contextlib.suppress(HpcrunError):
                    port = links.enter_context(self.backend.reach(*address))
            yield None if port is None else f"http://127.0.0.1:{port}"

    @contextlib.contextmanager
    def tunnel(self, session: IndexSessionRecord, local_port: int = 0) -> Iterator[str]:
        """The viewer at a URL on this machine while the context is open: forwarded through
        the head node on remote clusters, on the same local port as the viewer's when that
        is free (`local_port` 0), else any free one."""
        address = self.address(session)
        if session.status != "running" or address is None:
            raise HpcrunError(
                f"IndeX session {session.id} is {session.status}: no viewer to forward",
                "start one with `hpcrun index`",
            )
        host, viewer_port = address
        with contextlib.ExitStack() as links:
            try:
                port = links.enter_context(
                    self.backend.reach(host, viewer_port, local_port or viewer_port)
                )
            except HpcrunError:
                if local_port:
                    raise
                port = links.enter_context(self.backend.reach(host, viewer_port, 0))
            yield f"http://127.0.0.1:{port}"

    def status(
        self, session: IndexSessionRecord, base: str | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The viewer's /api/status, or None and why it could not be read."""
        if base is None:
            return None, "no URL yet" if not session.url else "cannot reach the viewer"
        request = urllib.request.Request(base + "/api/status")
        auth = session.plan.get("auth")
        try:
            if auth:
                user, _, password_file = str(auth).partition(":")
                password = Path(password_file).read_text().strip()
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                request.add_header("Authorization", f"Basic {token}")
            with urllib.request.urlopen(request, timeout=2.0) as response:
                return json.loads(response.read()), None
        except (OSError, ValueError, urllib.error.URLError) as exc:
            return None, str(getattr(exc, "reason", exc))
