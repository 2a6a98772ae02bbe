"""How Slurm is spoken: job specs to argv/scripts, parsing its output, one client over a runner.

Only this package knows Slurm's command-line syntax; workloads hand it `JobSpec`s and
read back `Job`s, whichever backend the cluster comes from.
"""

from hpcrun.slurm.client import SlurmClient
from hpcrun.slurm.parse import Job, JobState, Node
from hpcrun.slurm.runner import Completed, LocalRunner, Runner
from hpcrun.slurm.spec import JobSpec

__all__ = [
    "Completed",
    "Job",
    "JobSpec",
    "JobState",
    "LocalRunner",
    "Node",
    "Runner",
    "SlurmClient",
]
