"""FLARE's admin side, in this process: one secure session of FLARE's own API with the
project admin's kit, for status, submit, follow, download and shutdown.

The API rather than the `nvflare` CLI: each CLI command is a new Python that imports
nvflare and logs in (~2.4 s for `system status`, measured), while one session connects in
~1.4 s and then answers each call in milliseconds, so `flare status` asks two questions
for the price of one login, and `submit --wait` follows rounds once a second. nvflare is
imported only here, inside the `flare` commands. FLARE prints "Connecting to FLARE ..." on
stdout; that goes nowhere, so `--json` output stays JSON.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from hpcrun.errors import HpcrunError
from hpcrun.scheduler import Progress

_POLL_S = 1.0


class FlareAdmin:
    """An admin session; use as a context manager."""

    def __init__(self, kit: Path, user: str, *, timeout_s: float = 30.0) -> None:
        self.kit = kit
        self.user = user
        self.timeout_s = timeout_s
        self._session: Any = None

    def __enter__(self) -> FlareAdmin:
        # Its failures come back as exceptions, said once; its own log lines would repeat them.
        logging.getLogger("nvflare").setLevel(logging.CRITICAL)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                from nvflare.fuel.flare_api.flare_api import (  # type: ignore[import-untyped]
                    new_secure_session,
                )

                self._session = new_secure_session(self.user, str(self.kit), timeout=self.timeout_s)
        except ImportError:
            raise HpcrunError(
                "nvflare is not installed on this side", "pip install 'hpcrun[flare]'"
            ) from None
        except Exception as exc:  # FLARE raises its own kinds for every way a login fails
            raise HpcrunError(
                f"FLARE's admin could not log in to the server: {_said(exc)}",
                "`hpcrun flare status` shows whether the server's job still runs",
            ) from None
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception), contextlib.redirect_stdout(io.StringIO()):
                self._session.close()
            self._session = None

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return getattr(self._session, method)(*args, **kwargs)
        except Exception as exc:
            raise HpcrunError(f"FLARE's admin could not {what}: {_said(exc)}") from None

    def clients(self) -> list[str]:
        info = self._call("read the system's status", "get_system_info")
        return [str(c.name) for c in info.client_info]

    def jobs(self) -> list[dict[str, Any]]:
        found = self._call("list the jobs", "list_jobs")
        return [dict(j) for j in found or []]

    def submit(self, folder: Path) -> str:
        return str(self._call(f"submit {folder}", "submit_job", str(folder)))

    def meta(self, job_id: str) -> dict[str, Any]:
        return dict(self._call(f"read job {job_id}", "get_job_meta", job_id) or {})

    def follow(self, job_id: str, progress: Progress, timeout_s: float = 0.0) -> dict[str, Any]:
        """Poll the job until it ends, telling `progress` its round and who it waits on."""
        said = ""
        started = time.monotonic()

        def on_poll(session: Any, job: str, meta: dict[str, Any], *args: Any) -> bool:
            nonlocal said
            line = _round_line(session, job, meta)
            if line != said:
                progress.step(f"{time.monotonic() - started:5.1f} s  {line}")
                said = line
            return True

        self._call(
            f"follow job {job_id}",
            "monitor_job",
            job_id,
            timeout=timeout_s,
            poll_interval=_POLL_S,
            cb=on_poll,
        )
        return self.meta(job_id)

    def download(self, job_id: str, destination: Path) -> str:
        return str(
            self._call(f"download job {job_id}", "download_job_result", job_id, str(destination))
        )

    def shutdown(self) -> None:
        self._call("shut the system down", "shutdown", "all")


def _round_line(session: Any, job_id: str, meta: dict[str, Any]) -> str:
    status = str(meta.get("status", "?"))
    if status != "RUNNING":
        return status
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            stats = session.show_stats(job_id, "server")
    except Exception:
        return status  # the job's runner is not up yet, or already gone
    for name, workflow in (stats.get("server") or {}).items():
        if isinstance(workflow, dict) and "current_round" in workflow:
            waiting = sorted({s for sites in (workflow.get("tasks") or {}).values() for s in sites})
            phase = workflow.get("phase", "")
            line = f"RUNNING {name}: round {workflow['current_round']} of "
            line += f"{workflow.get('num_rounds', '?')} ({phase})"
            return line + (f", waiting for {', '.join(waiting)}" if waiting else "")
    return status


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
