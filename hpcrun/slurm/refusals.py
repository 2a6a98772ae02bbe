"""sbatch's refusals in words a user can act on.

sbatch answers a job no node can run with "Requested node configuration is not
available", and a bad dependency with "Job dependency problem", after a two-line
`sbatch: error:` preamble. hpcrun checks what it can before submitting (the node count
and GPUs against the cluster, the array's syntax); what only Slurm knows ends here as one
line naming the flag, with a hint.
"""

from __future__ import annotations

import re

from hpcrun.slurm.spec import JobSpec

_PARTITION_RE = re.compile(r"invalid partition specified: (\S+)")


def explain_sbatch(stderr: str, spec: JobSpec) -> tuple[str, str] | None:
    """(message, hint) for a refusal sbatch printed on `stderr`; None when unknown."""
    text = " ".join(stderr.split())
    partition = _PARTITION_RE.search(text)
    if partition is not None or "Invalid partition name" in text:
        name = partition.group(1) if partition else spec.partition or "?"
        return (
            f"--partition {name}: the cluster has no such partition",
            "`sinfo -s` (or `hpcrun status`) lists the partitions; leave it out for the default",
        )
    if "Requested node configuration is not available" in text:
        asked = [
            f"{label} {value}"
            for label, value in (
                ("--nodes", spec.nodes if spec.nodes > 1 else None),
                ("--gpus-per-node", spec.gpus_per_node),
                ("--gpus", spec.gpus),
                ("--gpus-per-task", spec.gpus_per_task),
                ("--cpus-per-task", spec.cpus_per_task),
                ("--ntasks-per-node", spec.ntasks_per_node),
            )
            if value is not None
        ]
        what = " with " + ", ".join(asked) if asked else ""
        return (
            f"no node of the cluster can run this job{what}",
            "`hpcrun status` shows each node's CPUs and GPUs; ask for what one node has",
        )
    if "Job dependency problem" in text:
        return (
            f"--dependency {spec.dependency}: Slurm cannot use it "
            "(malformed, or it names a job Slurm does not know)",
            "write afterok:JOBID (or afterany:, afternotok:) with the id of a job Slurm knows",
        )
    if "Invalid job array specification" in text:
        return (
            f"--array {spec.array}: Slurm refused the range (beyond the cluster's "
            "MaxArraySize?)",
            "`scontrol show config | grep MaxArraySize` gives the largest index + 1",
        )
    if "Node count specification invalid" in text:
        return (
            f"--nodes {spec.nodes}: more nodes than the partition allows",
            "`hpcrun status` lists the nodes; ask for at most that many",
        )
    return None
