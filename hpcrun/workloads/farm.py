"""A Blender render farm fed through a queue (SQS) and a bucket (S3): the run's layout in
the bucket, its messages, and the scripts its workers run. Pure, no I/O.

The user side uploads a run's inputs once under `<prefix>/runs/<run-id>/` and sends one
message per chunk; workers (`hpcrun.node.farm`) mirror that folder into a directory of
their own and run the scripts there. Choices, and why:

- The scripts are the Slurm path's (`blender.chunk_script`/`encode_script`, rendered
  once per run with paths relative to the run's folder, `worker_plan`), so a farm chunk
  checks completeness (PNG IEND), retries what is missing and never overwrites exactly as
  a Slurm array task does; the worker only moves files and messages. Relative paths let
  the user side render them without knowing where a worker keeps its files, and let one
  worker serve any number of runs.
- Everything under a run's folder except frames, video, logs and the encode claim is
  written once before the first message and never changed (`manifest` lists it), so a
  worker fetches a run's inputs once and caches them by run id, with no staleness check.
- The chunk table is fixed for the run's life (`plan_chunks` over every frame) and a
  message names its chunk by index (plus its frames, checked by the worker against the
  table): a message means the same thing however often it is delivered, re-sent or
  resumed, and messages of an earlier submission still in the queue stay valid. A resume
  (`resume`) sends messages only for chunks with a frame missing in S3; the worker fetches
  that chunk's finished frames first, so Blender (told not to overwrite) renders only the
  missing ones, as a resumed Slurm run does.
- Frames are uploaded one by one as they are complete, and S3 holds a frame only when it
  is whole (one PUT), so "present in S3" is "done" and a killed worker loses at most the
  frame in flight.
- The encode is its own message. The worker that finishes a chunk and sees every frame
  in S3 claims the encode by creating `encode.claim` with a conditional PUT (If-None-Match
  `*`: exactly one creator wins) before it deletes its chunk message, and only then sends
  the encode message. The claim names that chunk, so if the claimer dies between claim and
  send, whoever gets its chunk message back sends the encode message instead; a duplicate
  encode message costs one check (the video is there). As a message, the encode gets the
  queue's heartbeat, redelivery and dead-letter queue like any chunk.
- Messages are small JSON objects with a version `v` and a `kind`; a worker refuses (and
  leaves to the dead-letter queue) a version it does not know instead of guessing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hpcrun.errors import UsageError
from hpcrun.workloads.blender import (
    Chunk,
    RenderPlan,
    chunk_script,
    chunk_table,
    encode_script,
    output_settings,
    plan_chunks,
)

MESSAGE_VERSION = 1
MANIFEST_VERSION = 1
CHUNK = "chunk"
ENCODE = "encode"

# Names inside a run's folder, the same in S3 and in a worker's copy of it.
MANIFEST = "run.json"
BLEND = "scene.blend"
CHUNK_SCRIPT = "render-chunk.sh"
ENCODE_SCRIPT = "encode.sh"
CHUNK_TABLE = "chunks.tsv"  # what blender.RenderPlan.chunk_table is with run_dir "."
FRAMES_DIR = "frames"
FRAME_FORMAT = "frame_%04d.png"  # printf, as the scripts name frames (Blender's frame_####)
VIDEO = "video.mp4"
CLAIM = "encode.claim"
LOGS_DIR = "logs"
CHUNK_LOG_FORMAT = "chunk-%04d-%d.log"  # chunk index, delivery (SQS receive count)
ENCODE_LOG_FORMAT = "encode-%d.log"  # delivery

DEFAULT_MAX_RECEIVES = 3  # deliveries of one message before SQS moves it to the DLQ
_RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PREFIX_PART_RE = re.compile(r"^[A-Za-z0-9._=-]+$")


def check_run_id(run_id: str) -> str:
    """Run ids become S3 key parts and a directory name on every worker: lowercase
    letters, digits and dashes only, so neither side ever has to quote one."""
    if not _RUN_ID_RE.match(run_id):
        raise UsageError(
            f"farm run id {run_id!r} is not 1-63 lowercase letters, digits and dashes",
            "e.g. rolling-ball-20261203-1",
        )
    return run_id


def check_prefix(prefix: str) -> str:
    """A key prefix without leading or trailing slash ('' for the bucket's root): plain
    path parts only, so `<prefix>/runs/...` never holds `//`, `..` or odd characters."""
    if prefix and not all(
        _PREFIX_PART_RE.match(part) and part not in {".", ".."} for part in prefix.split("/")
    ):
        raise UsageError(
            f"farm prefix {prefix!r} is not a plain S3 key prefix",
            "use letters, digits, '.', '_', '-', '=' between single slashes, e.g. renders/team-a",
        )
    return prefix


@dataclass(frozen=True)
class FarmRun:
    """Where one run lives: every key of it is made here and nowhere else."""

    bucket: str
    prefix: str
    run_id: str

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        check_run_id(self.run_id)

    @property
    def folder(self) -> str:
        """The run's key prefix, ending in '/'."""
        base = f"{self.prefix}/runs" if self.prefix else "runs"
        return f"{base}/{self.run_id}/"

    def key(self, name: str) -> str:
        return self.folder + name

    @property
    def frames_prefix(self) -> str:
        return self.key(FRAMES_DIR + "/")

    def frame_key(self, frame: int) -> str:
        return self.key(f"{FRAMES_DIR}/{FRAME_FORMAT % frame}")

    @property
    def video_key(self) -> str:
        return self.key(VIDEO)

    @property
    def claim_key(self) -> str:
        return self.key(CLAIM)

    def chunk_log_key(self, chunk: int, delivery: int) -> str:
        return self.key(f"{LOGS_DIR}/{CHUNK_LOG_FORMAT % (chunk, delivery)}")

    def encode_log_key(self, delivery: int) -> str:
        return self.key(f"{LOGS_DIR}/{ENCODE_LOG_FORMAT % delivery}")

    @property
    def logs_prefix(self) -> str:
        return self.key(LOGS_DIR + "/")

    def last_log_key(self, keys: Iterable[str], chunk: int | None) -> str | None:
        """Of a listing of `logs_prefix`, the log of a chunk's (None: the encode's) latest
        delivery. The keys differ only in the delivery number, so the longest, then the
        greatest, is the latest (delivery 10 after 9)."""
        example = self.encode_log_key(0) if chunk is None else self.chunk_log_key(chunk, 0)
        stem = example.removesuffix("0.log")  # the key up to its delivery number
        mine = [k for k in keys if k.startswith(stem) and k[len(stem) : -4].isdigit()]
        return max(mine, key=lambda k: (len(k), k)) if mine else None


def worker_plan(plan: RenderPlan) -> RenderPlan:
    """`plan` with every path relative to a worker's copy of the run's folder (the
    scripts run there): the .blend, the frames, the chunk table and the video."""
    return replace(
        plan,
        blend=BLEND,
        run_dir=".",
        frames_dir=FRAMES_DIR,
        video=VIDEO if plan.encode == "mp4" else None,
    )


def run_chunks(plan: RenderPlan) -> list[Chunk]:
    """The run's chunk table: every frame, cut by `plan.chunk`; fixed for the run's life."""
    return plan_chunks(plan.frames.frames(), plan.chunk)


def manifest(run: FarmRun, plan: RenderPlan, chunks: Sequence[Chunk]) -> dict[str, Any]:
    """`run.json`: what a worker needs to know of a run besides its message, by name,
    so the worker hard-codes nothing of the layout but this file's name."""
    local = worker_plan(plan)
    inputs = [BLEND, CHUNK_SCRIPT, CHUNK_TABLE] + ([ENCODE_SCRIPT] if local.video else [])
    return {
        "v": MANIFEST_VERSION,
        "run": run.run_id,
        "frames": [plan.frames.start, plan.frames.end],
        "chunks": len(chunks),
        "inputs": inputs,
        "chunk_script": CHUNK_SCRIPT,
        "chunk_table": CHUNK_TABLE,
        "encode_script": ENCODE_SCRIPT if local.video else None,
        "frames_dir": FRAMES_DIR,
        "frame_format": FRAME_FORMAT,
        "video": local.video,
        "claim": CLAIM,
        "logs_dir": LOGS_DIR,
        "chunk_log_format": CHUNK_LOG_FORMAT,
        "encode_log_format": ENCODE_LOG_FORMAT,
        "settings": output_settings(plan),
    }


def run_files(run: FarmRun, plan: RenderPlan) -> dict[str, bytes]:
    """Every object the user side writes before the first message, by key, except the
    .blend itself (uploaded from its file to `run.key(BLEND)`). The manifest is last:
    a worker that can read it can read everything it lists."""
    plan.validate()
    chunks = run_chunks(plan)
    local = worker_plan(plan)
    files = {
        run.key(CHUNK_SCRIPT): chunk_script(local).encode(),
        run.key(CHUNK_TABLE): chunk_table(chunks).encode(),
    }
    if local.video is not None:
        files[run.key(ENCODE_SCRIPT)] = encode_script(local).encode()
    text = json.dumps(manifest(run, plan, chunks), indent=2, sort_keys=True) + "\n"
    files[run.key(MANIFEST)] = text.encode()
    return files


# messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkMessage:
    run_id: str
    chunk: int
    first: int
    last: int  # inclusive

    def body(self) -> str:
        return _body(
            {
                "v": MESSAGE_VERSION,
                "kind": CHUNK,
                "run": self.run_id,
                "chunk": self.chunk,
                "first": self.first,
                "last": self.last,
            }
        )


@dataclass(frozen=True)
class EncodeMessage:
    run_id: str

    def body(self) -> str:
        return _body({"v": MESSAGE_VERSION, "kind": ENCODE, "run": self.run_id})


Message = ChunkMessage | EncodeMessage


def _body(data: Mapping[str, Any]) -> str:
    """Compact and key-sorted: the same message is always the same bytes."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def chunk_messages(run_id: str, chunks: Iterable[Chunk]) -> list[ChunkMessage]:
    return [ChunkMessage(run_id, c.index, c.start, c.end) for c in chunks]


def parse_message(body: str) -> Message:
    """A message body back (for the user side's tools and tests; the worker reads the
    same JSON itself, since it may not import this module)."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as err:
        raise UsageError(f"farm message is not JSON: {err}") from None
    if not isinstance(data, dict) or data.get("v") != MESSAGE_VERSION:
        raise UsageError(f"farm message has no known version (v {MESSAGE_VERSION}): {body!r}")
    kind, run_id = data.get("kind"), data.get("run")
    if not isinstance(run_id, str):
        raise UsageError(f"farm message names no run: {body!r}")
    check_run_id(run_id)
    if kind == ENCODE:
        return EncodeMessage(run_id)
    if kind == CHUNK:
        numbers: list[Any] = [data.get(k) for k in ("chunk", "first", "last")]
        if not all(type(n) is int and n >= 0 for n in numbers):
            raise UsageError(f"farm chunk message needs chunk, first, last >= 0: {body!r}")
        chunk, first, last = (int(n) for n in numbers)
        if last < first:
            raise UsageError(f"farm chunk message ends before it starts: {body!r}")
        return ChunkMessage(run_id, chunk, first, last)
    raise UsageError(f"farm message kind {kind!r} is neither {CHUNK!r} nor {ENCODE!r}")


def frames_present(run: FarmRun, keys: Iterable[str]) -> set[int]:
    """The frames a listing of `run.frames_prefix` holds (anything else is ignored)."""
    found = set()
    for key in keys:
        name = key[len(run.frames_prefix) :] if key.startswith(run.frames_prefix) else ""
        matched = re.fullmatch(r"frame_(\d{4,})\.png", name)
        if matched:
            found.add(int(matched.group(1)))
    return found


@dataclass(frozen=True)
class Resume:
    """What continuing a run takes: delete `remove` (keys), then send `messages`."""

    messages: list[Message]
    remove: list[str]


def resume(
    run: FarmRun, plan: RenderPlan, present: Iterable[int], *, video_present: bool
) -> Resume:
    """Given the frames already in S3, the messages that finish the run: one per chunk
    with a frame missing, or, with every frame there and no video, the encode.

    With frames missing, a claim or video left from before they went missing is stale
    (a claim is only made once every frame exists) and would stop the new encode, so it is
    removed first."""
    done = set(present)
    missing = [c for c in run_chunks(plan) if any(f not in done for f in range(c.start, c.end + 1))]
    encoding = plan.encode == "mp4"
    if missing:
        stale = [run.claim_key] + ([run.video_key] if encoding else [])
        return Resume(list(chunk_messages(run.run_id, missing)), stale)
    if encoding and not video_present:
        return Resume([EncodeMessage(run.run_id)], [])
    return Resume([], [])


def redrive_policy(dead_letter_arn: str, max_receives: int = DEFAULT_MAX_RECEIVES) -> str:
    """The work queue's RedrivePolicy attribute: after `max_receives` deliveries a
    message (a chunk that fails on every worker) goes to the dead-letter queue."""
    if max_receives < 1:
        raise UsageError(f"max receives {max_receives}: at least 1")
    return json.dumps({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receives})
