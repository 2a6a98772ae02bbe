"""What `hpcrun render` and `hpcrun score` share on the terminal: following a job-array run
with a progress bar (done/total, rate, elapsed, ETA, failed tasks), and the
`status [RUN]` argument both take in front of their options."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from hpcrun.cli._common import console, print_json

if TYPE_CHECKING:
    from hpcrun.services.array import FollowedRuns, RunView
    from hpcrun.state import ArrayRunRecord

V = TypeVar("V", bound="RunView")


def status_target(args: list[str]) -> tuple[bool, int | None]:
    """(`status` asked for, its run id) from a command's positional arguments."""
    if args[:1] != ["status"]:
        return False, None
    if len(args) > 2:
        raise typer.BadParameter("`status` takes at most one run id")
    if len(args) == 2 and not args[1].isdigit():
        raise typer.BadParameter(f"run id {args[1]!r} is not a number")
    return True, int(args[1]) if len(args) == 2 else None


def follow(
    runs: FollowedRuns[V],
    run: ArrayRunRecord,
    *,
    total: int,
    unit: str,
    done_of: Callable[[V], int],
    quiet: bool,
) -> V:
    """Poll until the run ends, drawing a progress bar on stderr (nothing with --json)."""
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"{unit} {{task.fields[rate]}}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[failed]}"),
        console=console(stderr=True),
        disable=quiet,
        transient=False,
    )
    started = time.monotonic()
    with bar:
        task = bar.add_task(f"run {run.id}", total=total, rate="", failed="")

        def tick(view: V) -> None:
            current = view.run
            elapsed = max(time.monotonic() - started, 1e-6)
            failed = sum(1 for t in current.tasks if t.status == "failed")
            done = done_of(view)
            notes = [f"{failed} {runs.TASK}(s) failed"] if failed else []
            notes += [
                f"{len(d[runs.TASK + 's'])} {runs.TASK}(s) on {d['node']}, whose {d['why']}"
                for d in runs.on_dead_nodes(current)
            ]
            bar.update(
                task,
                completed=done,
                description=f"run {current.id} {current.status}",
                rate=f"{_rate(done / elapsed)}/s",
                failed=escape("; ".join(notes)),
            )

        return runs.watch(run, tick)


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def print_tasks(
    run: ArrayRunRecord,
    failed: list[dict[str, Any]],
    noun: str,
    dead_nodes: list[dict[str, Any]] | None = None,
) -> None:
    """Task counts by state, tasks on dead nodes, retried tasks, and each failed task with
    its log's tail."""
    from rich.markup import escape

    out = console()
    counts: dict[str, int] = {}
    for task in run.tasks:
        counts[task.status] = counts.get(task.status, 0) + 1
    if counts:
        out.print(f"  {noun}s: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for dead in dead_nodes or []:
        out.print(f"  [yellow]{escape(dead['message'])}[/yellow]")
    retried = [t for t in run.tasks if t.attempts > 1]
    if retried:
        out.print(
            "  retried: " + ", ".join(f"{noun} {t.index} ({t.attempts} attempts)" for t in retried)
        )
    skip = (noun, "attempts", "log_tail")
    for report in failed:
        where = ", ".join(f"{k} {v}" for k, v in report.items() if k not in skip)
        out.print(f"  [red]{noun} {report[noun]} ({where}) failed[/red]:")
        out.print("    " + report["log_tail"].replace("\n", "\n    "))


def show_status(
    runs: FollowedRuns[V],
    run_id: int | None,
    *,
    cancel: bool,
    json_out: bool,
    print_view: Callable[[V], None],
) -> None:
    """`render status [RUN] [--cancel]` and `score status ...`: the run (the newest by
    default), cancelled first if asked, as text or JSON."""
    run = runs.run(run_id)
    if cancel:
        run = runs.cancel(run)
    view = runs.refresh(run)
    if json_out:
        print_json(view.to_json())
    else:
        print_view(view)


def report_submitted(
    runs: FollowedRuns[V],
    run: ArrayRunRecord,
    *,
    detach: bool,
    json_out: bool,
    total: int,
    unit: str,
    done_of: Callable[[V], int],
    print_view: Callable[[V], None],
) -> None:
    """What `render` and `score` do once a run is submitted: with --detach, say so and
    return; otherwise follow it to its end, print it, and exit 1 unless it is done."""
    if detach:
        view = runs.refresh(run)
        if json_out:
            print_json(view.to_json())
        else:
            console().print(
                f"{runs.KIND} run {run.id} submitted ({total:,} {unit}, {len(run.tasks)} "
                f"{runs.TASK}s); follow it with `hpcrun {runs.KIND} status {run.id}`"
            )
        return
    try:
        view = follow(runs, run, total=total, unit=unit, done_of=done_of, quiet=json_out)
    except KeyboardInterrupt:
        # Ctrl-C stops the following, not the run: its jobs are the scheduler's now, and
        # a silent exit left users thinking they had stopped them (issue 14).
        console(stderr=True).print(
            f"interrupted: {runs.KIND} run {run.id} goes on on the cluster; follow it with "
            f"`hpcrun {runs.KIND} status {run.id}`, cancel it with "
            f"`hpcrun {runs.KIND} status {run.id} --cancel`",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(130) from None
    if json_out:
        print_json(view.to_json())
    else:
        print_view(view)
    if view.run.status != "done":
        raise typer.Exit(1)
