"""Parse what Slurm's commands print into `Job` and `Node` records.

hpcrun asks Slurm for fixed, delimiter-separated formats (never the human tables) so one
call covers any number of jobs and array tasks; the format strings live here next to
their parsers so the two cannot drift apart. The free-text field of each format (job
name, node reason) is last, so a delimiter inside it cannot shift the columns.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

SEP = "|"
# %i id as users write it (123 or 123_4), %A raw id, %F array job id, %K array task id,
# %T state, %D node count, %N node list, %r reason, %j name (last: free text).
SQUEUE_FORMAT = SEP.join(["%i", "%A", "%F", "%K", "%T", "%D", "%N", "%r", "%j"])
SINFO_FORMAT = SEP.join(["%N", "%T", "%c", "%G", "%E"])
SACCT_FIELDS = "JobID,JobIDRaw,State,ExitCode,NNodes,NodeList,JobName"


class JobState(StrEnum):
    PENDING = "PENDING"
    CONFIGURING = "CONFIGURING"
    RUNNING = "RUNNING"
    COMPLETING = "COMPLETING"
    SUSPENDED = "SUSPENDED"
    REQUEUED = "REQUEUED"
    RESIZING = "RESIZING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    NODE_FAIL = "NODE_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    PREEMPTED = "PREEMPTED"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @classmethod
    def parse(cls, text: str) -> JobState:
        # sacct writes "CANCELLED by 0"; squeue may append "+" to extended states.
        word = text.split()[0].rstrip("+") if text.strip() else "UNKNOWN"
        try:
            return cls(word)
        except ValueError:
            return cls.UNKNOWN


_TERMINAL = frozenset(
    {
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
)


@dataclass(frozen=True)
class Job:
    """One job or one array task as Slurm reports it."""

    job_id: str  # as users write it: "123" or "123_4"
    raw_id: str  # Slurm's own numeric id of this job or task
    array_job_id: str | None
    array_task_id: str | None
    name: str
    state: JobState
    node_count: int
    nodelist: str
    reason: str
    exit_code: int | None = None  # known once the job ended and Slurm was asked for it

    def to_json(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy cost 158 ms of `jobs --json` at 10 000 tasks.
        return {**self.__dict__, "state": str(self.state)}


@dataclass(frozen=True)
class Node:
    name: str
    state: str  # Slurm's long state name, lower case: idle, allocated, down*, ...
    cpus: int
    gres: str
    reason: str

    @property
    def is_available(self) -> bool:
        return self.state.rstrip("*~#!%$@^-") in {"idle", "mixed", "allocated", "completing"} and (
            not self.state.endswith("*")
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _none_if_na(value: str) -> str | None:
    # "None assigned" is sacct's node list for a job that never ran.
    return None if value in {"N/A", "", "(null)", "None assigned"} else value


def parse_squeue(text: str) -> list[Job]:
    """Parse `squeue -h -r -o SQUEUE_FORMAT` output: one line per job or array task."""
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        job_id, raw_id, array_job, array_task, state, nodes, nodelist, reason, name = line.split(
            SEP, 8
        )
        array_task_id = _none_if_na(array_task)
        jobs.append(
            Job(
                job_id=job_id,
                raw_id=raw_id,
                array_job_id=array_job if array_task_id is not None else None,
                array_task_id=array_task_id,
                name=name,
                state=JobState.parse(state),
                node_count=int(nodes) if nodes.isdigit() else 0,
                nodelist=_none_if_na(nodelist) or "",
                reason="" if reason == "None" else (_none_if_na(reason) or ""),
            )
        )
    return jobs


def parse_sacct(text: str) -> list[Job]:
    """Parse `sacct -n -P -X --format=SACCT_FIELDS`: accounting records of ended jobs."""
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        job_id, raw_id, state, exit_code, nodes, nodelist, name = line.split(SEP, 6)
        array_job, _, array_task = job_id.partition("_")
        jobs.append(
            Job(
                job_id=job_id,
                raw_id=raw_id,
                array_job_id=array_job if array_task else None,
                array_task_id=array_task or None,
                name=name,
                state=JobState.parse(state),
                node_count=int(nodes) if nodes.isdigit() else 0,
                nodelist=_none_if_na(nodelist) or "",
                reason="",
                exit_code=_exit_status(exit_code),
            )
        )
    return jobs


def parse_sinfo(text: str) -> list[Node]:
    """Parse `sinfo -h -N -o SINFO_FORMAT`; a node in several partitions is listed once."""
    nodes: dict[str, Node] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, state, cpus, gres, reason = line.split(SEP, 4)
        nodes.setdefault(
            name,
            Node(
                name=name,
                state=state,
                cpus=int(cpus) if cpus.isdigit() else 0,
                gres="" if gres == "(null)" else gres,
                reason="" if reason == "none" else reason,
            ),
        )
    return list(nodes.values())


_KV_RE = re.compile(r"(\w+)=(\S*)")


def parse_scontrol_records(text: str) -> list[dict[str, str]]:
    """Parse `scontrol -o show ...`: one record per line of Key=Value pairs."""
    return [dict(_KV_RE.findall(line)) for line in text.splitlines() if line.strip()]


def parse_exit_codes(text: str) -> dict[str, int]:
    """Map each job id in `scontrol -o show job` output to its exit status."""
    codes = {}
    for record in parse_scontrol_records(text):
        job_id = record.get("JobId", "")
        if record.get("ArrayTaskId") and record.get("ArrayJobId"):
            job_id = f"{record['ArrayJobId']}_{record['ArrayTaskId']}"
        status = _exit_status(record.get("ExitCode", ""))
        if job_id and status is not None:
            codes[job_id] = status
    return codes


def _exit_status(text: str) -> int | None:
    """Slurm writes `status:signal`; a job killed by signal N reports 128 + N, as a shell does."""
    status, _, signal = text.partition(":")
    if not status.isdigit():
        return None
    if signal.isdigit() and int(signal) and not int(status):
        return 128 + int(signal)
    return int(status)
