"""`hpcrun render`: a Blender render farm on the cluster (frame chunks as a job array,
then an ffmpeg encode; on Kubernetes the queue-fed farm of `hpcrun farm`), and `hpcrun
render status [RUN]`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hpcrun.cli._array import print_tasks, report_submitted, show_status, status_target
from hpcrun.cli._common import (
    ClusterOption,
    JsonOption,
    PartitionOption,
    RichProgress,
    console,
    require,
    resolve_cluster,
    service_of,
)

if TYPE_CHECKING:
    from hpcrun.services.farm import FarmService
    from hpcrun.services.render import RenderRuns, RenderView


def render(
    target: Annotated[
        list[str] | None,
        typer.Argument(
            help="FILE.blend to render, or `status [RUN]` to show a run.", show_default=False
        ),
    ] = None,
    frames: Annotated[
        str | None,
        typer.Option(
            "--frames", "-f", help="Frames START-END [default: the scene's].", show_default=False
        ),
    ] = None,
    chunk: Annotated[
        int,
        typer.Option(
            help="Frames per Blender process (one array task each): Blender's start-up "
            "costs more than a small frame."
        ),
    ] = 4,
    engine: Annotated[
        str, typer.Option(help="CYCLES, BLENDER_EEVEE or BLENDER_WORKBENCH.")
    ] = "CYCLES",
    samples: Annotated[
        int | None,
        typer.Option(help="Render samples [default: the scene's].", show_default=False),
    ] = None,
    resolution: Annotated[
        str | None,
        typer.Option(help="WIDTHxHEIGHT [default: the scene's].", show_default=False),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Frames directory, or s3://bucket/prefix (frames upload as they finish) "
            "[default: NAME-frames].",
            show_default=False,
        ),
    ] = None,
    encode: Annotated[str, typer.Option(help="mp4 (H.264, yuv420p) or none.")] = "mp4",
    fps: Annotated[
        float | None,
        typer.Option(help="Video frame rate [default: the scene's].", show_default=False),
    ] = None,
    max_parallel: Annotated[
        int | None,
        typer.Option(help="At most K chunks at once (--array ...%K).", show_default=False),
    ] = None,
    gpus_per_task: Annotated[
        int | None, typer.Option(help="GPUs for each chunk.", show_default=False)
    ] = None,
    cpus_per_task: Annotated[
        int | None,
        typer.Option(
            help="CPUs for each chunk; Blender renders on that many threads "
            "[default: a whole node per chunk, all its CPUs].",
            show_default=False,
        ),
    ] = None,
    tasks_per_node: Annotated[
        int | None,
        typer.Option(
            help="Chunks that share a node, each with its CPUs / K [default: 1].",
            show_default=False,
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option(help="Render a chunk's missing frames again up to N times.")
    ] = 3,
    job: Annotated[
        Path | None,
        typer.Option(
            "--job",
            help='A render-farm job file: {"file": "x.blend", "start": "1", "end": "17"}.',
            show_default=False,
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Delete the frames and video already in the output and render every frame "
            "(a run with other settings than the frames there is refused without it).",
        ),
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Return once submitted; print the run id.")
    ] = False,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="With `status RUN`: cancel the run.")
    ] = False,
    partition: PartitionOption = None,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Render Blender frames across the cluster and encode them to an mp4.

    Frames are cut into chunks of --chunk frames; each chunk is one task of a Slurm job
    array running `blender -b FILE -E ENGINE -o DIR/frame_#### -F PNG -s A -e B -a`.
    A chunk's missing frames are rendered again up to --retries times; a dependent job
    (afterok) encodes the frames with ffmpeg once all exist. Running the same command
    again resumes: complete frames are never rendered twice. A resumed run must use the
    same .blend, --resolution, --engine, --samples and --fps as the frames already there
    (recorded in OUTPUT/.hpcrun-render.json); --overwrite starts the output again.

    On an eks or kubernetes cluster the chunks go to the render farm instead (`hpcrun
    farm`, brought up by the first render): one SQS message per chunk, Blender workers
    behind an autoscaler, frames and the mp4 in S3; --frames is needed there.

    \b
    Examples:
      hpcrun render rolling_ball.blend --frames 1-240 --chunk 8
      hpcrun render --job job.json --detach
      hpcrun render status          # the newest run; `status 3` for run 3
    """
    args = list(target or [])
    wants_status, run_id = status_target(args)
    if wants_status:
        _status(run_id, cancel, cluster, json_out)
        return
    from hpcrun.errors import UsageError
    from hpcrun.services.render import RenderRequest, load_job_file

    if job is not None:
        if args:
            raise UsageError("give FILE.blend or --job, not both")
        blend, job_frames = load_job_file(job)
        frames = frames or job_frames
    elif len(args) == 1:
        blend = args[0]
    else:
        raise UsageError(
            "render needs one FILE.blend (or --job FILE.json)",
            "e.g. hpcrun render rolling_ball.blend --frames 1-24",
        )
    request = RenderRequest(
        blend=blend,
        frames=frames,
        chunk=chunk,
        engine=engine,
        samples=samples,
        resolution=resolution,
        output=output,
        encode=encode,
        fps=fps,
        max_parallel=max_parallel,
        gpus_per_task=gpus_per_task,
        cpus_per_task=cpus_per_task,
        tasks_per_node=tasks_per_node,
        retries=retries,
        blender=os.environ.get("HPCRUN_BLENDER", "blender"),
        ffmpeg=os.environ.get("HPCRUN_FFMPEG", "ffmpeg"),
        overwrite=overwrite,
        partition=partition,
    )
    runs, progress = _runs(cluster, quiet=json_out)
    try:
        run = runs.submit(request)
    finally:
        progress.close()
    first, last = run.plan["frames"]
    report_submitted(
        runs,
        run,
        detach=detach,
        json_out=json_out,
        total=last - first + 1,
        unit="frames",
        done_of=lambda v: v.frames_done,
        print_view=_print_view,
    )


def _runs(
    cluster: str | None, quiet: bool
) -> tuple[RenderRuns | FarmService, RichProgress]:
    """The cluster's render runs: a Slurm job array, or on Kubernetes the render farm
    (`hpcrun farm`), which the first render there brings up. Each service is imported
    only where it serves (the farm's modules cost a Slurm render ~20 ms)."""
    from hpcrun.backends.base import Feature

    target = resolve_cluster(cluster)
    if Feature.SLURM in target.backend.unsupported and Feature.SERVE not in (
        target.backend.unsupported
    ):
        from hpcrun.services.farm import FarmService

        return service_of(FarmService, target, quiet)
    require(target, Feature.SLURM, "hpcrun render")
    from hpcrun.services.render import RenderRuns

    return service_of(RenderRuns, target, quiet)


def _status(run_id: int | None, cancel: bool, cluster: str | None, json_out: bool) -> None:
    runs, _ = _runs(cluster, quiet=True)
    show_status(runs, run_id, cancel=cancel, json_out=json_out, print_view=_print_view)


def _print_view(view: RenderView) -> None:
    out = console()
    run = view.run
    out.print(
        f"render run {run.id} ({run.name}): {run.status}"
        + (f" — {run.detail}" if run.detail else "")
    )
    out.print(f"  frames: {view.frames_done} of {view.frames_total} in {run.plan['frames_dir']}")
    print_tasks(run, view.failed, "chunk", view.dead_nodes)
    if run.plan.get("video") and run.status == "done":
        out.print(f"  video: {run.plan['video']}")
