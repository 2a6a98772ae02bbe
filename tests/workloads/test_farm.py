"""The queue-fed farm's plan: where a run lives in S3, what its messages say, the
scripts its workers run (golden files), and what a resume sends; plus the contract with
the worker (hpcrun.node.farm), which reads the same JSON without importing this side."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from hpcrun.errors import UsageError
from hpcrun.node.farm import messages as node
from hpcrun.workloads.blender import PNG_END, FrameRange, RenderPlan, chunk_table
from hpcrun.workloads.farm import (
    ChunkMessage,
    EncodeMessage,
    FarmRun,
    chunk_messages,
    frames_present,
    manifest,
    parse_message,
    redrive_policy,
    resume,
    run_chunks,
    run_files,
    worker_plan,
)
from tests.golden_util import assert_golden

PLAN = RenderPlan(
    blend="/projects/shots/rolling ball.blend",
    name="rolling ball",
    frames=FrameRange(1, 12),
    run_dir="",
    frames_dir="",
    chunk=3,
    engine="CYCLES",
    samples=16,
    resolution=(320, 180),
    fps=24.0,
    retries=2,
)
RUN = FarmRun("renders", "team-a/shots", "rolling-ball-1")


def test_every_key_of_a_run_is_under_its_folder() -> None:
    assert RUN.folder == "team-a/shots/runs/rolling-ball-1/"
    assert RUN.key("scene.blend") == "team-a/shots/runs/rolling-ball-1/scene.blend"
    assert RUN.frame_key(7) == "team-a/shots/runs/rolling-ball-1/frames/frame_0007.png"
    assert RUN.video_key == "team-a/shots/runs/rolling-ball-1/video.mp4"
    assert RUN.claim_key == "team-a/shots/runs/rolling-ball-1/encode.claim"
    assert RUN.chunk_log_key(3, 2) == "team-a/shots/runs/rolling-ball-1/logs/chunk-0003-2.log"
    assert RUN.encode_log_key(1) == "team-a/shots/runs/rolling-ball-1/logs/encode-1.log"
    assert FarmRun("b", "", "r1").folder == "runs/r1/"
    # The worker finds a run where the user side put it.
    for run in (RUN, FarmRun("b", "", "r1")):
        assert node.run_folder(run.prefix, run.run_id) == run.folder


@pytest.mark.parametrize("run_id", ["", "Run1", "a/b", "../x", "-x", "a" * 64, "a b"])
def test_run_ids_that_would_need_quoting_are_refused(run_id: str) -> None:
    with pytest.raises(UsageError, match="is not 1-63 lowercase"):
        FarmRun("b", "", run_id)


@pytest.mark.parametrize("prefix", ["/a", "a/", "a//b", "a/../b", "a b", "."])
def test_prefixes_that_are_not_plain_key_paths_are_refused(prefix: str) -> None:
    with pytest.raises(UsageError, match="is not a plain S3 key prefix"):
        FarmRun("b", prefix, "r1")


def test_the_worker_plan_has_only_paths_inside_the_run_folder() -> None:
    local = worker_plan(PLAN)
    assert (local.blend, local.run_dir, local.frames_dir) == ("scene.blend", ".", "frames")
    assert local.chunk_table == "./chunks.tsv"
    assert local.video == "video.mp4"
    assert worker_plan(replace(PLAN, encode="none")).video is None


def test_the_run_files_are_the_slurm_scripts_with_run_relative_paths() -> None:
    files = run_files(RUN, PLAN)
    assert sorted(files) == [
        RUN.key(n) for n in ("chunks.tsv", "encode.sh", "render-chunk.sh", "run.json")
    ]
    assert list(files)[-1] == RUN.key("run.json")  # written last: it names the others
    assert_golden("farm_chunk.sh", files[RUN.key("render-chunk.sh")].decode())
    assert_golden("farm_encode.sh", files[RUN.key("encode.sh")].decode())
    assert_golden("farm_run.json", files[RUN.key("run.json")].decode())
    assert files[RUN.key("chunks.tsv")] == b"0 1 3\n1 4 6\n2 7 9\n3 10 12\n"


def test_a_run_without_video_ships_no_encode_script() -> None:
    plan = replace(PLAN, encode="none")
    files = run_files(RUN, plan)
    assert RUN.key("encode.sh") not in files
    data = json.loads(files[RUN.key("run.json")])
    assert data["video"] is None and data["encode_script"] is None
    assert "encode.sh" not in data["inputs"]


def test_bad_settings_are_refused_before_any_file_is_made() -> None:
    with pytest.raises(UsageError, match="not a Blender render engine"):
        run_files(RUN, replace(PLAN, engine="LUXCORE"))


def test_messages_are_versioned_compact_json_and_round_trip() -> None:
    chunks = run_chunks(PLAN)
    sent: list[ChunkMessage | EncodeMessage] = [
        *chunk_messages(RUN.run_id, chunks),
        EncodeMessage(RUN.run_id),
    ]
    bodies = [m.body() for m in sent]
    assert_golden("farm_messages.json", "\n".join(bodies) + "\n")
    assert [parse_message(b) for b in bodies] == sent
    # The same message is the same bytes however often it is made.
    again: list[ChunkMessage | EncodeMessage] = [*chunk_messages(RUN.run_id, chunks)]
    again.append(EncodeMessage(RUN.run_id))
    assert bodies == [m.body() for m in again]


def test_the_worker_reads_the_messages_this_side_writes() -> None:
    chunk = ChunkMessage(RUN.run_id, 2, 7, 9)
    assert node.parse(chunk.body()) == node.Chunk(RUN.run_id, 2, 7, 9)
    assert node.parse(EncodeMessage(RUN.run_id).body()) == node.Encode(RUN.run_id)
    assert node.encode_body(RUN.run_id) == EncodeMessage(RUN.run_id).body()
    assert node.PNG_END == PNG_END


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("not json", "not JSON"),
        ('{"v":2,"kind":"chunk","run":"r1","chunk":0,"first":1,"last":3}', "version"),
        ('{"v":1,"kind":"frame","run":"r1"}', "kind 'frame'"),
        ('{"v":1,"kind":"chunk","run":"R/1","chunk":0,"first":1,"last":3}', "run id"),
        ('{"v":1,"kind":"chunk","run":"r1","chunk":0,"first":-1,"last":3}', "first, last"),
        ('{"v":1,"kind":"chunk","run":"r1","chunk":true,"first":1,"last":3}', "first, last"),
        ('{"v":1,"kind":"chunk","run":"r1","chunk":0,"first":5,"last":3}', "before it starts"),
    ],
)
def test_messages_neither_side_understands_are_refused(body: str, message: str) -> None:
    with pytest.raises(UsageError):
        parse_message(body)
    with pytest.raises(node.BadMessage, match=message):
        node.parse(body)


def test_the_worker_reads_the_manifest_and_chunk_table_this_side_writes() -> None:
    files = run_files(RUN, PLAN)
    read = node.parse_manifest(files[RUN.key("run.json")].decode(), RUN.run_id)
    assert read.frames() == range(1, 13)
    assert read.inputs == ("scene.blend", "render-chunk.sh", "chunks.tsv", "encode.sh")
    assert read.frame_name(7) == "frame_0007.png"
    assert RUN.key(f"frames/{read.frame_name(7)}") == RUN.frame_key(7)
    assert RUN.key(read.chunk_log(3, 2)) == RUN.chunk_log_key(3, 2)
    assert RUN.key(read.encode_log(1)) == RUN.encode_log_key(1)
    assert RUN.key(read.claim) == RUN.claim_key
    assert RUN.key(str(read.video)) == RUN.video_key
    table = chunk_table(run_chunks(PLAN))
    assert [node.table_line(table, i) for i in range(5)] == [
        (0, 1, 3),
        (1, 4, 6),
        (2, 7, 9),
        (3, 10, 12),
        None,
    ]
    with pytest.raises(node.BadMessage, match="is of run 'rolling-ball-1'"):
        node.parse_manifest(files[RUN.key("run.json")].decode(), "other-run")


def test_a_manifest_naming_files_outside_the_run_is_refused() -> None:
    data = manifest(RUN, PLAN, run_chunks(PLAN))
    data["inputs"] = ["../../etc/passwd"]
    with pytest.raises(node.BadMessage, match="outside the run"):
        node.parse_manifest(json.dumps(data), RUN.run_id)


def test_frames_present_reads_a_listing_of_the_frames_folder() -> None:
    keys = [RUN.frame_key(f) for f in (1, 2, 12)]
    keys += [RUN.key("frames/frame_0003.png.partial"), RUN.key("frames/notes.txt")]
    keys += [FarmRun("renders", "team-a/shots", "other").frame_key(4), RUN.video_key]
    assert frames_present(RUN, keys) == {1, 2, 12}


def test_a_resume_sends_only_the_chunks_with_a_frame_missing() -> None:
    done = resume(RUN, PLAN, {1, 2, 3, 4, 6, 7, 8, 9}, video_present=False)
    assert done.messages == [ChunkMessage(RUN.run_id, 1, 4, 6), ChunkMessage(RUN.run_id, 3, 10, 12)]
    # The chunk keeps its index and frames: the worker re-renders only frame 5 of 4-6,
    # since it fetches 4 and 6 first and Blender does not overwrite.
    assert done.remove == [RUN.claim_key, RUN.video_key]


def test_a_resume_with_every_frame_encodes_or_does_nothing() -> None:
    every = range(1, 13)
    assert resume(RUN, PLAN, every, video_present=False).messages == [EncodeMessage(RUN.run_id)]
    assert resume(RUN, PLAN, every, video_present=False).remove == []
    finished = resume(RUN, PLAN, every, video_present=True)
    assert (finished.messages, finished.remove) == ([], [])
    silent = replace(PLAN, encode="none")
    assert resume(RUN, silent, every, video_present=False).messages == []
    assert resume(RUN, silent, [1], video_present=False).remove == [RUN.claim_key]
    assert len(resume(RUN, PLAN, [], video_present=False).messages) == 4


def test_the_redrive_policy_names_the_dead_letter_queue() -> None:
    arn = "arn:aws:sqs:us-east-1:123456789012:render-dlq"
    assert json.loads(redrive_policy(arn, 2)) == {"deadLetterTargetArn": arn, "maxReceiveCount": 2}
    with pytest.raises(UsageError, match="at least 1"):
        redrive_policy(arn, 0)


def test_the_last_log_is_the_latest_delivery_even_past_nine() -> None:
    logs = [RUN.chunk_log_key(3, n) for n in (1, 2, 9, 10)] + [
        RUN.chunk_log_key(13, 11),
        RUN.encode_log_key(2),
        RUN.logs_prefix + "notes.txt",
    ]
    assert RUN.last_log_key(logs, 3) == RUN.chunk_log_key(3, 10)
    assert RUN.last_log_key(logs, None) == RUN.encode_log_key(2)
    assert RUN.last_log_key(logs, 4) is None
