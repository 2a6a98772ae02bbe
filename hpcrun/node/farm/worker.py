"""One farm worker: take a message, do it, delete it; never lose more than a frame.

A message is deleted only once its work is in S3, so whatever kills a worker (SIGKILL, a
lost node, an evicted pod) the message comes back to another worker when its visibility
runs out. While working, a heartbeat thread keeps extending that visibility, so a slow
chunk is not handed out twice, and a dead worker's chunk returns within one visibility
timeout rather than the worst-case render time. Frames go up one by one as Blender
finishes them and the worker fetches a chunk's frames already in S3 before rendering,
so a chunk picked up again renders only what is missing (the chunk script's own
completeness check and Blender's no-overwrite do the rest).

A failed chunk's message is made visible at once (another worker, perhaps a healthy
one, tries next) with its log in S3; after the queue's maxReceiveCount deliveries SQS
moves it to the dead-letter queue. A message the worker cannot read is left alone, so it
comes back after its visibility timeout and ends in the dead-letter queue too.

SIGTERM (Kubernetes scaling down) stops the render, uploads what is whole, and makes
the message visible at once: a pod's grace period (30 s) is shorter than a chunk.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Any

from .messages import (
    MANIFEST,
    PNG_END,
    BadMessage,
    Chunk,
    Encode,
    Manifest,
    encode_body,
    parse,
    parse_manifest,
    run_folder,
    table_line,
)

_STOP_GRACE_S = 5.0  # SIGTERM to SIGKILL for a render being stopped
_FETCHED = ".fetched"  # in a run's local folder once every input is there
_RECEIVE_BACKOFF_S = 5.0
_RETRY_AFTER_ERROR_S = 30  # an S3/SQS error: try again later, not at once everywhere


@dataclass(frozen=True)
class Options:
    queue_url: str
    bucket: str
    prefix: str
    workdir: Path
    visibility_s: int = 1200
    wait_s: int = 20
    idle_exit_s: float | None = None
    poll_s: float = 0.2  # how often a running render's new frames are looked for


class Outcome(Enum):
    DONE = "done"  # delete the message
    FAILED = "failed"  # visible again at once
    STOPPED = "stopped"  # this worker is stopping: visible again at once


class Lease:
    """One received message: a heartbeat thread extends its visibility every third of
    the timeout until it is deleted or released."""

    def __init__(self, sqs: Any, queue_url: str, receipt: str, visibility_s: int) -> None:
        self._sqs, self._queue, self._receipt = sqs, queue_url, receipt
        self._visibility_s = visibility_s
        self._ended = threading.Event()
        self.lost = False  # an extension failed: another worker may have it now
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval_s = max(0.5, self._visibility_s / 3)
        while not self._ended.wait(interval_s):
            try:
                self._sqs.change_message_visibility(
                    QueueUrl=self._queue,
                    ReceiptHandle=self._receipt,
                    VisibilityTimeout=self._visibility_s,
                )
            except Exception:  # any failure means the lease may be gone
                self.lost = True

    def forget(self) -> None:
        """Stop extending; the message comes back when its visibility runs out."""
        self._ended.set()
        self._thread.join()

    def delete(self) -> None:
        self.forget()
        with contextlib.suppress(Exception):  # gone already: it was done twice, harmlessly
            self._sqs.delete_message(QueueUrl=self._queue, ReceiptHandle=self._receipt)

    def release(self, after_s: int = 0) -> None:
        self.forget()
        with contextlib.suppress(Exception):  # it comes back after its timeout anyway
            self._sqs.change_message_visibility(
                QueueUrl=self._queue, ReceiptHandle=self._receipt, VisibilityTimeout=after_s
            )


@dataclass
class RunCopy:
    """A worker's copy of a run's folder; the scripts run in `folder`."""

    key_prefix: str
    folder: Path
    manifest: Manifest

    def key(self, name: str) -> str:
        return self.key_prefix + name

    def frame_path(self, frame: int) -> Path:
        return self.folder / self.manifest.frames_dir / self.manifest.frame_name(frame)

    def frame_key(self, frame: int) -> str:
        return self.key(f"{self.manifest.frames_dir}/{self.manifest.frame_name(frame)}")


def complete_png(path: Path) -> bool:
    """The file ends with PNG's IEND chunk: Blender finished writing it."""
    try:
        with path.open("rb") as src:
            src.seek(-len(PNG_END), os.SEEK_END)
            return src.read() == PNG_END
    except OSError:  # absent, or shorter than the end marker
        return False


class Worker:
    def __init__(self, options: Options, sqs: Any, s3: Any, out: IO[str]) -> None:
        self.options = options
        self._sqs, self._s3, self._out = sqs, s3, out
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Ask the worker to stop (from a signal handler): the current message is
        released, no new one is taken."""
        self._stopping.set()

    def say(self, text: str) -> None:
        self._out.write(f"hpcrun-farm: {text}\n")
        self._out.flush()

    # the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        options = self.options
        idle_since = time.monotonic()
        self.say(f"waiting for work on {options.queue_url}")
        while not self._stopping.is_set():
            try:
                got = self._sqs.receive_message(
                    QueueUrl=options.queue_url,
                    MaxNumberOfMessages=1,
                    WaitTimeSeconds=options.wait_s,
                    VisibilityTimeout=options.visibility_s,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                ).get("Messages", [])
            except Exception as err:  # the queue is unreachable: wait, do not spin
                self.say(f"cannot receive from the queue: {type(err).__name__}: {err}")
                self._stopping.wait(_RECEIVE_BACKOFF_S)
                continue
            if not got:
                idle_s = time.monotonic() - idle_since
                if options.idle_exit_s is not None and idle_s >= options.idle_exit_s:
                    self.say(f"no work for {idle_s:.0f} s: exiting")
                    return 0
                continue
            message = got[0]
            lease = Lease(
                self._sqs, options.queue_url, message["ReceiptHandle"], options.visibility_s
            )
            if self._stopping.is_set():
                lease.release()
                break
            delivery = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            self._handle(message["Body"], delivery, lease)
            idle_since = time.monotonic()
        self.say("stopped")
        return 0

    def _handle(self, body: str, delivery: int, lease: Lease) -> None:
        try:
            work = parse(body)
            run = self._fetch_run(work.run_id)
            if isinstance(work, Chunk):
                outcome = self._render(run, work, delivery)
            else:
                outcome = self._encode(run, work, delivery)
        except BadMessage as err:
            # Not released: it returns after its timeout and, unread by every worker,
            # ends in the dead-letter queue.
            self.say(f"refusing message {body[:200]!r}: {err}")
            lease.forget()
            return
        except Exception as err:  # S3/SQS trouble: let it come back later
            self.say(f"could not work on {body[:200]!r}: {type(err).__name__}: {err}")
            lease.release(_RETRY_AFTER_ERROR_S)
            return
        if lease.lost:
            self.say("note: a visibility extension failed; another worker may repeat this")
        if outcome is Outcome.DONE:
            lease.delete()
        else:
            lease.release()

    # runs --------------------------------------------------------------------------------

    def _fetch_run(self, run_id: str) -> RunCopy:
        """The run's inputs, fetched once per run: they never change (workloads.farm)."""
        key_prefix = run_folder(self.options.prefix, run_id)
        folder = self.options.workdir / "runs" / run_id
        if not (folder / _FETCHED).exists():
            folder.mkdir(parents=True, exist_ok=True)
            text = self._get(key_prefix + MANIFEST, folder / MANIFEST).read_text()
            manifest = parse_manifest(text, run_id)
            for name in manifest.inputs:
                self._get(key_prefix + name, folder / name)
            (folder / _FETCHED).touch()
            self.say(f"run {run_id}: fetched {', '.join(manifest.inputs)}")
        manifest = parse_manifest((folder / MANIFEST).read_text(), run_id)
        return RunCopy(key_prefix, folder, manifest)

    def _get(self, key: str, path: Path) -> Path:
        """Download to a temporary name, then rename: a copy is whole or absent."""
        from botocore.exceptions import ClientError  # type: ignore[import-untyped]

        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            self._s3.download_file(self.options.bucket, key, str(partial))
        except ClientError as err:
            if _error_code(err) in {"404", "NoSuchKey", "403", "AccessDenied"}:
                raise BadMessage(f"s3://{self.options.bucket}/{key} cannot be read") from None
            raise
        partial.replace(path)
        return path

    def _frames_in_s3(self, run: RunCopy) -> set[int]:
        prefix = run.key(run.manifest.frames_dir + "/")
        names = {run.manifest.frame_name(f): f for f in run.manifest.frames()}
        found = set()
        pages = self._s3.get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=self.options.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                frame = names.get(item["Key"][len(prefix) :])
                if frame is not None:
                    found.add(frame)
        return found

    def _put_file(self, path: Path, key: str) -> None:
        self._s3.upload_file(str(path), self.options.bucket, key)

    # chunks ------------------------------------------------------------------------------

    def _render(self, run: RunCopy, chunk: Chunk, delivery: int) -> Outcome:
        table = (run.folder / run.manifest.chunk_table).read_text()
        if table_line(table, chunk.chunk) != (chunk.chunk, chunk.first, chunk.last):
            raise BadMessage(
                f"run {chunk.run_id}: chunk {chunk.chunk} is not frames "
                f"{chunk.first}-{chunk.last} in its chunk table"
            )
        label = f"run {chunk.run_id} chunk {chunk.chunk} (frames {chunk.first}-{chunk.last})"
        in_s3 = self._frames_in_s3(run) & set(chunk.frames())
        for frame in sorted(in_s3):
            if not complete_png(run.frame_path(frame)):
                self._get(run.frame_key(frame), run.frame_path(frame))
        if in_s3:
            self.say(f"{label}: {len(in_s3)} frame(s) already in S3")
        self.say(f"{label} delivery {delivery}: rendering")
        uploaded = set(in_s3)

        def upload_new() -> None:
            for frame in chunk.frames():
                path = run.frame_path(frame)
                if frame not in uploaded and complete_png(path):
                    self._put_file(path, run.frame_key(frame))
                    uploaded.add(frame)

        log_name = run.manifest.chunk_log(chunk.chunk, delivery)
        env = {**os.environ, "HPCRUN_TASK_INDEX": str(chunk.chunk)}
        returncode = self._run_script(run, run.manifest.chunk_script, log_name, env, upload_new)
        upload_new()
        self._put_file(run.folder / log_name, run.key(log_name))
        if returncode is None:
            self.say(f"{label}: stopped; {len(uploaded)} frame(s) in S3, the rest goes back")
            return Outcome.STOPPED
        missing = [f for f in chunk.frames() if f not in uploaded]
        if returncode != 0 or missing:
            self.say(
                f"{label} FAILED (exit {returncode}, frames missing: "
                f"{' '.join(map(str, missing)) or 'none'}); log: {run.key(log_name)}"
            )
            return Outcome.FAILED
        self.say(f"{label}: done")
        self._maybe_claim_encode(run, chunk)
        return Outcome.DONE

    def _maybe_claim_encode(self, run: RunCopy, chunk: Chunk) -> None:
        """If every frame is in S3, claim the encode (one conditional PUT: exactly one
        worker creates the claim) and send the encode message. The claim names this
        chunk, so its next holder sends the message if this worker dies in between."""
        from botocore.exceptions import ClientError

        if run.manifest.video is None:
            return
        absent = set(run.manifest.frames()) - self._frames_in_s3(run)
        if absent:
            return
        claim_key = run.key(run.manifest.claim)
        claim = json.dumps({"chunk": chunk.chunk}).encode()
        try:
            self._s3.put_object(
                Bucket=self.options.bucket, Key=claim_key, Body=claim, IfNoneMatch="*"
            )
        except ClientError as err:
            if _error_code(err) not in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                raise
            held = self._s3.get_object(Bucket=self.options.bucket, Key=claim_key)["Body"].read()
            if json.loads(held).get("chunk") != chunk.chunk:
                return  # another chunk's worker claimed it
            self.say(f"run {chunk.run_id}: the encode claim is this chunk's: sending it again")
        self._sqs.send_message(
            QueueUrl=self.options.queue_url, MessageBody=encode_body(run.manifest.run_id)
        )
        self.say(f"run {chunk.run_id}: every frame is in S3: encode queued")

    # encode ------------------------------------------------------------------------------

    def _encode(self, run: RunCopy, work: Encode, delivery: int) -> Outcome:
        from botocore.exceptions import ClientError

        manifest = run.manifest
        if manifest.video is None or manifest.encode_script is None:
            raise BadMessage(f"run {work.run_id} has no video to encode")
        video_key = run.key(manifest.video)
        try:
            self._s3.head_object(Bucket=self.options.bucket, Key=video_key)
            self.say(f"run {work.run_id}: the video is in S3 already")
            return Outcome.DONE
        except ClientError as err:
            if _error_code(err) not in {"404", "NoSuchKey", "NotFound"}:
                raise
        absent = set(manifest.frames()) - self._frames_in_s3(run)
        if absent:
            self.say(f"run {work.run_id}: not encoding, frames missing: {sorted(absent)}")
            return Outcome.FAILED
        for frame in manifest.frames():
            if self._stopping.is_set():
                return Outcome.STOPPED
            if not complete_png(run.frame_path(frame)):
                self._get(run.frame_key(frame), run.frame_path(frame))
        self.say(f"run {work.run_id} delivery {delivery}: encoding {len(manifest.frames())} frames")
        log_name = manifest.encode_log(delivery)
        env = dict(os.environ)
        returncode = self._run_script(run, manifest.encode_script, log_name, env, lambda: None)
        self._put_file(run.folder / log_name, run.key(log_name))
        if returncode is None:
            return Outcome.STOPPED
        video = run.folder / manifest.video
        if returncode != 0 or not video.exists():
            self.say(
                f"run {work.run_id}: encode FAILED (exit {returncode}); log: {run.key(log_name)}"
            )
            return Outcome.FAILED
        self._put_file(video, video_key)
        self.say(f"run {work.run_id}: video in s3://{self.options.bucket}/{video_key}")
        return Outcome.DONE

    # scripts -----------------------------------------------------------------------------

    def _run_script(
        self,
        run: RunCopy,
        script: str,
        log_name: str,
        env: dict[str, str],
        on_tick: Callable[[], None],
    ) -> int | None:
        """Run `script` in the run's folder, its output in `log_name`, calling `on_tick`
        every poll; its exit status, or None when the worker was asked to stop (the
        script and everything it started are then ended)."""
        if self._stopping.is_set():
            return None
        log_path = run.folder / log_name
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log, self._child(script, run.folder, log, env) as child:
            while child.poll() is None:
                if self._stopping.wait(self.options.poll_s):
                    return None
                on_tick()
            return child.returncode

    @contextlib.contextmanager
    def _child(
        self, script: str, cwd: Path, log: IO[bytes], env: dict[str, str]
    ) -> Iterator[subprocess.Popen[bytes]]:
        # A session of its own, so stopping ends Blender too, not only its shell.
        child = subprocess.Popen(
            ["bash", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield child
        finally:
            if child.poll() is None:
                _end_group(child)


def _end_group(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=_STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError):  # Blender may outlive its shell
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _error_code(err: Any) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))
