"""A real moto server on loopback: the edge of the world for AWS APIs in tests.

Started as its own process (`moto_server -H 127.0.0.1 -p PORT`), reached through the
normal boto3 / pcluster credential chain pointed at it with AWS_ENDPOINT_URL and dummy
keys, and stopped by PID. Nothing talks to real AWS: the environment it hands out has no
other credentials and no instance metadata.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

REGION = "us-east-1"


@dataclass(frozen=True)
class MotoServer:
    url: str
    pid: int

    def env(self) -> dict[str, str]:
        """Environment for a process that must reach this server and nothing else."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            AWS_ENDPOINT_URL=self.url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env


@contextmanager
def moto_server(log_dir: Path) -> Iterator[MotoServer]:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    log = (log_dir / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
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
                    raise RuntimeError(
                        f"moto_server did not start: {(log_dir / 'moto.log').read_text()[-500:]}"
                    ) from None
                time.sleep(0.05)
        yield MotoServer(url, proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
