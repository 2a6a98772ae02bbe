"""Plain Slurm jobs (`hpcrun submit | jobs | logs | cancel`): the bookkeeping behind them.

A submission is recorded before sbatch runs and its outcome after ("submitting", then
"submitted" with the Slurm id or "failed" with why), so a crash in between leaves a row
`hpcrun status` can explain. Logs are found from that record (the output patterns the
job was submitted with), else from what Slurm reports of the job (`scontrol show job`,
through `SlurmClient.job_details`), and read by offset so `--follow` sends only what is
new. These commands are Slurm's own (`--array`, `afterok:`), so this service speaks to
the cluster's `SlurmClient` rather than to the neutral scheduler.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from hpcrun.errors import CommandError, HpcrunError, UnknownJob, UsageError
from hpcrun.services.base import ClusterService
from hpcrun.slurm import Job, JobSpec, SlurmClient
from hpcrun.slurm.client import SbatchRefused
from hpcrun.state import JobRecord

_JOB_ID_RE = re.compile(r"\d+(_\d+)?")


class JobsService(ClusterService):
    _slurm: SlurmClient | None = None

    @property
    def slurm(self) -> SlurmClient:
        if self._slurm is None:
            self._slurm = self.backend.slurm()
        return self._slurm

    # submit -----------------------------------------------------------------------------

    def submit(self, spec: JobSpec, chdir: str | None = None) -> str:
        """Record the intent, sbatch `spec`, record the outcome; return the job id.

        `spec.workdir` is a path here; on a cluster that does not see this machine's files
        the job runs in `chdir` as given (relative to the login home), else the login home.
        """
        remote_home = self.backend.default_workdir()
        if remote_home is not None:
            spec = dataclasses.replace(spec, workdir=chdir if chdir is not None else remote_home)
        workdir = spec.workdir or os.getcwd()
        self._check_fits(spec)
        if self.site.shares_local_files:
            _check_paths(spec, workdir)
        row = self.store.record_submit_intent(
            self.cluster,
            spec.name,
            spec.to_json(),
            workdir,
            spec.output or spec.default_output,
            spec.error,
        )
        try:
            job_id = self.slurm.submit(spec)
        except SbatchRefused:
            self.store.forget_submit(row)  # refused outright: nothing to remember
            raise
        except HpcrunError as exc:
            self.store.record_submit_failed(row, exc.message)
            raise
        self.store.record_submitted(row, job_id)
        return job_id

    def _check_fits(self, spec: JobSpec) -> None:
        """Refuse what the cluster's declared shape can never run (Slurm would queue
        `-N 17` on 4 nodes as PENDING forever); clusters that declare no shape are left
        to Slurm. Costs no round trip: the shape is the cluster's own record."""
        record = self.store.cluster(self.cluster)
        shape = record.config if record is not None else {}
        nodes, gpus = shape.get("nodes"), shape.get("gpus_per_node")
        if isinstance(nodes, int) and spec.nodes > nodes:
            raise UsageError(
                f"--nodes {spec.nodes}: cluster {self.cluster} has {nodes} nodes",
                f"ask for at most {nodes}; `hpcrun create --nodes N` makes a bigger local one",
            )
        if isinstance(gpus, int) and spec.gpus_per_node is not None and spec.gpus_per_node > gpus:
            raise UsageError(
                f"--gpus-per-node {spec.gpus_per_node}: the nodes of cluster {self.cluster} "
                f"have {gpus} GPU(s) each",
                f"ask for at most {gpus}, or leave it out",
            )

    def wait(
        self,
        job_id: str,
        timeout_s: float | None = None,
        on_poll: Callable[[list[Job]], None] | None = None,
    ) -> list[Job]:
        """Every task of `job_id` once all have ended (JobWaitTimeout after `timeout_s`)."""
        return self.slurm.wait(job_id, timeout_s=timeout_s, on_poll=on_poll)

    # query, cancel ----------------------------------------------------------------------

    def jobs(self, job_ids: Sequence[str] | None = None) -> list[Job]:
        """Queued and recently ended jobs (an array id covers its tasks), one Slurm call."""
        for job_id in job_ids or ():
            if not _JOB_ID_RE.fullmatch(job_id):
                raise UsageError(
                    f"{job_id!r} is not a job id", "job ids are numbers: 123, or 123_4 for a task"
                )
        return self.slurm.jobs(list(job_ids) if job_ids else None)

    def jobs_json_lines(self, job_ids: Sequence[str] | None = None) -> list[str]:
        """`jobs(job_ids)` as `--json` prints each job (`jobs_json_lines`); the whole queue
        goes from squeue's text to JSON with no `Job` in between."""
        if job_ids:
            from hpcrun.slurm.parse import jobs_json_lines

            return jobs_json_lines(self.jobs(job_ids))
        return self.slurm.queue_json_lines()

    def ended(self, job_id: str) -> bool:
        """Whether Slurm knows `job_id` and every one of its tasks has ended; raises
        `JobNeverStarts` for a job Slurm will never start, so `logs --follow` stops too."""
        current = self.slurm.jobs([job_id])
        if current and all(j.state.is_terminal for j in current):
            return True
        self.slurm.check_can_start(job_id, current)
        return False

    def cancel(self, job_ids: Sequence[str]) -> CancelOutcome:
        """Cancel those of `job_ids` that have not ended; one lookup (`SlurmClient.jobs`,
        squeue then sacct) first says which are unknown and which already ended."""
        wanted = list(dict.fromkeys(job_ids))
        known = self.slurm.jobs(wanted)
        outcome = CancelOutcome()
        for job_id in wanted:
            mine = [j for j in known if _names(j, job_id)]
            if not mine:
                outcome.unknown.append(job_id)
            elif all(j.state.is_terminal for j in mine):
                outcome.ended[job_id] = ", ".join(sorted({str(j.state) for j in mine}))
            else:
                outcome.cancelled.append(job_id)
        self.slurm.cancel(outcome.cancelled)
        return outcome

    def recent_job_ids(self) -> list[str]:
        """Ids of the jobs hpcrun submitted to this cluster, newest first."""
        rows = reversed(self.store.jobs(self.cluster))
        return [r.slurm_job_id for r in rows if r.slurm_job_id]

    # logs -------------------------------------------------------------------------------

    def log_files(self, job_id: str, *, follow: bool = False) -> list[Path]:
        """The files (paths on the cluster) holding `job_id`'s stdout, then its stderr
        when it has its own; an array job must be named by one task (`123_4`)."""
        record = self.store.job(self.cluster, job_id)
        known = self.slurm.jobs([job_id]) if record is None or "_" in job_id or follow else []
        if record is None and not known:
            raise UnknownJob(job_id, self.cluster, self.recent_job_ids())
        return self._log_paths(job_id, record, known)

    def _log_paths(self, job_id: str, record: JobRecord | None, known: list[Job]) -> list[Path]:
        base, _, task = job_id.partition("_")
        if record is not None:
            patterns = [record.output, *([record.error] if record.error else [])]
            workdir, name = record.workdir, record.name
            if record.spec.get("array") and not task:
                tasks = sorted({j.array_task_id for j in known if j.array_task_id})[:5]
                raise UsageError(
                    f"job {job_id} is an array: name one task",
                    f"e.g. `hpcrun logs {base}_{tasks[0] if tasks else 0}`",
                )
        else:
            try:
                info = self.slurm.job_details(job_id)
            except CommandError:  # gone from the controller: nothing more to learn there
                info = {}
            patterns = [p for p in {info.get("StdOut", ""), info.get("StdErr", "")} if p]
            workdir, name = info.get("WorkDir", os.getcwd()), info.get("JobName", "")
        # Imported here: `submit` and `jobs` (start-up benchmarks) need neither.
        import getpass

        from hpcrun.slurm.output import resolve_output_path

        raw = next((j.raw_id for j in known if j.job_id == job_id), base)
        return [
            resolve_output_path(
                p,
                job_id=raw,
                array_job_id=base if task else None,
                array_task_id=task or None,
                name=name,
                user=getpass.getuser(),
                workdir=workdir,
            )
            for p in patterns
        ]

    def read_log(self, path: Path, offset: int) -> bytes | None:
        """What `path` (on the cluster) holds after `offset`; None while it does not
        exist (SFTP reports a missing file as an OSError too)."""
        try:
            return self.slurm.runner.get(str(path), offset)
        except OSError:
            return None

    def no_log(self, job_id: str, files: Sequence[Path]) -> HpcrunError:
        """Why `job_id` has none of its log `files`: not started yet, never ran, or the
        file is gone, as Slurm tells its state."""
        where = ", ".join(str(p) for p in files) or "no output file known"
        try:
            states = self.slurm.jobs([job_id])
        except CommandError:
            states = []
        never_ran = [j for j in states if not j.nodelist or j.nodelist.startswith("None")]
        if states and all(j.state == "PENDING" for j in states):
            return HpcrunError(
                f"job {job_id} has not started yet: no log so far (it will be {where})",
                f"`hpcrun logs --follow {job_id}` waits for it",
            )
        if states and all(j.state.is_terminal for j in states) and len(never_ran) == len(states):
            ended = ", ".join(sorted({str(j.state) for j in states}))
            return HpcrunError(
                f"job {job_id} never ran ({ended} before it started): it has no log",
                "`hpcrun jobs` shows its state",
            )
        return HpcrunError(
            f"job {job_id} has no log: {where} does not exist"
            + (" (yet)" if states and not all(j.state.is_terminal for j in states) else ""),
            "it may have been removed, or the job's working directory is not shared",
        )


@dataclasses.dataclass
class CancelOutcome:
    """What `JobsService.cancel` did with each id it was given."""

    cancelled: list[str] = dataclasses.field(default_factory=list)
    ended: dict[str, str] = dataclasses.field(default_factory=dict)  # id -> its final states
    unknown: list[str] = dataclasses.field(default_factory=list)


def _names(job: Job, job_id: str) -> bool:
    """Whether `job_id` as a user wrote it (123, an array's 123, 123_4) names `job`."""
    return job_id in {job.job_id, job.raw_id, job.array_job_id}


def exit_status(jobs: Sequence[Job]) -> int:
    """0 when every task completed; else the first failure's status (1 if it had none)."""
    for job in jobs:
        if str(job.state) != "COMPLETED" or job.exit_code:
            return job.exit_code or 1
    return 0


def _check_paths(spec: JobSpec, workdir: str) -> None:
    """The working directory and the log files' directories exist and are writable: a
    job whose output cannot be opened ends FAILED with no log to say why."""
    if not os.path.isdir(workdir):
        raise UsageError(
            f"--chdir {workdir} is not a directory", "create it first, or pick another"
        )
    for flag, pattern in (("--output", spec.output), ("--error", spec.error)):
        if not pattern:
            continue
        folder = os.path.dirname(os.path.join(workdir, pattern)) or workdir
        if "%" in folder:
            continue  # a directory per job or task: Slurm's to expand
        if not (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)):
            raise UsageError(
                f"{flag} {pattern}: cannot write there ({folder} is not a writable directory)",
                "create the directory first, or pick a path you can write",
            )
