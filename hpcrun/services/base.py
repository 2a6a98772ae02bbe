"""What every service holds: one cluster's state, backend, scheduler, workspace and site.

Each is asked of the backend once, on first use: on a remote cluster each costs an SSH
connection or a round trip, and a command such as `render status` may need only some.
Services reach the cluster only through these: the neutral `Scheduler` and `Workspace`
(and, for IndeX sessions, the backend's `IndexDriver`), never a scheduler's syntax.
"""

from __future__ import annotations

from hpcrun.backends.base import Backend, ClusterSite, NullProgress, Progress
from hpcrun.scheduler import Scheduler, Workspace
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
        self._scheduler: Scheduler | None = None
        self._workspace: Workspace | None = None
        self._site: ClusterSite | None = None

    @property
    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            self._scheduler = self.backend.scheduler()
        return self._scheduler

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = self.backend.workspace()
        return self._workspace

    @property
    def site(self) -> ClusterSite:
        if self._site is None:
            self._site = self.backend.site()
        return self._site

    def read_text(self, path: str) -> str:
        """A file on the cluster (a step's or a task's log) as text; "" while it does not
        exist yet, which is normal for a log of a job that has not started."""
        return self.workspace.read_text(path)
