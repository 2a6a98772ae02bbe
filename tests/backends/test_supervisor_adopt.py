"""A supervisor adopting the daemons of one that was SIGKILLed (issue 14): real
supervisor processes and a real `sleep` as the daemon, no Slurm.

The new supervisor cannot wait() for a process it did not start; it must still see the
adopted one run, see it die, and stop it on request.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hpcrun.backends.processes import SupervisorClient, process_alive
from tests.conftest import short_tempdir, start_supervisor


def _daemon(client: SupervisorClient, name: str) -> dict[str, Any]:
    daemons = {d["name"]: d for d in client.request("status")["daemons"]}
    return dict(daemons[name])


def _eventually(check: Any) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


@pytest.fixture
def run_dir() -> Iterator[Path]:
    path = short_tempdir("hsa")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_new_supervisor_adopts_watches_and_stops_an_orphaned_daemon(run_dir: Path) -> None:
    client = SupervisorClient(run_dir)
    first = start_supervisor(run_dir)
    second: subprocess.Popen[bytes] | None = None
    pids: list[int] = []
    try:
        for name in ("one", "two"):
            client.request(
                "start", name=name, argv=["sleep", "300"], log=str(run_dir / f"{name}.out")
            )
            pids.append(int(_daemon(client, name)["pid"]))
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert all(process_alive(p) for p in pids)  # the daemons outlive their supervisor

        second = start_supervisor(run_dir)
        for name, pid in zip(("one", "two"), pids, strict=True):
            client.request("adopt", name=name, argv=["sleep", "300"], log="", pid=pid)
            assert _daemon(client, name)["running"] and _daemon(client, name)["adopted"]

        os.kill(pids[0], signal.SIGKILL)  # dies unasked: reported as died, not stopped
        _eventually(lambda: not _daemon(client, "one")["running"])
        assert _daemon(client, "one")["died"]

        client.request("stop", name="two", timeout_s=10.0)  # asked: stopped, not died
        assert not process_alive(pids[1])
        two = _daemon(client, "two")
        assert not two["running"] and not two["died"]
    finally:
        for pid in pids:
            if process_alive(pid):
                os.kill(pid, signal.SIGKILL)
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
