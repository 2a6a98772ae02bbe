"""What the Kubernetes benchmarks share: the test control plane and hpcrun attached to it.

`control_plane()` starts the control plane the k8s tests use (scripts/k8s/up.sh: etcd,
kube-apiserver, controller manager and scheduler as local processes, kwok faking GPU
nodes, no containers) in a fresh working directory under /tmp and always deletes it
(scripts/k8s/down.sh), on success, on error, on Ctrl-C and on SIGTERM. `attach()`
records it as a `backend: kubernetes` cluster named `kube` in a fresh HPCRUN_HOME, as
tests/k8s/test_index_cli.py does. Without the binaries the scripts say how to build them
(`make k8s-binaries`) and exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import ROOT, _raise_on_sigterm, hpcrun_exe, log, run_quiet

SCRIPTS = ROOT / "scripts" / "k8s"
PLANE_NAME = "hpcrun-bench"
CLUSTER = "kube"  # the name of the attached cluster in HPCRUN_HOME
IMAGE = "nvcr.io/nvidia/nvindex:test"


def add_runs(parser: argparse.ArgumentParser) -> None:
    """`--runs N`, the same as `--repeats N`."""
    parser.add_argument("--runs", dest="repeats", type=int,
                        help="timed runs of each side (default 5)")


def k8s_bin() -> Path:
    """Where scripts/k8s/build.sh puts the binaries (~/.cache/hpcrun/k8s-VERSION/bin)."""
    done = subprocess.run(
        ["bash", "-c", f"source {SCRIPTS / 'env.sh'}; echo $K8S_BIN"],
        capture_output=True, text=True, check=True,
    )
    return Path(done.stdout.strip())


def require_binaries(figure: str, names: Sequence[str]) -> Path:
    """The binaries directory; without every one of `names` there, say how to build
    them and exit 0 (a figure that cannot be had is not a failure of `make bench`)."""
    where = k8s_bin()
    missing = [n for n in names if not (where / n).exists()]
    if missing:
        print(f"== {figure} ==")
        print(f"  skipped: {', '.join(missing)} missing from {where}: build them with "
              "`make k8s-binaries` (scripts/k8s/build.sh, Go modules, cached)")
        print(f"RATIO {figure} n/a goal <= 1 SKIP")
        sys.exit(0)
    return where


@dataclass(frozen=True)
class ControlPlane:
    kubeconfig: Path
    bin: Path
    workdir: Path
    env: dict[str, str]  # for kubectl and helm: KUBECONFIG, their caches under workdir

    def tool(self, name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return run_quiet([str(self.bin / name), *args], self.env, timeout=timeout)

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.tool("kubectl", "--kubeconfig", str(self.kubeconfig), *args)


@contextlib.contextmanager
def control_plane(nodes: int = 6) -> Iterator[ControlPlane]:
    """scripts/k8s/up.sh in a fresh working directory; always scripts/k8s/down.sh."""
    binaries = k8s_bin()
    workdir = Path(tempfile.mkdtemp(prefix="hrk", dir="/tmp"))
    env = {**os.environ, "HPCRUN_KWOK_WORKDIR": str(workdir), "HPCRUN_K8S_NODES": str(nodes)}
    previous_term = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        log(f"starting the Kubernetes control plane ({nodes} kwok GPU nodes) in {workdir}")
        started = time.perf_counter()
        up = subprocess.run(["bash", str(SCRIPTS / "up.sh"), PLANE_NAME], env=env,
                            capture_output=True, text=True, timeout=300)
        if up.returncode != 0:
            raise RuntimeError(f"scripts/k8s/up.sh exited {up.returncode}:\n{up.stderr[-3000:]}")
        kubeconfig = Path(up.stdout.strip().splitlines()[-1])
        log(f"control plane up in {time.perf_counter() - started:.1f} s")
        tool_env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "KUBECACHEDIR": str(workdir / "kube-cache"),
            "HELM_CACHE_HOME": str(workdir / "helm" / "cache"),
            "HELM_CONFIG_HOME": str(workdir / "helm" / "config"),
            "HELM_DATA_HOME": str(workdir / "helm" / "data"),
        }
        yield ControlPlane(kubeconfig, binaries, workdir, tool_env)
    finally:
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            log("deleting the control plane")
            down = subprocess.run(["bash", str(SCRIPTS / "down.sh"), PLANE_NAME], env=env,
                                  capture_output=True, text=True, timeout=150)
            if down.returncode != 0:
                log(f"scripts/k8s/down.sh exited {down.returncode}: {down.stderr.strip()[-500:]}")
            shutil.rmtree(workdir, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)


@dataclass(frozen=True)
class Attached:
    """hpcrun with the control plane recorded as cluster `kube` in its own HPCRUN_HOME."""

    home: Path
    env: dict[str, str]
    namespace: str

    def hpcrun(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [hpcrun_exe(), *args, "--cluster", CLUSTER]
        if check:
            return run_quiet(argv, self.env, stdin=subprocess.DEVNULL, timeout=300)
        return subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=300)


@contextlib.contextmanager
def attach(plane: ControlPlane, namespace: str) -> Iterator[Attached]:
    """Make `namespace`, write the cluster file, `hpcrun create --config` it; at the end
    `hpcrun down --purge` and remove the home."""
    made = subprocess.run(
        [str(plane.bin / "kubectl"), "--kubeconfig", str(plane.kubeconfig),
         "create", "namespace", namespace],
        env=plane.env, capture_output=True, text=True,
    )
    if made.returncode != 0 and "AlreadyExists" not in made.stderr:
        raise RuntimeError(f"kubectl create namespace {namespace}: {made.stderr}")
    home = Path(tempfile.mkdtemp(prefix="hrh", dir="/tmp"))
    env = {**os.environ, "HPCRUN_HOME": str(home)}
    for name in ("HPCRUN_CLUSTER", "SLURM_CONF", "KUBECONFIG"):
        env.pop(name, None)
    cluster_file = home / "kube.yaml"
    cluster_file.write_text("\n".join([
        "backend: kubernetes",
        f"name: {CLUSTER}",
        f"kubeconfig: {plane.kubeconfig}",
        f"namespace: {namespace}",
        "index:",
        f"  image: {IMAGE}",
        "  pull_secret: null",
    ]) + "\n")
    try:
        run_quiet([hpcrun_exe(), "create", "--config", str(cluster_file)], env,
                  stdin=subprocess.DEVNULL, timeout=120)
        yield Attached(home, env, namespace)
    finally:
        subprocess.run([hpcrun_exe(), "down", "--cluster", CLUSTER, "--yes", "--purge"],
                       env=env, capture_output=True, text=True, timeout=150,
                       stdin=subprocess.DEVNULL)
        shutil.rmtree(home, ignore_errors=True)


# the objects -------------------------------------------------------------------------------


def session_objects(name: str, namespace: str, *, nodes: int = 4,
                    gpus_per_node: int = 2) -> list[dict[str, Any]]:
    """What `hpcrun index --nodes NODES --scene supernova` applies (no Ingress, no auth:
    the cluster file has no `ingress:`), for release `name`."""
    from hpcrun.k8s.index import scene_files
    from hpcrun.k8s.manifests import IndexRelease, index_objects
    from hpcrun.scenes.catalog import resolve_scene

    release = IndexRelease(
        name=name, namespace=namespace, session=name, nodes=nodes,
        gpus_per_node=gpus_per_node, image=IMAGE,
        scene_files=scene_files(str(resolve_scene("supernova"))),
    )
    return index_objects(release)


def yaml_documents(objects: Sequence[Mapping[str, Any]]) -> str:
    """One multi-document YAML text (JSON is YAML: no PyYAML formatting questions)."""
    return "".join(f"---\n{json.dumps(obj, indent=1)}\n" for obj in objects)
