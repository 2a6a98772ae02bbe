"""Parse what Slurm's commands print into `Job` and `Node` records.

hpcrun asks Slurm for fixed, delimiter-separated formats (never the human tables) so one
call covers any number of jobs and array tasks; the format strings live here next to
their parsers so the two cannot drift apart. The free-text field of each format (job
name, node reason) is last, so a delimiter inside it cannot shift the columns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from json.encoder import encode_basestring_ascii
from typing import Any

SEP = "|"
# %i id as users write it (123 or 123_4), %A raw id, %F array job id, %K array task id,
# %T state, %D node count, %N node list, %r reason, %j name (last: free text).
SQUEUE_FORMAT = SEP.join(["%i", "%A", "%F", "%K", "%T", "%D", "%N", "%r", "%j"])
# The same columns through squeue's other format option (-O, each field ending in the
# separator, which -O then pads no further), with the job's exit status before the name:
# what `SlurmClient.wait` polls, so the poll that sees a job end also has its exit code.
SQUEUE_EXIT_FIELDS = ",".join(
    f"{field}:{SEP}"
    for field in (
        "JobArrayID", "JobID", "ArrayJobID", "ArrayTaskID", "State", "NumNodes", "NodeList",
        "Reason", "exit_code", "Name",
    )
)  # fmt: skip
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
        # squeue's plain words are looked up first: `jobs --json` parses 10 000 of them.
        known = _BY_NAME.get(text)
        if known is not None:
            return known
        # sacct writes "CANCELLED by 0"; squeue may append "+" to extended states.
        word = text.split()[0].rstrip("+") if text.strip() else "UNKNOWN"
        return _BY_NAME.get(word, cls.UNKNOWN)


_BY_NAME = {state.value: state for state in JobState}
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


# Why a PENDING job will never start on its own, by squeue's reason code (`%r`), in words.
# Only reasons the job itself causes: Resources, Priority, ReqNodeNotAvail (a node that
# is down, drained or reserved comes back: the local cluster has ReturnToService=2),
# JobHeld* (someone may `scontrol release` it) and limits on usage that drains
# (QOSMaxJobsPerUser...) all end by themselves, so a wait on them goes on.
FINAL_PENDING_REASONS = {
    "DependencyNeverSatisfied": "a job it depends on ended in a way the dependency excludes",
    "BadConstraints": "no node of the cluster has the features or resources it asks for",
    "PartitionNodeLimit": "it asks for more nodes than its partition allows",
    "PartitionTimeLimit": "its time limit is longer than its partition allows",
    "InvalidAccount": "its account is not valid on this cluster",
    "InvalidQOS": "its QOS is not valid on this cluster",
}
# Slurm's reason code for a request beyond a per-job cap of a QOS or association
# (QOSMaxNodePerJobLimit, AssocMaxWallDurationPerJobLimit...): the job itself is too big.
_PER_JOB_LIMIT_SUFFIX = "PerJobLimit"


def held_after_failed_launch(job: Job) -> bool:
    """Whether Slurm holds `job` because launching it failed: it requeues such a batch
    job held, so that a broken one does not relaunch in a loop, and it then never starts
    by itself. After a SIGKILLed slurmctld this happens to a task that started in the
    seconds before the kill: the restarted controller recovered it as pending, started it
    again on a node still running the first copy, drained that node ("Duplicate jobid")
    and held the task (measured on the local cluster, Slurm 22.05)."""
    reason = job.reason.strip().lower().replace("_", " ")
    return job.state == JobState.PENDING and reason.startswith("launch failed requeued held")


def reason_code(reason: str) -> str:
    """The code of a squeue reason: `ReqNodeNotAvail, UnavailableNodes:n1` -> its first word."""
    return re.split(r"[\s,(]", reason.strip(), maxsplit=1)[0]


def never_start_reason(job: Job) -> str | None:
    """Why `job` will never start unless someone changes it or the cluster (its reason
    code and the reason in words), or None while it may still start or is not pending.

    PartitionNodeLimit also stands for "the nodes it needs are down or drained" in
    Slurm's documentation, so callers that can see the nodes should check none is down
    before they believe it (`SlurmClient.check_can_start` does)."""
    if job.state != JobState.PENDING:
        return None
    code = reason_code(job.reason)
    if code in FINAL_PENDING_REASONS:
        return f"{code} ({FINAL_PENDING_REASONS[code]})"
    if code.endswith(_PER_JOB_LIMIT_SUFFIX):
        return f"{code} (it asks for more than one job may have on this cluster)"
    return None


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


# "None assigned" is sacct's node list for a job that never ran.
_NOT_AVAILABLE = frozenset({"N/A", "", "(null)", "None assigned"})


def _none_if_na(value: str) -> str | None:
    return None if value in _NOT_AVAILABLE else value


def parse_squeue(text: str) -> list[Job]:
    """Parse `squeue -h -r -o SQUEUE_FORMAT` output: one line per job or array task.

    `jobs --json` parses 10 000 lines here, so each `Job` is made without its generated
    `__init__` (a frozen dataclass's sets every field through `object.__setattr__`):
    its `__dict__` is built whole, in field order, as `__init__` would leave it (tests
    compare the two). That halves the parse."""
    jobs: list[Job] = []
    append = jobs.append
    new = object.__new__
    set_attr = object.__setattr__
    by_name = _BY_NAME
    missing = _NOT_AVAILABLE
    for line in text.splitlines():
        if not line or line.isspace():
            continue
        job_id, raw_id, array_job, array_task, state, nodes, nodelist, reason, name = line.split(
            SEP, 8
        )
        task = None if array_task in missing else array_task
        job = new(Job)
        set_attr(
            job,
            "__dict__",
            {
                "job_id": job_id,
                "raw_id": raw_id,
                "array_job_id": array_job if task is not None else None,
                "array_task_id": task,
                "name": name,
                "state": by_name.get(state) or JobState.parse(state),
                "node_count": int(nodes) if nodes.isdigit() else 0,
                "nodelist": "" if nodelist in missing else nodelist,
                "reason": "" if reason == "None" or reason in missing else reason,
                "exit_code": None,
            },
        )
        append(job)
    return jobs


def squeue_json_lines(text: str) -> list[str]:
    """`jobs_json_lines(parse_squeue(text))` with no `Job` made in between (tests compare
    the two): what `hpcrun jobs --json` prints of the whole queue, its biggest output."""
    quote = encode_basestring_ascii
    by_name = _BY_NAME
    missing = _NOT_AVAILABLE
    lines: list[str] = []
    append = lines.append
    for line in text.splitlines():
        if not line or line.isspace():
            continue
        job_id, raw_id, array_job, array_task, state, nodes, nodelist, reason, name = line.split(
            SEP, 8
        )
        array = "null, \"array_task_id\": null"
        if array_task not in missing:
            array = f"{quote(array_job)}, \"array_task_id\": {quote(array_task)}"
        known = by_name.get(state) or JobState.parse(state)
        append(
            f'{{"job_id": {quote(job_id)}, "raw_id": {quote(raw_id)}, "array_job_id": {array}, '
            f'"name": {quote(name)}, "state": {quote(known)}, '
            f'"node_count": {int(nodes) if nodes.isdigit() else 0}, '
            f'"nodelist": {quote("" if nodelist in missing else nodelist)}, '
            f'"reason": {quote("" if reason == "None" or reason in missing else reason)}, '
            '"exit_code": null}'
        )
    return lines


def parse_squeue_exit(text: str) -> list[Job]:
    """Parse `squeue -h -r -O SQUEUE_EXIT_FIELDS`: `parse_squeue`'s jobs, with the exit
    code of each that has ended (squeue gives it as wait(2) does, status << 8 | signal)."""
    lines: list[str] = []
    statuses: list[str] = []
    for line in text.splitlines():
        parts = line.split(SEP, 9)
        if len(parts) < 10:
            continue
        statuses.append(parts[8].strip())
        lines.append(SEP.join([*parts[:8], parts[9].removesuffix(SEP)]))
    jobs = parse_squeue("\n".join(lines))
    return [
        _replace_exit_code(job, _wait_status(int(status)))
        if job.state.is_terminal and status.isdigit()
        else job
        for job, status in zip(jobs, statuses, strict=True)
    ]


def _replace_exit_code(job: Job, code: int) -> Job:
    from dataclasses import replace

    return replace(job, exit_code=code)


def _wait_status(raw: int) -> int:
    """A wait(2) status as `_exit_status` words Slurm's `status:signal`."""
    signal, status = raw & 0x7F, (raw >> 8) & 0xFF
    return 128 + signal if signal and not status else status


def jobs_json_lines(jobs: Iterable[Job]) -> list[str]:
    """`json.dumps(job.to_json())` of each job, the same text (tests compare the two) at a
    fraction of the cost: json's encoder builds itself anew on each call, ~3 us a job,
    a third of `jobs --json` at 10 000 tasks. Strings go through the very function
    json escapes them with."""
    quote = encode_basestring_ascii
    return [
        f'{{"job_id": {quote(j.job_id)}, "raw_id": {quote(j.raw_id)}, '
        f'"array_job_id": {"null" if j.array_job_id is None else quote(j.array_job_id)}, '
        f'"array_task_id": {"null" if j.array_task_id is None else quote(j.array_task_id)}, '
        f'"name": {quote(j.name)}, "state": {quote(str(j.state))}, '
        f'"node_count": {int(j.node_count)}, "nodelist": {quote(j.nodelist)}, '
        f'"reason": {quote(j.reason)}, '
        f'"exit_code": {"null" if j.exit_code is None else int(j.exit_code)}}}'
        for j in jobs
    ]


def parse_sacct(text: str) -> list[Job]:
    """Parse `sacct -n -P -X --format=SACCT_FIELDS`: accounting records of ended jobs."""
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        job_id, raw_id, state, exit_code, nodes, nodelist, name = line.split(SEP, 6)
        array_job, _, array_task = job_id.partition("_")
        # Array tasks that never started are one record, `123_[32-999%1]` (seen when a
        # pending array is cancelled): one Job per task, as squeue -r lists them.
        for task in _array_task_ids(array_task) if array_task else [None]:
            jobs.append(
                Job(
                    job_id=f"{array_job}_{task}" if task is not None else job_id,
                    raw_id=raw_id,
                    array_job_id=array_job if task is not None else None,
                    array_task_id=task,
                    name=name,
                    state=JobState.parse(state),
                    node_count=int(nodes) if nodes.isdigit() else 0,
                    nodelist=_none_if_na(nodelist) or "",
                    reason="",
                    exit_code=_exit_status(exit_code),
                )
            )
    return jobs


def _array_task_ids(text: str) -> list[str]:
    """Task ids in sacct's array field: `7`, or a bracketed set `[1-3,5,8-9%2]` (the
    `%N` is the array's limit of tasks at a time, not an id)."""
    if not text.startswith("["):
        return [text]
    ids: list[str] = []
    for part in text.strip("[]").split("%", 1)[0].split(","):
        first, _, last = part.partition("-")
        if first.isdigit() and (not last or last.isdigit()):
            ids += [str(i) for i in range(int(first), int(last or first) + 1)]
    return ids


def expand_nodelist(text: str) -> tuple[str, ...]:
    """Node names in a Slurm node list as squeue prints one (`n[1-3,7],gpu-[01-02]`), in
    Python: status reads one per task and must not cost a `scontrol show hostnames` each.
    Zero-padded ranges keep their width."""
    names: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", text):
        found = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if found is None:
            names.append(part)
            continue
        prefix, ranges, suffix = found.groups()
        for piece in ranges.split(","):
            first, _, last = piece.partition("-")
            if not first.isdigit() or (last and not last.isdigit()):
                continue
            width = len(first)
            for number in range(int(first), int(last or first) + 1):
                names.append(f"{prefix}{number:0{width}d}{suffix}")
    return tuple(names)


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
