"""The fast paths of `hpcrun jobs --json` and `submit --wait` give what the plain ones do.

`parse_squeue` builds each `Job`'s fields without its `__init__`, `jobs_json_lines` writes
JSON without json's encoder, and `SlurmClient.wait` polls squeue's `-O` format, which also
carries exit codes: each is checked here against the plain construction it replaces, on
real Slurm output (Slurm 22.05, the local cluster), with no subprocess; what `wait` asks
of Slurm is checked against the real cluster in tests/e2e/test_wait_calls.py.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from hpcrun.cli._common import print_json, print_json_lines
from hpcrun.slurm.parse import (
    SQUEUE_EXIT_FIELDS,
    Job,
    JobState,
    jobs_json_lines,
    parse_squeue,
    parse_squeue_exit,
)

SQUEUE = (
    "3_0|3|3|0|PENDING|1||None|wrap\n"
    "3_1|4|3|1|RUNNING|1|n2|None|wrap\n"
    "17|17|17|N/A|FAILED|2|n[1-2]|NonZeroExitCode|my |job x\n"
    "\n"
    '18|18|18|N/A|PENDING|4|(null)|Resources|caf\u00e9 "quoted" \\ \t\n'
    "19|19|19|N/A|CANCELLED by 0|1|N/A|N/A|x\n"
)


def _plain(line: str) -> Job:
    """The Job `parse_squeue` made before, through the dataclass's own `__init__`."""
    job_id, raw_id, array_job, array_task, state, nodes, nodelist, reason, name = line.split("|", 8)
    task = None if array_task in {"N/A", "", "(null)", "None assigned"} else array_task
    return Job(
        job_id=job_id,
        raw_id=raw_id,
        array_job_id=array_job if task is not None else None,
        array_task_id=task,
        name=name,
        state=JobState.parse(state),
        node_count=int(nodes) if nodes.isdigit() else 0,
        nodelist="" if nodelist in {"N/A", "", "(null)"} else nodelist,
        reason="" if reason in {"None", "N/A", ""} else reason,
    )


def test_parsed_jobs_are_what_their_init_makes() -> None:
    parsed = parse_squeue(SQUEUE)
    plain = [_plain(line) for line in SQUEUE.splitlines() if line.strip()]
    assert parsed == plain
    for fast, slow in zip(parsed, plain, strict=True):
        # Same fields in the same order: `to_json` (and so `--json`) follows __dict__.
        assert list(vars(fast).items()) == list(vars(slow).items())
        assert [f.name for f in dataclasses.fields(Job)] == list(vars(fast))
        assert hash(fast) == hash(slow)
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast.name = "changed"  # type: ignore[misc]
    assert dataclasses.replace(parsed[0], exit_code=3).exit_code == 3


def test_json_lines_are_json_dumps_of_each_job() -> None:
    jobs = [*parse_squeue(SQUEUE), dataclasses.replace(parse_squeue(SQUEUE)[2], exit_code=137)]
    assert jobs_json_lines(jobs) == [json.dumps(j.to_json()) for j in jobs]
    assert [json.loads(line) for line in jobs_json_lines(jobs)] == [j.to_json() for j in jobs]


@pytest.mark.parametrize("records", [[], [{"a": 1}], [{"a": 1}, {"b": [2, None]}]])
def test_print_json_lines_writes_what_print_json_does(
    records: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    print_json(records)
    expected = capsys.readouterr().out
    print_json_lines([json.dumps(r) for r in records])
    assert capsys.readouterr().out == expected
    assert json.loads(expected) == records


def test_exit_fields_are_the_squeue_format_plus_the_exit_status() -> None:
    fields = [f.removesuffix(":|") for f in SQUEUE_EXIT_FIELDS.split(",")]
    # -o's %i %A %F %K %T %D %N %r, the exit status, %j last (free text).
    assert fields == ["JobArrayID", "JobID", "ArrayJobID", "ArrayTaskID", "State", "NumNodes",
                      "NodeList", "Reason", "exit_code", "Name"]  # fmt: skip


# `squeue -h -r -t all -O SQUEUE_EXIT_FIELDS` on the local cluster: exit 0, `exit 2`,
# `kill -9 $$` (raw status 9: signal 9), a name holding the separator, a running task.
SQUEUE_EXIT = (
    "12_0|13|12|0|COMPLETED|1|n1|None|0|hpcrun|\n"
    "12_2|12|12|2|FAILED|1|n1|NonZeroExitCode|512|hpcrun|\n"
    "3|3|3|N/A|FAILED|1|n1|JobLaunchFailure|9|my |job x|\n"
    "4_1|6|4|1|RUNNING|1|n2|None|0|arr|\n"
)


def test_exit_format_parses_to_the_same_jobs_with_exit_codes() -> None:
    jobs = parse_squeue_exit(SQUEUE_EXIT)
    same = parse_squeue(
        "12_0|13|12|0|COMPLETED|1|n1|None|hpcrun\n"
        "12_2|12|12|2|FAILED|1|n1|NonZeroExitCode|hpcrun\n"
        "3|3|3|N/A|FAILED|1|n1|JobLaunchFailure|my |job x\n"
        "4_1|6|4|1|RUNNING|1|n2|None|arr\n"
    )
    assert [dataclasses.replace(j, exit_code=None) for j in jobs] == same
    # scontrol words these 0:0, 2:0 and 0:9; a job still running has no exit code yet.
    assert [j.exit_code for j in jobs] == [0, 2, 137, None]


def test_the_whole_queue_goes_to_json_text_as_its_jobs_would() -> None:
    from hpcrun.slurm.parse import squeue_json_lines

    assert squeue_json_lines(SQUEUE) == jobs_json_lines(parse_squeue(SQUEUE))
    assert squeue_json_lines("") == []
