"""`hpcrun farm`: the render farm on a Kubernetes cluster (an SQS queue with its
dead-letter queue, Blender workers in a Deployment scaled by an autoscaler, S3 for the
runs): `farm up`, `farm status`, `farm down`. `hpcrun render` there feeds it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from hpcrun.cli._common import ClusterOption, JsonOption, console, print_json
from hpcrun.cli._scaled import (
    CpuOption,
    MaxOption,
    MemoryOption,
    MinOption,
    NoWaitOption,
    TargetCpuOption,
    open_scaled,
)

if TYPE_CHECKING:
    from hpcrun.cli._common import RichProgress
    from hpcrun.services.farm import FarmService, FarmView

farm_app = typer.Typer(
    help="A queue-fed Blender render farm on Kubernetes (EKS or any cluster).\n\n"
    "`hpcrun farm up --store s3://bucket/renders` makes an SQS queue (and its dead-letter "
    "queue) and a Deployment of Blender workers scaled by an autoscaler; `hpcrun render "
    "FILE.blend --frames 1-240` on that cluster uploads the scene and sends one message "
    "per chunk. Workers read the queue and S3 as their service account's IAM role.",
    no_args_is_help=True,
)


def farm_service(cluster: str | None, quiet: bool) -> tuple[FarmService, RichProgress]:
    from hpcrun.services.farm import FarmService

    return open_scaled(FarmService, cluster, quiet, "hpcrun farm")


@farm_app.command("up")
def up(
    store: Annotated[
        str | None,
        typer.Option(
            help="s3://bucket/prefix for the runs [default: the cluster file's farm.store].",
            show_default=False,
        ),
    ] = None,
    minimum: MinOption = 1,
    maximum: MaxOption = 10,
    target_cpu: TargetCpuOption = 50,
    gpus_per_worker: Annotated[int, typer.Option(help="GPUs for each worker.")] = 0,
    cpu: CpuOption = "2",
    memory: MemoryOption = "4Gi",
    image: Annotated[
        str | None,
        typer.Option(
            help="Worker image (scripts/docker/render-worker.Dockerfile) [default: "
            "hpcrun/render-worker:VERSION, or the cluster file's farm.image].",
            show_default=False,
        ),
    ] = None,
    service_account: Annotated[
        str | None,
        typer.Option(
            help="Service account whose IAM role reads and writes the store and the queue.",
            show_default=False,
        ),
    ] = None,
    visibility: Annotated[
        int, typer.Option(help="Seconds a taken chunk stays hidden (the worker extends it).")
    ] = 1200,
    max_receives: Annotated[
        int, typer.Option(help="Deliveries of a chunk before it goes to the dead-letter queue.")
    ] = 3,
    no_wait: NoWaitOption = False,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Make the queues and the worker Deployment with its autoscaler (again: update)."""
    from hpcrun.services.farm import FarmRequest

    request = FarmRequest(
        store=store,
        minimum=minimum,
        maximum=maximum,
        target_cpu=target_cpu,
        gpus_per_worker=gpus_per_worker,
        cpu=cpu,
        memory=memory,
        image=image,
        service_account=service_account,
        visibility_s=visibility,
        max_receives=max_receives,
        timeout_s=None if no_wait else 600.0,
    )
    service, progress = farm_service(cluster, json_out)
    try:
        view = service.up(request)
    finally:
        progress.close()
    if json_out:
        print_json(view.to_json())
    else:
        print_farm(view)
        console().print("Next: `hpcrun render FILE.blend --frames 1-240` on this cluster.")


@farm_app.command("status")
def status(cluster: ClusterOption = None, json_out: JsonOption = False) -> None:
    """Workers ready and wanted, the autoscaler, and the messages waiting, taken, dead."""
    service, _ = farm_service(cluster, True)
    view = service.view()
    if json_out:
        print_json(view.to_json())
    else:
        print_farm(view)


@farm_app.command("down")
def down(cluster: ClusterOption = None, json_out: JsonOption = False) -> None:
    """Delete the workers, their autoscaler and the queues; the runs in S3 stay."""
    service, progress = farm_service(cluster, json_out)
    try:
        removed = service.down()
    finally:
        progress.close()
    if json_out:
        print_json({"status": "stopped", "objects_removed": removed})
    else:
        console().print(f"render farm stopped ({removed} objects removed; the runs stay in S3)")


def print_farm(view: FarmView) -> None:
    out = console()
    record, live, counts = view.record, view.state, view.counts
    out.print(f"render farm on {record.cluster}: {record.status}, runs in {record.plan['store']}")
    if live is not None and live.exists:
        out.print(
            f"  workers: {live.ready} of {live.desired} ready "
            f"(autoscaler {record.plan['min']}-{record.plan['max']}, {live.metric})"
        )
    if counts is not None:
        out.print(
            f"  chunks: {counts.waiting} waiting, {counts.in_flight} being rendered, "
            f"{counts.dead} dead (queue {record.plan['queues']['url']})"
        )
