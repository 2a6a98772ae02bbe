"""The render plan: frame ranges, chunking that never renders a frame twice, array ranges,
and the two job scripts (golden files), run for real where they are plain shell."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from hpcrun.errors import UsageError
from hpcrun.scheduler import JobRef
from hpcrun.slurm.scheduler import to_job_spec
from hpcrun.slurm.spec import array_range
from hpcrun.workloads.blender import (
    COMPLETE_PNG_SH,
    Chunk,
    FrameRange,
    RenderPlan,
    array_spec,
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
from tests.golden_util import assert_golden

PLAN = RenderPlan(
    blend="/projects/shots/rolling ball.blend",
    name="rolling ball",
    frames=FrameRange(1, 12),
    run_dir="/home/u/.hpcrun/render/7",
    frames_dir="/projects/out/rolling ball-frames",
    chunk=3,
    engine="CYCLES",
    samples=16,
    resolution=(320, 180),
    video="/projects/out/rolling ball-frames/rolling ball.mp4",
    fps=24.0,
    max_parallel=2,
    retries=2,
    partition="gpu",  # `--partition gpu`: both jobs go to that queue
)


def test_frame_ranges_parse_and_bad_ones_say_why() -> None:
    assert parse_frames("1-240") == FrameRange(1, 240)
    assert parse_frames(" 7 ") == FrameRange(7, 7)
    assert len(parse_frames("0-9")) == 10
    with pytest.raises(UsageError, match="reversed"):
        parse_frames("17-1")
    with pytest.raises(UsageError, match="not a frame range"):
        parse_frames("1..5")
    with pytest.raises(UsageError, match="numbered from 0"):
        parse_frames("-3-4")


def test_resolution_parses_width_by_height() -> None:
    assert parse_resolution("1920x1080") == (1920, 1080)
    for bad in ("1920", "0x10", "1920x1080x3", "axb"):
        with pytest.raises(UsageError, match="WIDTHxHEIGHT"):
            parse_resolution(bad)


def test_chunks_are_contiguous_and_never_span_a_gap() -> None:
    assert plan_chunks(range(1, 11), 4) == [Chunk(0, 1, 4), Chunk(1, 5, 8), Chunk(2, 9, 10)]
    # Frames 4 and 5 exist already (a resumed run): the chunk around them is cut.
    assert plan_chunks([1, 2, 3, 6, 7, 8, 9], 3) == [
        Chunk(0, 1, 3),
        Chunk(1, 6, 8),
        Chunk(2, 9, 9),
    ]
    assert plan_chunks([], 4) == []
    with pytest.raises(UsageError, match="at least 1 frame"):
        plan_chunks([1], 0)


def test_every_frame_is_in_exactly_one_chunk() -> None:
    missing = [f for f in range(1, 1001) if f % 50 and f != 333]
    chunks = plan_chunks(missing, 8)
    covered = [f for c in chunks for f in range(c.start, c.end + 1)]
    assert covered == missing
    assert max(len(c) for c in chunks) == 8
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_array_range_collapses_runs_and_caps_parallelism() -> None:
    assert array_range(list(range(250)), 16) == "0-249%16"
    assert array_range([0, 1, 2, 5, 7, 8], None) == "0-2,5,7-8"
    assert array_range([3], None) == "3"


def test_bad_settings_are_refused_before_anything_runs() -> None:
    for change, message in [
        ({"engine": "LUXCORE"}, "not a Blender render engine"),
        ({"chunk": 0}, "at least 1 frame"),
        ({"encode": "gif"}, "mp4 or none"),
        ({"samples": 0}, "--samples 0"),
        ({"retries": -1}, "--retries -1"),
        ({"max_parallel": 0}, "--max-parallel 0"),
        ({"fps": 0.0}, "--fps 0: a video needs a frame rate above 0"),
        ({"fps": -24.0}, "--fps -24: a video needs a frame rate above 0"),
        ({"fps": float("nan")}, "--fps nan"),
        ({"fps": 241.0}, "at most 240"),
        ({"cpus_per_task": 0}, "--cpus-per-task 0: at least 1"),
        ({"tasks_per_node": 0}, "--tasks-per-node 0: at least 1"),
        ({"cpus_per_task": 2, "tasks_per_node": 2}, "both size a chunk: give one"),
    ]:
        with pytest.raises(UsageError, match=message):
            replace(PLAN, **change).validate()  # type: ignore[arg-type]


def test_tasks_per_node_shares_the_smallest_node_k_ways() -> None:
    assert cpus_for_tasks_per_node([8, 8, 8], 1) == 8
    assert cpus_for_tasks_per_node([8, 48], 3) == 2  # K chunks fit on every node
    with pytest.raises(UsageError, match="the nodes have 8 CPUs, fewer than one a chunk"):
        cpus_for_tasks_per_node([8], 9)
    with pytest.raises(UsageError, match="no nodes to share"):
        cpus_for_tasks_per_node([], 2)


def test_settings_of_the_frames_there_are_compared_one_by_one() -> None:
    first = output_settings(PLAN)
    assert first["resolution"] == [320, 180] and first["fps"] == 24.0
    assert settings_differences(first, output_settings(PLAN)) == []
    # Settings that only change where or how many frames render are not compared.
    same_look = replace(PLAN, frames=FrameRange(5, 40), chunk=7, max_parallel=None, retries=0)
    assert settings_differences(first, output_settings(same_look)) == []
    other = replace(
        PLAN,
        resolution=(640, 360),
        engine="BLENDER_EEVEE",
        samples=None,
        fps=30.0,
        blend="/b.blend",
    )
    assert settings_differences(first, output_settings(other)) == [
        "the .blend /b.blend now, /projects/shots/rolling ball.blend when the frames were rendered",
        "--resolution 640x360 now, 320x180 when the frames were rendered",
        "--engine BLENDER_EEVEE now, CYCLES when the frames were rendered",
        "--samples the scene's now, 16 when the frames were rendered",
        "--fps 30 now, 24 when the frames were rendered",
    ]
    scene_size = output_settings(replace(PLAN, resolution=None))
    assert settings_differences(scene_size, first) == [
        "--resolution 320x180 now, the scene's when the frames were rendered"
    ]
    # A file that records fewer settings (another version) is compared on what it has.
    assert settings_differences({"engine": "CYCLES"}, output_settings(other)) == [
        "--engine BLENDER_EEVEE now, CYCLES when the frames were rendered"
    ]


def test_array_and_encode_jobs_golden() -> None:
    chunks = plan_chunks(range(1, 13), 3)
    array = to_job_spec(array_spec(PLAN, chunks))
    encode = to_job_spec(encode_spec(PLAN, JobRef("41")))
    # `--cpus-per-task 6` (or `--tasks-per-node K`, resolved to a count by the service)
    sized = to_job_spec(array_spec(replace(PLAN, cpus_per_task=6), chunks))
    text = (
        "# chunks.tsv\n"
        + chunk_table(chunks)
        + "# array job (default: a whole node a chunk)\n"
        + array.to_sbatch_script()
        + "# array job, --cpus-per-task 6\n"
        + sized.to_sbatch_script()
        + "# encode job\n"
        + encode.to_sbatch_script()
    )
    assert array.array == "0-3%2"
    assert array.exclusive and array.cpus_per_task is None
    assert sized.cpus_per_task == 6 and not sized.exclusive
    assert not encode.exclusive and encode.cpus_per_task is None
    assert encode.dependency == "afterok:41"
    assert_golden("render_jobs.txt", text)


def test_chunk_script_golden() -> None:
    assert_golden("render_chunk.sh", chunk_script(PLAN))


def test_encode_script_golden() -> None:
    assert_golden("render_encode.sh", encode_script(PLAN))


def _png(path: Path, complete: bool) -> None:
    data = b"\x89PNG\r\n\x1a\n" + b"x" * 20 + b"IEND\xaeB`\x82"
    path.write_bytes(data if complete else data[:-3])


def test_the_complete_png_check_needs_the_iend_chunk(tmp_path: Path) -> None:
    _png(tmp_path / "good.png", True)
    _png(tmp_path / "cut.png", False)
    (tmp_path / "empty.png").write_bytes(b"")
    script = (
        f"{COMPLETE_PNG_SH}; for f in good cut empty absent; do "
        f"complete_png {tmp_path}/$f.png && echo $f; done; true"
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["good"]


def test_encode_refuses_a_frame_set_with_holes(tmp_path: Path) -> None:

    frames = tmp_path / "frames"
    frames.mkdir()
    for frame in (1, 2, 4):
        _png(frames / f"frame_{frame:04d}.png", True)
    _png(frames / "frame_0005.png", False)
    plan = replace(
        PLAN,
        frames=FrameRange(1, 5),
        frames_dir=str(frames),
        video=str(tmp_path / "out.mp4"),
        ffmpeg="/bin/false",
    )
    done = subprocess.run(["bash", "-c", encode_script(plan)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "frames missing: 3 5" in done.stdout
    assert not (tmp_path / "out.mp4").exists()
