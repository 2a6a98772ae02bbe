"""Render runs: Blender frame chunks as a job array, then one ffmpeg job.

`submit` checks everything a user can get wrong before the scheduler sees anything (the
file, the frame range against the scene's own, the engine, Blender and ffmpeg on the
cluster, a writable output), finds the frames that already exist and are complete (so
re-running the same command resumes), records the run and its chunks, writes the two job
scripts and submits the array and the dependent encode job. `refresh` reads the run's
state with one scheduler call (`Scheduler.states`) and one directory listing, and keeps
the per-chunk rows current; a chunk that failed every attempt fails the run with its log
tail, and the encode job that can then never start is cancelled.
"""

from __future__ import annotations

import fnmatch
import json
import posixpath
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hpcrun.backends.base import Backend, Progress
from hpcrun.errors import HpcrunError, UsageError
from hpcrun.files import read_text_file
from hpcrun.scheduler import JobRef
from hpcrun.services.array import ArrayRuns
from hpcrun.state import ArrayRunRecord, ArrayTaskRecord, RunState, StateStore
from hpcrun.storage.s3 import S3Url, Uploader, is_s3_url, parse_s3_url
from hpcrun.workloads.blender import (
    DEFAULT_CHUNK,
    FRAME_GLOB,
    PNG_END,
    SETTINGS_FILE,
    Chunk,
    FrameRange,
    RenderPlan,
    array_spec,
    check_cpus,
    chunk_script,
    chunk_table,
    cpus_for_tasks_per_node,
    encode_script,
    encode_spec,
    output_settings,
    parse_frames,
    parse_resolution,
    plan_chunks,
    settings_differences,
)

# Printed by Blender for the probe: the scene's own frame range and frame rate.
_PROBE = (
    "import bpy; s = bpy.context.scene; "
    "print('HPCRUN_SCENE', s.frame_start, s.frame_end, s.render.fps / s.render.fps_base)"
)


@dataclass(frozen=True)
class RenderRequest:
    blend: str
    frames: str | None = None  # None: the scene's own range
    chunk: int = DEFAULT_CHUNK
    engine: str = "CYCLES"
    samples: int | None = None
    resolution: str | None = None
    output: str | None = None  # default: <name>-frames beside the current directory
    encode: str = "mp4"
    fps: float | None = None  # None: the scene's
    max_parallel: int | None = None
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None  # None (and no tasks_per_node): a whole node a chunk
    tasks_per_node: int | None = None  # K chunks share a node, its CPUs / K each
    retries: int = 3
    blender: str = "blender"
    ffmpeg: str = "ffmpeg"
    overwrite: bool = False  # delete the output's frames and video first, render all
    partition: str | None = None  # Slurm: the queue the chunks run in (None: the default)


@dataclass
class RenderView:
    """A run as it stands: what `render status` prints and `--json` returns."""

    run: ArrayRunRecord
    frames_total: int
    frames_done: int
    failed: list[dict[str, Any]] = field(default_factory=list)  # chunk, frames, log tail
    uploaded: int | None = None  # files in the S3 output so far (None: no S3 output)
    # Running chunks on nodes whose slurmd is dead, by node (`ArrayRuns.on_dead_nodes`).
    dead_nodes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        plan = self.run.plan
        return {
            "run": self.run.id,
            "name": self.run.name,
            "status": self.run.status,
            "detail": self.run.detail,
            "frames": {"total": self.frames_total, "done": self.frames_done},
            "frames_dir": plan["frames_dir"],
            "video": plan.get("video"),
            "s3_output": plan.get("s3_output"),
            "uploaded": self.uploaded,
            "array_job_id": self.run.array_job_id,
            "encode_job_id": self.run.final_job_id,
            "chunks": [_task_json(c) for c in self.run.tasks],
            "failed_chunks": self.failed,
            "dead_nodes": self.dead_nodes,
        }


_TASK_FIELDS = tuple(f.name for f in fields(ArrayTaskRecord))


def _task_json(task: ArrayTaskRecord) -> dict[str, Any]:
    """`asdict(task)` for a record of plain fields, without asdict's deep copy of each
    (a 1000-chunk `render --detach --json` spent ~20 ms in it)."""
    return {name: getattr(task, name) for name in _TASK_FIELDS}


def load_job_file(path: Path) -> tuple[str, str]:
    """The seed farm's job format: {"file": "x.blend", "start": "1", "end": "17"} (strings
    or numbers); the file is relative to the job file's directory."""
    example = 'e.g. {"file": "rolling_ball.blend", "start": "1", "end": "17"}'
    try:
        data = json.loads(read_text_file(path, "render job file (JSON)"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not JSON: {exc}", example) from None
    missing = (
        [k for k in ("file", "start", "end") if k not in data] if isinstance(data, dict) else []
    )
    if not isinstance(data, dict) or missing:
        raise UsageError(
            f"{path}: a job needs file, start and end"
            + (f" (missing {', '.join(missing)})" if missing else ""),
            example,
        )
    if not isinstance(data["file"], str) or not data["file"].strip():
        raise UsageError(
            f"{path}: file must be a path to a .blend, not {_shown(data['file'])}", example
        )
    blend = Path(data["file"]).expanduser()
    if not blend.is_absolute():
        blend = path.parent / blend
    start, end = (_whole_number(path, key, data[key], example) for key in ("start", "end"))
    return str(blend), f"{start}-{end}"


def _whole_number(path: Path, key: str, value: Any, example: str) -> int:
    """A job file's frame number: an integer, or a string of one ("17")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise UsageError(f"{path}: {key} must be a whole number, not {_shown(value)}", example)


def _shown(value: Any) -> str:
    """A JSON value as the job file wrote it (`"x"`, `1.5`, `null`)."""
    return json.dumps(value)


class RenderRuns(ArrayRuns["RenderView"]):
    """Render runs of one cluster."""

    KIND = "render"
    TASK = "chunk"
    FINAL = "encode"
    WORKING = RunState.RENDERING
    FINISHING = RunState.ENCODING
    START_HINT = "start one with `hpcrun render FILE.blend --frames 1-24`"

    def __init__(
        self, store: StateStore, cluster: str, backend: Backend, progress: Progress | None = None
    ) -> None:
        super().__init__(store, cluster, backend, progress)
        self._blend_stamp = ""  # path:size mtime of the .blend being submitted
        self._blender_at = ""  # where the cluster found the Blender the plan names
        self._uploaders: dict[int, Uploader] = {}  # run id -> its S3 uploader

    # submit ------------------------------------------------------------------------------

    def submit(self, request: RenderRequest) -> ArrayRunRecord:
        s3_output = (
            parse_s3_url(request.output) if request.output and is_s3_url(request.output) else None
        )
        if (s3_output or is_s3_url(request.blend)) and not self.site.shares_local_files:
            raise UsageError(
                "s3:// input and output need a cluster that sees this machine's files "
                "(the local one): hpcrun moves the files from here",
                "copy the .blend to the cluster and give --output a directory there",
            )
        blend = request.blend
        if is_s3_url(blend):
            blend = self._fetch_blend(parse_s3_url(blend))
        blend = self._check_blend(blend)
        name = posixpath.splitext(posixpath.basename(blend))[0]
        frames = parse_frames(request.frames) if request.frames is not None else None
        plan = RenderPlan(
            blend=blend,
            name=name,
            frames=frames or FrameRange(1, 1),
            run_dir="",
            frames_dir="",
            chunk=request.chunk,
            engine=request.engine.upper(),
            samples=request.samples,
            resolution=parse_resolution(request.resolution) if request.resolution else None,
            encode=request.encode,
            fps=24.0 if request.fps is None else request.fps,
            max_parallel=request.max_parallel,
            gpus_per_task=request.gpus_per_task,
            cpus_per_task=request.cpus_per_task,
            tasks_per_node=request.tasks_per_node,
            retries=request.retries,
            partition=request.partition,
            blender=request.blender,
            ffmpeg=request.ffmpeg,
        )
        plan.validate()  # flags first: they need no round trip
        if plan.tasks_per_node is not None:
            plan = replace(plan, cpus_per_task=self._cpus_for_tasks_per_node(plan))
        self._check_programs(plan)
        scene_first, scene_last, scene_fps = self._probe(plan)
        frames = frames or FrameRange(scene_first, scene_last)
        if frames.start < scene_first or frames.end > scene_last:
            raise UsageError(
                f"--frames {frames} is beyond the scene's frames "
                f"{scene_first}-{scene_last} in {blend}",
                "pick frames inside the scene's range, or change it in Blender",
            )
        if s3_output is not None:
            from hpcrun.storage.s3 import check_writable

            check_writable(s3_output)  # before anything is rendered for nothing
            # Frames are staged in the workspace (the same place for a resumed run) and
            # uploaded as they finish.
            staging = ["render", "s3", s3_output.bucket, *s3_output.folder.split("/")]
            output = self._output_dir(posixpath.join(self.workspace.root, *staging), name)
        else:
            output = self._output_dir(request.output, name)
        plan = replace(
            plan,
            frames=frames,
            fps=scene_fps if request.fps is None else request.fps,
            frames_dir=output,
            video=f"{output}/{name}.mp4" if plan.encode == "mp4" else None,
        )
        with self.claiming(output, lambda run: run.plan.get("frames_dir") == output):
            existing = self.workspace.tails(output, FRAME_GLOB, len(PNG_END))
            if request.overwrite:
                self._remove_output(output, name)
                existing = {}
            elif existing:
                self._check_settings(output, plan)
            done = self._complete_frames(existing, frames)
            missing = [f for f in frames.frames() if f not in done]
            chunks = plan_chunks(missing, plan.chunk)
            if done:
                self.progress.step(
                    f"{len(done)} of {len(frames)} frames already rendered: "
                    f"rendering the other {len(missing)}"
                )
            run_id = self.store.create_array_run(
                self.KIND,
                self.cluster,
                name,
                {},
                str(s3_output) if s3_output is not None else output,
                [(c.index, c.start, c.end) for c in chunks],
            )
            plan = replace(plan, run_dir=posixpath.join(self.workspace.root, "render", str(run_id)))

            def submit() -> tuple[JobRef | None, JobRef | None]:
                self._save_plan(run_id, plan, s3_output)
                self._write_files(plan, chunks)
                array = None
                if chunks:
                    array = self.submit_work(run_id, "array", array_spec(plan, chunks))
                    self.store.set_array_run(run_id, RunState.SUBMITTING, array_job_id=array.id)
                    cpus = (
                        "a whole node"
                        if plan.cpus_per_task is None
                        else f"{plan.cpus_per_task} CPU(s)"
                    )
                    self.progress.step(
                        f"job array {array}: {len(chunks)} chunk(s) of up to {plan.chunk} "
                        f"frame(s), {len(missing)} frames, {cpus} each"
                    )
                encode = None
                if plan.video is not None:
                    encode = self.submit_work(run_id, "final", encode_spec(plan, array))
                    self.progress.step(f"job {encode}: encodes {name}.mp4 when every frame exists")
                return array, encode

            return self.submit_jobs(run_id, submit)

    def _cpus_for_tasks_per_node(self, plan: RenderPlan) -> int:
        """`--tasks-per-node K` as a CPU count: Slurm has no "1/K of a node", so the
        partition's nodes are asked for theirs (one sinfo call)."""
        assert plan.tasks_per_node is not None
        check_cpus(plan.cpus_per_task, plan.tasks_per_node)
        nodes = self.backend.slurm().nodes(plan.partition)
        cpus = cpus_for_tasks_per_node([n.cpus for n in nodes], plan.tasks_per_node)
        self.progress.step(
            f"--tasks-per-node {plan.tasks_per_node}: {cpus} CPU(s) a chunk "
            f"(nodes of {min(n.cpus for n in nodes)} CPUs)"
        )
        return cpus

    def _save_plan(self, run_id: int, plan: RenderPlan, s3_output: S3Url | None) -> None:
        data = asdict(plan)
        data["frames"] = [plan.frames.start, plan.frames.end]
        data["s3_output"] = str(s3_output) if s3_output is not None else None
        self.store.set_array_run_plan(run_id, data)

    def _fetch_blend(self, url: S3Url) -> str:
        """Download an s3:// .blend into the workspace, where every node can read it."""
        from hpcrun.storage.s3 import download

        if not url.key.endswith(".blend"):
            raise UsageError(f"{url} is not a .blend file", "pass a Blender file (*.blend)")
        target = Path(self.workspace.root, "render", "inputs", url.bucket, url.key)
        self.progress.step(f"downloading {url}")
        target.parent.mkdir(parents=True, exist_ok=True)
        return str(download(url, target))

    def _check_blend(self, blend: str) -> str:
        if not blend.endswith(".blend"):
            raise UsageError(f"{blend} is not a .blend file", "pass a Blender file (*.blend)")
        path = str(Path(blend).expanduser().resolve()) if self.site.shares_local_files else blend
        # One round trip: size and mtime (the probe cache's key), then the magic bytes.
        info = self.workspace.stat(path, head_bytes=7)
        if info is None:
            raise UsageError(
                f"{blend} does not exist or cannot be read"
                + ("" if self.site.shares_local_files else " on the cluster"),
                "check the path; on a remote cluster the file must be on the cluster",
            )
        if info.head != b"BLENDER":
            raise UsageError(f"{blend} is not a Blender file (no BLENDER header)")
        self._blend_stamp = f"{path}:{info.size} {info.mtime_s}"
        return path

    def _check_programs(self, plan: RenderPlan) -> None:
        wanted = [plan.blender] + ([plan.ffmpeg] if plan.encode == "mp4" else [])
        found = self.workspace.which(wanted)
        absent = [p for p, where in found.items() if where is None]
        if absent:
            raise HpcrunError(
                f"{' and '.join(absent)} not found on the cluster's nodes",
                "install it there: apt-get install -y blender ffmpeg (Debian/Ubuntu)",
            )
        self._blender_at = found[plan.blender] or plan.blender

    def _probe(self, plan: RenderPlan) -> tuple[int, int, float]:
        """The scene's frame range and frame rate, from Blender itself (~1.5 s of start-up),
        remembered per file (path, size and mtime) and per Blender (where the cluster found
        it) so a resubmission does not pay it again, and another Blender reads it afresh."""
        key = f"blend-probe:{self.cluster}:{self._blender_at}:{self._blend_stamp}"
        cached = self.store.setting(key)
        if cached is not None:
            first, last, fps = cached.split()
            return int(first), int(last), float(fps)
        self.progress.step(f"reading {plan.name}'s frame range and frame rate (blender -b)")
        found = self._run_probe(plan)
        self.store.set_setting(key, " ".join(map(str, found)))
        return found

    def _run_probe(self, plan: RenderPlan) -> tuple[int, int, float]:
        done = self.workspace.run(
            [plan.blender, "-b", plan.blend, "--python-exit-code", "1", "--python-expr", _PROBE],
            timeout_s=120.0,
        )
        for line in done.stdout.splitlines():
            if line.startswith("HPCRUN_SCENE "):
                _, first, last, fps = line.split()
                return int(first), int(last), round(float(fps), 3)
        tail = " / ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
        raise HpcrunError(f"Blender could not read {plan.blend}: {tail}")

    def _output_dir(self, output: str | None, name: str) -> str:
        if output is None:
            base = self.backend.default_workdir()
            output = f"{name}-frames" if base is None else posixpath.join(base, f"{name}-frames")
        if self.site.shares_local_files:
            output = str(Path(output).expanduser().resolve())
        self.workspace.make_writable_dir(output, f"--output {output}")
        return output

    def _check_settings(self, output: str, plan: RenderPlan) -> None:
        """Refuse to resume into frames rendered with other settings (their resolution,
        engine, samples, frame rate or .blend): the video would mix both, or keep the old
        ones' size. Frames with no settings file (before hpcrun wrote one) resume."""
        text = self.workspace.read_text(f"{output}/{SETTINGS_FILE}")
        try:
            recorded = json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            recorded = None
        if not isinstance(recorded, dict):
            return
        differences = settings_differences(recorded, output_settings(plan))
        if differences:
            raise UsageError(
                f"the frames in {output} were rendered with other settings: "
                + "; ".join(differences),
                "add --overwrite to delete the old frames (and video) and render them all, "
                "or render to a new --output",
            )

    def _remove_output(self, output: str, name: str) -> None:
        """--overwrite: the frames, video and settings file of an earlier run in `output`
        (nothing else there is touched)."""
        ours = {SETTINGS_FILE, f"{name}.mp4", f"{name}.mp4.partial.mp4"}
        names = [
            n
            for n in self.workspace.list(output)
            if n in ours or fnmatch.fnmatchcase(n, FRAME_GLOB)
        ]
        if names:
            frames = sum(1 for n in names if n.startswith("frame_"))
            video = " and the video" if f"{name}.mp4" in names else ""
            self.progress.step(f"--overwrite: removing {frames} frame(s){video} from {output}")
            self.workspace.remove(*(posixpath.join(output, n) for n in names))

    def _complete_frames(self, tails: dict[str, bytes], frames: FrameRange) -> set[int]:
        """Frames already there and complete (a resumed run renders only the others)."""
        found = set()
        for name, tail in tails.items():
            frame = int(name[6:10])
            if tail == PNG_END and frame in frames.frames():
                found.add(frame)
        return found

    def _write_files(self, plan: RenderPlan, chunks: list[Chunk]) -> None:
        workspace = self.workspace
        if chunks:  # frames are about to be rendered: record what shapes them
            settings = json.dumps(output_settings(plan), indent=2) + "\n"
            workspace.put(f"{plan.frames_dir}/{SETTINGS_FILE}", settings.encode())
        workspace.put(plan.chunk_table, chunk_table(chunks).encode())
        workspace.put(f"{plan.run_dir}/render-chunk.sh", chunk_script(plan).encode())
        if plan.video is not None:
            workspace.put(f"{plan.run_dir}/encode.sh", encode_script(plan).encode())
        workspace.make_dirs(f"{plan.run_dir}/logs")

    # status ------------------------------------------------------------------------------

    def describe_task(self, task: ArrayTaskRecord) -> dict[str, Any]:
        return {"chunk": task.index, "frames": f"{task.first}-{task.last}"}

    def refresh(self, run: ArrayRunRecord) -> RenderView:
        """The run's state from the scheduler (one call) and its frames directory (one
        listing); chunk rows and the run's status are updated to match."""
        run = self.refresh_state(run)
        plan = run.plan
        first, last = plan["frames"]
        done = self._count_frames(plan["frames_dir"], first, last)
        uploaded = self._upload(run) if plan.get("s3_output") else None
        return RenderView(
            run, last - first + 1, done, self.failed_tasks(run), uploaded, self.on_dead_nodes(run)
        )

    def _upload(self, run: ArrayRunRecord) -> int:
        """Send the run's finished frames (and, once encoded, its video) to its S3 prefix;
        return how many of its files are there. Called on every refresh, so frames
        upload while the rest still render, and `render status` finishes a detached run's
        upload."""
        plan = run.plan
        uploader = self._uploaders.get(run.id)
        if uploader is None:
            uploader = Uploader(
                plan["frames_dir"],
                plan["s3_output"],
                pattern=FRAME_GLOB,
                is_complete=png_is_complete,
            )
            self._uploaders[run.id] = uploader
        uploader.sync()
        count = uploader.uploaded + uploader.skipped
        video = plan.get("video")
        if run.status == "done" and video:
            # The same Uploader rules for the mp4: an object already there with the same
            # size is not sent again, so `render status` on a finished run uploads nothing.
            sent = Uploader(
                plan["frames_dir"],
                plan["s3_output"],
                pattern=Path(video).name,
                is_complete=lambda path: True,
            )
            sent.sync()
            count += sent.uploaded + sent.skipped
        return count

    def _count_frames(self, frames_dir: str, first: int, last: int) -> int:
        names = self.workspace.list(frames_dir)
        return sum(
            1
            for n in names
            if len(n) == 14
            and n.startswith("frame_")
            and n.endswith(".png")
            and n[6:10].isdigit()
            and first <= int(n[6:10]) <= last
        )


def png_is_complete(path: Path) -> bool:
    """The PNG was written to the end: its last 8 bytes are IEND's type and CRC (the
    check the chunk script makes in shell)."""
    try:
        with path.open("rb") as handle:
            handle.seek(-len(PNG_END), 2)
            return handle.read() == PNG_END
    except OSError:
        return False
