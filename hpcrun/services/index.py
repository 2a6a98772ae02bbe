"""IndeX sessions on a cluster: start, scale, inspect and stop multi-node rendering.

Each operation follows the same discipline: write the intent to the state store, have the
backend's `IndexDriver` do what the scheduler must (allocate, start steps, resize; Slurm's
is `hpcrun.slurm.index`), record each allocation the moment it exists and the outcome
after, and undo what it allocated when a later step fails, so no allocation is left
holding nodes behind the user's back. Readiness is IndeX's own signal: the viewer's
"Application layer viewer server is running at" line in its output (the driver reads the
address from it); for the open renderer the viewer's `/api/status` additionally says how
many render agents have registered (`hpcrun.services.viewer`).
"""

from __future__ import annotations

import contextlib
import functools
import posixpath
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.scheduler.index import (
    DEFAULT_PORT,
    NVIDIA_AMI,
    Allocation,
    IndexDriver,
    IndexInstall,
    IndexPlan,
    SessionJob,
    ShrinkStep,
)
from hpcrun.services.base import ClusterService
from hpcrun.services.viewer import ViewerClient
from hpcrun.state import IndexJobState, IndexSessionRecord, SessionState

_SCALE_RE = re.compile(r"^([+=-]?)(\d+)$")


INTERRUPTED = "interrupted (Ctrl-C)"


class StartInterrupted(KeyboardInterrupt):
    """Ctrl-C during `start`, raised once the half-started session has been cleaned up;
    still a KeyboardInterrupt for callers that only know that."""

    def __init__(self, session_id: int, cancelled_job: str | None) -> None:
        super().__init__(INTERRUPTED)
        self.session_id = session_id
        self.cancelled_job = cancelled_job

    @property
    def summary(self) -> str:
        released = (
            f"its job {self.cancelled_job} was cancelled"
            if self.cancelled_job
            else "no allocation had been granted yet"
        )
        return f"{INTERRUPTED}: IndeX session {self.session_id} stopped; {released}"


def ended_by(exc: BaseException) -> tuple[SessionState, IndexJobState, str]:
    """How a session that `exc` ended is recorded: state, its job's state and the detail.

    Ctrl-C is the user's choice, not a failure of the session: it is recorded stopped."""
    if isinstance(exc, KeyboardInterrupt):
        return SessionState.STOPPED, IndexJobState.ENDED, INTERRUPTED
    return SessionState.FAILED, IndexJobState.FAILED, str(exc) or type(exc).__name__


@dataclass(frozen=True)
class StartRequest:
    nodes: int
    scene: str
    gpus_per_node: int | None = None
    port: int = DEFAULT_PORT
    renderer: str = "auto"  # auto | nvindex | open
    auth: str | None = None  # USER:PASSWORD_FILE, open renderer only
    insecure_public: bool = False  # serve the viewer to the network without --auth
    wait_for_nodes: bool = False
    timeout_s: float = 120.0
    time_limit: str | None = None
    chart: str | None = None  # Kubernetes: a helm chart to NVIDIA's values contract
    partition: str | None = None  # Slurm: the queue to run in (None: the default)


@dataclass
class SessionView:
    """What `hpcrun index status` shows: the record, Slurm's view and the viewer's."""

    session: IndexSessionRecord
    jobs: list[dict[str, Any]] = field(default_factory=list)
    viewer: dict[str, Any] | None = None
    viewer_error: str | None = None
    hosts_of: dict[str, list[str]] = field(default_factory=dict)  # live job id -> its nodes
    healed: list[str] = field(default_factory=list)  # nodes whose agent `heal` restarted
    # Nodes of the session whose scheduler agent (slurmd) is dead, each with a message.
    dead_nodes: list[dict[str, str]] = field(default_factory=list)
    # Kubernetes: the session's workloads (ready/desired replicas) and its Ready pods.
    workloads: list[dict[str, Any]] = field(default_factory=list)
    pods_ready: int | None = None
    # The (user, password) made for the session at start: shown once, stored nowhere.
    login: tuple[str, str] | None = None

    @property
    def nodes(self) -> list[str]:
        """Every node of the session's live jobs, in the order of the jobs."""
        return [host for hosts in self.hosts_of.values() for host in hosts]

    @property
    def agents(self) -> int | None:
        return None if self.viewer is None else int(self.viewer.get("agents", 0))

    @property
    def missing_agents(self) -> list[str]:
        """Nodes the session holds whose render agent the viewer does not have: allocated
        and rendering nothing (the agent died, or has not joined yet). Only the open
        renderer's viewer says which nodes its agents run on; empty otherwise."""
        if self.viewer is None or self.session.status != "running":
            return []
        joined = set(self.viewer.get("nodes") or [])
        return [n for n in self.nodes if n not in joined]

    def to_json(self) -> dict[str, Any]:
        s = self.session
        return {
            "session": s.id,
            "cluster": s.cluster,
            "status": s.status,
            "detail": s.detail,
            "scene": s.scene,
            "renderer": s.renderer,
            "url": s.url,
            "jobs": self.jobs,
            "nodes": self.nodes,
            "agents": self.agents,
            "viewer": self.viewer,
            "viewer_error": self.viewer_error,
            "missing_agents": self.missing_agents,
            "healed": self.healed,
            "dead_nodes": self.dead_nodes,
            "workloads": self.workloads,
            "pods_ready": self.pods_ready,
            **({"login": {"user": self.login[0], "password": self.login[1]}} if self.login else {}),
        }


def parse_scale(text: str) -> tuple[str, int]:
    """`+2` -> ("+", 2), `-1` -> ("-", 1), `=6` or `6` -> ("=", 6)."""
    match = _SCALE_RE.match(text.strip())
    if match is None:
        raise UsageError(
            f"cannot read the scale request {text!r}",
            "write +K to add K nodes, -K to remove K, or =N for N nodes in all",
        )
    sign, number = match.group(1) or "=", int(match.group(2))
    if sign != "=" and number == 0:
        raise UsageError(f"{text!r} changes nothing", "write +K or -K with K >= 1")
    return sign, number


class IndexSessions(ClusterService):
    """IndeX sessions of one cluster."""

    @functools.cached_property
    def driver(self) -> IndexDriver:
        """The backend's driver, asked for on first use (it may open a connection)."""
        return self.backend.index_driver()

    @functools.cached_property
    def viewer(self) -> ViewerClient:
        return ViewerClient(self.backend)

    # which session -----------------------------------------------------------------------

    def session(self, session_id: int | None = None) -> IndexSessionRecord:
        """The given session, else the newest active one on this cluster."""
        if session_id is not None:
            found = self.store.index_session(session_id)
            if found is None or found.cluster != self.cluster:
                raise HpcrunError(
                    f"no IndeX session {session_id} on cluster {self.cluster}",
                    "list them with `hpcrun index status --all`",
                )
            return found
        active = self.store.index_sessions(self.cluster, active_only=True)
        if not active:
            raise HpcrunError(
                f"no IndeX session is running on cluster {self.cluster}",
                "start one with `hpcrun index --nodes 4 --scene supernova`",
            )
        return active[-1]

    # start -------------------------------------------------------------------------------

    def start(self, request: StartRequest) -> SessionView:
        started = time.monotonic()
        install = self._install(request.renderer, request.chart)
        scene = self._scene(request.scene, install)
        # Pods of an image each have their own address: no two sessions share a host.
        clash = [
            s.id
            for s in self.store.index_sessions(self.cluster, active_only=True)
            if s.plan.get("port") == request.port and install.image is None
        ]
        if clash:
            raise HpcrunError(
                f"IndeX session {clash[0]} on this cluster already serves port {request.port}",
                "stop it with `hpcrun index stop`, or pass another --port",
            )
        plan = IndexPlan(
            nodes=request.nodes,
            scene_prj=scene,
            install=install,
            gpus_per_node=request.gpus_per_node,
            port=request.port,
            partition=request.partition,
            time_limit=request.time_limit,
        )
        plan.validate()
        self.driver.validate(plan)  # the scheduler's own checks before anything exists
        if install.open_processes:
            _check_auth(request.auth)  # a bad --auth fails before anything exists
            _check_exposure(request, on_this_host=self.site.shares_local_files)
        elif request.auth or request.insecure_public:
            raise UsageError(
                "--auth and --insecure-public are the open renderer's on Slurm nodes; here "
                "the ingress guards every session",
                "set ingress.basic_auth in the cluster file (a password is made per session)",
            )
        self.driver.check_capacity(
            request.nodes,
            wait=request.wait_for_nodes,
            progress=self.progress,
            partition=request.partition,
        )
        session_id = self.store.create_index_session(
            self.cluster,
            scene,
            "open" if install.open_renderer else "nvindex",
            {"port": request.port, "gpus_per_node": request.gpus_per_node, "auth": request.auth},
            "",
        )
        # Session files live on the cluster, in a directory every node sees.
        workdir = posixpath.join(self.workspace.root, "index", str(session_id))
        self.workspace.make_dirs(workdir)
        if install.open_processes:
            plan = replace(
                plan,
                install=replace(install, workdir=workdir),
                open_options=self._open_options(workdir, request.auth, request.insecure_public),
            )
        plan = replace(plan, session=str(session_id))
        # The workdir is named after the session's id, known only once its row exists.
        self.store.set_index_session_plan(session_id, workdir, _plan_json(plan, request.auth))
        log = posixpath.join(workdir, "viewer.log")
        job_row = self.store.add_index_job(session_id, initial=True, nodes=request.nodes, log=log)
        allocated: list[str] = []  # what to give back if a later step fails

        def record(new_job: str) -> None:
            allocated.append(new_job)
            self.store.update_index_job(job_row, slurm_job_id=new_job, status=IndexJobState.RUNNING)

        try:
            job_id = self.driver.start(
                plan, log, wait=request.wait_for_nodes, progress=self.progress, on_allocated=record
            )
            host, port = self._wait_ready(job_id, log, request.timeout_s)
            url = self.driver.public_url(job_id, host, port) or self.backend.endpoint(host, port)
            if url != self.backend.endpoint(host, port):
                # Published elsewhere (an Ingress): the tunnel and status still need where
                # the viewer itself listens.
                self.store.set_index_session_plan(
                    session_id,
                    workdir,
                    {**_plan_json(plan, request.auth), "viewer_address": [host, port]},
                )
            ready_s = time.monotonic() - started
            self.store.set_index_session(
                session_id, SessionState.RUNNING, url=url, detail=f"ready in {ready_s:.1f} s"
            )
            if install.open_processes:
                self._wait_agents(self.session(session_id), request.nodes, request.timeout_s)
        except BaseException as exc:
            granted = next(iter(allocated), None)
            self._undo_start(session_id, job_row, granted, exc)
            if isinstance(exc, KeyboardInterrupt):
                raise StartInterrupted(session_id, granted) from exc
            raise
        view = self.view(self.session(session_id))
        view.login = self.driver.credentials(job_id)
        return view

    def _undo_start(
        self, session_id: int, job_row: int, job_id: str | None, exc: BaseException
    ) -> None:
        if job_id is not None:
            with contextlib.suppress(HpcrunError):
                self.driver.cancel([job_id])
        state, job_state, detail = ended_by(exc)
        self.store.update_index_job(job_row, status=job_state)
        self.store.set_index_session(session_id, state, detail=detail)

    def _install(self, renderer: str, chart: str | None = None) -> IndexInstall:
        if renderer not in {"auto", "nvindex", "open"}:
            raise UsageError(f"--renderer {renderer!r}: choose auto, nvindex or open")
        provided = self.driver.install(renderer)
        if chart is not None:
            if provided is None:
                raise UsageError(
                    f"--chart installs a helm chart on a Kubernetes cluster; {self.cluster} "
                    "runs Slurm",
                    "leave --chart out here, or use a kubernetes or eks cluster",
                )
            return replace(provided, chart=str(Path(chart).resolve()))
        if provided is not None:
            return provided
        if renderer != "open":
            if self.workspace.which([NVIDIA_AMI.launcher])[NVIDIA_AMI.launcher]:
                return NVIDIA_AMI
            if renderer == "nvindex":
                raise HpcrunError(
                    "nvindex-slurm is not installed on this cluster",
                    "use NVIDIA's IndeX AMI, or `--renderer open` for hpcrun's open renderer",
                )
        site = self.site
        if site.launcher is None:
            raise HpcrunError(
                "the open renderer's launcher hpcrun-nvindex-slurm is not installed on the cluster",
                "install hpcrun with its viewer extra there: pip install 'hpcrun[viewer]' "
                "(on an ssh cluster, also set open_renderer in the cluster file)",
            )
        return IndexInstall(
            launcher=site.launcher,
            workdir="",
            scenes_dir=site.scenes_dir or "",
            open_renderer=True,
        )

    def _scene(self, scene: str, install: IndexInstall) -> str:
        """The .prj path on the cluster. For the open renderer on this machine's cluster its
        data is made here first; a remote viewer makes it itself on first use. Pods of an
        image get the scene's files from here (a ConfigMap): its path on this machine."""
        if install.image is not None:
            from hpcrun.scenes.catalog import resolve_scene

            return str(resolve_scene(scene))
        if not install.open_renderer or not self.site.shares_local_files:
            return self._cluster_scene(scene, install)
        from hpcrun.scenes import ensure_data, load_scene
        from hpcrun.scenes.catalog import resolve_scene

        path = resolve_scene(scene)
        loaded = load_scene(path)
        if not loaded.volumes:
            raise HpcrunError(
                f"{path}: the scene has no volume the open renderer can show",
                f"see `hpcrun scenes show {path}`",
            )
        missing = [v for v in loaded.volumes if not v.present]
        if missing:
            self.progress.step(f"generating scene data for {loaded.name} (first use)")
            ensure_data(loaded)
        return str(path)

    def _cluster_scene(self, scene: str, install: IndexInstall) -> str:
        from hpcrun.scenes.catalog import index_scene_dir

        directory = index_scene_dir(scene)
        if directory is None:
            return scene  # a path on the cluster, checked by the viewer itself
        if not install.scenes_dir:
            raise HpcrunError(
                f"scene {scene!r} names hpcrun's catalogue, but the cluster file sets no "
                "scenes_dir",
                "set scenes_dir to hpcrun's scenes/ directory on the cluster, or pass the "
                ".prj path there",
            )
        return f"{install.scenes_dir}/{directory}/scene/scene.prj"

    def _open_options(
        self, workdir: str, auth: str | None, insecure_public: bool = False
    ) -> tuple[str, ...]:
        """The open renderer's own flags: its rendezvous file, where the data of hpcrun's
        own scenes is generated and read (this machine's cache, where `_scene` made it, or
        the cluster's workspace, which every node sees), basic auth from a password
        file the viewer can read (a 0600 copy in the session directory when the cluster
        does not see this machine's files), and where its page listens: on the local
        cluster every node is this host, so without --auth it listens on 127.0.0.1 only,
        and its agents, which share this host's cores with the viewer, let the viewer
        start first (--one-machine)."""
        from hpcrun.scenes.catalog import scene_data_root

        scene_data = (
            str(scene_data_root())
            if self.site.shares_local_files
            else posixpath.join(self.workspace.root, "scenes")
        )
        options: tuple[str, ...] = (
            "--rendezvous",
            posixpath.join(workdir, "rendezvous"),
            "--scene-data",
            scene_data,
        )
        if auth:
            user, _, password_file = auth.partition(":")
            path = str(Path(password_file).resolve())
            if not self.site.shares_local_files:
                path = posixpath.join(workdir, "auth-password")
                self.workspace.put_private(path, Path(password_file).read_text())
            options += ("--auth", f"{user}:{path}")
        if insecure_public:
            options += ("--insecure-public",)
        elif not auth and self.site.shares_local_files:
            options += ("--listen", "127.0.0.1")
        if self.site.shares_local_files:
            options += ("--one-machine",)
        return options

    def _wait_ready(self, job_id: str, log: str, timeout_s: float) -> tuple[str, int]:
        """Block until the viewer prints its URL; fail with the log tail when the step or
        the job dies first, or when the timeout passes."""
        deadline = time.monotonic() + timeout_s
        next_job_check = time.monotonic() + 1.0
        while True:
            text = self.read_text(log)
            found = self.driver.viewer_address(job_id, text)
            if found is not None:
                return found
            now = time.monotonic()
            if now >= next_job_check:
                next_job_check = now + 1.0
                failure = self.driver.failure(job_id, text)
                if failure is not None:  # the log as the driver left it (it may add why)
                    raise _step_failed(failure, log, self.read_text(log))
            if now >= deadline:
                raise _step_failed(
                    f"the viewer did not report ready within {timeout_s:g} s", log, text
                )
            time.sleep(0.05)

    def _wait_agents(self, session: IndexSessionRecord, expected: int, timeout_s: float) -> int:
        """Wait until the viewer reports `expected` registered agents; return the count."""
        with self.viewer.link(session) as base:
            return self._poll_agents(session, base, expected, timeout_s)

    def _poll_agents(
        self, session: IndexSessionRecord, base: str | None, expected: int, timeout_s: float
    ) -> int:
        deadline = time.monotonic() + timeout_s
        seen = -1
        while True:
            status, error = self.viewer.status(session, base)
            count = int(status.get("agents", 0)) if status else 0
            if count != seen:
                message = (
                    f"{count} of {expected} render agents registered"
                    if count <= expected
                    else f"{count - expected} render agent(s) leaving"
                )
                self.progress.advance(min(count, expected), expected, message)
                seen = count
            if count == expected:
                return count
            if time.monotonic() >= deadline:
                logs = "\n".join(self.read_text(j.log)[-1500:] for j in session.live_jobs)
                raise HpcrunError(
                    f"{count} of {expected} render agents registered within {timeout_s:g} s"
                    + (f" (viewer: {error})" if error else ""),
                    "the step output ends with:\n" + logs.strip(),
                )
            time.sleep(0.05)

    # status ------------------------------------------------------------------------------

    def _allocations(self, session: IndexSessionRecord) -> dict[str, Allocation]:
        """What the scheduler says of the session's live allocations: one call."""
        ids = [j.slurm_job_id for j in session.live_jobs if j.slurm_job_id]
        return self.driver.allocations(ids)

    def _note_if_ended(
        self, session: IndexSessionRecord, found: dict[str, Allocation]
    ) -> IndexSessionRecord:
        """Mark a running session stopped once its first job (and so its viewer) is gone."""
        initial = session.initial_job
        if session.status == "running" and initial is not None and initial.slurm_job_id:
            job = found.get(initial.slurm_job_id)
            if job is None or job.ended:
                detail = f"job {initial.slurm_job_id} ended ({job.native if job else 'gone'})"
                self.store.set_index_session(session.id, SessionState.STOPPED, detail=detail)
                return self.session(session.id)
        return session

    def view(self, session: IndexSessionRecord) -> SessionView:
        view = SessionView(session)
        found = self._allocations(session)
        for record in session.jobs:
            if record.slurm_job_id is None:
                continue
            job = found.get(record.slurm_job_id)
            state = job.native if job else record.status.upper()
            view.jobs.append(
                {
                    "job_id": record.slurm_job_id,
                    "role": "initial" if record.initial else "attached",
                    "state": state,
                    "nodes": job.nodes if job else record.nodes,
                    "nodelist": job.nodelist if job else "",
                    "resized": record.resized,
                }
            )
            if job is not None and not job.ended and job.nodelist:
                view.hosts_of[record.slurm_job_id] = self.driver.hosts(job)
            if job is not None and job.pods_ready is not None:
                view.workloads += list(job.workloads)
                view.pods_ready = (view.pods_ready or 0) + job.pods_ready
        view.session = self._note_if_ended(session, found)
        if view.session.status == "running" and view.nodes:
            view.dead_nodes = self._dead_nodes(view.nodes)
        if view.session.status == "running" and session.renderer == "open":
            with self.viewer.link(session) as base:
                view.viewer, view.viewer_error = self.viewer.status(session, base)
        return view

    def _dead_nodes(self, nodes: Sequence[str]) -> list[dict[str, str]]:
        """The session's nodes whose slurmd is dead: the viewer may still serve, but the
        allocation is lost once Slurm declares the node down (issue 14: render and index
        status said nothing of a dead slurmd for ~50 s)."""
        with contextlib.suppress(HpcrunError):
            return [
                {
                    "node": t.node,
                    "why": t.why,
                    "message": f"{t.node}, whose {t.why}: Slurm ends the job holding it "
                    "(the first job's end ends the viewer) once it declares the node down"
                    + (f"; {t.hint}" if t.hint else ""),
                }
                for t in self.scheduler.node_trouble(nodes)
            ]
        return []  # a question about nodes must not break a status

    def heal(self, session_id: int | None = None, *, timeout_s: float = 120.0) -> SessionView:
        """Start the render agent again on each node of the session that has none.

        The node stays allocated when its agent dies (the step's other tasks go on), so
        the session pays for a node that renders nothing; the viewer has already given
        its bricks to the others and takes them back when the agent joins again."""
        with self._changing(self.session(session_id), "index status --heal") as session:
            return self._heal(session, timeout_s)

    def _heal(self, session: IndexSessionRecord, timeout_s: float) -> SessionView:
        view = self.view(session)
        session = view.session
        if session.status != "running":
            raise HpcrunError(
                f"IndeX session {session.id} is {session.status}, not running",
                "start a new one with `hpcrun index`",
            )
        if session.renderer != "open":
            raise HpcrunError(
                "only the open renderer's viewer says which nodes its agents run on; "
                "NVIDIA IndeX reports its own agents in its log",
                f"see {session.initial_job.log if session.initial_job else 'the viewer log'}",
            )
        if view.viewer is None:
            raise HpcrunError(
                f"cannot ask the viewer which agents it has: {view.viewer_error}",
                "check `hpcrun index status`; if the viewer is gone, `hpcrun index stop` "
                "and start again",
            )
        missing = view.missing_agents
        if not missing:
            self.progress.step("every node of the session has its render agent; nothing to do")
            return view
        plan = self._plan(session)
        first = session.initial_job.slurm_job_id if session.initial_job else None
        assert first is not None
        stamp = int(time.time() * 1000)
        for job_id, hosts in view.hosts_of.items():
            dead = [h for h in hosts if h in missing]
            if not dead:
                continue
            self.progress.step(f"restarting the render agent on {', '.join(dead)} (job {job_id})")
            log = posixpath.join(session.workdir, f"agents-heal-{job_id}-{stamp}.log")
            self.driver.restart_agents(plan, job_id, first, dead, log)
        self._wait_agents(session, len(view.nodes), timeout_s)
        healed = self.view(self.session(session.id))
        healed.healed = [n for n in missing if n not in healed.missing_agents]
        return healed

    def tunnel(
        self, session: IndexSessionRecord, local_port: int = 0
    ) -> AbstractContextManager[str]:
        """The viewer at a URL on this machine while the context is open."""
        return self.viewer.tunnel(session, local_port)

    def is_running(self, session: IndexSessionRecord) -> bool:
        """One scheduler call: is the session's viewer job still alive?"""
        return self._note_if_ended(session, self._allocations(session)).status == "running"

    # scale -------------------------------------------------------------------------------

    def scale(
        self,
        request: str,
        *,
        session_id: int | None = None,
        merge: bool = False,
        wait_for_nodes: bool = False,
        timeout_s: float = 120.0,
    ) -> SessionView:
        with self._changing(self.session(session_id), f"scale {request}") as session:
            return self._scale(session, request, merge, wait_for_nodes, timeout_s)

    @contextlib.contextmanager
    def _changing(self, session: IndexSessionRecord, doing: str) -> Iterator[IndexSessionRecord]:
        """Hold the session's lock (a second change at once is refused, naming the
        first) and give the session as it is once held: the change before may have
        ended it or resized its jobs."""
        from hpcrun.locks import exclusive

        with exclusive(
            self.store.home,
            f"index-{self.cluster}-{session.id}",
            what=f"IndeX session {session.id}",
            doing=doing,
        ):
            yield self.session(session.id)

    def _scale(
        self,
        session: IndexSessionRecord,
        request: str,
        merge: bool,
        wait_for_nodes: bool,
        timeout_s: float,
    ) -> SessionView:
        found = self._allocations(session)
        session = self._note_if_ended(session, found)
        if session.status != "running":
            raise HpcrunError(
                f"IndeX session {session.id} is {session.status}, not running"
                + (f" ({session.detail})" if session.detail else ""),
                "start a new one with `hpcrun index`",
            )
        sign, number = parse_scale(request)
        current = self._live_jobs(session, found)
        total = sum(j.nodes for j in current)
        delta = number if sign == "+" else -number if sign == "-" else number - total
        if delta == 0:
            self.progress.step(f"the session already has {total} nodes; nothing changed")
        elif delta > 0:
            self._grow(session, delta, merge, wait_for_nodes, timeout_s)
        else:
            self._shrink(session, current, -delta)
        session = self.session(session.id)
        if self._plan(session).install.open_processes:
            expected = sum(j.nodes for j in session.live_jobs)
            self._wait_agents(session, expected, timeout_s)  # joined, or gone after a shrink
        return self.view(session)

    def _live_jobs(
        self, session: IndexSessionRecord, found: dict[str, Allocation]
    ) -> list[SessionJob]:
        """The session's allocations with node counts from the scheduler (a resize may
        have changed them since hpcrun recorded them); those it no longer runs are marked
        ended."""
        live = []
        for record in session.live_jobs:
            job = found.get(record.slurm_job_id or "")
            if job is None or job.ended:
                self.store.update_index_job(record.id, status=IndexJobState.ENDED)
                continue
            live.append(
                SessionJob(record.slurm_job_id or "", job.nodes, record.initial, record.resized)
            )
        return live

    def _plan(self, session: IndexSessionRecord) -> IndexPlan:
        return _plan_from_json(session.plan)

    def _grow(
        self, session: IndexSessionRecord, count: int, merge: bool, wait: bool, timeout_s: float
    ) -> None:
        plan = self._plan(session)
        initial = session.initial_job
        assert initial is not None and initial.slurm_job_id is not None
        first = initial.slurm_job_id
        self.driver.check_capacity(
            count, wait=wait, progress=self.progress, partition=plan.partition
        )
        log = posixpath.join(session.workdir, f"agents-{int(time.time() * 1000)}.log")
        row = self.store.add_index_job(session.id, initial=False, nodes=count, log=log)

        def record(job_id: str) -> None:
            self.store.update_index_job(row, slurm_job_id=job_id, status=IndexJobState.RUNNING)

        try:
            grown = self.driver.grow(
                plan,
                first,
                count,
                log,
                merge=merge,
                wait=wait,
                progress=self.progress,
                on_allocated=record,
            )
        except BaseException:
            self.store.update_index_job(row, status=IndexJobState.FAILED)
            raise
        if grown.merged:
            # The donor's nodes now belong to the first job: its row ends, the first grows.
            self.store.update_index_job(row, status=IndexJobState.ENDED)
            self.store.update_index_job(initial.id, nodes=grown.initial_nodes, resized=True)

    def _shrink(self, session: IndexSessionRecord, jobs: Sequence[SessionJob], count: int) -> None:
        rows = {j.slurm_job_id: j for j in session.live_jobs}

        def record(step: ShrinkStep) -> None:
            row = rows[step.job_id]
            if step.cancels:
                self.store.update_index_job(row.id, status=IndexJobState.ENDED)
            else:
                self.store.update_index_job(row.id, nodes=step.nodes_after, resized=True)

        self.driver.shrink(self._plan(session), jobs, count, progress=self.progress, on_step=record)

    # stop --------------------------------------------------------------------------------

    def stop(self, session_id: int | None = None, *, timeout_s: float = 30.0) -> SessionView:
        with self._changing(self.session(session_id), "index stop") as session:
            return self._stop(session, timeout_s)

    def _stop(self, session: IndexSessionRecord, timeout_s: float) -> SessionView:
        ids = [j.slurm_job_id for j in session.live_jobs if j.slurm_job_id]
        if ids:
            noun = "release" if self._plan(session).install.image else "job"
            self.progress.step(f"ending {noun}{'s' * (len(ids) != 1)} {', '.join(ids)}")
            self.driver.stop(ids, timeout_s=timeout_s)
        for job in session.live_jobs:
            self.store.update_index_job(job.id, status=IndexJobState.ENDED)
        self.store.set_index_session(
            session.id, SessionState.STOPPED, detail="stopped by hpcrun index stop"
        )
        return self.view(self.session(session.id))


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def _check_auth(auth: str | None) -> None:
    if auth:
        user, sep, password_file = auth.partition(":")
        if not sep or not user or not Path(password_file).is_file():
            raise UsageError(
                f"--auth {auth!r}: expected USER:PASSWORD_FILE with an existing file",
                "write the password to a file readable only by you (chmod 600)",
            )


def _check_exposure(request: StartRequest, *, on_this_host: bool) -> None:
    """Refuse, before anything is allocated, an open-renderer viewer that would serve a
    cluster's network without a password.

    On a remote cluster the viewer is reached through an SSH tunnel to its compute node,
    so it must listen on the node's address, where anyone on that network could steer
    it; on this machine's cluster it listens on 127.0.0.1 instead (`_open_options`)."""
    if on_this_host or request.auth or request.insecure_public:
        return
    raise UsageError(
        "the viewer would listen on a compute node's network address without a password",
        "pass --auth USER:PASSWORD_FILE (HTTP basic auth), or --insecure-public if anyone "
        "on the cluster's network may use it",
    )


def _plan_json(plan: IndexPlan, auth: str | None) -> dict[str, Any]:
    return {**asdict(plan), "auth": auth}


def _plan_from_json(data: dict[str, Any]) -> IndexPlan:
    values = {f.name: data[f.name] for f in fields(IndexPlan) if f.name in data}
    values["install"] = IndexInstall(**values["install"])
    values["open_options"] = tuple(values.get("open_options", ()))
    return IndexPlan(**values)


def _step_failed(reason: str, log: str, text: str) -> HpcrunError:
    """The failure of a viewer step, its cause first: the launcher's own `error:` line
    (e.g. `cannot listen on port 18095`) came 8th of 11 lines of log tail (issue 14), so
    it leads the message and its `hint:` the hint; the tail still follows for the rest."""
    lines = text.strip().splitlines()
    # The launcher writes `error: ...` / `hint: ...` at the start of a line; srun's own
    # lines (`srun: error: n1: task 0: Exited ...`) say only that the step ended.
    cause = next((ln.removeprefix("error: ") for ln in lines if ln.startswith("error: ")), "")
    said = next((ln.removeprefix("hint: ") for ln in lines if ln.startswith("hint: ")), "")
    tail = "\n".join(lines[-15:])
    first = f"{cause.strip()} ({reason})" if cause.strip() else reason
    return HpcrunError(
        first + (f"; {log} ends with:\n{tail}" if tail else f"; {log} is empty"),
        (f"{said.strip()}; " if said.strip() else "")
        + "fix what the log says, then run `hpcrun index` again (the allocation was released)",
    )
