"""Locks between hpcrun processes: a second change is refused naming the first, and a
killed holder leaves nothing behind (the kernel drops its flock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hpcrun.locks import Busy, exclusive, lock_path

HOLD = """
import sys, time
from pathlib import Path
from hpcrun.locks import exclusive
with exclusive(Path(sys.argv[1]), "index-c-3", what="IndeX session 3", doing="scale +1"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(home: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(home)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_change_is_refused_naming_the_process_and_what_it_does(tmp_path: Path) -> None:
    child = _holder(tmp_path)
    try:
        with (
            pytest.raises(Busy) as refused,
            exclusive(tmp_path, "index-c-3", what="IndeX session 3", doing="index stop"),
        ):
            pytest.fail("the lock was granted twice")
        message = str(refused.value)
        assert message.startswith("IndeX session 3 is being changed by another hpcrun")
        assert f"pid {child.pid}: scale +1" in message
        assert "run this one again" in refused.value.hint
    finally:
        child.kill()
        child.wait()


def test_a_killed_holder_leaves_no_lock_behind(tmp_path: Path) -> None:
    child = _holder(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with exclusive(tmp_path, "index-c-3", what="IndeX session 3", doing="index stop"):
        pass


def test_other_names_do_not_block_each_other_and_files_are_private(tmp_path: Path) -> None:
    with (
        exclusive(tmp_path, "index-c-3", what="a", doing="x"),
        exclusive(tmp_path, "index-c-4", what="b", doing="y"),
    ):
        pass
    path = lock_path(tmp_path, "index-c-3")
    assert path.stat().st_mode & 0o777 == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700


def test_a_hostile_name_stays_inside_the_locks_directory(tmp_path: Path) -> None:
    path = lock_path(tmp_path, "../../etc/passwd")
    assert path.parent == tmp_path / "locks"
    assert "/" not in path.name
