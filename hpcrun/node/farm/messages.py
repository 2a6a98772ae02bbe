"""The worker's reading of the farm's messages and run folders.

The user side writes both with `hpcrun.workloads.farm`, which node code may not import
(the worker must run without the user's side installed); what both sides share is
this small contract, and tests/workloads/test_farm.py checks the two agree byte for byte.
Anything the worker does not understand is refused, never guessed at: a message from a
newer user side goes to the dead-letter queue instead of rendering the wrong frames.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MESSAGE_VERSION = 1
MANIFEST_VERSION = 1
MANIFEST = "run.json"
PNG_END = b"IEND\xaeB`\x82"  # the last bytes of a PNG written to the end
_RUN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class BadMessage(Exception):
    """A message (or the run it names) this worker cannot act on, whoever delivers it."""


@dataclass(frozen=True)
class Chunk:
    run_id: str
    chunk: int
    first: int
    last: int  # inclusive

    def frames(self) -> range:
        return range(self.first, self.last + 1)


@dataclass(frozen=True)
class Encode:
    run_id: str


def run_folder(prefix: str, run_id: str) -> str:
    """A run's key prefix in the bucket, ending in '/' (`workloads.farm.FarmRun.folder`)."""
    return f"{prefix}/runs/{run_id}/" if prefix else f"runs/{run_id}/"


def parse(body: str) -> Chunk | Encode:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as err:
        raise BadMessage(f"not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("v") != MESSAGE_VERSION:
        raise BadMessage(f"no message version this worker knows (v {MESSAGE_VERSION})")
    run_id = data.get("run")
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise BadMessage(f"run id {run_id!r} is not a farm run id")
    kind = data.get("kind")
    if kind == "encode":
        return Encode(run_id)
    if kind != "chunk":
        raise BadMessage(f"message kind {kind!r} is neither 'chunk' nor 'encode'")
    numbers: list[Any] = [data.get(k) for k in ("chunk", "first", "last")]
    if not all(type(n) is int and n >= 0 for n in numbers):
        raise BadMessage("a chunk message needs whole numbers chunk, first, last >= 0")
    chunk, first, last = (int(n) for n in numbers)
    if last < first:
        raise BadMessage(f"chunk {chunk} ends (frame {last}) before it starts ({first})")
    return Chunk(run_id, chunk, first, last)


def encode_body(run_id: str) -> str:
    """The encode message, exactly as `workloads.farm.EncodeMessage.body` writes it."""
    return json.dumps(
        {"v": MESSAGE_VERSION, "kind": "encode", "run": run_id},
        sort_keys=True,
        separators=(",", ":"),
    )


@dataclass(frozen=True)
class Manifest:
    """`run.json`: the names of a run's files, as the user side chose them."""

    run_id: str
    first: int
    last: int
    inputs: tuple[str, ...]
    chunk_script: str
    chunk_table: str
    encode_script: str | None
    frames_dir: str
    frame_format: str
    video: str | None
    claim: str
    logs_dir: str
    chunk_log_format: str
    encode_log_format: str

    def frames(self) -> range:
        return range(self.first, self.last + 1)

    def frame_name(self, frame: int) -> str:
        return self.frame_format % frame

    def chunk_log(self, chunk: int, delivery: int) -> str:
        return f"{self.logs_dir}/{self.chunk_log_format % (chunk, delivery)}"

    def encode_log(self, delivery: int) -> str:
        return f"{self.logs_dir}/{self.encode_log_format % delivery}"


def parse_manifest(text: str, run_id: str) -> Manifest:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise BadMessage(f"run {run_id}: {MANIFEST} is not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("v") != MANIFEST_VERSION:
        raise BadMessage(f"run {run_id}: {MANIFEST} has no version this worker knows")
    if data.get("run") != run_id:
        raise BadMessage(f"run {run_id}: {MANIFEST} is of run {data.get('run')!r}")
    try:
        first, last = (int(f) for f in data["frames"])
        names = {
            k: str(data[k])
            for k in (
                "chunk_script",
                "chunk_table",
                "frames_dir",
                "frame_format",
                "claim",
                "logs_dir",
                "chunk_log_format",
                "encode_log_format",
            )
        }
        inputs = tuple(str(n) for n in data["inputs"])
        video, encode_script = data.get("video"), data.get("encode_script")
    except (KeyError, TypeError, ValueError) as err:
        raise BadMessage(f"run {run_id}: {MANIFEST} lacks {err}") from None
    for name in [*inputs, *names.values(), video or "", encode_script or ""]:
        # Names are joined to this worker's directory: nothing may climb out of it.
        if name.startswith("/") or ".." in name.split("/"):
            raise BadMessage(f"run {run_id}: {MANIFEST} names {name!r} outside the run")
    return Manifest(
        run_id=run_id,
        first=first,
        last=last,
        inputs=inputs,
        video=str(video) if video else None,
        encode_script=str(encode_script) if encode_script else None,
        **names,
    )


def table_line(table: str, chunk: int) -> tuple[int, int, int] | None:
    """Line `chunk`+1 of a chunk table (`index first last`), as the chunk script reads it."""
    lines = table.splitlines()
    if chunk >= len(lines):
        return None
    parts = lines[chunk].split()
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])
