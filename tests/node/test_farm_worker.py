"""The farm worker for real: worker processes (`python -m hpcrun.node.farm worker`), a
moto server's SQS and S3, real Blender and ffmpeg. A run's inputs and messages are made
by `hpcrun.workloads.farm` exactly as the user side will make them.

Blender runs behind a wrapper on PATH that records every frame it writes (a file the
test reads, since a killed Blender's buffered "Saved:" lines are lost) and can wait after
each frame or fail on a chosen one: the real renderer, with the timing a test needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hpcrun.node.zipapp import FARM_NAME, FARM_PACKAGE, build_zipapp
from hpcrun.workloads.blender import FrameRange, RenderPlan
from hpcrun.workloads.farm import (
    BLEND,
    ChunkMessage,
    FarmRun,
    chunk_messages,
    frames_present,
    redrive_policy,
    resume,
    run_chunks,
    run_files,
)
from tests.aws import MotoServer, client, moto_server

# Every test but the zipapp's: Blender, a moto server, and several seconds each.
FARM = [pytest.mark.blender, pytest.mark.aws, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "scripts" / "blender" / "make_rolling_ball.py"
FRAME_HOOK = """\
import os, time
import bpy

def written(*args):
    with open(os.environ["FAKE_RENDER_LOG"], "a") as out:
        out.write(f"{bpy.context.scene.frame_current}\\n")
    time.sleep(float(os.environ.get("FAKE_FRAME_DELAY_S", "0")))

bpy.app.handlers.render_write.append(written)
"""
# The chunk script ends Blender's command line with -a (render): the hook goes before it.
WRAPPER = """\
#!/bin/bash
args=("$@")
for ((i = 0; i < ${{#args[@]}}; i++)); do
  case "${{args[i]}}" in -s) s=${{args[i+1]}} ;; -e) e=${{args[i+1]}} ;; esac
done
fail=${{FAKE_FAIL_FRAME:-}}
if [ -n "$fail" ] && [ -n "${{s:-}}" ] && [ "$s" -le "$fail" ] && [ "$fail" -le "$e" ]; then
  echo "GPU fell off rendering frame $fail" >&2
  exit 3
fi
last=${{args[-1]}}
unset 'args[-1]'
exec {blender} "${{args[@]}}" --python {hook} "$last"
"""


def farm_test(test: Callable[..., None]) -> Callable[..., None]:
    for mark in FARM:
        test = mark(test)
    return test


def require_blender() -> None:
    missing = [p for p in ("blender", "ffmpeg", "ffprobe") if shutil.which(p) is None]
    if missing:
        message = f"not installed: {', '.join(missing)} (apt-get install blender ffmpeg)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with moto_server(tmp_path_factory.mktemp("moto")) as running:
        yield running


@pytest.fixture(scope="module")
def blend(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_blender()
    out = tmp_path_factory.mktemp("blend") / "rolling_ball.blend"
    subprocess.run(
        [
            *("blender", "-b", "--factory-startup", "--python-exit-code", "1"),
            *("--python", str(GENERATOR), "--", str(out), "--frames", "12"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out


@pytest.fixture(scope="module")
def fake_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_blender()
    folder = tmp_path_factory.mktemp("bin")
    hook = folder / "frame_hook.py"
    hook.write_text(FRAME_HOOK)
    wrapper = folder / "blender"
    wrapper.write_text(WRAPPER.format(blender=shutil.which("blender"), hook=hook))
    wrapper.chmod(0o755)
    return folder


def plan(frames: FrameRange, chunk: int, **changes: Any) -> RenderPlan:
    return RenderPlan(
        blend="rolling_ball.blend",
        name="rolling_ball",
        frames=frames,
        run_dir="",
        frames_dir="",
        chunk=chunk,
        engine="BLENDER_WORKBENCH",
        resolution=(64, 36),
        **changes,
    )


@dataclass
class Farm:
    """One queue (with its dead-letter queue), one bucket, one run."""

    server: MotoServer
    run: FarmRun
    queue_url: str
    dead_letters_url: str
    visibility_s: int
    sqs: Any = field(repr=False)
    s3: Any = field(repr=False)

    @property
    def bucket(self) -> str:
        return self.run.bucket

    def publish(self, blend: Path, render: RenderPlan) -> None:
        """What the user side does: the .blend and run files up, then every chunk."""
        self.s3.upload_file(str(blend), self.bucket, self.run.key(BLEND))
        for key, data in run_files(self.run, render).items():
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        self.send([m.body() for m in chunk_messages(self.run.run_id, run_chunks(render))])

    def send(self, bodies: list[str]) -> None:
        for body in bodies:
            self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)

    def listing(self, under: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2")
        prefix = self.run.folder + under
        found = []
        for page in pages.paginate(Bucket=self.bucket, Prefix=prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return sorted(found)

    def frames(self) -> set[int]:
        return frames_present(self.run, self.listing("frames/"))

    def text(self, key: str) -> str:
        return str(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode())

    def dead_letters(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.dead_letters_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])


def make_farm(server: MotoServer, name: str, *, visibility_s: int, max_receives: int = 3) -> Farm:
    sqs, s3 = client(server, "sqs"), client(server, "s3")
    s3.create_bucket(Bucket=name)
    dead_url = sqs.create_queue(QueueName=f"{name}-dead")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": str(visibility_s),
            "RedrivePolicy": redrive_policy(dead_arn, max_receives),
        },
    )["QueueUrl"]
    run = FarmRun(name, "farm/tests", f"{name}-1")
    return Farm(server, run, queue_url, dead_url, visibility_s, sqs, s3)


def descendants(pid: int) -> list[int]:
    """`pid`'s children, theirs, and so on (from /proc), whatever session they are in."""
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    workdir: Path
    out: Path
    ended: bool = False  # by the test: its exit is no failure

    def said(self) -> str:
        return self.out.read_text()

    def kill_tree(self) -> None:
        """What a pod's death does: the worker and everything it started, at once."""
        self.ended = True
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


class Workers:
    def __init__(self, tmp_path: Path, fake_bin: Path) -> None:
        self._tmp, self._bin = tmp_path, fake_bin
        self.started: list[Worker] = []
        self.render_log = tmp_path / "frames-written.txt"

    def start(self, farm: Farm, name: str, **env: str) -> Worker:
        workdir = self._tmp / f"worker-{name}"
        out = self._tmp / f"worker-{name}.out"
        environ = farm.server.env()
        environ.update(
            PATH=f"{self._bin}:{environ['PATH']}",
            FAKE_RENDER_LOG=str(self.render_log),
            PYTHONUNBUFFERED="1",
            **env,
        )
        argv = [sys.executable, "-m", "hpcrun.node.farm", "worker", "--queue", farm.queue_url]
        argv += ["--bucket", farm.bucket, "--prefix", farm.run.prefix, "--workdir", str(workdir)]
        argv += ["--visibility-s", str(farm.visibility_s), "--wait-s", "1"]
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                argv,
                env=environ,
                cwd=self._tmp,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(proc, workdir, out)
        self.started.append(worker)
        return worker

    def stop(self, worker: Worker, timeout_s: float = 20) -> int:
        """SIGTERM, as Kubernetes stops a pod; the worker must exit by itself."""
        worker.ended = True
        worker.proc.send_signal(signal.SIGTERM)
        return worker.proc.wait(timeout=timeout_s)

    def written(self) -> Counter[int]:
        """How often Blender wrote each frame, over every worker."""
        if not self.render_log.exists():
            return Counter()
        return Counter(int(line) for line in self.render_log.read_text().split())

    def close(self) -> None:
        for worker in self.started:
            if worker.proc.poll() is None:
                worker.kill_tree()


@pytest.fixture
def workers(tmp_path: Path, fake_bin: Path) -> Iterator[Workers]:
    started = Workers(tmp_path, fake_bin)
    try:
        yield started
    finally:
        started.close()


def wait_for(
    what: str, check: Callable[[], bool], workers: Workers, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        exited = [w for w in workers.started if not w.ended and w.proc.poll() is not None]
        if time.monotonic() > deadline or exited:
            said = "\n".join(f"--- {w.out.name}\n{w.said()}" for w in workers.started)
            pytest.fail(f"{what}: not in {timeout_s:.0f} s (exited: {len(exited)})\n{said}")
        time.sleep(0.1)


def video_frames(farm: Farm, tmp_path: Path) -> int:
    video = tmp_path / "video.mp4"
    farm.s3.download_file(farm.bucket, farm.run.video_key, str(video))
    probe = subprocess.run(
        [
            *("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"),
            *("-show_entries", "stream=nb_read_frames,width,height", "-of", "json", str(video)),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["width"], stream["height"]) == (64, 36)
    return int(stream["nb_read_frames"])


@farm_test
def test_two_workers_render_a_run_to_frames_and_one_video_then_a_resume_fills_holes(
    server: MotoServer, blend: Path, workers: Workers, tmp_path: Path
) -> None:
    farm = make_farm(server, "farm-two", visibility_s=30)
    render = plan(FrameRange(1, 12), 3)
    farm.publish(blend, render)
    pair = [workers.start(farm, "a"), workers.start(farm, "b")]
    wait_for("the video", lambda: farm.run.video_key in farm.listing(), workers)

    assert farm.frames() == set(range(1, 13))
    assert video_frames(farm, tmp_path) == 12
    assert workers.written() == Counter(range(1, 13))  # every frame rendered once
    said = [w.said() for w in pair]
    assert all(": rendering" in text for text in said), said  # both workers took chunks
    logs = farm.listing("logs/")
    assert [farm.run.chunk_log_key(c, 1) for c in range(4)] == [k for k in logs if "chunk-" in k]
    assert logs[-1] == farm.run.encode_log_key(1)
    assert sum(text.count("encode queued") for text in said) == 1
    assert json.loads(farm.text(farm.run.claim_key))["chunk"] in range(4)
    assert [workers.stop(w) for w in pair] == [0, 0]

    # Two frames go missing: a resume sends their chunks only, and a worker that has
    # nothing of the run fetches the chunks' other frames rather than rendering them.
    farm.s3.delete_objects(
        Bucket=farm.bucket,
        Delete={"Objects": [{"Key": farm.run.frame_key(f)} for f in (5, 8)]},
    )
    todo = resume(farm.run, render, farm.frames(), video_present=True)
    assert todo.messages == [
        ChunkMessage(farm.run.run_id, 1, 4, 6),
        ChunkMessage(farm.run.run_id, 2, 7, 9),
    ]
    farm.s3.delete_objects(
        Bucket=farm.bucket, Delete={"Objects": [{"Key": k} for k in todo.remove]}
    )
    farm.send([m.body() for m in todo.messages])
    workers.render_log.unlink()
    late = workers.start(farm, "late")
    wait_for("the video again", lambda: farm.run.video_key in farm.listing(), workers)
    assert workers.written() == Counter([5, 8])
    assert farm.frames() == set(range(1, 13))
    assert video_frames(farm, tmp_path) == 12

    # A worker that claimed the encode and died before sending it: its chunk message
    # comes back, and whoever holds it now sees the claim is that chunk's and sends it.
    farm.s3.delete_objects(
        Bucket=farm.bucket,
        Delete={"Objects": [{"Key": k} for k in (farm.run.video_key, farm.run.frame_key(12))]},
    )
    farm.s3.put_object(Bucket=farm.bucket, Key=farm.run.claim_key, Body=b'{"chunk": 3}')
    farm.send([ChunkMessage(farm.run.run_id, 3, 10, 12).body()])
    wait_for("the video a third time", lambda: farm.run.video_key in farm.listing(), workers)
    assert "the encode claim is this chunk's: sending it again" in late.said()
    # Its copy of frame 12 (fetched for the encode) is whole: it goes up, unrendered.
    assert workers.written() == Counter([5, 8])
    assert farm.frames() == set(range(1, 13))
    assert workers.stop(late) == 0


@farm_test
def test_a_worker_killed_mid_chunk_loses_only_the_frame_in_flight(
    server: MotoServer, blend: Path, workers: Workers, tmp_path: Path
) -> None:
    farm = make_farm(server, "farm-kill", visibility_s=3)
    farm.publish(blend, plan(FrameRange(1, 8), 4))
    doomed = workers.start(farm, "doomed", FAKE_FRAME_DELAY_S="0.7")
    other = workers.start(farm, "other", FAKE_FRAME_DELAY_S="0.7")

    def doomed_chunk() -> range | None:
        for line in doomed.said().splitlines():
            if "delivery 1: rendering" in line:
                first, last = line.split("(frames ")[1].split(")")[0].split("-")
                return range(int(first), int(last) + 1)
        return None

    wait_for("the doomed worker's chunk", lambda: doomed_chunk() is not None, workers)
    chunk = doomed_chunk()
    assert chunk is not None
    wait_for("a frame of it in S3", lambda: bool(farm.frames() & set(chunk)), workers)
    doomed.kill_tree()
    before = farm.frames() & set(chunk)
    assert before != set(chunk), "the chunk finished before the kill"

    wait_for("the video", lambda: farm.run.video_key in farm.listing(), workers)
    assert farm.frames() == set(range(1, 9))
    assert video_frames(farm, tmp_path) == 8
    written = workers.written()
    assert set(written) == set(range(1, 9))
    # Outside the killed chunk nothing was rendered twice; inside it at most the frame
    # Blender was writing when the worker died.
    assert all(written[f] == 1 for f in range(1, 9) if f not in chunk), written
    assert sum(written[f] - 1 for f in chunk) <= 1, written
    index = (chunk.start - 1) // 4
    again = other.said()
    assert f"chunk {index} (frames {chunk.start}-{chunk.stop - 1}) delivery 2: rendering" in again
    assert f"{len(before)} frame(s) already in S3" in again
    assert farm.run.chunk_log_key(index, 2) in farm.listing("logs/")
    assert workers.stop(other) == 0


@farm_test
def test_a_sigterm_mid_chunk_stops_blender_and_hands_the_chunk_back_at_once(
    server: MotoServer, blend: Path, workers: Workers
) -> None:
    farm = make_farm(server, "farm-term", visibility_s=60)
    farm.publish(blend, plan(FrameRange(1, 4), 4))
    worker = workers.start(farm, "a", FAKE_FRAME_DELAY_S="1")
    wait_for("a frame in S3", lambda: bool(farm.frames()), workers)
    rendering = descendants(worker.proc.pid)
    assert rendering, "no render running"
    assert workers.stop(worker, timeout_s=15) == 0
    assert not [pid for pid in rendering if alive(pid)]
    assert farm.frames() and farm.frames() != {1, 2, 3, 4}
    # Visible again at once, though its visibility timeout is a minute.
    got = farm.sqs.receive_message(
        QueueUrl=farm.queue_url, WaitTimeSeconds=2, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert [json.loads(m["Body"])["chunk"] for m in got] == [0]
    assert farm.run.chunk_log_key(0, 1) in farm.listing("logs/")


@farm_test
def test_a_chunk_failing_on_every_delivery_goes_to_the_dead_letter_queue_with_its_logs(
    server: MotoServer, blend: Path, workers: Workers
) -> None:
    farm = make_farm(server, "farm-dead", visibility_s=30, max_receives=2)
    farm.publish(blend, plan(FrameRange(1, 6), 3, retries=0))
    worker = workers.start(farm, "a", FAKE_FAIL_FRAME="5")
    wait_for("a dead letter", lambda: farm.dead_letters() == 1, workers)
    assert workers.stop(worker) == 0

    dead = farm.sqs.receive_message(QueueUrl=farm.dead_letters_url, WaitTimeSeconds=1)
    assert [m["Body"] for m in dead["Messages"]] == [ChunkMessage(farm.run.run_id, 1, 4, 6).body()]
    for delivery in (1, 2):
        log = farm.text(farm.run.chunk_log_key(1, delivery))
        assert "GPU fell off rendering frame 5" in log
        assert "FAILED after 1 attempts; frames missing: 4 5 6" in log
    assert farm.run.chunk_log_key(1, 3) not in farm.listing("logs/")
    assert farm.frames() == {1, 2, 3}
    assert farm.run.claim_key not in farm.listing() and farm.run.video_key not in farm.listing()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--wait-s", "30"], "--wait-s 30: SQS long-polls 0 to 20 s"),
        (["--visibility-s", "0"], "--visibility-s 0: 1 s to 12 h"),
    ],
)
def test_the_worker_runs_as_a_zipapp_without_hpcrun_and_refuses_bad_flags(
    tmp_path: Path, args: list[str], message: str
) -> None:
    pyz = tmp_path / "farm.pyz"
    pyz.write_bytes(build_zipapp(FARM_PACKAGE, name=FARM_NAME))
    argv = [sys.executable, "-X", "importtime", str(pyz), "worker", "--queue", "q"]
    done = subprocess.run(
        [*argv, "--bucket", "b", "--workdir", str(tmp_path / "w"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert message in done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "hpcrun_farm.worker" in imported  # the listing was read
    assert not {m for m in imported if m == "hpcrun" or m.startswith("hpcrun.")}
