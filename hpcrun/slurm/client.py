"""`SlurmClient`: submit, query, cancel, resize and wait on jobs through one `Runner`.

Each method is one Slurm command (two at most), whatever the number of jobs or array
tasks: status of 10 000 tasks is one `squeue -r` call, not 10 000. Jobs that have left
the controller's memory are looked up in accounting (`sacct`), which the local cluster
always runs and ParallelCluster may not, so its absence only narrows what we can report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from hpcrun.errors import ControllerDown, HpcrunError, SlurmCommandError, UsageError
from hpcrun.slurm.parse import (
    SACCT_FIELDS,
    SINFO_FORMAT,
    SQUEUE_EXIT_FIELDS,
    SQUEUE_FORMAT,
    Job,
    JobState,
    Node,
    never_start_reason,
    parse_exit_codes,
    parse_sacct,
    parse_scontrol_records,
    parse_sinfo,
    parse_squeue,
    parse_squeue_exit,
    reason_code,
    squeue_json_lines,
)
from hpcrun.slurm.spec import JobSpec
from hpcrun.transport.runner import Completed, Runner

# (job id, Slurm state, end time in epoch seconds or None, whether the job has ended):
# what idle time is made of (hpcrun.services.idle).
JobTime = tuple[str, str, float | None, bool]
# The Slurm half of the idle guard on a ParallelCluster head node (hpcrun.node.idle),
# shipped there as data beside it, since node code does not speak Slurm itself: the same
# queries `job_end_times` and `accounting_end_times` make, the states that mean a job
# ended, and how to list compute nodes and power them down (`{nodes}`: their names).
# Times as epoch seconds: Slurm prints them in the time zone of the host it runs on.
IDLE_QUERIES: dict[str, Any] = {
    "env": {"SLURM_TIME_FORMAT": "%s"},
    "queue": ["squeue", "-h", "-a", "-r", "-t", "all", "-o", "%i|%T|%e"],
    "accounting": ["sacct", "-a", "-X", "-n", "-P", "-S", "now-30days", "-o",
                   "JobID,State,End"],
    "ended_states": sorted(str(s) for s in JobState if s.is_terminal),
    "nodes": ["sinfo", "-h", "-N", "-o", "%N|%T"],
    "powered_down_suffix": "~",
    "power_down": ["scontrol", "update", "NodeName={nodes}", "State=POWER_DOWN"],
}  # fmt: skip


_GRANTED_RE = re.compile(r"Granted job allocation (\d+)")
_QUEUED_RE = re.compile(r"(?:Pending job allocation|job) (\d+)")
# How every Slurm client command words a slurmctld that does not accept connections.
_CONTROLLER_DOWN_RE = re.compile(r"unable to contact slurm controller", re.IGNORECASE)


class SbatchRefused(HpcrunError):
    """sbatch refused the job for a reason `explain_sbatch` could put in words."""


class JobWaitTimeout(HpcrunError):
    def __init__(self, job_id: str, timeout_s: float, pending: Sequence[Job]) -> None:
        states = ", ".join(sorted({str(j.state) for j in pending})) or "unknown"
        super().__init__(
            f"job {job_id} did not finish within {timeout_s:g} s (still {states})",
            f"keep waiting with `hpcrun jobs {job_id}`, or cancel it with `hpcrun cancel {job_id}`",
        )


class JobNeverStarts(HpcrunError):
    """A wait on a job Slurm holds PENDING for a reason that never clears by itself
    (`never_start_reason`): waiting would last until someone cancels it."""

    def __init__(self, job_id: str, job: Job, why: str) -> None:
        self.job = job
        self.reason = reason_code(job.reason)
        task = f" (task {job.job_id})" if job.job_id != job_id else ""
        super().__init__(
            f"job {job_id} will never start{task}: Slurm keeps it pending with reason {why}",
            f"cancel it with `hpcrun cancel {job_id}`: Slurm keeps it queued until then",
        )


class SlurmClient:
    """Speak Slurm through `runner`; stateless, so one instance may serve many threads."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def submit(self, spec: JobSpec) -> str:
        """Submit a batch job (script on stdin, nothing written to disk); return its id."""
        done = self.runner.run(["sbatch", "--parsable"], input=spec.to_sbatch_script())
        if not done.ok:
            from hpcrun.slurm.refusals import explain_sbatch

            explained = explain_sbatch(done.stderr, spec)
            if explained is not None:
                raise SbatchRefused(*explained)
        _ok(done)
        # --parsable prints "<id>" or "<id>;<cluster>".
        return done.stdout.strip().split(";", 1)[0]

    def allocate(self, spec: JobSpec, *, timeout_s: float | None = 60.0) -> str:
        """A step-less allocation (`salloc --no-shell`); return its job id once granted.

        salloc blocks until Slurm grants the nodes: callers check free nodes first or pass
        a timeout they are prepared to wait. A timed-out request is cancelled, never left
        queued behind the user's back.
        """
        try:
            done = self.runner.run(spec.to_salloc_argv(), timeout_s=timeout_s)
        except HpcrunError:
            # The request may be queued: find it by name among pending jobs and withdraw it.
            pending = [j for j in self.jobs() if j.name == spec.name and j.state == "PENDING"]
            self.cancel([j.job_id for j in pending])
            raise
        granted = _GRANTED_RE.search(done.stderr)
        if not done.ok or granted is None:
            queued = _QUEUED_RE.search(done.stderr)
            if queued is not None:
                self.cancel([queued.group(1)])
            _ok(done)
            raise HpcrunError(f"salloc granted nothing: {done.stderr.strip()}")
        return granted.group(1)

    def job_details(self, job_id: str) -> dict[str, str]:
        """`scontrol -o -d show job` as Key=Value pairs (GRES, node list, resize state)."""
        done = _ok(self.runner.run(["scontrol", "-o", "-d", "show", "job", job_id]))
        records = parse_scontrol_records(done.stdout)
        return records[0] if records else {}

    def has_accounting_database(self) -> bool:
        """Whether slurmctld stores accounting in slurmdbd; without it Slurm 22.05 refuses
        to update a job a second time once it was resized."""
        done = _ok(self.runner.run(["scontrol", "show", "config"]))
        for line in done.stdout.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "AccountingStorageType":
                return value.strip().endswith("slurmdbd")
        return False

    def jobs(self, ids: Iterable[str] | None = None) -> list[Job]:
        """Jobs and array tasks Slurm knows: all of them, or those named (an array id names
        all of its tasks). Recently ended jobs are included; older ones come from sacct."""
        wanted = list(ids or [])
        found = parse_squeue(self._squeue(wanted))
        if not wanted:
            return found
        missing = [i for i in wanted if not _covers(found, i)]
        # A job the controller does not list cannot be pending or running: accounting
        # that says so is a stale record of a job a restarted controller lost.
        ended = [j for j in self.accounting(missing) if j.state.is_terminal] if missing else []
        return found + ended

    def queue_json_lines(self) -> list[str]:
        """`jobs()` as `hpcrun jobs --json` prints each (`jobs_json_lines`), parsed
        straight to JSON text: the whole queue, 10 000 tasks and more, one squeue call."""
        return squeue_json_lines(self._squeue([]))

    def _squeue(self, wanted: Sequence[str]) -> str:
        """squeue's lines of the jobs `wanted` (all when empty), in SQUEUE_FORMAT."""
        argv = ["squeue", "-h", "-r", "-t", "all", "-o", SQUEUE_FORMAT]
        if wanted:
            argv += ["-j", ",".join(wanted)]
        done = self.runner.run(argv)
        if done.ok:
            return done.stdout
        if _CONTROLLER_DOWN_RE.search(done.stderr):
            raise ControllerDown(done.argv, done.returncode, done.stderr)
        if "Invalid job id" in done.stderr:
            return ""  # every id has left the controller; accounting may still know them
        _ok(done)
        return ""

    def _jobs_ending(self, job_id: str) -> list[Job] | None:
        """`jobs([job_id])` with the exit code of each task that has ended, in one squeue
        call (`SQUEUE_EXIT_FIELDS`) where the controller still lists the job; None where
        squeue cannot report exit codes (a Slurm without -O's `exit_code`: it says so on
        stderr and prints the other fields)."""
        done = self.runner.run(
            ["squeue", "-h", "-r", "-t", "all", "-j", job_id, "-O", SQUEUE_EXIT_FIELDS]
        )
        if "Invalid job format" in done.stderr:
            return None
        if done.ok:
            found = parse_squeue_exit(done.stdout)
            if _covers(found, job_id):
                return found
        elif _CONTROLLER_DOWN_RE.search(done.stderr):
            raise ControllerDown(done.argv, done.returncode, done.stderr)
        elif "Invalid job id" not in done.stderr:
            return None  # `jobs()` words the failure
        # Gone from the controller: accounting may know it (what `jobs()` does then).
        return [j for j in self.accounting([job_id]) if j.state.is_terminal]

    def accounting(self, ids: Sequence[str]) -> list[Job]:
        """Ended jobs from sacct; empty where the cluster keeps no accounting."""
        done = self.runner.run(
            ["sacct", "-n", "-P", "-X", "-j", ",".join(ids), f"--format={SACCT_FIELDS}"]
        )
        return parse_sacct(done.stdout) if done.ok else []

    def job_end_times(self, *, timeout_s: float | None = 60.0) -> list[JobTime]:
        """Every job the controller lists, pending to recently ended (MinJobAge), with
        its end time: one squeue call."""
        done = _ok(self.runner.run(_idle_query("queue"), timeout_s=timeout_s))
        return _job_times(done.stdout)

    def accounting_end_times(self, *, timeout_s: float | None = 60.0) -> list[JobTime] | None:
        """Jobs of the last 30 days from accounting as `job_end_times` gives them (one
        sacct call, every user's jobs); None where the cluster keeps no accounting."""
        done = self.runner.run(_idle_query("accounting"), timeout_s=timeout_s)
        return _job_times(done.stdout) if done.ok else None

    def exit_codes(self, ids: Sequence[str]) -> dict[str, int]:
        """Exit status of ended jobs: from the controller while it remembers them, else sacct."""
        done = self.runner.run(["scontrol", "-o", "show", "job", ",".join(ids)])
        codes = parse_exit_codes(done.stdout) if done.ok else {}
        if not codes:
            codes = {j.job_id: j.exit_code for j in self.accounting(ids) if j.exit_code is not None}
        return codes

    def release(self, ids: Sequence[str]) -> None:
        """Let held jobs (or array tasks, `123_4`) start again, now: `scontrol release`,
        and their begin time (a requeue puts it 2 minutes ahead) set to now."""
        if not ids:
            return
        listed = ",".join(ids)
        _ok(self.runner.run(["scontrol", "release", listed]))
        _ok(self.runner.run(["scontrol", "update", f"JobId={listed}", "StartTime=now"]))

    def resume_nodes(self, names: Sequence[str]) -> None:
        """`scontrol update State=RESUME`: nodes Slurm drained back into service."""
        if names:
            _ok(self.runner.run(["scontrol", "update", f"NodeName={','.join(names)}",
                                 "State=RESUME"]))

    def cancel(self, ids: Sequence[str], *, signal: str | None = None) -> None:
        if not ids:
            return
        argv = ["scancel", *([f"--signal={signal}"] if signal else []), *ids]
        _ok(self.runner.run(argv))

    def resize(self, job_id: str, nodes: int | str) -> None:
        """Grow or shrink a running job: `scontrol update JobId=<id> NumNodes=<n>`.

        `nodes` may be a count, 0 (give every node away, for job expansion) or "ALL".
        """
        if isinstance(nodes, int) and nodes < 0:
            raise UsageError(f"cannot resize job {job_id} to {nodes} nodes")
        _ok(self.runner.run(["scontrol", "update", f"JobId={job_id}", f"NumNodes={nodes}"]))

    def nodes(self, partition: str | None = None) -> list[Node]:
        """Every node (of `partition`, when given), one sinfo call."""
        only = ["-p", partition] if partition else []
        done = _ok(self.runner.run(["sinfo", "-h", "-N", *only, "-o", SINFO_FORMAT]))
        return parse_sinfo(done.stdout)

    def hostnames(self, nodelist: str) -> list[str]:
        """Expand a Slurm nodelist (`n[1-3],n7`) to node names, as Slurm itself does."""
        if not nodelist:
            return []
        done = _ok(self.runner.run(["scontrol", "show", "hostnames", nodelist]))
        return done.stdout.split()

    def version(self) -> str:
        """Slurm's version as `major.minor.patch`, from the client commands."""
        done = _ok(self.runner.run(["sinfo", "--version"]))
        return done.stdout.split()[-1]

    def check_can_start(self, job_id: str, jobs: Sequence[Job]) -> None:
        """Raise `JobNeverStarts` when a task of `job_id` (in `jobs`, from `jobs()`) is
        pending for a reason that never clears by itself; costs a Slurm call only when
        such a reason shows (sinfo, to tell PartitionNodeLimit from nodes that are down)."""
        stuck = [(job, why) for job in jobs if (why := never_start_reason(job)) is not None]
        nodes_down: bool | None = None
        for job, why in stuck:
            if reason_code(job.reason) == "PartitionNodeLimit":
                if nodes_down is None:
                    nodes_down = any(not n.is_available for n in self.nodes())
                if nodes_down:
                    continue  # Slurm words "its nodes are down or drained" the same way
            raise JobNeverStarts(job_id, job, why)

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        on_poll: Callable[[list[Job]], None] | None = None,
        poll_s: float = 0.02,
        young_s: float = 5.0,
        max_poll_s: float = 1.0,
    ) -> list[Job]:
        """Block until the job (every task of an array) has ended; return it with exit codes.

        A task Slurm will never start (`check_can_start`) ends the wait with
        `JobNeverStarts` rather than blocking until someone cancels it.

        One Slurm call per poll (squeue, which also gives the exit codes of what ended, so
        no call follows the last poll), every `poll_s` while the job is young (its first
        `young_s`): Slurm's scheduler timers decide when a batch job starts and ends, and
        a steady short interval is what keeps `submit --wait` within a poll of the time the
        job itself took (a backoff from the start had it ~90 ms late on a 1 s job). An
        older job is polled less and less often, up to every `max_poll_s`, so a long wait
        does not keep the controller busy.
        """
        started = time.monotonic()
        deadline = None if timeout_s is None else started + timeout_s
        delay = poll_s
        with_exit_codes = True  # until squeue shows it cannot give them
        while True:
            jobs = self._jobs_ending(job_id) if with_exit_codes else None
            if jobs is None:
                with_exit_codes = False
                jobs = self.jobs([job_id])
            if on_poll is not None:
                on_poll(jobs)
            if jobs and all(j.state.is_terminal for j in jobs):
                break
            self.check_can_start(job_id, jobs)
            if deadline is not None and time.monotonic() >= deadline:
                raise JobWaitTimeout(
                    job_id, timeout_s or 0.0, [j for j in jobs if not j.state.is_terminal]
                )
            if not jobs:
                raise HpcrunError(
                    f"Slurm does not know job {job_id}",
                    "it may have ended long ago on a cluster without accounting",
                )
            time.sleep(delay)
            if time.monotonic() - started >= young_s:
                delay = min(delay * 1.5, max_poll_s)
        unknown = [j.job_id for j in jobs if j.exit_code is None]
        codes = self.exit_codes([job_id]) if unknown else {}
        return [
            j if j.exit_code is not None else _with_exit_code(j, codes.get(j.job_id)) for j in jobs
        ]


def _ok(done: Completed) -> Completed:
    """`done`, or a `SlurmCommandError` with what the Slurm command said (`ControllerDown`
    when it could not reach slurmctld at all)."""
    if not done.ok:
        said = done.stderr or done.stdout
        if _CONTROLLER_DOWN_RE.search(said):
            raise ControllerDown(done.argv, done.returncode, said)
        raise SlurmCommandError(done.argv, done.returncode, said)
    return done


def _covers(found: Sequence[Job], wanted_id: str) -> bool:
    return any(
        j.job_id == wanted_id or j.array_job_id == wanted_id or j.raw_id == wanted_id for j in found
    )


def _with_exit_code(job: Job, code: int | None) -> Job:
    from dataclasses import replace

    return replace(job, exit_code=code)


def _idle_query(name: str) -> list[str]:
    env = [f"{k}={v}" for k, v in IDLE_QUERIES["env"].items()]
    return ["env", *env, *IDLE_QUERIES[name]]


def _job_times(text: str) -> list[JobTime]:
    """`ID|STATE|END` lines; sacct words a cancel `CANCELLED by 1000`, an unknown end
    `Unknown` (squeue: `N/A`)."""
    found: list[JobTime] = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0]:
            continue
        state = JobState.parse(parts[1])
        end = parts[2].strip()
        found.append((parts[0], str(state), float(end) if end.isdigit() else None,
                      state.is_terminal))  # fmt: skip
    return found
