"""LocalRunner: the transport under SlurmClient (plain processes, no Slurm needed)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from hpcrun.errors import HpcrunError
from hpcrun.transport import LocalRunner


def test_timeout_keeps_what_the_command_said() -> None:
    runner = LocalRunner()
    with pytest.raises(HpcrunError) as err:
        runner.run(["bash", "-c", "echo 'limit reached' >&2; sleep 5"], timeout_s=0.5)
    assert "did not finish within 0.5 s: limit reached" in err.value.message


def test_env_reaches_the_command_and_failures_carry_stderr() -> None:
    runner = LocalRunner({"HPCRUN_PROBE": "42"})
    assert runner.run(["bash", "-c", "echo $HPCRUN_PROBE"]).check().stdout == "42\n"
    with pytest.raises(HpcrunError, match="exit 3"):
        runner.run(["bash", "-c", "echo boom >&2; exit 3"]).check()


def test_ctrl_c_stops_the_command_as_ctrl_c_would_not_by_sigkill(tmp_path: Path) -> None:
    """A pending `salloc` withdraws its request on SIGINT; a SIGKILLed one leaves it
    queued. So Ctrl-C in hpcrun reaches the command (and what it started) as SIGINT."""
    marker = tmp_path / "interrupted"
    script = f"trap 'echo by-sigint > {marker}; exit 130' INT; sleep 30 & wait"

    def ctrl_c(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            LocalRunner().run(["bash", "-c", script], timeout_s=None)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert marker.read_text() == "by-sigint\n"
    assert time.monotonic() - started < 10  # not the 30 s of the sleep


def test_a_command_never_reads_hpcruns_own_stdin() -> None:
    # It runs in its own process group: reading the terminal there would stop it.
    assert LocalRunner().run(["bash", "-c", "cat; echo done"]).stdout == "done\n"
