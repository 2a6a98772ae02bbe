"""A burst of status requests against the local cluster's real supervisor process.

Every `hpcrun status` asks the supervisor first; with a 16-deep accept queue and clients
that took EAGAIN as "gone", 64 requests at a time made 580 of 1280 fail (issue 14), and a
supervisor that looks gone is reported "down" and swept as stale by `hpcrun create`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcrun.backends.processes import SupervisorClient
from tests.conftest import short_tempdir, start_supervisor

THREADS = 64
REQUESTS_EACH = 20


@pytest.fixture
def supervisor() -> Iterator[SupervisorClient]:
    run_dir = short_tempdir("hsv")
    process = start_supervisor(run_dir)
    try:
        yield SupervisorClient(run_dir)
    finally:
        process.terminate()
        process.wait(timeout=30)
        for leftover in Path(run_dir).iterdir():
            leftover.unlink()
        Path(run_dir).rmdir()


def test_a_burst_of_status_requests_all_get_an_answer(supervisor: SupervisorClient) -> None:
    errors: list[str] = []
    answers: list[int] = []

    def ask() -> None:
        for _ in range(REQUESTS_EACH):
            try:
                answers.append(int(supervisor.request("status", timeout_s=30.0)["pid"]))
            except Exception as exc:  # every failure is the finding, whatever its type
                errors.append(repr(exc))

    threads = [threading.Thread(target=ask) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [], f"{len(errors)} of {THREADS * REQUESTS_EACH} failed: {errors[:3]}"
    assert len(answers) == THREADS * REQUESTS_EACH and len(set(answers)) == 1
