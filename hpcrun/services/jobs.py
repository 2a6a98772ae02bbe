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
import getpass
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from hpcrun.errors import CommandError, HpcrunError, UnknownJob, UsageError
from hpcrun.services.base import ClusterService
from hpcrun.slurm import Job, JobSpec, SlurmClient
from hpcrun.slurm.output import resolve_output_path
from hpcrun.state import JobRecord


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
        except HpcrunError as exc:
            self.store.record_submit_failed(row, exc.message)
            raise
        self.store.record_submitted(row, job_id)
        return job_id

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
        return self.slurm.jobs(list(job_ids) if job_ids else None)

    def ended(self, job_id: str) -> bool:
        """Whether Slurm knows `job_id` and every one of its tasks has ended."""
        current = self.slurm.jobs([job_id])
        return bool(current) and all(j.state.is_terminal for j in current)

    def cancel(self, job_ids: Sequence[str]) -> None:
        self.slurm.cancel(list(job_ids))

    # logs -------------------------------------------------------------------------------

    def log_files(self, job_id: str, *, follow: bool = False) -> list[Path]:
        """The files (paths on the cluster) holding `job_id`'s stdout, then its stderr
        when it has its own; an array job must be named by one task (`123_4`)."""
        record = self.store.job(self.cluster, job_id)
        known = self.slurm.jobs([job_id]) if record is None or "_" in job_id or follow else []
        if record is None and not known:
            recent = [r.slurm_job_id for r in self.store.jobs(self.cluster) if r.slurm_job_id]
            raise UnknownJob(job_id, self.cluster, recent)
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

    def read_log(self, path: Path, offset: int) -> bytes:
        """What `path` (on the cluster) holds after `offset`; nothing while it does not
        exist yet (SFTP reports a missing file as an OSError too)."""
        try:
            return self.slurm.runner.get(str(path), offset)
        except OSError:
            return b""


def exit_status(jobs: Sequence[Job]) -> int:
    """0 when every task completed; else the first failure's status (1 if it had none)."""
    for job in jobs:
        if str(job.state) != "COMPLETED" or job.exit_code:
            return job.exit_code or 1
    return 0
