"""How Slurm is spoken: job specs to argv/scripts, parsing its output, one client over a runner.

Only this package knows Slurm's command-line syntax; workloads hand it `JobSpec`s and
read back `Job`s, whichever backend the cluster comes from.
"""

from hpcrun.slurm.client import SlurmClient
from hpcrun.slurm.parse import Job, JobState, Node
from hpcrun.slurm.spec import JobSpec

# What a local Slurm cluster needs on this host: daemons and the client commands hpcrun
# runs, then what accounting adds (MariaDB and slurmdbd).
DAEMON_PROGRAMS = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scontrol")
ACCOUNTING_PROGRAMS = ("mariadbd", "mariadb-install-db", "slurmdbd", "sacctmgr", "sacct")

__all__ = [
    "ACCOUNTING_PROGRAMS",
    "DAEMON_PROGRAMS",
    "Job",
    "JobSpec",
    "JobState",
    "Node",
    "SlurmClient",
]
