"""sbatch's refusals as one line naming the flag, with a hint (issue 14: `--gpus-per-node
5`, a bad `--dependency` and an unknown partition showed sbatch's raw two-line error).
The stderr texts are what Slurm 22.05's sbatch prints."""

from __future__ import annotations

import pytest

from hpcrun.slurm.refusals import explain_sbatch
from hpcrun.slurm.spec import JobSpec

PREFIX = "sbatch: error: Batch job submission failed: "


@pytest.mark.parametrize(
    ("stderr", "spec", "message"),
    [
        (
            PREFIX + "Requested node configuration is not available\n",
            JobSpec(command=("true",), gpus_per_node=5),
            "no node of the cluster can run this job with --gpus-per-node 5",
        ),
        (
            PREFIX + "Job dependency problem\n",
            JobSpec(command=("true",), dependency="whenever"),
            "--dependency whenever: Slurm cannot use it",
        ),
        (
            "sbatch: error: invalid partition specified: nope\n"
            + PREFIX
            + "Invalid partition name specified\n",
            JobSpec(command=("true",), partition="nope"),
            "--partition nope: the cluster has no such partition",
        ),
        (
            PREFIX + "Invalid job array specification\n",
            JobSpec(command=("true",), array="0-20000"),
            "--array 0-20000: Slurm refused the range",
        ),
    ],
)
def test_known_refusals_become_one_line(stderr: str, spec: JobSpec, message: str) -> None:
    explained = explain_sbatch(stderr, spec)
    assert explained is not None
    assert explained[0].startswith(message)
    assert "\n" not in explained[0] and explained[1]


def test_an_unknown_refusal_is_left_to_the_generic_error() -> None:
    assert explain_sbatch(PREFIX + "Something new\n", JobSpec(command=("true",))) is None
