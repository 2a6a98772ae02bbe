"""The real Kubernetes control plane the tests use (etcd, kube-apiserver, controller
manager, scheduler built from Go modules by scripts/k8s/build.sh; kwok fakes the nodes
and runs no container; metrics-server serves metrics.k8s.io from the pods' kwok usage
annotations), started once per session in its own working directory and deleted at the
end. Without the binaries the tests skip, except in CI, where they fail."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import short_tempdir

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "k8s"


def _binaries_dir() -> Path:
    out = subprocess.run(
        ["bash", "-c", f"source {SCRIPTS / 'env.sh'}; echo $K8S_BIN"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


@dataclass(frozen=True)
class ControlPlane:
    kubeconfig: Path
    name: str
    bin: Path

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    binaries = _binaries_dir()
    if not all((binaries / b).exists() for b in ("kube-apiserver", "kwokctl", "metrics-server")):
        message = f"no Kubernetes binaries in {binaries}: run `make k8s-binaries`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    workdir = short_tempdir("hk8s")
    env = {**os.environ, "HPCRUN_KWOK_WORKDIR": str(workdir), "HPCRUN_K8S_NODES": "6"}
    name = "hpcrun-test"
    try:
        up = subprocess.run(
            ["bash", str(SCRIPTS / "up.sh"), name],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert up.returncode == 0, up.stderr[-3000:]
        kubeconfig = Path(up.stdout.strip().splitlines()[-1])
        yield ControlPlane(kubeconfig, name, binaries)
    finally:
        subprocess.run(
            ["bash", str(SCRIPTS / "down.sh"), name],
            env=env, capture_output=True, text=True, timeout=120,
        )
        shutil.rmtree(workdir, ignore_errors=True)
