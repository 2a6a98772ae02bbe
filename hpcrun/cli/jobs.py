"""Job commands: submit, jobs, logs, cancel."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hpcrun.cli._common import (
    ClusterOption,
    JsonOption,
    Target,
    console,
    print_json,
    resolve_cluster,
)
from hpcrun.errors import HpcrunError, UnknownJob, UsageError

if TYPE_CHECKING:
    from hpcrun.slurm import Job
    from hpcrun.slurm.runner import Runner
    from hpcrun.state import JobRecord


def submit(
    command: Annotated[
        list[str], typer.Argument(help="The command to run, after `--`.", show_default=False)
    ],
    nodes: Annotated[int, typer.Option("--nodes", "-N", help="Nodes to allocate.")] = 1,
    array: Annotated[
        str | None,
        typer.Option(
            "--array", "-a", help="Array range, e.g. 0-999 or 0-239%16.", show_default=False
        ),
    ] = None,
    gpus_per_node: Annotated[
        int | None, typer.Option(help="GPUs per node.", show_default=False)
    ] = None,
    exclusive: Annotated[bool, typer.Option(help="Whole nodes only.")] = False,
    time_limit: Annotated[
        str | None,
        typer.Option(
            "--time", "-t", help="Time limit: 30, 01:30:00, 2-00:00:00.", show_default=False
        ),
    ] = None,
    dependency: Annotated[
        str | None, typer.Option("--dependency", "-d", help="e.g. afterok:123.", show_default=False)
    ] = None,
    name: Annotated[str, typer.Option("--job-name", "-J", help="Job name.")] = "hpcrun",
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="stdout file pattern [default: hpcrun-%j.out, hpcrun-%A_%a.out for arrays].",
            show_default=False,
        ),
    ] = None,
    error: Annotated[
        str | None,
        typer.Option(
            "--error", "-e", help="stderr file pattern [default: with stdout].", show_default=False
        ),
    ] = None,
    chdir: Annotated[
        Path | None,
        typer.Option(
            "--chdir", "-D", help="Working directory [default: this one].", show_default=False
        ),
    ] = None,
    partition: Annotated[str | None, typer.Option("--partition", "-p", show_default=False)] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-W", help="Block until the job ends; exit with its status.")
    ] = False,
    timeout: Annotated[
        float | None,
        typer.Option(help="With --wait: give up after this many seconds.", show_default=False),
    ] = None,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Submit a batch job; print its id.

    Like `sbatch --wrap`, the command runs once, on the first node of the allocation:
    put `srun` in front to run it on every node.

    \b
    Examples:
      hpcrun submit -N 4 --wait -- srun hostname
      hpcrun submit --array 0-99 -- python score.py
    """
    import dataclasses

    from hpcrun.slurm import JobSpec

    workdir = str((chdir or Path.cwd()).resolve())
    spec = JobSpec(
        command=tuple(command),
        name=name,
        nodes=nodes,
        array=array,
        gpus_per_node=gpus_per_node,
        exclusive=exclusive,
        time_limit=time_limit,
        dependency=dependency,
        partition=partition,
        workdir=workdir,
        output=output,
        error=error,
    )  # bad flags fail here, before any cluster is looked up
    target = resolve_cluster(cluster)
    remote_home = target.backend.default_workdir()
    if remote_home is not None:  # a path on the cluster, relative ones to the login home
        workdir = str(chdir) if chdir is not None else remote_home
        spec = dataclasses.replace(spec, workdir=workdir)
    stdout_pattern = spec.output or spec.default_output
    row = target.store.record_submit_intent(
        target.record.name, spec.name, spec.to_json(), workdir, stdout_pattern, spec.error
    )
    try:
        job_id = target.backend.slurm().submit(spec)
    except HpcrunError as exc:
        target.store.record_submit_failed(row, exc.message)
        raise
    target.store.record_submitted(row, job_id)
    if not wait:
        print_json({"job_id": job_id, "cluster": target.record.name}) if json_out else print(job_id)
        return
    if not json_out:
        print(job_id, flush=True)
    final = _wait(target, job_id, timeout, quiet=json_out)
    code = _exit_status(final)
    if json_out:
        print_json(
            {
                "job_id": job_id,
                "cluster": target.record.name,
                "exit_code": code,
                "tasks": [j.to_json() for j in final],
            }
        )
    else:
        states = sorted({str(j.state) for j in final})
        console(stderr=True).print(f"job {job_id}: {', '.join(states)} (exit {code})")
    raise typer.Exit(code)


def _wait(target: Target, job_id: str, timeout: float | None, quiet: bool) -> list[Job]:
    out = console(stderr=True)
    status = None if quiet or not out.is_terminal else out.status(f"job {job_id}: submitted")
    if status is not None:
        status.start()

    def show(jobs: list[Job]) -> None:
        if status is None or not jobs:
            return
        done = sum(1 for j in jobs if j.state.is_terminal)
        states = ", ".join(sorted({str(j.state) for j in jobs}))
        status.update(
            f"job {job_id}: {states}"
            + (f" ({done}/{len(jobs)} tasks ended)" if len(jobs) > 1 else "")
        )

    try:
        return target.backend.slurm().wait(job_id, timeout_s=timeout, on_poll=show)
    finally:
        if status is not None:
            status.stop()


def _exit_status(jobs: list[Job]) -> int:
    """0 when every task completed; else the first failure's status (1 if it had none)."""
    for job in jobs:
        if str(job.state) != "COMPLETED" or job.exit_code:
            return job.exit_code or 1
    return 0


def jobs(
    job_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Only these jobs (an array id covers its tasks).", show_default=False),
    ] = None,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """List jobs in the queue and recently ended ones (one Slurm call, any number of tasks)."""
    target = resolve_cluster(cluster)
    found = target.backend.slurm().jobs(job_ids or None)
    if json_out:
        print_json([j.to_json() for j in found])
        return
    if not found:
        console().print(
            "No jobs." + ("" if job_ids else " Submit one with `hpcrun submit -- CMD`.")
        )
        return
    from rich.table import Table

    table = Table("job", "name", "state", "nodes", "nodelist / reason", box=None, pad_edge=False)
    for row in _collapse_arrays(found):
        table.add_row(*row)
    console().print(table)


def _collapse_arrays(found: list[Job]) -> list[tuple[str, str, str, str, str]]:
    """One table row per job, and per array and state: 10 000 tasks make a few rows."""
    order: list[Job | tuple[str, str]] = []  # Slurm's order, arrays at their first task
    groups: dict[tuple[str, str], list[Job]] = {}
    for job in found:
        if job.array_job_id is None:
            order.append(job)
            continue
        key = (job.array_job_id, str(job.state))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(job)
    return [_array_row(groups[e]) if isinstance(e, tuple) else _job_row(e) for e in order]


def _job_row(job: Job) -> tuple[str, str, str, str, str]:
    where = job.nodelist or (f"({job.reason})" if job.reason else "")
    return (job.job_id, job.name, str(job.state), str(job.node_count), where)


def _array_row(tasks: list[Job]) -> tuple[str, str, str, str, str]:
    first = tasks[0]
    label = f"{first.job_id}" if len(tasks) == 1 else f"{first.array_job_id}_[{len(tasks)} tasks]"
    nodes = sorted({t.nodelist for t in tasks if t.nodelist})
    where = ",".join(nodes[:4]) + (" ..." if len(nodes) > 4 else "")
    if not where and first.reason:
        where = f"({first.reason})"
    return (label, first.name, str(first.state), str(first.node_count), where)


def logs(
    job_id: Annotated[str, typer.Argument(help="Job id; an array task is 123_4.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")
    ] = False,
    cluster: ClusterOption = None,
) -> None:
    """Print a job's output (stdout, then stderr when it has its own file)."""
    target = resolve_cluster(cluster)
    client = target.backend.slurm()
    record = target.store.job(target.record.name, job_id)
    known = client.jobs([job_id]) if record is None or "_" in job_id or follow else []
    if record is None and not known:
        recent = [r.slurm_job_id for r in target.store.jobs(target.record.name) if r.slurm_job_id]
        raise UnknownJob(job_id, target.record.name, recent)
    files = _log_files(target, job_id, record, known)
    offsets = dict.fromkeys(files, 0)
    while True:
        for path in files:
            offsets[path] = _print_new(client.runner, path, offsets[path])
        if not follow:
            return
        current = client.jobs([job_id])
        if current and all(j.state.is_terminal for j in current):
            time.sleep(0.2)  # the last writes may land just after the state changes
            for path in files:
                offsets[path] = _print_new(client.runner, path, offsets[path])
            return
        time.sleep(0.5)


def _log_files(
    target: Target, job_id: str, record: JobRecord | None, known: list[Job]
) -> list[Path]:
    import getpass

    from hpcrun.slurm.output import resolve_output_path

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
        done = target.backend.slurm().runner.run(["scontrol", "-o", "show", "job", job_id])
        from hpcrun.slurm.parse import parse_scontrol_records

        info = (parse_scontrol_records(done.stdout) or [{}])[0] if done.ok else {}
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


def _print_new(runner: Runner, path: Path, offset: int) -> int:
    """Print what `path` (on the cluster) gained since `offset`; return the new offset."""
    try:
        data = runner.get(str(path), offset)
    except OSError:  # not written yet (SFTP reports a missing file as an OSError too)
        return offset
    sys.stdout.write(data.decode(errors="replace"))
    sys.stdout.flush()
    return offset + len(data)


def cancel(
    job_ids: Annotated[list[str], typer.Argument(help="Jobs to cancel (123, 123_4, ...).")],
    cluster: ClusterOption = None,
) -> None:
    """Cancel jobs (an array id cancels every task)."""
    target = resolve_cluster(cluster)
    target.backend.slurm().cancel(job_ids)
    console(stderr=True).print(f"cancelled {', '.join(job_ids)}")
