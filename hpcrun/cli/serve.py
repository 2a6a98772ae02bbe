"""`hpcrun serve`: a model kept up on a Kubernetes cluster behind an autoscaler:
`serve triton`, `serve status`, `serve stop`."""

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
from hpcrun.cli.score import ModelFormatOption, PredictOption, ThresholdOption

if TYPE_CHECKING:
    from hpcrun.cli._common import RichProgress
    from hpcrun.services.serve import ServeService, ServeView

serve_app = typer.Typer(
    help="Online serving on Kubernetes (EKS or any cluster): Triton with the FIL backend "
    "behind a HorizontalPodAutoscaler.\n\n"
    "`hpcrun serve triton --model model.json --store s3://bucket/models` exports the model "
    "repository to S3 and creates a Deployment, a Service and an autoscaler; the pods read "
    "S3 through their service account's IAM role, never through keys. `hpcrun score "
    "--server grpc://HOST:8001` streams a table through it.",
    no_args_is_help=True,
)


def _service(cluster: str | None, quiet: bool) -> tuple[ServeService, RichProgress]:
    from hpcrun.services.serve import ServeService

    return open_scaled(ServeService, cluster, quiet, "hpcrun serve")


@serve_app.command("triton")
def triton(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="The model (XGBoost .json/.ubj, LightGBM, Treelite), a path or s3://: "
            "exported as a FIL model repository under --store.",
            show_default=False,
        ),
    ] = None,
    model_repository: Annotated[
        str | None,
        typer.Option(
            help="Serve this s3:// model repository as it is (no export).", show_default=False
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="s3://bucket/prefix for the exported repository (<store>/model_repository) "
            "[default: the cluster file's serve.store].",
            show_default=False,
        ),
    ] = None,
    name: Annotated[str, typer.Option(help="The server's name (its objects' name).")] = "triton",
    minimum: MinOption = 1,
    maximum: MaxOption = 4,
    target_cpu: TargetCpuOption = 50,
    target_metric: Annotated[
        str | None,
        typer.Option(
            help="Scale on a pods metric instead, NAME=AVERAGE (needs a custom-metrics "
            "adapter, e.g. nv_inference_queue_duration_us=100).",
            show_default=False,
        ),
    ] = None,
    scale_down_after: Annotated[
        int | None,
        typer.Option(
            help="Seconds load must stay low before replicas are removed [default: "
            "Kubernetes' 300].",
            show_default=False,
        ),
    ] = None,
    gpus_per_replica: Annotated[
        int, typer.Option(help="GPUs for each replica (0: FIL on CPUs).")
    ] = 1,
    cpu: CpuOption = "1",
    memory: MemoryOption = "4Gi",
    image: Annotated[
        str | None,
        typer.Option(
            help="tritonserver image with the FIL backend [default: NVIDIA's NGC image, or "
            "the cluster file's serve.image].",
            show_default=False,
        ),
    ] = None,
    service_account: Annotated[
        str | None,
        typer.Option(
            help="Service account bound to an IAM role that reads the store [default: the "
            "cluster file's serve.service_account, else index.service_account].",
            show_default=False,
        ),
    ] = None,
    model_format: ModelFormatOption = None,
    predict: PredictOption = "proba",
    threshold: ThresholdOption = 0.5,
    features: Annotated[
        int | None,
        typer.Option(help="The feature count [default: read from the model].", show_default=False),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the first replicas to be ready.")
    ] = 600.0,
    no_wait: NoWaitOption = False,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Serve a tree model with Triton (FIL backend) behind an autoscaler.

    Before anything is made: the cluster must be a Kubernetes one, --min <= --max, some
    node must have --gpus-per-replica GPUs, the store's bucket must exist and be
    writable, and the repository must be one Triton loads (its config.pbtxt parsed with
    Triton's own ModelConfig). Applying again with other flags updates the server in
    place; the autoscaler keeps the replica count it chose.

    \b
    Examples:
      hpcrun serve triton -m model.json --store s3://my-models/fraud --max 8
      hpcrun serve triton --model-repository s3://my-models/fraud/model_repository
      hpcrun serve triton -m model.json --gpus-per-replica 0 --cpu 2 --target-cpu 70
      hpcrun serve status
    """
    from hpcrun.services.serve import ServeRequest

    request = ServeRequest(
        model=model,
        repository=model_repository,
        store=store,
        name=name,
        model_format=model_format,
        predict=predict,
        threshold=threshold,
        features=features,
        minimum=minimum,
        maximum=maximum,
        target_cpu=None if target_metric else target_cpu,
        target_metric=target_metric,
        scale_down_after_s=scale_down_after,
        gpus_per_replica=gpus_per_replica,
        cpu=cpu,
        memory=memory,
        image=image,
        service_account=service_account,
        timeout_s=None if no_wait else timeout,
    )
    service, progress = _service(cluster, json_out)
    try:
        view = service.up(request)
    finally:
        progress.close()
    if json_out:
        print_json(view.to_json())
        return
    _print_view(view)
    live = view.state
    if live is not None:
        out = console()
        host, _, port = live.endpoint.rpartition(":")
        out.print(
            f"  reach it from here: kubectl port-forward -n {live.namespace} svc/{live.name} {port}"
        )
        out.print(f"  score through it: hpcrun score --server grpc://{host}:{port} -m ... -i ...")


@serve_app.command("status")
def status(
    name: Annotated[
        str | None,
        typer.Argument(help="A served model (default: every one).", show_default=False),
    ] = None,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Replicas ready and desired, what the autoscaler measures and wants, the endpoint."""
    service, _ = _service(cluster, True)
    views = service.views(name)
    if json_out:
        print_json([v.to_json() for v in views])
        return
    if not views:
        console().print("nothing served on this cluster: hpcrun serve triton -m MODEL ...")
    for view in views:
        _print_view(view)


@serve_app.command("stop")
def stop(
    name: Annotated[str, typer.Argument(help="The served model.")] = "triton",
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Delete the server's Deployment, Service and autoscaler (the S3 repository stays)."""
    service, progress = _service(cluster, json_out)
    try:
        removed = service.stop(name)
    finally:
        progress.close()
    if json_out:
        print_json({"name": name, "status": "stopped", "objects_removed": removed})
    else:
        console().print(f"{name}: stopped ({removed} objects removed; the repository stays)")


def _print_view(view: ServeView) -> None:
    out = console()
    record, live = view.record, view.state
    head = f"{record.name} on {record.cluster}: {record.status}"
    if record.detail:
        head += f" ({record.detail})"
    out.print(head)
    out.print(f"  model repository: {record.plan.get('repository')}")
    if live is None:
        return
    if not live.exists:
        out.print("  its Deployment is gone from the cluster: `hpcrun serve stop` forgets it")
        return
    bounds = f"{record.plan.get('min')}-{record.plan.get('max')}"
    if live.autoscaler_current and live.autoscaler_desired is not None:
        wants = f"{live.autoscaler_current} -> {live.autoscaler_desired}"
        scaler = f"autoscaler {wants} (of {bounds}), {live.metric}"
    else:  # before its first sync (every 15 s by default)
        scaler = f"autoscaler ({bounds}) not synced yet, {live.metric}"
    out.print(f"  replicas: {live.ready} of {live.desired} ready; {scaler}")
    out.print(f"  endpoint (in the cluster): {live.endpoint} (gRPC)")
    if live.detail:
        out.print(f"  waiting: {live.detail}")
