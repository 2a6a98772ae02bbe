"""`--partition` against the real local Slurm cluster (issue 18: a ParallelCluster file
with several queues, each a Slurm partition): a partition the cluster lacks is refused
before anything is queued, with what to do; one it has reaches Slurm's jobs."""

from __future__ import annotations

import pytest

from tests.conftest import Cluster

pytestmark = [pytest.mark.slurm]


def test_index_in_a_partition_the_cluster_lacks_is_refused_before_allocating(
    local_cluster: Cluster,
) -> None:
    before = len(local_cluster.client.jobs())
    done = local_cluster.cli("index", "--nodes", "2", "--partition", "gpu", check=False)
    assert done.returncode == 2, done.stderr  # a usage error: the flag is wrong here
    assert "--partition gpu: the cluster has no such partition" in done.stderr
    assert "`hpcrun status` (or `sinfo -s`) lists the partitions" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(local_cluster.client.jobs()) == before


def test_index_counts_the_nodes_of_the_partition_it_names(local_cluster: Cluster) -> None:
    done = local_cluster.cli("index", "--nodes", "9", "--partition", "batch", check=False)
    assert done.returncode == 1
    assert "9 nodes requested but partition batch has 6 usable nodes" in done.stderr


def test_a_job_array_in_a_missing_partition_is_slurms_refusal_said_plainly(
    local_cluster: Cluster,
) -> None:
    done = local_cluster.cli(
        "submit", "--array", "0-1", "--partition", "gpu", "--", "true", check=False
    )
    assert done.returncode == 1
    assert "--partition gpu: the cluster has no such partition" in done.stderr


def test_a_submitted_job_runs_in_the_partition_asked_for(local_cluster: Cluster) -> None:
    job_id = local_cluster.cli("submit", "--partition", "batch", "--", "true").stdout.strip()
    shown = local_cluster.client.runner.run(["scontrol", "-o", "show", "job", job_id])
    assert "Partition=batch" in shown.stdout
