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
    PartitionOption,
    console,
    print_json,
    print_json_lines,
    require,
    resolve_cluster,
)

if TYPE_CHECKING:
    from hpcrun.cli._common import Target
    from hpcrun.services.jobs import JobsService
    from hpcrun.slurm import Job


def _service(target: Target) -> JobsService:
    from hpcrun.services.jobs import JobsService

    return JobsService(target.store, target.record.name, target.backend)


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
    partition: PartitionOption = None,
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
    from hpcrun.backends.base import Feature
    from hpcrun.services.jobs import exit_status
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
    require(target, Feature.SLURM, "hpcrun submit")
    jobs_service = _service(target)
    # On a cluster that does not see this machine's files, --chdir is a path there.
    job_id = jobs_service.submit(spec, str(chdir) if chdir is not None else None)
    if not wait:
        print_json({"job_id": job_id, "cluster": target.record.name}) if json_out else print(job_id)
        return
    if not json_out:
        print(job_id, flush=True)
    final = _wait(jobs_service, job_id, timeout, quiet=json_out)
    code = exit_status(final)
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
        line = f"job {job_id}: {', '.join(states)} (exit {code})"
        if _plain_stderr():
            sys.stderr.write(line + "\n")  # what rich writes there, without importing it
        else:
            console(stderr=True).print(line)
    raise typer.Exit(code)


def _plain_stderr() -> bool:
    """Whether rich would find stderr no terminal (so it draws no spinner and writes text
    as it is), decided without importing rich (~25 ms of a `submit --wait` in a script).
    Where an override rich reads (TTY_COMPATIBLE, FORCE_COLOR) is set, rich decides."""
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return False
    return not sys.stderr.isatty()


def _wait(service: JobsService, job_id: str, timeout: float | None, quiet: bool) -> list[Job]:
    if quiet or _plain_stderr():
        return service.wait(job_id, timeout_s=timeout)
    out = console(stderr=True)
    status = None if not out.is_terminal else out.status(f"job {job_id}: submitted")
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
        return service.wait(job_id, timeout_s=timeout, on_poll=show)
    finally:
        if status is not None:
            status.stop()


def jobs(
    job_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Only these jobs (an array id covers its tasks).", show_default=False),
    ] = None,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """List jobs in the queue and recently ended ones (one Slurm call, any number of tasks)."""
    from hpcrun.backends.base import Feature

    target = resolve_cluster(cluster)
    require(target, Feature.SLURM, "hpcrun jobs")
    if json_out:
        print_json_lines(_service(target).jobs_json_lines(job_ids))
        return
    found = _service(target).jobs(job_ids)
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
    from hpcrun.backends.base import Feature

    target = resolve_cluster(cluster)
    require(target, Feature.SLURM, "hpcrun logs")
    service = _service(target)
    files = service.log_files(job_id, follow=follow)
    offsets: dict[Path, int | None] = dict.fromkeys(files, None)  # None: not there (yet)
    while True:
        for path in files:
            offsets[path] = _print_new(service, path, offsets[path])
        if not follow:
            break
        if service.ended(job_id):
            time.sleep(0.2)  # the last writes may land just after the state changes
            for path in files:
                offsets[path] = _print_new(service, path, offsets[path])
            break
        time.sleep(0.5)
    if all(offset is None for offset in offsets.values()):
        raise service.no_log(job_id, files)


def _print_new(service: JobsService, path: Path, offset: int | None) -> int | None:
    """Print what `path` (on the cluster) gained since `offset`; return the new offset,
    None while the file does not exist."""
    data = service.read_log(path, offset or 0)
    if data is None:
        return offset
    sys.stdout.write(data.decode(errors="replace"))
    sys.stdout.flush()
    return (offset or 0) + len(data)


def cancel(
    job_ids: Annotated[list[str], typer.Argument(help="Jobs to cancel (123, 123_4, ...).")],
    cluster: ClusterOption = None,
) -> None:
    """Cancel jobs (an array id cancels every task)."""
    from hpcrun.backends.base import Feature
    from hpcrun.errors import HpcrunError, UnknownJob

    target = resolve_cluster(cluster)
    require(target, Feature.SLURM, "hpcrun cancel")
    service = _service(target)
    outcome = service.cancel(job_ids)
    err = console(stderr=True)
    if outcome.cancelled:
        err.print(f"cancelled {', '.join(outcome.cancelled)}", markup=False)
    ended = "; ".join(f"job {i} already ended ({states})" for i, states in outcome.ended.items())
    if outcome.unknown:
        if ended:
            err.print(ended, markup=False)
        raise UnknownJob(", ".join(outcome.unknown), target.record.name, service.recent_job_ids())
    if not outcome.cancelled:
        raise HpcrunError(ended, "`hpcrun jobs` lists the active ones")
    if ended:
        err.print(ended, markup=False)
