"""How `SlurmClient` words a failed Slurm command: a controller that does not answer is
one clear error, whichever command met it (fed real Slurm output, no subprocess mocked)."""

from __future__ import annotations

import pytest

from hpcrun.errors import ControllerDown, SlurmCommandError
from hpcrun.slurm.client import _ok
from hpcrun.transport.runner import Completed


@pytest.mark.parametrize(
    "stderr",
    [
        "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n",
        "sbatch: error: Batch job submission failed: "
        "Unable to contact slurm controller (connect failure)\n",
        "slurm_load_partitions: Unable to contact slurm controller (connect failure)\n",
    ],
)
def test_an_unreachable_controller_is_one_clear_error(stderr: str) -> None:
    with pytest.raises(ControllerDown) as raised:
        _ok(Completed(("squeue", "-h"), 1, "", stderr))
    error = raised.value
    assert isinstance(error, SlurmCommandError)
    assert error.message == "Slurm's controller (slurmctld) is not answering"
    assert str(error) == error.message
    assert error.hint is not None and "hpcrun create" in error.hint
    assert "systemctl status slurmctld" in error.hint
    assert error.stderr == stderr and error.returncode == 1


def test_other_failures_keep_what_slurm_said() -> None:
    with pytest.raises(SlurmCommandError) as raised:
        _ok(Completed(("scancel", "7"), 1, "", "scancel: error: Invalid job id specified\n"))
    assert not isinstance(raised.value, ControllerDown)
    assert "Invalid job id specified" in raised.value.message
    assert _ok(Completed(("sinfo",), 0, "ok", "")).stdout == "ok"
