"""A Blender render farm as any scheduler sees it: one array of frame chunks, one encode job.

Pure planning, no I/O: a `RenderPlan` says what to render where; `plan_chunks` cuts the
frames still missing into contiguous chunks (one Blender process each: Blender's start-up
costs more than a small frame, so one process per frame wastes most of the farm);
`array_spec`/`chunk_script` and `encode_spec`/`encode_script` are the jobs (`WorkSpec`s and
the scripts they run), golden-tested; task N reads `HPCRUN_TASK_INDEX`.

Retries live in the chunk script: a task renders its chunk, checks every PNG is complete
(the file ends with PNG's IEND chunk), and renders what is still missing again, up to
`retries` more times, so only failed frames of failed chunks are ever rendered twice and
a `--detach`ed run retries with no client watching. Blender is told not to overwrite
(`use_overwrite = False`) and incomplete PNGs are removed first, which is also what makes
a resumed run skip finished frames. The encode job waits for every chunk to succeed and
refuses to run on a frame set with holes.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpcrun.errors import UsageError
from hpcrun.scheduler import JobRef, WorkSpec, parse_duration
from hpcrun.templates import fill
from hpcrun.workloads.shell import check_script_values, one_line

ENGINES = ("CYCLES", "BLENDER_EEVEE", "BLENDER_WORKBENCH")
ENCODINGS = ("mp4", "none")
DEFAULT_CHUNK = 4
FRAME_PATTERN = "frame_####"  # Blender's -o pattern: frame_0001.png
FRAME_GLOB = "frame_[0-9][0-9][0-9][0-9].png"
_FRAMES_RE = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?$")
_RESOLUTION_RE = re.compile(r"^(\d+)x(\d+)$")

# The last bytes of a PNG written to the end (IEND's type and CRC), and the same test in
# shell for the job scripts.
PNG_END = b"IEND\xaeB`\x82"
COMPLETE_PNG_SH = (
    'complete_png() { [ -s "$1" ] && '
    '[ "$(tail -c 8 "$1" | od -An -tx1 | tr -d " \\n")" = "49454e44ae426082" ]; }'
)


@dataclass(frozen=True)
class FrameRange:
    start: int
    end: int  # inclusive, as Blender's -s/-e

    def __len__(self) -> int:
        return self.end - self.start + 1

    def frames(self) -> range:
        return range(self.start, self.end + 1)

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def parse_frames(text: str | int) -> FrameRange:
    """`1-240`, `7` (one frame): an inclusive range, as Blender numbers frames."""
    found = _FRAMES_RE.match(str(text))
    if found is None:
        raise UsageError(
            f"--frames {text!r} is not a frame range", "write START-END (e.g. 1-240) or one frame"
        )
    start = int(found.group(1))
    end = int(found.group(2)) if found.group(2) is not None else start
    if start < 0:
        raise UsageError(f"--frames {text!r}: frames are numbered from 0")
    if end < start:
        raise UsageError(
            f"--frames {text!r} is reversed (ends before it starts)", f"write {end}-{start}"
        )
    return FrameRange(start, end)


def parse_resolution(text: str) -> tuple[int, int]:
    found = _RESOLUTION_RE.match(text.strip())
    if found is None or not all(0 < int(g) <= 16384 for g in found.groups()):
        raise UsageError(
            f"--resolution {text!r} is not WIDTHxHEIGHT", "e.g. --resolution 1920x1080"
        )
    return int(found.group(1)), int(found.group(2))


@dataclass(frozen=True)
class Chunk:
    index: int  # the array task that renders it
    start: int
    end: int  # inclusive

    def __len__(self) -> int:
        return self.end - self.start + 1


def plan_chunks(missing: Iterable[int], size: int) -> list[Chunk]:
    """Cut the frames still to render into runs of consecutive frames of at most `size`:
    a gap (a frame already rendered) always starts a new chunk, so nothing renders twice."""
    if size < 1:
        raise UsageError(f"--chunk {size}: a chunk needs at least 1 frame")
    chunks: list[Chunk] = []
    for frame in sorted(set(missing)):
        last = chunks[-1] if chunks else None
        if last is not None and frame == last.end + 1 and len(last) < size:
            chunks[-1] = Chunk(last.index, last.start, frame)
        else:
            chunks.append(Chunk(len(chunks), frame, frame))
    return chunks


@dataclass(frozen=True)
class RenderPlan:
    """Everything the two jobs need; every path is a path on the cluster."""

    blend: str
    name: str  # the video's base name: the .blend's stem
    frames: FrameRange
    run_dir: str  # scripts, the chunk table and logs
    frames_dir: str  # where the PNGs land
    chunk: int = DEFAULT_CHUNK
    engine: str = "CYCLES"
    samples: int | None = None
    resolution: tuple[int, int] | None = None
    encode: str = "mp4"
    video: str | None = None  # the mp4; None with encode "none"
    fps: float = 24.0
    max_parallel: int | None = None
    gpus_per_task: int | None = None
    # CPUs each chunk asks for; None: a whole node each (--exclusive). `--tasks-per-node K`
    # is resolved to a number (the partition's node CPUs / K) before the plan is made.
    cpus_per_task: int | None = None
    tasks_per_node: int | None = None  # as the user asked, for status and the record
    retries: int = 3
    partition: str | None = None
    time_limit: str | None = None
    blender: str = "blender"
    ffmpeg: str = "ffmpeg"

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise UsageError(
                f"--engine {self.engine!r} is not a Blender render engine",
                f"choose one of {', '.join(ENGINES)}",
            )
        if self.encode not in ENCODINGS:
            raise UsageError(f"--encode {self.encode!r}: choose mp4 or none")
        if self.chunk < 1:
            raise UsageError(f"--chunk {self.chunk}: a chunk needs at least 1 frame")
        if self.samples is not None and self.samples < 1:
            raise UsageError(f"--samples {self.samples}: at least 1")
        if self.retries < 0:
            raise UsageError(f"--retries {self.retries}: 0 or more")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise UsageError(f"--max-parallel {self.max_parallel}: at least 1")
        check_cpus(self.cpus_per_task, self.tasks_per_node)
        if not 0 < self.fps <= 240:  # also NaN
            raise UsageError(
                f"--fps {self.fps:g}: a video needs a frame rate above 0 and at most 240",
                "e.g. --fps 24, or leave --fps out to use the scene's",
            )

    @property
    def chunk_table(self) -> str:
        return f"{self.run_dir}/chunks.tsv"

    @property
    def settings_expr(self) -> str:
        """Python Blender runs before rendering: output format, no overwriting, and the
        samples and resolution asked for (Blender's command line has no flags for them)."""
        lines = [
            "import bpy",
            "s = bpy.context.scene",
            "s.render.use_overwrite = False",
            "s.render.use_placeholder = False",
            "s.render.image_settings.file_format = 'PNG'",
        ]
        if self.resolution is not None:
            width, height = self.resolution
            lines += [
                f"s.render.resolution_x = {width}",
                f"s.render.resolution_y = {height}",
                "s.render.resolution_percentage = 100",
            ]
        if self.samples is not None:
            if self.engine == "CYCLES":
                lines.append(f"s.cycles.samples = {self.samples}")
            elif self.engine == "BLENDER_EEVEE":
                lines.append(f"s.eevee.taa_render_samples = {self.samples}")
        return "; ".join(lines)


# Beside the frames: the settings they were rendered with, so a resumed run that asks for
# others is refused instead of mixing two looks in one video.
SETTINGS_FILE = ".hpcrun-render.json"
_SETTINGS_VERSION = 1
# The settings that shape the frames and the video, and how the CLI names each.
_SETTING_FLAGS = {
    "blend": "the .blend",
    "resolution": "--resolution",
    "engine": "--engine",
    "samples": "--samples",
    "fps": "--fps",
}


def output_settings(plan: RenderPlan) -> dict[str, Any]:
    """What `SETTINGS_FILE` records: every setting a resumed run must share with the run
    that rendered the frames already there (None: the scene's own)."""
    return {
        "version": _SETTINGS_VERSION,
        "blend": plan.blend,
        "resolution": list(plan.resolution) if plan.resolution is not None else None,
        "engine": plan.engine,
        "samples": plan.samples,
        "fps": plan.fps,
    }


def settings_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Each setting that differs, as `--resolution 640x360 now, 320x180 when the frames
    were rendered`; a setting the recorded file lacks is not compared."""
    differences = []
    for key, flag in _SETTING_FLAGS.items():
        if key not in recorded:
            continue
        then, now = recorded[key], current.get(key)
        if key == "fps" and isinstance(then, int | float) and isinstance(now, int | float):
            if abs(float(then) - float(now)) < 1e-6:
                continue
        elif then == now:
            continue
        differences.append(
            f"{flag} {_setting_text(key, now)} now, "
            f"{_setting_text(key, then)} when the frames were rendered"
        )
    return differences


def _setting_text(key: str, value: Any) -> str:
    if value is None:
        return "the scene's"
    if key == "resolution" and isinstance(value, list | tuple) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    if key == "fps" and isinstance(value, int | float):
        return f"{value:g}"
    return str(value)


def check_cpus(cpus_per_task: int | None, tasks_per_node: int | None) -> None:
    """`--cpus-per-task N` and `--tasks-per-node K`: at least 1, and one of them."""
    if cpus_per_task is not None and tasks_per_node is not None:
        raise UsageError(
            "--cpus-per-task and --tasks-per-node both size a chunk: give one",
            "--cpus-per-task N gives each chunk N CPUs; --tasks-per-node K shares a node "
            "between K chunks",
        )
    for flag, value in (("--cpus-per-task", cpus_per_task), ("--tasks-per-node", tasks_per_node)):
        if value is not None and value < 1:
            raise UsageError(
                f"{flag} {value}: at least 1", "or leave it out: each chunk gets a whole node"
            )


def cpus_for_tasks_per_node(node_cpus: Sequence[int], tasks_per_node: int) -> int:
    """--cpus-per-task for `--tasks-per-node K`: the smallest node's CPUs (of the nodes the
    chunks may run on) shared K ways, so K chunks fit on every one of them."""
    if not node_cpus:
        raise UsageError(
            f"--tasks-per-node {tasks_per_node}: the partition has no nodes to share",
            "check --partition (`sinfo`), or give --cpus-per-task N",
        )
    smallest = min(node_cpus)
    if tasks_per_node > smallest:
        raise UsageError(
            f"--tasks-per-node {tasks_per_node}: the nodes have {smallest} CPUs, fewer than "
            "one a chunk",
            f"use --tasks-per-node {smallest} or fewer",
        )
    return smallest // tasks_per_node


def chunk_table(chunks: Sequence[Chunk]) -> str:
    """Line i+1 is array task i: `index start end`."""
    return "".join(f"{c.index} {c.start} {c.end}\n" for c in chunks)


def array_spec(plan: RenderPlan, chunks: Sequence[Chunk]) -> WorkSpec:
    """One task per chunk; task N reads line N+1 of the chunk table.

    A chunk asks for a whole node (`exclusive`) unless the plan gives its CPUs: Blender
    renders on every thread it may, and with Slurm's default of one CPU a task the
    chunks were packed onto one node (issue 19). The chunk script gives Blender
    HPCRUN_CPUS threads (`-t`), what the scheduler says the task got."""
    return WorkSpec(
        argv=("bash", f"{plan.run_dir}/render-chunk.sh"),
        name=f"render-{plan.name}",
        array=tuple(c.index for c in chunks),
        max_parallel=plan.max_parallel,
        cpus_per_task=plan.cpus_per_task,
        exclusive=plan.cpus_per_task is None,
        gpus_per_task=plan.gpus_per_task,
        queue=plan.partition,
        time_limit_s=parse_duration(plan.time_limit) if plan.time_limit else None,
        workdir=plan.run_dir,
        log_path=f"{plan.run_dir}/logs/chunk-{{index}}.out",
    )


def encode_spec(plan: RenderPlan, after: JobRef | None) -> WorkSpec:
    """The ffmpeg job; runs once every array task succeeded."""
    return WorkSpec(
        argv=("bash", f"{plan.run_dir}/encode.sh"),
        name=f"encode-{plan.name}",
        after=(after,) if after else (),
        queue=plan.partition,
        time_limit_s=parse_duration(plan.time_limit) if plan.time_limit else None,
        workdir=plan.run_dir,
        log_path=f"{plan.run_dir}/logs/encode.out",
    )


def _check_script_values(plan: RenderPlan) -> None:
    """What quoting cannot make safe in the two scripts (`hpcrun.workloads.shell`)."""
    check_script_values(
        {"blender program": plan.blender, "ffmpeg program": plan.ffmpeg, "name": plan.name},
        option_like={
            "blend file": plan.blend,
            "output directory": plan.frames_dir,
            "video": plan.video,
            "run directory": plan.run_dir,
        },
    )


def chunk_script(plan: RenderPlan) -> str:
    _check_script_values(plan)
    return fill(
        "hpcrun.workloads",
        "render_chunk.sh.in",
        {
            "name_line": one_line(plan.name),
            "chunk_table_line": one_line(plan.chunk_table),
            "complete_png": COMPLETE_PNG_SH,
            "chunk_table": shlex.quote(plan.chunk_table),
            "frames_dir": shlex.quote(plan.frames_dir),
            "attempts": plan.retries + 1,
            "blender": shlex.quote(plan.blender),
            "blend": shlex.quote(plan.blend),
            "settings_expr": shlex.quote(plan.settings_expr),
            "engine": plan.engine,
            "pattern": FRAME_PATTERN,
        },
    )


def encode_script(plan: RenderPlan) -> str:
    if plan.video is None:
        raise UsageError("--encode none: there is no video to encode")
    _check_script_values(plan)
    return fill(
        "hpcrun.workloads",
        "encode.sh.in",
        {
            "name_line": one_line(plan.name),
            "frames": plan.frames,
            "complete_png": COMPLETE_PNG_SH,
            "frames_dir": shlex.quote(plan.frames_dir),
            "video": shlex.quote(plan.video),
            "start": plan.frames.start,
            "end": plan.frames.end,
            "ffmpeg": shlex.quote(plan.ffmpeg),
            "fps": plan.fps,
            "count": len(plan.frames),
        },
    )


def frame_file(frames_dir: str, frame: int) -> str:
    return f"{frames_dir}/frame_{frame:04d}.png"
