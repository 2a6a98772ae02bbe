"""The render farm on Kubernetes: `hpcrun farm up/status/down`, and `hpcrun render` on an
eks or kubernetes cluster, fed through SQS and S3 instead of a Slurm job array.

The farm is the recipe's final design without its Lambda and DynamoDB: this machine is
the "server" (it uploads the .blend and the run's scripts, records the run, and sends one
message per chunk still missing frames), SQS is the queue (with a dead-letter queue after
a bounded number of deliveries), S3 holds everything a run makes, and the workers are a
Deployment scaled by an HPA (`hpcrun.node.farm`, `hpcrun.workloads.farm_workers`).

A run's folder is named by the .blend's name and a digest of what shapes its frames (the
settings, the frame range, the chunk size), so the same command again finds the same
folder and sends messages only for chunks with a frame missing: a resume, as on Slurm.
Progress is read from S3 (complete frames, the video) and the queues (waiting, in flight,
dead); a message in the dead-letter queue fails the run, naming its frames and the tail
of its last log.
"""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.scheduler.serving import Scaling, ServeState
from hpcrun.services.render import RenderRequest, RenderView
from hpcrun.services.scaled import ScaledService
from hpcrun.state import (
    ArrayRunRecord,
    RunState,
    ServedModelRecord,
    ServedState,
    TaskRecordState,
)
from hpcrun.storage.sqs import FarmQueues, QueueCounts, Queues
from hpcrun.workloads.blender import (
    FrameRange,
    RenderPlan,
    output_settings,
    parse_frames,
    parse_resolution,
)
from hpcrun.workloads.farm import (
    BLEND,
    DEFAULT_MAX_RECEIVES,
    ChunkMessage,
    FarmRun,
    frames_present,
    parse_message,
    resume,
    run_chunks,
    run_files,
)
from hpcrun.workloads.farm_workers import (
    DEFAULT_VISIBILITY_S,
    FARM_NAME,
    WORKER_IMAGE,
    FarmPlan,
    worker_spec,
)

TERMINAL = frozenset({RunState.DONE, RunState.FAILED, RunState.CANCELLED})
_SLUG_RE = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class FarmRequest:
    """`hpcrun farm up` as its flags give it (render brings one up with these defaults)."""

    store: str | None = None  # s3://bucket/prefix (default: the cluster file's farm.store)
    minimum: int = 1
    maximum: int = 10
    target_cpu: int = 50
    gpus_per_worker: int = 0
    cpu: str = "2"
    memory: str = "4Gi"
    image: str | None = None
    service_account: str | None = None
    visibility_s: int = DEFAULT_VISIBILITY_S
    max_receives: int = DEFAULT_MAX_RECEIVES
    timeout_s: float | None = 600.0


@dataclass(frozen=True)
class FarmView:
    record: ServedModelRecord
    state: ServeState | None
    counts: QueueCounts | None

    def to_json(self) -> dict[str, Any]:
        plan = self.record.plan
        return {
            "name": self.record.name,
            "status": self.record.status,
            "detail": self.record.detail,
            "store": plan.get("store"),
            "queue": (plan.get("queues") or {}).get("url"),
            "workers": None if self.state is None else asdict(self.state),
            "messages": None if self.counts is None else asdict(self.counts),
        }


def run_name(blend: str) -> str:
    """The .blend's stem as a run id part: lowercase letters, digits and dashes."""
    stem = posixpath.splitext(posixpath.basename(blend.rstrip("/")))[0].lower()
    return (_SLUG_RE.sub("-", stem).strip("-") or "render")[:40]


def run_id_of(plan: RenderPlan, scene_digest: str) -> str:
    """Same scene bytes, frames, settings and chunks -> the same run folder (and so a
    resume). The scene's own digest, not only its path, is in it: workers keep a run's
    inputs by run id, so an edited .blend must make a new run, never reuse a cached one."""
    shaped = {
        "scene": scene_digest,
        "settings": output_settings(plan),
        "frames": [plan.frames.start, plan.frames.end],
        "chunk": plan.chunk,
        "encode": plan.encode,
    }
    digest = hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()[:10]
    return f"{run_name(plan.blend)}-{digest}"


def _scene_digest(blend: str) -> str:
    """The .blend's sha256 here, or its ETag in S3."""
    from hpcrun.storage import s3

    if s3.is_s3_url(blend):
        return f"etag:{s3.etag(blend)}"
    digest = hashlib.sha256()
    with open(blend, "rb") as scene:
        for block in iter(lambda: scene.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FarmService(ScaledService):
    """The cluster's render farm and the render runs it takes."""

    COMMAND = "hpcrun farm"
    KIND = "render"
    TASK = "chunk"

    # the farm ---------------------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        return self.cluster_config

    @functools.cached_property
    def queues(self) -> Queues:
        """One SQS client for all of this service's calls (a boto3 client costs ~0.1 s,
        and `watch` reads the queues every poll)."""
        return Queues(self.config.get("region"))

    def _store(self, given: str | None) -> tuple[str, str]:
        from hpcrun.storage.s3 import parse_s3_url

        store = given or (self.config.get("farm") or {}).get("store")
        if not store:
            raise UsageError(
                "the render farm needs an S3 prefix for its runs",
                "pass --store s3://bucket/prefix, or set farm.store in the cluster file",
            )
        url = parse_s3_url(str(store))
        return url.bucket, url.key.strip("/")

    def queue_name(self) -> str:
        return f"hpcrun-{_SLUG_RE.sub('-', self.cluster.lower()).strip('-')}-{FARM_NAME}"[:80]

    def up(self, request: FarmRequest) -> FarmView:
        """Make (or update) the queues and the worker Deployment with its autoscaler."""
        from hpcrun.storage import s3

        driver = self.driver()
        bucket, prefix = self._store(request.store)
        scaling = Scaling(request.minimum, request.maximum, request.target_cpu)
        settings = dict(self.config.get("farm") or {})
        region = self.config.get("region")
        plan = FarmPlan(
            queue_url="",  # known once the queue exists
            bucket=bucket,
            prefix=prefix,
            region=region,
            image=request.image or settings.get("image") or WORKER_IMAGE,
            scaling=scaling,
            gpus_per_worker=request.gpus_per_worker,
            cpu=request.cpu,
            memory=request.memory,
            service_account=request.service_account or settings.get("service_account"),
            visibility_s=request.visibility_s,
        )
        plan.validate()  # flags refused before anything is made
        self.check_gpus(driver, request.gpus_per_worker, "--gpus-per-worker")
        store = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        s3.check_writable(store)
        self.progress.step(f"queue {self.queue_name()} (dead letters after {request.max_receives})")
        queues = self.queues.ensure(
            self.queue_name(), visibility_s=request.visibility_s, max_receives=request.max_receives
        )
        plan = replace(plan, queue_url=queues.url)
        record = {
            "kind": "farm",
            "store": store,
            "queues": queues.to_json(),
            "image": plan.image,
            "namespace": driver.namespace,
            "min": scaling.minimum,
            "max": scaling.maximum,
            "service_account": plan.service_account,
        }
        self.keep_up(driver, worker_spec(plan), record, request.timeout_s)
        return self.view()

    def record(self) -> ServedModelRecord | None:
        found = self.store.served_model(self.cluster, FARM_NAME)
        if found is None or found.status == ServedState.STOPPED:
            return None
        return found

    def _queues(self, record: ServedModelRecord) -> FarmQueues:
        return FarmQueues(**record.plan["queues"])

    def view(self) -> FarmView:
        record = self.record()
        if record is None:
            raise UsageError(
                f"no render farm on cluster {self.cluster}",
                "start one: hpcrun farm up --store s3://bucket/prefix",
            )
        counts = self.queues.counts(self._queues(record))
        return FarmView(record, self.driver().state(FARM_NAME), counts)

    def down(self) -> int:
        """The workers, their autoscaler and the queues; what is in S3 stays."""
        record = self.record()
        if record is None:
            return 0
        removed = self.take_down(self.driver(), FARM_NAME)
        self.queues.delete(self._queues(record))
        return removed

    # render runs ------------------------------------------------------------------------

    def plan(self, request: RenderRequest, frames: FrameRange) -> RenderPlan:
        blend = request.blend
        plan = RenderPlan(
            blend=blend,
            name=posixpath.splitext(posixpath.basename(blend))[0],
            frames=frames,
            run_dir=".",
            frames_dir="frames",
            chunk=request.chunk,
            engine=request.engine,
            samples=request.samples,
            resolution=parse_resolution(request.resolution) if request.resolution else None,
            encode=request.encode,
            video="video.mp4" if request.encode == "mp4" else None,
            fps=request.fps or 24.0,
            retries=request.retries,
        )
        plan.validate()
        return plan

    def submit(self, request: RenderRequest) -> ArrayRunRecord:
        """Upload the run, send the messages it still needs, record it."""
        from hpcrun.storage import s3

        if request.frames is None:
            raise UsageError(
                "render on the farm needs --frames A-B",
                "the scene is opened by the workers, not here: e.g. --frames 1-240",
            )
        if request.partition is not None:
            raise UsageError(
                f"--partition {request.partition}: partitions are Slurm's; the farm's workers "
                "run where its Deployment's pods are scheduled",
                "leave --partition out; `hpcrun farm up --gpus-per-worker` chooses GPU nodes",
            )
        for flag, value in (
            ("--cpus-per-task", request.cpus_per_task),
            ("--tasks-per-node", request.tasks_per_node),
        ):
            if value is not None:
                raise UsageError(
                    f"{flag} {value}: on the render farm a chunk runs in a worker pod, whose "
                    "CPUs the farm sets",
                    "leave it out; `hpcrun farm up --cpu N` sizes the workers",
                )
        if request.output is not None and not s3.is_s3_url(request.output):
            raise UsageError(
                f"--output {request.output}: on the farm the frames stay in S3",
                "leave --output out (the run's folder is printed), or give s3://bucket/prefix "
                "to get the video copied there",
            )
        plan = self.plan(request, parse_frames(request.frames))
        source = Path(request.blend)
        if not s3.is_s3_url(request.blend) and not source.is_file():
            raise UsageError(f"{request.blend} does not exist or is not a file")
        record = self.record()
        if record is None:
            self.progress.step(f"no render farm on {self.cluster} yet: bringing one up")
            self.up(FarmRequest(gpus_per_worker=request.gpus_per_task or 0))
            record = self.record()
            assert record is not None
        bucket, prefix = self._store(record.plan["store"])
        run = FarmRun(bucket, prefix, run_id_of(plan, _scene_digest(request.blend)))
        folder = f"s3://{bucket}/{run.folder}"
        if request.overwrite:
            old = list(s3.list_keys(folder))
            self.progress.step(f"--overwrite: removing {len(old)} objects of {folder}")
            s3.delete_keys(bucket, old)
        chunks = run_chunks(plan)
        present = frames_present(run, s3.list_keys(f"s3://{bucket}/{run.frames_prefix}"))
        video = s3.exists(f"s3://{bucket}/{run.video_key}")
        todo = resume(run, plan, present, video_present=video)
        run_plan = {
            "frames": [plan.frames.start, plan.frames.end],
            "frames_dir": f"s3://{bucket}/{run.frames_prefix}",
            "video": f"s3://{bucket}/{run.video_key}" if plan.video else None,
            "s3_output": request.output,
            "farm": {"bucket": bucket, "prefix": prefix, "run": run.run_id, "folder": folder},
            "settings": output_settings(plan),
        }
        run_id = self.store.create_array_run(
            self.KIND,
            self.cluster,
            plan.name,
            run_plan,
            folder,
            [(c.index, c.start, c.end) for c in chunks],
        )
        try:
            if present:
                self.progress.step(f"{len(present)} of {len(plan.frames)} frames already in S3")
            if request.blend.startswith("s3://"):
                s3.copy(request.blend, f"s3://{bucket}/{run.key(BLEND)}")
            else:
                s3.upload(source, f"s3://{bucket}/{run.key(BLEND)}")
            for key, data in run_files(run, plan).items():
                s3.put_bytes(f"s3://{bucket}/{key}", data)
            if todo.remove:
                s3.delete_keys(bucket, todo.remove)
            sent = self.queues.send(record.plan["queues"]["url"], [m.body() for m in todo.messages])
        except (HpcrunError, KeyboardInterrupt) as exc:
            detail = exc.message if isinstance(exc, HpcrunError) else "interrupted"
            self.store.set_array_run(run_id, RunState.FAILED, detail=detail)
            raise
        self.progress.step(f"{sent} message(s) on {self.queue_name()}: run folder {folder}")
        self.store.set_array_run(run_id, RunState.RENDERING, array_job_id=run.run_id)
        return self.reload(run_id)

    def reload(self, run_id: int) -> ArrayRunRecord:
        found = self.store.array_run(run_id)
        assert found is not None
        return found

    def run(self, run_id: int | None = None) -> ArrayRunRecord:
        runs = self.store.array_runs(self.cluster, self.KIND)
        if not runs:
            raise UsageError(f"no render runs on cluster {self.cluster}")
        if run_id is None:
            return runs[-1]
        found = next((r for r in runs if r.id == run_id), None)
        if found is None:
            raise UsageError(
                f"no render run {run_id} on cluster {self.cluster}",
                f"runs: {', '.join(str(r.id) for r in runs)}",
            )
        return found

    def refresh(self, run: ArrayRunRecord) -> RenderView:
        """Progress from S3 and the queues; the run's state follows what they say."""
        from hpcrun.storage import s3

        farm = run.plan["farm"]
        layout = FarmRun(farm["bucket"], farm["prefix"], farm["run"])
        first, last = run.plan["frames"]
        present = frames_present(layout, s3.list_keys(run.plan["frames_dir"]))
        done_frames = len([f for f in present if first <= f <= last])
        failed = [] if run.status == RunState.DONE else self._dead_chunks(run, layout)
        updates = []
        for task in run.tasks:
            complete = all(f in present for f in range(task.first, task.last + 1))
            dead = any(d["chunk"] == task.index for d in failed)
            status = (
                TaskRecordState.DONE
                if complete
                else TaskRecordState.FAILED
                if dead
                else TaskRecordState.PENDING
            )
            if status != task.status:
                updates.append((task.index, status, task.attempts))
        if updates:
            self.store.set_array_tasks(run.id, updates)
        if run.status not in TERMINAL:
            video = run.plan.get("video")  # every frame, then the encode's video
            finished = (done_frames == last - first + 1) and (video is None or s3.exists(video))
            if failed:
                frames = ", ".join(d["frames"] for d in failed)
                self.store.set_array_run(
                    run.id, RunState.FAILED, detail=f"chunk(s) failed on every delivery: {frames}"
                )
            elif finished:
                self._deliver(run)
                self.store.set_array_run(run.id, RunState.DONE)
            elif done_frames == last - first + 1:
                self.store.set_array_run(run.id, RunState.ENCODING)
        run = self.reload(run.id)
        return RenderView(run, last - first + 1, done_frames, failed=failed)

    def _dead_chunks(self, run: ArrayRunRecord, layout: FarmRun) -> list[dict[str, Any]]:
        """This run's messages in the dead-letter queue, each with its last log's tail."""
        from hpcrun.storage import s3

        record = self.record()
        if record is None:
            return []
        dead = []
        for body in self.queues.dead_bodies(self._queues(record)):
            try:
                message = parse_message(body)
            except UsageError:
                continue
            if message.run_id == layout.run_id:
                dead.append(message)
        if not dead:
            return []
        logs = s3.list_keys(f"s3://{layout.bucket}/{layout.logs_prefix}")
        found = []
        for message in dead:
            chunk: int | None = None
            frames = "encode"
            if isinstance(message, ChunkMessage):
                chunk, frames = message.chunk, f"{message.first}-{message.last}"
            tail = ""
            last = layout.last_log_key(logs, chunk)
            if last is not None:
                text = s3.read_bytes(f"s3://{layout.bucket}/{last}") or b""
                tail = "\n".join(text.decode(errors="replace").splitlines()[-8:])
            found.append(
                {"chunk": "encode" if chunk is None else chunk, "frames": frames, "log_tail": tail}
            )
        return found

    def _deliver(self, run: ArrayRunRecord) -> None:
        """With `--output s3://...`: the video copied there once it exists."""
        from hpcrun.storage import s3

        target, video = run.plan.get("s3_output"), run.plan.get("video")
        if target and video:
            s3.copy(video, s3.parse_s3_url(target).join(posixpath.basename(video)))

    def watch(
        self, run: ArrayRunRecord, tick: Callable[[RenderView], None], *, poll_s: float = 2.0
    ) -> RenderView:
        while True:
            view = self.refresh(run)
            tick(view)
            run = view.run
            if run.status in TERMINAL:
                return view
            time.sleep(poll_s)

    def on_dead_nodes(self, run: ArrayRunRecord) -> list[dict[str, Any]]:
        return []  # Kubernetes reschedules a dead node's workers; SQS redelivers

    def cancel(self, run: ArrayRunRecord) -> ArrayRunRecord:
        """Take the run's messages off the queues; chunks being rendered finish."""
        record = self.record()
        if record is not None and run.status not in TERMINAL:
            removed = self.queues.purge(self._queues(record), run.plan["farm"]["run"])
            self.progress.step(f"removed {removed} message(s) of run {run.id} from the queues")
        if run.status not in TERMINAL:
            self.store.set_array_run(run.id, RunState.CANCELLED, detail="cancelled by the user")
        return self.reload(run.id)
