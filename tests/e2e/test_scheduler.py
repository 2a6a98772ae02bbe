"""The neutral Scheduler on the real local cluster: what a service submits as WorkSpecs
runs as Slurm jobs whose tasks read HPCRUN_* (never SLURM_*), write their logs where the
spec says, wait on each other, and report neutral states in one call."""

from __future__ import annotations

import pytest

from hpcrun.scheduler import After, JobRef, TaskState, WorkSpec
from hpcrun.slurm.scheduler import SlurmScheduler
from tests.conftest import Cluster

pytestmark = pytest.mark.slurm


def test_an_array_then_a_dependent_job(local_cluster: Cluster) -> None:
    scheduler = SlurmScheduler(local_cluster.client)
    logs = local_cluster.workdir / "neutral"
    logs.mkdir()
    array = scheduler.submit(
        WorkSpec(
            name="neutral-array",
            script='echo "index=$HPCRUN_TASK_INDEX node=$HPCRUN_NODE_NAME job=$HPCRUN_JOB_ID"\n',
            array=(0, 2, 3),
            max_parallel=2,
            workdir=str(logs),
            log_path=f"{logs}/task-{{index}}.out",
        )
    )
    final = scheduler.submit(
        WorkSpec(
            name="neutral-final",
            argv=("sh", "-c", 'echo "final index=$HPCRUN_TASK_INDEX"'),
            after=(array,),
            workdir=str(logs),
            log_path=f"{logs}/final.out",
        )
    )
    tasks = scheduler.wait(array, timeout_s=120)
    assert sorted(t.index for t in tasks if t.index is not None) == [0, 2, 3]
    assert {t.state for t in tasks} == {TaskState.SUCCEEDED}
    assert {t.exit_code for t in tasks} == {0}
    nodes = {f"n{i}" for i in range(1, 7)}
    for index in (0, 2, 3):
        words = dict(w.split("=") for w in (logs / f"task-{index}.out").read_text().split())
        assert words["index"] == str(index)
        assert words["node"] in nodes
        assert words["job"].isdigit()
    scheduler.wait(final, timeout_s=60)
    assert (logs / "final.out").read_text() == "final index=0\n"
    states = scheduler.states([array, final])  # one squeue call for both jobs
    assert {(s.ref, s.index) for s in states} == {(array, 0), (array, 2), (array, 3), (final, None)}


def test_a_job_waiting_on_a_failure_is_cancelled_and_states_say_so(
    local_cluster: Cluster,
) -> None:
    scheduler = SlurmScheduler(local_cluster.client)
    failing = scheduler.submit(
        WorkSpec(name="neutral-fails", argv=("false",), workdir=str(local_cluster.workdir))
    )
    waiting = scheduler.submit(
        WorkSpec(
            name="neutral-never",
            argv=("true",),
            after=(failing,),
            after_condition=After.OK,
            workdir=str(local_cluster.workdir),
        )
    )
    (done,) = scheduler.wait(failing, timeout_s=60)
    assert (done.state, done.native, done.exit_code) == (TaskState.FAILED, "FAILED", 1)
    scheduler.cancel([waiting])
    (cancelled,) = scheduler.wait(waiting, timeout_s=60)
    assert cancelled.state is TaskState.CANCELLED
    assert scheduler.states([]) == []
    assert scheduler.states([JobRef("999999")]) == []
