"""farm_throughput: frames/s of 2 queue-fed farm workers vs the Slurm path, same chunks.

The same 16 frames of the seed farm's rolling ball, Cycles at 4 samples and 160x90, in
chunks of 4, no video. The farm: 2 `python -m hpcrun.node.farm worker` processes
(already polling, as a Deployment's pods are) fed by a moto server's SQS and S3; timed
from the first upload of the run (the .blend, its scripts, its messages, as the user side
sends them) to the last frame in S3. The yardstick: `hpcrun render --max-parallel 2` on a
2-node local Slurm cluster, the whole command (submit, array, wait). Each repeat is a new
run (a new run id, a new output directory); contenders are taken in turn after one
warm-up each, median of `--repeats` (default 2).

The ratio is wall(farm) / wall(Slurm): the goal "farm >= 0.9x the Slurm path's frames/s"
is a ratio <= 1.111.

Goal: wall(farm) / wall(slurm) <= 1.111.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

from _common import ROOT, bench_cluster, hpcrun_exe, interleaved, log, parse_args, report, run_main
from _render import rolling_ball

from hpcrun.workloads.blender import FrameRange, RenderPlan
from hpcrun.workloads.farm import (
    BLEND,
    FarmRun,
    chunk_messages,
    frames_present,
    run_chunks,
    run_files,
)

FRAMES = 16
CHUNK = 4
WORKERS = 2
GOAL_RATIO = 1 / 0.9
REGION = "us-east-1"


@contextmanager
def moto(work: Path) -> Iterator[dict[str, str]]:
    """A moto server on loopback; yields the environment that reaches it (and only it)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_file = (work / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HPCRUN_"))}
        env.update(
            AWS_ENDPOINT_URL=url,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
        )
        yield env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        log_file.close()


def clients(env: dict[str, str]) -> tuple[Any, Any]:
    import boto3  # type: ignore[import-untyped]

    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )
    url = env["AWS_ENDPOINT_URL"]
    return session.client("sqs", endpoint_url=url), session.client("s3", endpoint_url=url)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 2
    failures: list[str] = []
    plan = RenderPlan(
        blend="rolling_ball.blend",
        name="rolling_ball",
        frames=FrameRange(1, FRAMES),
        run_dir="",
        frames_dir="",
        chunk=CHUNK,
        engine="CYCLES",
        samples=4,
        resolution=(160, 90),
        encode="none",
    )
    with (
        tempfile.TemporaryDirectory(prefix="hrbf") as tmp,
        moto(Path(tmp)) as aws_env,
        bench_cluster(nodes=WORKERS) as cluster,
    ):
        work = Path(tmp)
        blend = rolling_ball(work / "rolling_ball.blend", FRAMES)
        sqs, s3 = clients(aws_env)
        s3.create_bucket(Bucket="farm")
        queue = sqs.create_queue(QueueName="farm")["QueueUrl"]
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hpcrun.node.farm",
                    "worker",
                    "--queue",
                    queue,
                    "--bucket",
                    "farm",
                    "--prefix",
                    "bench",
                    "--workdir",
                    str(work / f"w{i}"),
                    "--visibility-s",
                    "120",
                    "--wait-s",
                    "1",
                ],
                env=aws_env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for i in range(WORKERS)
        ]
        runs = count()

        def farm() -> None:
            run = FarmRun("farm", "bench", f"run-{next(runs)}")
            s3.upload_file(str(blend), "farm", run.key(BLEND))
            for key, data in run_files(run, plan).items():
                s3.put_object(Bucket="farm", Key=key, Body=data)
            for message in chunk_messages(run.run_id, run_chunks(plan)):
                sqs.send_message(QueueUrl=queue, MessageBody=message.body())
            deadline = time.monotonic() + 600
            while True:
                listed = s3.list_objects_v2(Bucket="farm", Prefix=run.frames_prefix)
                keys = [o["Key"] for o in listed.get("Contents", [])]
                if len(frames_present(run, keys)) == FRAMES:
                    return
                if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    failures.append(f"farm {run.run_id}: frames missing")
                    return
                time.sleep(0.05)

        def slurm() -> None:
            out = work / f"slurm-{next(runs)}"
            done = subprocess.run(
                [
                    hpcrun_exe(),
                    "render",
                    str(blend),
                    "--frames",
                    f"1-{FRAMES}",
                    "--chunk",
                    str(CHUNK),
                    "--max-parallel",
                    str(WORKERS),
                    "--engine",
                    "CYCLES",
                    "--samples",
                    "4",
                    "--resolution",
                    "160x90",
                    "--encode",
                    "none",
                    "--output",
                    str(out),
                    "--json",
                ],
                env=cluster.env,
                capture_output=True,
                text=True,
                cwd=work,
            )
            status = json.loads(done.stdout).get("status") if done.stdout else None
            if done.returncode != 0 or status != "done":
                failures.append(f"slurm: exit {done.returncode} {done.stderr[-300:]}")

        contenders: dict[str, Callable[[], None]] = {"farm": farm, "slurm": slurm}
        log(
            f"rendering {FRAMES} frames in chunks of {CHUNK} on {WORKERS} workers / nodes: "
            f"{repeats} run(s) each after a warm-up"
        )
        try:
            timings = interleaved(contenders, repeats, warmup=1)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(worker.pid, signal.SIGKILL)
                    worker.wait()
    extra: dict[str, object] = {
        "farm wall": timings["farm"],
        "slurm wall": timings["slurm"],
        "farm frames/s": f"{FRAMES / timings['farm'].median:.2f}",
        "slurm frames/s": f"{FRAMES / timings['slurm'].median:.2f}",
        "frames": f"{FRAMES} at 160x90, Cycles 4 samples, chunks of {CHUNK}",
        "failed runs": "; ".join(failures) if failures else "none",
    }
    report(
        "farm_throughput",
        timings["farm"].median,
        timings["slurm"].median,
        GOAL_RATIO,
        extra,
        as_json=args.json,
        strict=args.strict,
        hpcrun_label=f"{WORKERS} farm workers, SQS + S3 (median wall)",
        yardstick_label=f"hpcrun render on {WORKERS} Slurm nodes (median wall)",
    )


if __name__ == "__main__":
    run_main(main)
