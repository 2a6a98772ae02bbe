"""Parsers of squeue, sacct, sinfo and scontrol output, fed lines in Slurm's exact formats."""

from __future__ import annotations

import pytest

from hpcrun.slurm.parse import (
    SACCT_FIELDS,
    SINFO_FORMAT,
    SQUEUE_FORMAT,
    Job,
    JobState,
    Node,
    parse_exit_codes,
    parse_sacct,
    parse_scontrol_records,
    parse_sinfo,
    parse_squeue,
)

# --- formats: the free-text field must be last so a "|" in it cannot shift columns --------


def test_squeue_format_puts_the_job_name_last() -> None:
    assert SQUEUE_FORMAT.split("|") == ["%i", "%A", "%F", "%K", "%T", "%D", "%N", "%r", "%j"]


def test_sacct_fields_put_the_job_name_last() -> None:
    assert SACCT_FIELDS.split(",")[-1] == "JobName"
    assert len(SACCT_FIELDS.split(",")) == 7


def test_sinfo_format_puts_the_reason_last() -> None:
    assert SINFO_FORMAT.split("|")[-1] == "%E"


# --- squeue -------------------------------------------------------------------------------


def test_squeue_array_tasks() -> None:
    text = "3_0|3|3|0|PENDING|1||None|wrap\n3_1|4|3|1|RUNNING|1|n2|None|wrap\n"
    first, second = parse_squeue(text)
    assert first == Job(
        job_id="3_0",
        raw_id="3",
        array_job_id="3",
        array_task_id="0",
        name="wrap",
        state=JobState.PENDING,
        node_count=1,
        nodelist="",
        reason="",
    )
    assert (second.job_id, second.raw_id, second.array_job_id, second.array_task_id) == (
        "3_1",
        "4",
        "3",
        "1",
    )
    assert second.state is JobState.RUNNING
    assert second.nodelist == "n2"


def test_squeue_plain_job_has_no_array_fields() -> None:
    # squeue prints the job's own id for %F and N/A for %K when the job is not an array.
    (job,) = parse_squeue("17|17|17|N/A|RUNNING|2|n[1-2]|None|index\n")
    assert job.job_id == "17"
    assert job.array_job_id is None
    assert job.array_task_id is None
    assert job.node_count == 2
    assert job.nodelist == "n[1-2]"


def test_squeue_reason_is_kept_when_meaningful() -> None:
    (job,) = parse_squeue("18|18|18|N/A|PENDING|4||Resources|big\n")
    assert job.reason == "Resources"
    assert job.state is JobState.PENDING


def test_squeue_name_may_contain_the_separator() -> None:
    (job,) = parse_squeue("5|5|5|N/A|RUNNING|1|n1|None|render|frames|v2\n")
    assert job.name == "render|frames|v2"
    assert job.reason == ""
    assert job.nodelist == "n1"


@pytest.mark.parametrize("text", ["", "\n", "  \n\n"])
def test_squeue_empty_output_is_no_jobs(text: str) -> None:
    assert parse_squeue(text) == []


def test_squeue_non_numeric_node_count_is_zero() -> None:
    (job,) = parse_squeue("6|6|6|N/A|PENDING|N/A||None|x\n")
    assert job.node_count == 0


def test_job_to_json_writes_the_state_as_a_string() -> None:
    (job,) = parse_squeue("3_0|3|3|0|PENDING|1||None|wrap\n")
    data = job.to_json()
    assert data["state"] == "PENDING"
    assert type(data["state"]) is str
    assert data["array_task_id"] == "0"
    assert data["exit_code"] is None


# --- sacct --------------------------------------------------------------------------------


def test_sacct_failed_job_has_exit_status() -> None:
    (job,) = parse_sacct("14|14|FAILED|3:0|1|n2|wrap\n")
    assert job.state is JobState.FAILED
    assert job.exit_code == 3
    assert job.nodelist == "n2"
    assert job.array_job_id is None
    assert job.array_task_id is None
    assert job.name == "wrap"


def test_sacct_cancelled_by_uid() -> None:
    (job,) = parse_sacct("15|15|CANCELLED by 0|0:15|1|n1|sleep\n")
    assert job.state is JobState.CANCELLED
    assert job.state.is_terminal


@pytest.mark.parametrize(
    ("exit_code", "expected"),
    [("0:0", 0), ("3:0", 3), ("0:9", 137), ("0:15", 143), ("2:9", 2), ("", None), ("x:y", None)],
)
def test_sacct_exit_status_as_a_shell_reports_it(exit_code: str, expected: int | None) -> None:
    (job,) = parse_sacct(f"16|16|COMPLETED|{exit_code}|1|n1|x\n")
    assert job.exit_code == expected


def test_sacct_array_task() -> None:
    (job,) = parse_sacct("20_7|27|COMPLETED|0:0|1|n3|frames\n")
    assert (job.job_id, job.raw_id, job.array_job_id, job.array_task_id) == (
        "20_7",
        "27",
        "20",
        "7",
    )


def test_sacct_name_may_contain_the_separator() -> None:
    (job,) = parse_sacct("21|21|COMPLETED|0:0|1|n1|a|b\n")
    assert job.name == "a|b"


def test_sacct_empty_output_is_no_jobs() -> None:
    assert parse_sacct("") == []


def test_sacct_none_assigned_is_no_nodes() -> None:
    (job,) = parse_sacct("22|22|CANCELLED by 0|0:0|0|None assigned|queued\n")
    assert job.nodelist == ""


# --- sinfo --------------------------------------------------------------------------------


def test_sinfo_node_in_two_partitions_is_listed_once() -> None:
    text = (
        "n1|idle|8|gpu:2|none\n"
        "n2|allocated|8|gpu:2|none\n"
        "n1|idle|8|gpu:2|none\n"
        "n2|allocated|8|gpu:2|none\n"
    )
    nodes = parse_sinfo(text)
    assert [n.name for n in nodes] == ["n1", "n2"]
    assert nodes[0] == Node(name="n1", state="idle", cpus=8, gres="gpu:2", reason="")


def test_sinfo_null_gres_is_empty() -> None:
    (node,) = parse_sinfo("n1|idle|4|(null)|none\n")
    assert node.gres == ""


def test_sinfo_keeps_reason_text_with_separator() -> None:
    (node,) = parse_sinfo("n3|drained|8|gpu:2|disk full | again\n")
    assert node.reason == "disk full | again"
    assert not node.is_available


@pytest.mark.parametrize(
    ("state", "available"),
    [
        ("idle", True),
        ("mixed", True),
        ("allocated", True),
        ("completing", True),
        ("idle*", False),  # not responding
        ("down*", False),
        ("down", False),
        ("drained", False),
        ("draining", False),
        ("unknown", False),
    ],
)
def test_sinfo_availability(state: str, available: bool) -> None:
    (node,) = parse_sinfo(f"n1|{state}|8|gpu:2|none\n")
    assert node.is_available is available


def test_sinfo_node_to_json() -> None:
    (node,) = parse_sinfo("n1|idle|8|gpu:2|none\n")
    assert node.to_json() == {
        "name": "n1",
        "state": "idle",
        "cpus": 8,
        "gres": "gpu:2",
        "reason": "",
    }


# --- scontrol -o show job -----------------------------------------------------------------

SCONTROL_JOBS = (
    "JobId=30 JobName=wrap UserId=root(0) GroupId=root(0) Priority=1 JobState=COMPLETED "
    "Reason=None Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:0 "
    "DerivedExitCode=5:0 RunTime=00:00:01 TRES=cpu=1,mem=100M,node=1,billing=1\n"
    "JobId=32 ArrayJobId=31 ArrayTaskId=1 JobName=frames UserId=root(0) JobState=FAILED "
    "Reason=NonZeroExitCode ExitCode=3:0 DerivedExitCode=0:0\n"
    "JobId=33 JobName=killed JobState=CANCELLED Reason=None ExitCode=0:9 "
    "DerivedExitCode=0:0\n"
    "\n"
)


def test_exit_codes_by_job_id_with_array_tasks_written_as_users_write_them() -> None:
    assert parse_exit_codes(SCONTROL_JOBS) == {"30": 0, "31_1": 3, "33": 137}


def test_exit_code_is_not_confused_with_derived_exit_code() -> None:
    codes = parse_exit_codes("JobId=40 DerivedExitCode=7:0 ExitCode=0:0\n")
    assert codes == {"40": 0}


def test_record_without_exit_code_is_left_out() -> None:
    assert parse_exit_codes("JobId=41 JobState=RUNNING\n") == {}


def test_scontrol_records_keep_values_holding_equals_signs() -> None:
    (first, *_rest) = parse_scontrol_records(SCONTROL_JOBS)
    assert first["TRES"] == "cpu=1,mem=100M,node=1,billing=1"
    assert first["UserId"] == "root(0)"
    assert len(parse_scontrol_records(SCONTROL_JOBS)) == 3


# --- JobState -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["BOGUS", "", "   ", "running", "PENDING_SOON"])
def test_unknown_state_strings_parse_as_unknown(text: str) -> None:
    assert JobState.parse(text) is JobState.UNKNOWN


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("RUNNING", JobState.RUNNING),
        ("CANCELLED by 1000", JobState.CANCELLED),
        ("COMPLETED+", JobState.COMPLETED),
        ("OUT_OF_MEMORY", JobState.OUT_OF_MEMORY),
        ("NODE_FAIL", JobState.NODE_FAIL),
    ],
)
def test_known_state_strings(text: str, state: JobState) -> None:
    assert JobState.parse(text) is state


TERMINAL = {
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.CANCELLED,
    JobState.TIMEOUT,
    JobState.NODE_FAIL,
    JobState.OUT_OF_MEMORY,
    JobState.PREEMPTED,
    JobState.BOOT_FAIL,
    JobState.DEADLINE,
}


@pytest.mark.parametrize("state", list(JobState))
def test_is_terminal(state: JobState) -> None:
    assert state.is_terminal is (state in TERMINAL)


def test_waiting_states_are_not_terminal() -> None:
    for state in ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"):
        assert not JobState.parse(state).is_terminal


def test_sacct_cancelled_pending_tasks_of_an_array_are_one_record_expanded_per_task() -> None:
    # sacct's words for `--array=0-9%1` cancelled while task 0 ran (local cluster, Slurm
    # 22.05): the nine tasks that never started are one record. Issue 14: status went on
    # saying they were pending; the scheduler's task parser read "[1-9%1]" as an index.
    from hpcrun.slurm.scheduler import task_status

    jobs = parse_sacct(
        "1_0|2|CANCELLED by 0|0:0|1|n1|wrap\n1_[1-9%1]|1|CANCELLED by 0|0:0|1|None assigned|wrap\n"
    )
    assert [j.job_id for j in jobs] == [f"1_{i}" for i in range(10)]
    assert {(j.array_job_id, j.state, j.nodelist) for j in jobs[1:]} == {
        ("1", JobState.CANCELLED, "")
    }
    assert [task_status(j).index for j in jobs] == list(range(10))
    split = parse_sacct("5_[1,3-4,8]|5|CANCELLED by 0|0:0|0|None assigned|frames\n")
    assert [j.array_task_id for j in split] == ["1", "3", "4", "8"]


def test_nodelists_expand_as_slurm_writes_them() -> None:
    from hpcrun.slurm.parse import expand_nodelist

    assert expand_nodelist("n2") == ("n2",)
    assert expand_nodelist("") == ()
    assert expand_nodelist("n[1-3,7],gpu-[08-10]") == (
        *("n1", "n2", "n3", "n7"),
        *("gpu-08", "gpu-09", "gpu-10"),
    )
    assert expand_nodelist("n1,n4") == ("n1", "n4")


@pytest.mark.parametrize(
    ("state", "reason", "trouble"),
    [
        ("mixed", "", None),
        ("idle", "", None),
        ("draining", "maintenance", None),  # running jobs finish on a draining node
        ("mixed*", "", "slurmd is not responding"),
        ("down*", "Not responding", "slurmd is not responding (Not responding)"),
        ("down", "admin", "node is down (admin)"),
    ],
)
def test_slurm_says_which_nodes_do_not_serve_their_jobs(
    state: str, reason: str, trouble: str | None
) -> None:
    # sinfo's states on the local cluster after a slurmd was SIGKILLed: `*` at 18 s,
    # `down*` with "Not responding" at 43 s (SlurmdTimeout=30).
    from hpcrun.slurm.parse import Node
    from hpcrun.slurm.scheduler import slurm_node_trouble

    assert slurm_node_trouble(Node("n2", state, 8, "", reason)) == trouble
