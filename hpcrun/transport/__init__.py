"""Where commands run and files live: a local subprocess or an SSH connection.

A `Runner` runs an argv and moves files; it knows nothing of Slurm or Kubernetes, so the
same transport carries `sbatch` on a head node and `mkdir` in a workspace. Schedulers
(`hpcrun.slurm`) and workspaces are built on top of one.
"""

from hpcrun.transport.runner import Completed, LocalRunner, Runner

__all__ = ["Completed", "LocalRunner", "Runner"]
