"""--array values sbatch would refuse with only "Invalid job array specification" (or,
for `%0`, accept and run unthrottled): each named in words before anything is submitted."""

from __future__ import annotations

import pytest

from hpcrun.errors import UsageError
from hpcrun.slurm.spec import JobSpec, array_problem


@pytest.mark.parametrize("good", ["0", "0-9", "0-99:2", "1,3,5-7", "0-239%16", "7-7"])
def test_ranges_slurm_takes_pass(good: str) -> None:
    assert array_problem(good) is None


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("5-1", "is reversed: 5-1 ends before it starts (write 1-5)"),
        ("0-3,9-2", "9-2 ends before it starts"),
        ("1-3%0", "at most 0 tasks at a time: it must be at least 1"),
        ("0-99:0", "steps by 0"),
        ("x", "is not a Slurm array range"),
        ("1-", "is not a Slurm array range"),
    ],
)
def test_ranges_slurm_refuses_are_named(bad: str, words: str) -> None:
    assert words in (array_problem(bad) or "")
    with pytest.raises(UsageError, match="--array"):
        JobSpec(command=("true",), array=bad).validate()
