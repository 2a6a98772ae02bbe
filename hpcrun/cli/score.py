"""`hpcrun score`: batch scoring of a table with a tree model across the cluster (shards as
a job array, each task serving the model through Triton), `hpcrun score status [RUN]`, and
`hpcrun score --export-model-repo DIR` (the Triton model repository alone)."""

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
    console,
    print_json,
    require,
    resolve_cluster,
    service_of,
)

if TYPE_CHECKING:
    from hpcrun.cli._common import RichProgress
    from hpcrun.services.score import ScoreRuns, ScoreView


# What the model is and what to predict: the same for a score run and a served model.
ModelFormatOption = Annotated[
    str | None,
    typer.Option(
        help="xgboost_json, xgboost_ubj, lightgbm or treelite_checkpoint "
        "[default: from the suffix].",
        show_default=False,
    ),
]
PredictOption = Annotated[
    str, typer.Option(help="proba (probabilities), class (labels) or raw (margins).")
]
ThresholdOption = Annotated[float, typer.Option(help="Class threshold (binary models).")]


def score(
    target: Annotated[
        list[str] | None,
        typer.Argument(
            help="`status [RUN]` to show a run (omit to start one).", show_default=False
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="XGBoost model (.json/.ubj), a path or s3://.", show_default=False
        ),
    ] = None,
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            help="Parquet or CSV: a file, a directory of files, or an s3:// prefix "
            "(repeat for several files).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="OUT.parquet (parts in OUT.parts/) or a directory (parts/, "
            "predictions.parquet, summary.json), or s3://bucket/prefix.",
            show_default=False,
        ),
    ] = None,
    tasks: Annotated[int, typer.Option(help="Shards: one array task each.")] = 4,
    batch_rows: Annotated[
        int, typer.Option(help="Rows per request to the model (8k or more amortises Triton).")
    ] = 65536,
    server: Annotated[
        str,
        typer.Option(
            help="triton (the node's tritonserver, FIL backend), pytriton (nvidia-pytriton's "
            "Triton, python backend, CPU), none (the model in-process: the fastest on CPUs), "
            "auto (triton if installed, else pytriton)."
        ),
    ] = "auto",
    gpus_per_task: Annotated[
        int | None, typer.Option(help="GPUs for each task (FIL on KIND_GPU).", show_default=False)
    ] = None,
    cpus_per_task: Annotated[
        int | None,
        typer.Option(
            help="CPUs for each task; the model predicts on that many threads "
            "[default: a whole node per task, all its CPUs].",
            show_default=False,
        ),
    ] = None,
    model_format: ModelFormatOption = None,
    predict: PredictOption = "proba",
    threshold: ThresholdOption = 0.5,
    id_column: Annotated[
        str | None,
        typer.Option(
            help="Column copied to the output [default: `id` if the table has one, else a "
            "`row` number is written].",
            show_default=False,
        ),
    ] = None,
    retries: Annotated[int, typer.Option(help="Score a failed shard again up to N times.")] = 2,
    max_parallel: Annotated[
        int | None,
        typer.Option(help="At most K shards at once (--array ...%K).", show_default=False),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Finish an existing output: score only missing shards."),
    ] = False,
    python: Annotated[
        str | None,
        typer.Option(
            help="The cluster's Python for the tasks, with hpcrun[score] installed "
            "[default: this one on the local cluster, else python3].",
            envvar="HPCRUN_SCORE_PYTHON",
            show_default=False,
        ),
    ] = None,
    export_model_repo: Annotated[
        Path | None,
        typer.Option(
            "--export-model-repo",
            help="Only write Triton's model repository for --model (FIL backend) into DIR.",
            show_default=False,
        ),
    ] = None,
    features: Annotated[
        int | None,
        typer.Option(
            help="With --export-model-repo: the feature count [default: read from the model].",
            show_default=False,
        ),
    ] = None,
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
    """Score a table with a tree model across the cluster, through Triton.

    The table is cut into --tasks shards by row groups (Parquet) or line-aligned byte
    ranges (CSV), never loaded whole. Each shard is one task of a Slurm job array: it
    starts a Triton server on its node, streams its rows through it in --batch-rows
    batches (gRPC), writes one Parquet part, and stops the server. A dependent job merges
    the parts in the table's order and writes a summary (rows, seconds, rows/s per task).
    Each task has a node to itself (all its CPUs; the model predicts on as many threads),
    or --cpus-per-task N CPUs, several tasks to a node.
    A failed shard is scored again up to --retries times; --resume finishes an output,
    scoring only shards whose part is missing.

    On CPUs, --server none (the model in-process) is the fastest; Triton pays off on GPUs
    (--server triton, the FIL backend) and where the same repository also serves online.

    \b
    Examples:
      hpcrun score -m model.json -i table.parquet -o scores.parquet --tasks 4
      hpcrun score -m s3://models/m.json -i s3://data/day/ -o s3://scores/day/ --server none
      hpcrun score -m model.json --export-model-repo ./repo     # for your own Triton / EKS
      hpcrun score status           # the newest run; `status 3` for run 3
    """
    args = list(target or [])
    wants_status, run_id = status_target(args)
    if wants_status:
        _status(run_id, cancel, cluster, json_out)
        return
    from hpcrun.errors import UsageError

    if args:
        raise UsageError(
            f"unexpected argument {args[0]!r}",
            "options name the model and data: hpcrun score -m MODEL -i DATA -o OUT",
        )
    if model is None:
        raise UsageError(
            "score needs --model", "e.g. hpcrun score -m model.json -i t.parquet -o out"
        )
    if export_model_repo is not None:
        _export(
            model,
            model_format,
            predict,
            threshold,
            batch_rows,
            gpus_per_task,
            features,
            export_model_repo,
            json_out,
        )
        return
    if not inputs or output is None:
        raise UsageError(
            "score needs --input and --output",
            "e.g. hpcrun score -m model.json -i table.parquet -o scores.parquet",
        )
    from hpcrun.services.score import ScoreRequest

    request = ScoreRequest(
        model=model,
        inputs=tuple(inputs),
        output=output,
        tasks=tasks,
        batch_rows=batch_rows,
        server=server,
        gpus_per_task=gpus_per_task,
        cpus_per_task=cpus_per_task,
        model_format=model_format,
        predict=predict,
        threshold=threshold,
        id_column=id_column,
        retries=retries,
        max_parallel=max_parallel,
        overwrite=overwrite,
        resume=resume,
        python=python,
        tritonserver=os.environ.get("HPCRUN_TRITONSERVER", "tritonserver"),
        partition=partition,
    )
    runs, progress = _runs(cluster, quiet=json_out)
    try:
        run = runs.submit(request)
    finally:
        progress.close()
    report_submitted(
        runs,
        run,
        detach=detach,
        json_out=json_out,
        total=run.plan["rows"],
        unit="rows",
        done_of=lambda v: v.rows_done,
        print_view=_print_view,
    )


def _runs(cluster: str | None, quiet: bool) -> tuple[ScoreRuns, RichProgress]:
    """The cluster's score runs, refused before any work where it has no Slurm (its job
    arrays; Kubernetes' own workers are another issue's)."""
    from hpcrun.backends.base import Feature
    from hpcrun.services.score import ScoreRuns

    target = resolve_cluster(cluster)
    require(target, Feature.SLURM, "hpcrun score")
    return service_of(ScoreRuns, target, quiet)


def _export(
    model: str,
    model_format: str | None,
    predict: str,
    threshold: float,
    batch_rows: int,
    gpus: int | None,
    features: int | None,
    target: Path,
    json_out: bool,
) -> None:
    from hpcrun.services.score import export_model_repository

    written = export_model_repository(
        Path(model),
        target,
        model_format=model_format,
        predict=predict,
        threshold=threshold,
        batch_rows=batch_rows,
        gpus=gpus is None or gpus > 0,
        features=features,
    )
    if json_out:
        print_json({"repository": str(target), "files": [str(p) for p in written]})
        return
    out = console()
    out.print(f"wrote Triton's model repository for {model} (FIL backend) to {target}:")
    for path in written:
        out.print(f"  {path.relative_to(target)}")
    out.print(f"serve it with: tritonserver --model-repository {target}")


def _status(run_id: int | None, cancel: bool, cluster: str | None, json_out: bool) -> None:
    runs, _ = _runs(cluster, quiet=True)
    show_status(runs, run_id, cancel=cancel, json_out=json_out, print_view=_print_view)


def _print_view(view: ScoreView) -> None:
    out = console()
    run = view.run
    plan = run.plan
    out.print(
        f"score run {run.id} ({run.name}, server {plan['server']}): {run.status}"
        + (f" — {run.detail}" if run.detail else "")
    )
    out.print(f"  rows: {view.rows_done:,} of {view.rows_total:,} in {plan['parts_dir']}")
    print_tasks(run, view.failed, "shard", view.dead_nodes)
    summary = view.summary
    if summary:
        out.print(
            f"  scored {summary['rows']:,} rows in {summary['seconds']:.1f} task-seconds "
            f"({summary['rows_per_s']:,.0f} rows/s per task)"
        )
        for shard in summary.get("shards", []):
            out.print(
                f"    shard {shard['index']}: {shard['rows']:,} rows, {shard['seconds']:.2f} s, "
                f"{shard['rows_per_s']:,.0f} rows/s on {shard['host']}"
            )
    if run.status == "done":
        out.print(f"  predictions: {plan['merged']}")
        if plan.get("s3_output"):
            out.print(f"  uploaded to {plan['s3_output']} ({view.uploaded} files)")
