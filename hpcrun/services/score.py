"""Score runs: a table's shards as a job array, each task serving the model through
Triton (or calling it in-process), then one merge job.

`submit` ships `score_task.pyz` to the cluster and has it *inspect* the table and the model
there (row groups or CSV blocks, column types, the model's feature count), so every
mistake a user can make is named before the scheduler sees anything: a model that does not load,
a feature count that differs from the table's columns, a non-numeric column, an empty
table, an output that already exists. It then cuts the rows into shards, records the run,
writes plan.json and the shard script, and submits the array and the dependent merge.
Re-running with `--resume` keeps the first run's shards and scores only those whose part
file is missing. `refresh` costs one scheduler call and one listing of the parts
directory.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpcrun.backends.base import Backend, Progress
from hpcrun.errors import HpcrunError, UsageError
from hpcrun.scheduler import JobRef
from hpcrun.services.array import ArrayRuns
from hpcrun.state import (
    ArrayRunRecord,
    ArrayTaskRecord,
    RunState,
    StateStore,
    TaskRecordState,
)
from hpcrun.storage.s3 import S3Url, Uploader, is_s3_url, parse_s3_url
from hpcrun.workloads.score import (
    DEFAULT_BATCH_ROWS,
    MODEL_FILES,
    PREDICTIONS,
    SERVERS,
    WORKER,
    XGBOOST_FORMATS,
    ScorePlan,
    Shard,
    Unit,
    array_spec,
    check_table,
    fil_model_repository,
    merge_spec,
    model_format_of,
    model_path_in_repository,
    output_layout,
    output_width,
    part_file,
    server_url,
    shard_script,
    shards_for,
)

_PART_RE = re.compile(r"part-[0-9]{5}\.parquet")
# What a resumed run must share with the run that wrote the parts.
_RESUME_KEYS = ("files", "features", "id_column", "model", "predict", "threshold", "rows")
# The model's kind, compared when the earlier plan recorded it: another model saved over
# the same path scores differently.
_RESUME_MODEL_KEYS = ("objective", "num_class")
_RESUME_FLAGS = {"model": "--model", "predict": "--predict", "threshold": "--threshold"}
_TABLE_SUFFIXES = (".parquet", ".csv")


@dataclass(frozen=True)
class ScoreRequest:
    model: str
    inputs: tuple[str, ...]  # files, a directory, or one s3:// prefix
    output: str  # x.parquet, a directory, or s3://bucket/prefix
    tasks: int = 4
    batch_rows: int = DEFAULT_BATCH_ROWS
    server: str = "auto"
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None  # None: a whole node per task (the model's threads follow)
    model_format: str | None = None
    predict: str = "proba"
    threshold: float = 0.5
    id_column: str | None = None
    retries: int = 2
    max_parallel: int | None = None
    overwrite: bool = False
    resume: bool = False
    python: str | None = None  # the cluster's Python [default: this one locally, python3]
    tritonserver: str = "tritonserver"
    partition: str | None = None  # the Slurm queue the tasks run in (None: the default)

    def validate(self) -> None:
        if self.tasks < 1:
            raise UsageError(f"--tasks {self.tasks}: at least 1")
        if not 1 <= self.batch_rows <= 1 << 22:
            raise UsageError(f"--batch-rows {self.batch_rows}: between 1 and {1 << 22}")
        if self.server not in SERVERS and server_url(self.server) is None:
            raise UsageError(
                f"--server {self.server!r}: choose one of {', '.join(SERVERS)}, or a "
                "grpc://HOST:PORT[/MODEL] of a Triton that serves the model"
            )
        if self.predict not in PREDICTIONS:
            raise UsageError(f"--predict {self.predict!r}: choose one of {', '.join(PREDICTIONS)}")
        if not 0.0 <= self.threshold <= 1.0:
            raise UsageError(f"--threshold {self.threshold:g}: between 0 and 1")
        if self.retries < 0:
            raise UsageError(f"--retries {self.retries}: 0 or more")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise UsageError(f"--max-parallel {self.max_parallel}: at least 1")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise UsageError(
                f"--cpus-per-task {self.cpus_per_task}: at least 1",
                "or leave it out: each task then gets a whole node",
            )
        if self.overwrite and self.resume:
            raise UsageError("--overwrite and --resume contradict each other: pick one")
        if not self.inputs:
            raise UsageError("score needs --input (a Parquet/CSV file, a directory or s3://)")


@dataclass
class ScoreView:
    """A run as it stands: what `score status` prints and `--json` returns."""

    run: ArrayRunRecord
    rows_total: int
    rows_done: int
    failed: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None  # the merge job's summary.json, once done
    uploaded: int | None = None  # files in the S3 output (None: no S3 output)
    # Running shards on nodes whose slurmd is dead, by node (`ArrayRuns.on_dead_nodes`).
    dead_nodes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        plan = self.run.plan
        return {
            "run": self.run.id,
            "name": self.run.name,
            "status": self.run.status,
            "detail": self.run.detail,
            "rows": {"total": self.rows_total, "done": self.rows_done},
            "server": plan.get("server"),
            "output": self.run.output,
            "merged": plan.get("merged"),
            "parts_dir": plan.get("parts_dir"),
            "summary_file": plan.get("summary"),
            "s3_output": plan.get("s3_output"),
            "uploaded": self.uploaded,
            "array_job_id": self.run.array_job_id,
            "merge_job_id": self.run.final_job_id,
            "shards": [
                {
                    "shard": t.index,
                    "first_row": t.first,
                    "last_row": t.last,
                    "status": t.status,
                    "attempts": t.attempts,
                }
                for t in self.run.tasks
            ],
            "failed_shards": self.failed,
            "summary": self.summary,
            "dead_nodes": self.dead_nodes,
        }


def worker_source() -> bytes:
    """The score task as shipped to the cluster: one deterministic zipapp of
    `hpcrun.node.score`, which imports nothing from hpcrun (not installed there)."""
    from hpcrun.node.zipapp import score_task

    return score_task()


class ScoreRuns(ArrayRuns["ScoreView"]):
    """Score runs of one cluster."""

    KIND = "score"
    TASK = "shard"
    FINAL = "merge"
    WORKING = RunState.SCORING
    FINISHING = RunState.MERGING
    START_HINT = (
        "start one with `hpcrun score --model model.json --input table.parquet "
        "--output scores.parquet`"
    )

    def __init__(
        self, store: StateStore, cluster: str, backend: Backend, progress: Progress | None = None
    ) -> None:
        super().__init__(store, cluster, backend, progress)
        self._uploaded: dict[int, int] = {}  # run id -> files in its S3 output

    # submit ------------------------------------------------------------------------------

    def submit(self, request: ScoreRequest) -> ArrayRunRecord:
        request.validate()
        s3_output = parse_s3_url(request.output) if is_s3_url(request.output) else None
        s3_in = [p for p in (request.model, *request.inputs) if is_s3_url(p)]
        if (s3_output or s3_in) and not self.site.shares_local_files:
            raise UsageError(
                "s3:// models, inputs and outputs need a cluster that sees this machine's "
                "files (the local one): hpcrun moves the files from here",
                "copy them to the cluster and give --output a path there",
            )
        model_format = model_format_of(request.model, request.model_format)
        model = self._local_model(request.model)
        inputs = self._local_inputs(request.inputs)
        if s3_output is not None:
            from hpcrun.storage.s3 import check_writable

            check_writable(s3_output)  # before anything is scored for nothing
            staged = posixpath.join(self.workspace.root, "score", "s3", s3_output.bucket)
            output = posixpath.join(staged, s3_output.key.rstrip("/") or "scores")
        else:
            output = self._path(request.output)
        python = request.python or (sys.executable if self.site.shares_local_files else "python3")
        worker = self._install_worker()
        inspected = self._inspect(python, worker, inputs, model, model_format, request)
        server = self._server(request, inspected, model_format)
        source = " ".join(request.inputs)
        table = check_table(inspected, source, id_column=request.id_column, predict=request.predict)
        layout = output_layout(output)
        model_info = inspected["model"]
        plan = ScorePlan(
            name=posixpath.splitext(posixpath.basename(output.rstrip("/")))[0] or "scores",
            run_dir="",
            python=python,
            worker=worker,
            format=inspected["format"],
            files=list(inspected["files"]),
            column_types=dict(inspected.get("column_types") or {}),
            csv_header=[c["name"] for c in inspected["columns"]]
            if inspected["format"] == "csv"
            else None,
            features=table.features,
            id_column=table.id_column,
            model=model,
            model_format=model_format,
            predict=request.predict,
            threshold=request.threshold,
            num_class=int(model_info.get("num_class") or 0),
            objective=str(model_info.get("objective") or ""),
            server=server,
            batch_rows=request.batch_rows,
            parts_dir=layout.parts_dir,
            merged=layout.merged,
            summary=layout.summary,
            rows=int(inspected["rows"]),
            tritonserver=request.tritonserver,
            retries=request.retries,
            max_parallel=request.max_parallel,
            gpus_per_task=request.gpus_per_task,
            cpus_per_task=request.cpus_per_task,
            partition=request.partition,
        )
        remote = server_url(request.server)
        if remote is not None:
            plan = replace(plan, server_url=remote[0], model_name=remote[1])
        parts_dir = plan.parts_dir
        with self.claiming(parts_dir, lambda run: run.plan.get("parts_dir") == parts_dir):
            plan, done = self._prepare_output(plan, request, inspected)
            missing = [s for s in plan.shards if s.index not in done]
            if done:
                self.progress.step(
                    f"{len(done)} of {len(plan.shards)} shards already scored: "
                    f"scoring the other {len(missing)}"
                )
            run_id = self.store.create_array_run(
                self.KIND,
                self.cluster,
                plan.name,
                {},
                request.output,
                [(s.index, s.first_row, s.last_row) for s in plan.shards],
            )
            plan = replace(plan, run_dir=posixpath.join(self.workspace.root, "score", str(run_id)))
            if done:
                self.store.set_array_tasks(
                    run_id, [(i, TaskRecordState.DONE, 0) for i in sorted(done)]
                )

            def submit() -> tuple[JobRef | None, JobRef | None]:
                self._save_plan(run_id, plan, s3_output)
                self._write_files(plan)
                array = None
                if missing:
                    spec = array_spec(plan, [s.index for s in missing])
                    array = self.submit_work(run_id, "array", spec)
                    self.store.set_array_run(run_id, RunState.SUBMITTING, array_job_id=array.id)
                    rows = sum(s.rows for s in missing)
                    cpus = (
                        "a whole node"
                        if plan.cpus_per_task is None
                        else f"{plan.cpus_per_task} CPU(s)"
                    )
                    self.progress.step(
                        f"job array {array}: {len(missing)} shard(s), {rows:,} rows, "
                        f"server {plan.server}, {cpus} each"
                    )
                merge = self.submit_work(run_id, "final", merge_spec(plan, array))
                self.progress.step(f"job {merge}: merges the parts into {plan.merged}")
                return array, merge

            return self.submit_jobs(run_id, submit)

    def _path(self, path: str) -> str:
        if self.site.shares_local_files:
            return str(Path(path).expanduser().resolve())
        return path

    def _local_model(self, model: str) -> str:
        """The model's path on the cluster; an s3:// model is downloaded first."""
        if not is_s3_url(model):
            return self._path(model)
        from hpcrun.storage.s3 import download

        url = parse_s3_url(model)
        target = Path(self.workspace.root, "score", "inputs", url.bucket, url.key)
        self.progress.step(f"downloading {url}")
        target.parent.mkdir(parents=True, exist_ok=True)
        return str(download(url, target))

    def _local_inputs(self, inputs: tuple[str, ...]) -> list[str]:
        """The inputs' paths on the cluster; an s3:// prefix (or object) is downloaded into
        the workspace, objects of the same size already there are kept."""
        if not any(is_s3_url(i) for i in inputs):
            return [self._path(i) for i in inputs]
        if len(inputs) > 1:
            raise UsageError("give one s3:// input (a file or a prefix), not several")
        from hpcrun.storage.s3 import download, list_keys

        url = parse_s3_url(inputs[0])
        keys = {k: n for k, n in list_keys(url).items() if k.endswith(_TABLE_SUFFIXES)}
        if not keys:
            raise UsageError(
                f"no .parquet or .csv objects under {url}",
                "point --input at a table file or a prefix holding them",
            )
        root = Path(self.workspace.root, "score", "inputs", url.bucket)
        self.progress.step(f"downloading {len(keys)} object(s) from {url}")
        paths = []
        for key, size in sorted(keys.items()):
            target = root / key
            if not (target.is_file() and target.stat().st_size == size):
                target.parent.mkdir(parents=True, exist_ok=True)
                download(S3Url(url.bucket, key), target)
            paths.append(str(target))
        return paths

    def _install_worker(self) -> str:
        """score_task.pyz under the workspace, in a directory named by its content: written
        once per version, and a run in flight never sees it change."""
        source = worker_source()
        digest = hashlib.sha256(source).hexdigest()[:12]
        path = posixpath.join(self.workspace.root, "score", "bin", digest, WORKER)
        self.workspace.put(path, source)
        return path

    def _inspect(
        self,
        python: str,
        worker: str,
        inputs: list[str],
        model: str,
        model_format: str,
        request: ScoreRequest,
    ) -> dict[str, Any]:
        argv = [python, worker, "inspect", "--input", *inputs, "--model", model]
        kind = "remote" if server_url(request.server) else request.server
        argv += ["--model-format", model_format, "--server", kind]
        argv += ["--tritonserver", request.tritonserver]
        if request.id_column:
            argv += ["--id-column", request.id_column]
        self.progress.step("reading the table's layout and the model on the cluster")
        done = self.workspace.run(argv, timeout_s=900.0)
        if done.returncode == 127 or "No such file or directory" in done.stderr[:300]:
            raise HpcrunError(
                f"{python} is not there on the cluster",
                "pass --python with the path of a Python 3.11+ that has "
                "`pip install 'hpcrun[score]'`",
            )
        found = _last_json(done.stdout)
        if found is not None and "error" in found:
            raise UsageError(found["error"], found.get("hint"))
        if not done.ok or found is None:
            tail = " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise HpcrunError(f"inspecting the table failed: {tail}")
        return found

    def _server(self, request: ScoreRequest, inspected: dict[str, Any], fmt: str) -> str:
        servers = inspected.get("servers") or {}
        server = request.server
        if server_url(server) is not None:
            if not servers.get("tritonclient"):
                raise HpcrunError(
                    f"--server {server}: tritonclient is not installed in the cluster's Python",
                    "pip install 'hpcrun[triton]' there",
                )
            return "remote"
        if server == "auto":
            if servers.get("tritonserver"):
                server = "triton"
            elif servers.get("pytriton"):
                server = "pytriton"
            else:
                raise HpcrunError(
                    "no Triton server on the cluster: neither `tritonserver` nor nvidia-pytriton",
                    "pip install 'hpcrun[triton]' into the cluster's Python, or --server none "
                    "(in-process, the fastest on CPUs)",
                )
        if server == "triton" and not servers.get("tritonserver"):
            raise HpcrunError(
                f"--server triton: `{request.tritonserver}` is not on the cluster's PATH",
                "install Triton with the FIL backend (or use the NGC container), pass "
                "--tritonserver PATH, or use --server pytriton",
            )
        if server == "pytriton" and not servers.get("pytriton"):
            raise HpcrunError(
                "--server pytriton: nvidia-pytriton or tritonclient is not installed in "
                "the cluster's Python",
                "pip install 'hpcrun[triton]' there, or use --server none",
            )
        if server not in ("triton", "remote") and fmt not in XGBOOST_FORMATS:
            raise UsageError(
                f"--server {server} reads XGBoost models only; {fmt} needs Triton's FIL backend",
                "use --server triton, or save the model in XGBoost's JSON format",
            )
        return server

    def _prepare_output(
        self, plan: ScorePlan, request: ScoreRequest, inspected: dict[str, Any]
    ) -> tuple[ScorePlan, set[int]]:
        """Refuse an existing output unless --overwrite (removed) or --resume (the first
        run's shards, minus those with a part file); make sure the output is writable.
        Returns the plan with its shards and the shards already done."""
        parts, merged = plan.parts_dir, plan.merged
        names = self.workspace.list(parts)
        lines = [n for n in names if _PART_RE.fullmatch(n)]
        if "plan.json" in names:
            lines.append("plan")
        if self.workspace.exists(merged):
            lines.append("merged")
        exists = bool(lines)
        if exists and not (request.overwrite or request.resume):
            raise UsageError(
                f"--output {request.output} already exists "
                f"({merged if 'merged' in lines else parts})",
                "add --resume to finish it, or --overwrite to replace it",
            )
        if exists and request.overwrite:
            self.progress.step(f"removing the earlier output {parts}, {merged}")
            self.workspace.remove(parts, merged, plan.summary)
            exists = False
        self.workspace.make_writable_dir(parts, f"--output {request.output}")
        if exists and "plan" in lines:
            previous = json.loads(self.read_text(f"{parts}/plan.json") or "{}")
            current = plan.to_json()
            differs = [k for k in _RESUME_KEYS if previous.get(k) != current.get(k)] + [
                k for k in _RESUME_MODEL_KEYS if k in previous and previous[k] != current.get(k)
            ]
            if differs:
                named = [
                    f"{_RESUME_FLAGS[k]} {current.get(k)} now, {previous.get(k)} when the "
                    "parts were scored"
                    for k in differs
                    if k in _RESUME_FLAGS
                ]
                raise UsageError(
                    f"--resume: the parts in {parts} were scored with another {', '.join(differs)}"
                    + (f" ({'; '.join(named)})" if named else ""),
                    "score to another --output, or --overwrite to start again",
                )
            done = {int(n[5:10]) for n in lines if n.startswith("part-")}
            shards = tuple(Shard.from_json(s) for s in previous["shards"])
            return replace(plan, shards=shards), done
        units = [Unit.from_json(u) for u in inspected["units"]]
        cut, fewer = shards_for(units, request.tasks, server=plan.server)
        if fewer:
            self.progress.step(fewer)
        return replace(plan, shards=tuple(cut)), set()

    def _save_plan(self, run_id: int, plan: ScorePlan, s3_output: S3Url | None) -> None:
        data = plan.to_json()
        data["s3_output"] = str(s3_output) if s3_output is not None else None
        self.store.set_array_run_plan(run_id, data)

    def _write_files(self, plan: ScorePlan) -> None:
        workspace = self.workspace
        text = json.dumps(plan.to_json(), indent=1).encode()
        workspace.put(plan.plan_file, text)
        workspace.put(f"{plan.parts_dir}/plan.json", text)  # what --resume compares with
        workspace.put(f"{plan.run_dir}/score-shard.sh", shard_script(plan).encode())
        workspace.make_dirs(f"{plan.run_dir}/logs")
        if plan.server == "triton":
            repository = fil_model_repository(
                model_format=plan.model_format,
                features=len(plan.features),
                width=output_width(plan.num_class, plan.objective, plan.predict),
                predict=plan.predict,
                threshold=plan.threshold,
                batch_rows=plan.batch_rows,
                gpus=bool(plan.gpus_per_task),
            )
            for relative, content in repository.items():
                workspace.put(f"{plan.model_repository}/{relative}", content.encode())
            target = f"{plan.model_repository}/{model_path_in_repository(plan.model_format)}"
            workspace.copy(plan.model, target)

    # status ------------------------------------------------------------------------------

    def describe_task(self, task: ArrayTaskRecord) -> dict[str, Any]:
        return {"shard": task.index, "rows": f"{task.first}-{task.last}"}

    def refresh(self, run: ArrayRunRecord) -> ScoreView:
        """The run's state from the scheduler (one call) and its parts directory (one
        listing); shard rows and the run's status are updated to match."""
        run = self.refresh_state(run)
        plan = run.plan
        names = set(self.workspace.list(plan["parts_dir"]))
        done = sum(
            s["rows"]
            for s in plan["shards"]
            if posixpath.basename(part_file(plan["parts_dir"], s["index"])) in names
        )
        summary = None
        if run.status == "done":
            text = self.read_text(plan["summary"])
            summary = json.loads(text) if text else None
        uploaded = self._upload(run) if plan.get("s3_output") and run.status == "done" else None
        return ScoreView(
            run,
            plan["rows"],
            done,
            self.failed_tasks(run),
            summary,
            uploaded,
            self.on_dead_nodes(run),
        )

    def _upload(self, run: ArrayRunRecord) -> int:
        """Send a finished run's merged file, summary and parts to its S3 output (once:
        objects already there with the same size are skipped)."""
        if run.id in self._uploaded:
            return self._uploaded[run.id]
        plan = run.plan
        url = parse_s3_url(plan["s3_output"])
        merged = Path(plan["merged"])
        if plan["merged"].endswith(".parquet") and url.key.endswith(".parquet"):
            folder, prefix = merged.parent, posixpath.dirname(url.key)  # x.parquet, x.parts/
            patterns = [merged.name, f"{Path(plan['parts_dir']).name}/*"]
        else:
            folder, prefix = merged.parent, url.key.rstrip("/")
            patterns = ["*.parquet", "*.json", "parts/*"]
        count = 0
        for pattern in patterns:
            uploader = Uploader(
                folder,
                S3Url(url.bucket, prefix),
                pattern=pattern,
                is_complete=lambda path: not path.name.startswith("."),
            )
            uploader.sync()
            count += uploader.uploaded + uploader.skipped
        self._uploaded[run.id] = count
        return count


def export_model_repository(
    model: Path,
    target: Path,
    *,
    model_format: str | None,
    predict: str,
    threshold: float,
    batch_rows: int,
    gpus: bool,
    features: int | None,
) -> list[Path]:
    """Triton's model repository for `model` with the FIL backend, written into `target`
    (for the EKS path and users' own servers): config.pbtxt and the model file. The
    feature count and classes are read from the model unless given."""
    import shutil

    from hpcrun.node.score.errors import TaskError
    from hpcrun.node.score.model import inspect_model

    fmt = model_format_of(str(model), model_format)
    if predict not in PREDICTIONS:
        raise UsageError(f"--predict {predict!r}: choose one of {', '.join(PREDICTIONS)}")
    if not model.is_file():
        raise UsageError(f"model {model} does not exist or is not a file")
    try:
        info = inspect_model(str(model), fmt)
    except TaskError as exc:
        raise UsageError(exc.message, exc.hint or None) from None
    count = features if features is not None else info.get("features")
    if count is None:
        raise UsageError(f"cannot read the feature count from {model} ({fmt})", "pass --features N")
    width = output_width(int(info.get("num_class") or 0), str(info.get("objective") or ""), predict)
    files = fil_model_repository(
        model_format=fmt,
        features=int(count),
        width=width,
        predict=predict,
        threshold=threshold,
        batch_rows=batch_rows,
        gpus=gpus,
    )
    written = []
    for relative, content in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        written.append(path)
    copy = target / model_path_in_repository(fmt)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, copy)
    written.append(copy)
    return written


def _last_json(text: str) -> dict[str, Any] | None:
    """inspect's JSON: the whole output, or its last line when something printed first."""
    lines = text.strip().splitlines()
    for candidate in (text, lines[-1] if lines else ""):
        try:
            found = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        return found if isinstance(found, dict) else None
    return None


__all__ = ["MODEL_FILES", "ScoreRequest", "ScoreRuns", "ScoreView"]
