"""Who a launcher is when it runs in a Kubernetes pod rather than as an srun task.

Under Slurm, rank, job and node come from SLURM_PROCID, SLURM_JOB_ID and SLURMD_NODENAME,
and agents find their viewer through a rendezvous file on storage every node sees. Pods
share no storage, so the objects hpcrun applies (`hpcrun.k8s.manifests`, renderer open)
say it all in the pod's environment instead: its role (the viewer StatefulSet's pod, or
a worker), the release (the "job"), the node (downward API `spec.nodeName`), and where
the viewer's agent port is (its headless Service, a fixed port) with the token agents
prove themselves with (a Secret of the release, the same in every pod). The viewer
listens on that port with that token; agents take the rendezvous from here instead of
the file. Nothing else of the launcher changes.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping

ROLE = "HPCRUN_POD_ROLE"  # viewer | worker
RELEASE = "HPCRUN_RELEASE"
NODE = "HPCRUN_NODE_NAME"
POD = "HPCRUN_POD_NAME"
VIEWER_HOST = "HPCRUN_VIEWER_HOST"
AGENT_PORT = "HPCRUN_VIEWER_AGENT_PORT"
TOKEN = "HPCRUN_VIEWER_TOKEN"


def in_pod(env: Mapping[str, str] | None = None) -> bool:
    return bool((os.environ if env is None else env).get(ROLE))


def rank(env: Mapping[str, str]) -> int:
    """0 for the viewer; a worker's rank is stable for its pod (names are unique), as a
    Slurm rank is for a task, and never 0."""
    if env.get(ROLE) == "viewer":
        return 0
    return 1 + zlib.crc32(env.get(POD, "").encode()) % 1_000_000


def agent_port(env: Mapping[str, str] | None = None) -> int:
    """The viewer's agent port: fixed in a pod (the Service names it), any elsewhere."""
    value = (os.environ if env is None else env).get(AGENT_PORT, "")
    return int(value) if value.isdigit() else 0


def token(env: Mapping[str, str] | None = None) -> str | None:
    """The release's agent token in a pod (from its Secret); None: the viewer makes one."""
    return (os.environ if env is None else env).get(TOKEN) or None
