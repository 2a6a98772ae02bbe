"""LocalRunner: the transport under SlurmClient (plain processes, no Slurm needed)."""

from __future__ import annotations

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
