"""The IndeX plan: NVIDIA's exact commands (golden) and which jobs a shrink ends or resizes."""

from __future__ import annotations

import pytest

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.scheduler.index import NVIDIA_AMI, IndexInstall, IndexPlan, SessionJob, ShrinkStep
from hpcrun.services.index import parse_scale
from hpcrun.slurm.index import (
    agents_allocation,
    agents_step,
    initial_allocation,
    plan_shrink,
    restart_step,
    viewer_step,
)
from tests.golden_util import argv_text, assert_golden

SUPERNOVA = "/opt/scenes/00-supernova_ncsa_small/scene/scene.prj"
NVIDIA_PLAN = IndexPlan(nodes=4, scene_prj=SUPERNOVA, install=NVIDIA_AMI)
OPEN_PLAN = IndexPlan(
    nodes=4,
    scene_prj="/repo/scenes/00-supernova_ncsa_small/scene/scene.prj",
    install=IndexInstall(
        launcher="/venv/bin/hpcrun-nvindex-slurm",
        workdir="/home/u/.hpcrun/clusters/dev/index/7",
        scenes_dir="/repo/scenes",
        open_renderer=True,
    ),
    port=8090,
    open_options=("--rendezvous", "/home/u/.hpcrun/clusters/dev/index/7/rendezvous"),
)


def test_nvidia_start_is_salloc_exclusive_then_srun_nvindex_slurm() -> None:
    text = "\n\n".join(
        [
            argv_text(initial_allocation(NVIDIA_PLAN).to_salloc_argv()),
            argv_text(viewer_step(NVIDIA_PLAN, "41")),
        ]
    )
    assert_golden("index_nvidia_start.txt", text)


def test_nvidia_attach_is_a_new_allocation_running_agents_with_dash_a() -> None:
    text = "\n\n".join(
        [
            argv_text(agents_allocation(NVIDIA_PLAN, 2).to_salloc_argv()),
            argv_text(agents_step(NVIDIA_PLAN, "42", "41", 2)),
        ]
    )
    assert_golden("index_nvidia_attach.txt", text)


def test_merge_grows_the_first_job_and_runs_agents_on_the_new_nodes_only() -> None:
    text = "\n\n".join(
        [
            argv_text(agents_allocation(NVIDIA_PLAN, 2, expand_job="41").to_salloc_argv()),
            argv_text(agents_step(NVIDIA_PLAN, "41", "41", 2, nodelist="n[5-6]")),
        ]
    )
    assert_golden("index_nvidia_merge.txt", text)


def test_a_restarted_agent_runs_on_its_node_beside_the_step_that_lost_it() -> None:
    argv = restart_step(OPEN_PLAN, "42", "41", ["n3", "n5"])
    assert argv[:5] == ["srun", "--jobid=42", "--overlap", "--nodelist=n3,n5", "--nodes=2"]
    assert "-a41" in argv


def test_open_renderer_takes_the_same_command_line_plus_port_and_rendezvous() -> None:
    text = "\n\n".join(
        [
            argv_text(viewer_step(OPEN_PLAN, "41")),
            argv_text(agents_step(OPEN_PLAN, "42", "41", 2)),
        ]
    )
    assert_golden("index_open_start_attach.txt", text)


def test_gpus_per_node_replaces_exclusive() -> None:
    plan = IndexPlan(nodes=2, scene_prj=SUPERNOVA, install=NVIDIA_AMI, gpus_per_node=4)
    argv = initial_allocation(plan).to_salloc_argv()
    assert "--gpus-per-node=4" in argv
    assert "--exclusive" not in argv


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (IndexPlan(nodes=0, scene_prj=SUPERNOVA, install=NVIDIA_AMI), "--nodes"),
        (
            IndexPlan(nodes=1, scene_prj=SUPERNOVA, install=NVIDIA_AMI, gpus_per_node=0),
            "--gpus-per-node",
        ),
        (IndexPlan(nodes=1, scene_prj=SUPERNOVA, install=NVIDIA_AMI, port=9000), "8080"),
    ],
)
def test_bad_plans_say_which_flag(plan: IndexPlan, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plan.validate()


# --- shrinking ------------------------------------------------------------------------------

A = SessionJob("41", 4, initial=True)


def test_an_attached_job_of_exactly_the_size_is_ended_whole() -> None:
    jobs = [A, SessionJob("42", 2, False), SessionJob("43", 1, False)]
    assert plan_shrink(jobs, 2, can_resize_twice=False) == [ShrinkStep("42", 0)]


def test_newest_attached_jobs_go_first_then_the_rest_is_a_resize() -> None:
    jobs = [A, SessionJob("42", 3, False), SessionJob("43", 1, False)]
    steps = plan_shrink(jobs, 2, can_resize_twice=False)
    assert steps == [ShrinkStep("43", 0), ShrinkStep("42", 2)]


def test_without_attached_jobs_the_first_job_shrinks_and_keeps_its_viewer_node() -> None:
    assert plan_shrink([A], 1, can_resize_twice=False) == [ShrinkStep("41", 3)]
    assert plan_shrink([A], 3, can_resize_twice=False) == [ShrinkStep("41", 1)]


def test_a_job_resized_before_is_not_resized_again_without_a_slurm_database() -> None:
    resized = SessionJob("41", 3, initial=True, resized=True)
    with pytest.raises(HpcrunError, match="Slurm database"):
        plan_shrink([resized], 1, can_resize_twice=False)
    assert plan_shrink([resized], 1, can_resize_twice=True) == [ShrinkStep("41", 2)]


def test_a_resized_job_is_skipped_for_one_that_was_not() -> None:
    jobs = [A, SessionJob("42", 3, False, resized=True)]
    assert plan_shrink(jobs, 1, can_resize_twice=False) == [ShrinkStep("41", 3)]


def test_removing_every_node_is_refused_with_index_stop_as_the_hint() -> None:
    with pytest.raises(UsageError, match="no viewer") as info:
        plan_shrink([A, SessionJob("42", 2, False)], 6, can_resize_twice=True)
    assert "index stop" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("text", "parsed"), [("+2", ("+", 2)), ("-1", ("-", 1)), ("=6", ("=", 6)), ("6", ("=", 6))]
)
def test_scale_requests(text: str, parsed: tuple[str, int]) -> None:
    assert parse_scale(text) == parsed


@pytest.mark.parametrize("text", ["", "+", "two", "+0", "-0", "+-1", "1.5"])
def test_bad_scale_requests_say_how_to_write_one(text: str) -> None:
    with pytest.raises(UsageError):
        parse_scale(text)


def test_a_time_limit_goes_on_every_allocation_of_the_session() -> None:
    plan = IndexPlan(nodes=2, scene_prj=SUPERNOVA, install=NVIDIA_AMI, time_limit="2:00:00")
    assert "--time=2:00:00" in initial_allocation(plan).to_salloc_argv()
    assert "--time=2:00:00" in agents_allocation(plan, 1).to_salloc_argv()
    with pytest.raises(UsageError, match="time"):
        initial_allocation(
            IndexPlan(nodes=2, scene_prj=SUPERNOVA, install=NVIDIA_AMI, time_limit="2 hours")
        )


def test_a_partition_goes_to_the_first_allocation_and_every_one_that_grows_it() -> None:
    plan = IndexPlan(nodes=2, scene_prj=SUPERNOVA, install=NVIDIA_AMI, partition="gpu")
    assert "--partition=gpu" in initial_allocation(plan).to_salloc_argv()
    assert "--partition=gpu" in agents_allocation(plan, 2).to_salloc_argv()
    assert "--partition=gpu" in agents_allocation(plan, 1, expand_job="41").to_salloc_argv()
