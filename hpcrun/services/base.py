"""What every service holds: one cluster's state, backend, Slurm client and site.

The Slurm client and the site (where hpcrun's files live on the cluster) are asked of the
backend once, on first use: on a remote cluster each costs an SSH connection or a round
trip, and a command such as `render status` may need neither.
"""

from __future__ import annotations

import posixpath

from hpcrun.backends.base import Backend, ClusterSite, NullProgress, Progress
from hpcrun.errors import HpcrunError, UsageError
from hpcrun.slurm.client import SlurmClient
from hpcrun.state import StateStore


class ClusterService:
    def __init__(
        self,
        store: StateStore,
        cluster: str,
        backend: Backend,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.cluster = cluster
        self.backend = backend
        self.progress = progress or NullProgress()
        self._slurm: SlurmClient | None = None
        self._site: ClusterSite | None = None

    @property
    def slurm(self) -> SlurmClient:
        if self._slurm is None:
            self._slurm = self.backend.slurm()
        return self._slurm

    @property
    def site(self) -> ClusterSite:
        if self._site is None:
            self._site = self.backend.site()
        return self._site

    def read_text(self, path: str) -> str:
        """A file on the cluster (a step's or a task's log) as text; "" while it does not
        exist yet, which is normal for a log of a job that has not started."""
        try:
            return self.slurm.runner.get(path).decode(errors="replace")
        except OSError:
            return ""

    def sh(self, script: str, *args: str, timeout_s: float = 60.0) -> str:
        """stdout of `sh -c script` on the cluster, `args` as $1, $2...; failing is an error."""
        done = self.slurm.runner.run(["sh", "-c", script, "sh", *args], timeout_s=timeout_s)
        if not done.ok:
            raise HpcrunError(f"`{script[:60]}` failed: {(done.stderr or done.stdout).strip()}")
        return done.stdout

    def make_writable_dir(self, path: str, named: str) -> None:
        """Create `path` on the cluster and prove a file can be written there, before any
        job is submitted to write into it; `named` is how the user gave it (--output X)."""
        probe = posixpath.join(path, ".hpcrun-write-test")
        done = self.slurm.runner.run(
            ["sh", "-c", 'mkdir -p "$1" && : > "$2" && rm -f "$2"', "sh", path, probe]
        )
        if not done.ok:
            raise UsageError(
                f"{named} is not writable: {done.stderr.strip()}",
                "pick a place you can write to (on storage every node sees)",
            )
