"""Which squeue reasons mean a pending job will never start (issue 14: `submit --wait`
on such a job waited forever), as pure parsing of what squeue prints."""

from __future__ import annotations

import pytest

from hpcrun.slurm.parse import never_start_reason, parse_squeue, reason_code


def _pending(reason: str, state: str = "PENDING") -> str:
    return f"7|7|7|N/A|{state}|1||{reason}|hpcrun"


@pytest.mark.parametrize(
    "reason",
    [
        "DependencyNeverSatisfied",
        "BadConstraints",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "InvalidAccount",
        "QOSMaxNodePerJobLimit",
    ],
)
def test_reasons_that_never_clear_are_final(reason: str) -> None:
    (job,) = parse_squeue(_pending(reason))
    why = never_start_reason(job)
    assert why is not None and why.startswith(f"{reason} (")


@pytest.mark.parametrize(
    "reason",
    [
        "Resources",
        "Priority",
        "Dependency",
        "ReqNodeNotAvail, UnavailableNodes:n1",
        "JobHeldUser",
        "QOSMaxJobsPerUserLimit",
        "BeginTime",
        "None",
    ],
)
def test_reasons_that_clear_by_themselves_are_not_final(reason: str) -> None:
    (job,) = parse_squeue(_pending(reason))
    assert never_start_reason(job) is None


def test_only_a_pending_job_can_be_stuck() -> None:
    (job,) = parse_squeue(_pending("DependencyNeverSatisfied", state="RUNNING"))
    assert never_start_reason(job) is None


def test_the_code_is_the_first_word_of_the_reason() -> None:
    assert reason_code("ReqNodeNotAvail, UnavailableNodes:n[1-2]") == "ReqNodeNotAvail"
    assert reason_code("BadConstraints") == "BadConstraints"
