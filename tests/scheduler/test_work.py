"""The neutral seam: WorkSpec's checks, durations as users type them, and how Slurm's
translation (`to_job_spec`) writes each WorkSpec field, including the syntax no other
module may write (`%a`, `afterok:`)."""

from __future__ import annotations

import json

import pytest

from hpcrun.errors import UsageError
from hpcrun.scheduler import After, JobRef, TaskState, WorkSpec, parse_duration
from hpcrun.slurm.parse import Job, JobState
from hpcrun.slurm.scheduler import slurm_log_pattern, slurm_time, task_status, to_job_spec


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 1800),
        ("5:30", 330),
        ("01:30:00", 5400),
        ("2-00:00:00", 172800),
        ("1-12", 129600),
        ("1-00:30", 88200),
        ("UNLIMITED", None),
    ],
)
def test_durations_as_slurm_users_type_them(text: str, seconds: int | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "1h", "0", "-5", "1:2:3:4", "01:60x"])
def test_bad_durations_are_refused_with_the_forms(bad: str) -> None:
    with pytest.raises(UsageError, match="time limit") as err:
        parse_duration(bad)
    assert err.value.hint is None or "HH:MM:SS" in err.value.hint


def test_work_needs_exactly_one_of_argv_and_script() -> None:
    with pytest.raises(UsageError, match="either a command or a script"):
        WorkSpec(name="x")
    with pytest.raises(UsageError, match="either a command or a script"):
        WorkSpec(name="x", argv=("true",), script="true")
    with pytest.raises(UsageError, match="empty array"):
        WorkSpec(name="x", argv=("true",), array=())
    with pytest.raises(UsageError, match="at least 1"):
        WorkSpec(name="x", argv=("true",), array=(0, 1), max_parallel=0)


def test_env_is_copied_and_read_only() -> None:
    env = {"A": "1"}
    spec = WorkSpec(name="x", argv=("true",), env=env)
    env["A"] = "2"
    assert spec.env["A"] == "1"
    with pytest.raises(TypeError):
        spec.env["B"] = "3"  # type: ignore[index]


def test_slurm_writes_every_field_in_its_own_grammar() -> None:
    spec = WorkSpec(
        name="render-shot",
        argv=("bash", "/w/run 7/task.sh"),
        array=(0, 1, 2, 5, 7, 8),
        max_parallel=2,
        cpus_per_task=4,
        gpus_per_task=1,
        after=(JobRef("41"), JobRef("42")),
        after_condition=After.ANY,
        time_limit_s=5400,
        queue="gpu",
        env={"K": "v w"},
        workdir="/w/run 7",
        log_path="/w/run 7/logs/100%-{index}.out",
    )
    job = to_job_spec(spec)
    assert job.array == "0-2,5,7-8%2"
    assert job.dependency == "afterany:41:42"
    assert (job.cpus_per_task, job.gpus, job.gpus_per_task) == (4, 1, None)
    assert (job.time_limit, job.partition) == ("90", "gpu")
    assert job.output == "/w/run 7/logs/100%%-%a.out"
    script = job.to_sbatch_script()
    assert 'export HPCRUN_TASK_INDEX="${SLURM_ARRAY_TASK_ID:-0}"' in script
    assert "export K='v w'" in script
    assert script.rstrip().endswith("bash '/w/run 7/task.sh'")


def test_gpus_of_a_multi_task_job_are_per_task() -> None:
    job = to_job_spec(WorkSpec(name="x", argv=("true",), nodes=2, gpus_per_task=2))
    assert (job.gpus, job.gpus_per_task) == (None, 2)
    assert "--gpus-per-task=2" in job.sbatch_options()


def test_a_script_runs_with_bash_and_times_need_not_be_whole_minutes() -> None:
    job = to_job_spec(WorkSpec(name="x", script="echo hi\n", time_limit_s=90))
    assert job.command == ("bash", "-c", "echo hi\n")
    assert slurm_time(90) == "0-00:01:30"
    assert slurm_time(86400 * 2 + 1) == "2-00:00:01"
    assert slurm_log_pattern("/a/b-{index}.log") == "/a/b-%a.log"


@pytest.mark.parametrize(
    ("native", "state"),
    [
        ("PENDING", TaskState.PENDING),
        ("CONFIGURING", TaskState.PENDING),
        ("RUNNING", TaskState.RUNNING),
        ("COMPLETING", TaskState.RUNNING),
        ("COMPLETED", TaskState.SUCCEEDED),
        ("FAILED", TaskState.FAILED),
        ("TIMEOUT", TaskState.FAILED),
        ("NODE_FAIL", TaskState.FAILED),
        ("OUT_OF_MEMORY", TaskState.FAILED),
        ("CANCELLED", TaskState.CANCELLED),
    ],
)
def test_slurm_states_fold_into_task_states(native: str, state: TaskState) -> None:
    job = Job("12_3", "15", "12", "3", "render", JobState(native), 1, "n2", "None")
    status = task_status(job)
    assert (status.ref, status.index, status.state, status.native) == (
        JobRef("12"),
        3,
        state,
        native,
    )
    assert status.name == "12[3]"
    plain = task_status(Job("13", "13", "13", None, "encode", JobState(native), 1, "", ""))
    assert (plain.ref, plain.index, plain.node) == (JobRef("13"), None, None)


def test_a_spec_survives_the_state_store_round_trip_exactly() -> None:
    """A lost final job is resubmitted from its recorded spec: nothing may change on the
    way through JSON (tuples, the dependency, its condition, the environment)."""
    spec = WorkSpec(
        name="encode-x",
        argv=("bash", "/w/encode.sh"),
        array=(0, 2, 5),
        max_parallel=2,
        after=(JobRef("41"),),
        after_condition=After.ANY,
        time_limit_s=90,
        env={"A": "1 2"},
        log_path="/w/logs/chunk-{index}.out",
    )
    data = json.loads(json.dumps(spec.to_json()))
    assert WorkSpec.from_json(data) == spec
    assert dict(WorkSpec.from_json(data).env) == {"A": "1 2"}
