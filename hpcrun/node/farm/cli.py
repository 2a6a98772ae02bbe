"""`python -m hpcrun.node.farm worker --queue URL --bucket B --prefix P [...]`.

AWS is reached through boto3's own configuration chain (the pod's role, or
AWS_ENDPOINT_URL and keys in tests with a moto server); nothing of it is printed. One
worker per work directory (a lock says so): two workers sharing one would each delete
the other's half-written frames as incomplete.
"""

from __future__ import annotations

import argparse
import fcntl
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

from .worker import Options, Worker

_SQS_MAX_WAIT_S = 20  # SQS refuses a longer long poll
_SQS_MAX_VISIBILITY_S = 12 * 3600


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hpcrun.node.farm")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="render chunks from an SQS queue into S3")
    worker.add_argument("--queue", required=True, help="the SQS queue URL")
    worker.add_argument("--bucket", required=True, help="the S3 bucket of the runs")
    worker.add_argument("--prefix", default="", help="key prefix of the runs (runs/ below it)")
    worker.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "hpcrun-farm",
        help="where runs are copied and rendered (one worker per directory)",
    )
    worker.add_argument(
        "--visibility-s",
        type=int,
        default=1200,
        help="how long a message stays hidden between heartbeats (a dead worker's "
        "chunk returns after at most this)",
    )
    worker.add_argument("--wait-s", type=int, default=20, help="SQS long poll (0-20 s)")
    worker.add_argument(
        "--idle-exit-s", type=float, default=None, help="exit after this long without work"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not 0 <= args.wait_s <= _SQS_MAX_WAIT_S:
        print(f"--wait-s {args.wait_s}: SQS long-polls 0 to 20 s", file=sys.stderr)
        return 2
    if not 1 <= args.visibility_s <= _SQS_MAX_VISIBILITY_S:
        print(f"--visibility-s {args.visibility_s}: 1 s to 12 h", file=sys.stderr)
        return 2
    prefix = str(args.prefix).strip("/")
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    lock = (workdir / ".worker.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(
            f"another farm worker uses {workdir}: give this one its own --workdir", file=sys.stderr
        )
        return 2

    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    # Standard retries ride out SQS/S3 throttling; the read timeout must outlast a long poll.
    config = Config(retries={"mode": "standard", "max_attempts": 5}, read_timeout=60)
    session = boto3.session.Session()
    worker = Worker(
        Options(
            queue_url=args.queue,
            bucket=args.bucket,
            prefix=prefix,
            workdir=workdir,
            visibility_s=args.visibility_s,
            wait_s=args.wait_s,
            idle_exit_s=args.idle_exit_s,
        ),
        sqs=session.client("sqs", config=config),
        s3=session.client("s3", config=config),
        out=sys.stdout,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return worker.run()
    finally:
        lock.close()
