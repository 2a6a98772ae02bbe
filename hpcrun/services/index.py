"""IndeX sessions on a cluster: start, scale, inspect and stop multi-node rendering.

Each operation follows the same discipline: write the intent to the state store, run the
Slurm commands of the workload plan (`hpcrun.workloads.index`), then record the outcome,
and undo what it allocated when a later step fails, so no allocation is left holding nodes
behind the user's back. Readiness is IndeX's own signal: the viewer's "Application layer
viewer server is running at" line in the step's output; for the open renderer the viewer's
`/api/status` additionally says how many render agents have registered.
"""

from __future__ import annotations

import base64
import contextlib
import json
import posixpath
import re
import shlex
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.services.base import ClusterService
from hpcrun.slurm.parse import Job
from hpcrun.state import IndexSessionRecord
from hpcrun.workloads.index import (
    DEFAULT_PORT,
    NVIDIA_AMI,
    READY_MARKER,
    IndexInstall,
    IndexPlan,
    SessionJob,
    agents_allocation,
    agents_step,
    initial_allocation,
    plan_shrink,
    viewer_step,
)

_URL_RE = re.compile(re.escape(READY_MARKER) + r"(https?://)([^\s:/]+):(\d+)")
_SCALE_RE = re.compile(r"^([+=-]?)(\d+)$")


@dataclass(frozen=True)
class StartRequest:
    nodes: int
    scene: str
    gpus_per_node: int | None = None
    port: int = DEFAULT_PORT
    renderer: str = "auto"  # auto | nvindex | open
    auth: str | None = None  # USER:PASSWORD_FILE, open renderer only
    wait_for_nodes: bool = False
    timeout_s: float = 120.0
    time_limit: str | None = None


@dataclass
class SessionView:
    """What `hpcrun index status` shows: the record, Slurm's view and the viewer's."""

    session: IndexSessionRecord
    jobs: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    viewer: dict[str, Any] | None = None
    viewer_error: str | None = None

    @property
    def agents(self) -> int | None:
        return None if self.viewer is None else int(self.viewer.get("agents", 0))

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
        install = self._install(request.renderer)
        scene = self._scene(request.scene, install)
        clash = [
            s.id
            for s in self.store.index_sessions(self.cluster, active_only=True)
            if s.plan.get("port") == request.port
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
            time_limit=request.time_limit,
        )
        plan.validate()
        initial_allocation(plan)  # Slurm's own checks (e.g. --time syntax) before anything exists
        if install.open_renderer:
            _check_auth(request.auth)  # a bad --auth fails before anything exists
        self._check_free_nodes(request.nodes, request.wait_for_nodes)
        session_id = self.store.create_index_session(
            self.cluster,
            scene,
            "open" if install.open_renderer else "nvindex",
            {"port": request.port, "gpus_per_node": request.gpus_per_node, "auth": request.auth},
            "",
        )
        # Session files live on the cluster, in a directory every node sees.
        workdir = posixpath.join(self.site.workspace, "index", str(session_id))
        self.slurm.runner.run(["mkdir", "-p", workdir]).check()
        if install.open_renderer:
            plan = replace(
                plan,
                install=replace(install, workdir=workdir),
                open_options=self._open_options(workdir, request.auth),
            )
        # The workdir is named after the session's id, known only once its row exists.
        self.store.set_index_session_plan(session_id, workdir, _plan_json(plan, request.auth))
        log = posixpath.join(workdir, "viewer.log")
        job_row = self.store.add_index_job(session_id, initial=True, nodes=request.nodes, log=log)
        job_id: str | None = None
        try:
            self.progress.step(f"allocating {plural(request.nodes, 'node')} (salloc --no-shell)")
            job_id = self.slurm.allocate(
                initial_allocation(plan), timeout_s=None if request.wait_for_nodes else 60.0
            )
            self.store.update_index_job(job_row, slurm_job_id=job_id, status="running")
            argv = viewer_step(plan, job_id)
            self.progress.step(
                f"job {job_id}: starting the viewer and {plural(request.nodes, 'agent')}"
            )
            self.slurm.runner.spawn(argv, log_path=log)
            host, port = self._wait_ready(job_id, log, request.timeout_s)
            url = self.backend.endpoint(host, port)
            ready_s = time.monotonic() - started
            self.store.set_index_session(
                session_id, "running", url=url, detail=f"ready in {ready_s:.1f} s"
            )
            if install.open_renderer:
                self._wait_agents(self.session(session_id), request.nodes, request.timeout_s)
        except BaseException as exc:
            self._undo_start(session_id, job_row, job_id, exc)
            raise
        return self.view(self.session(session_id))

    def _undo_start(
        self, session_id: int, job_row: int, job_id: str | None, exc: BaseException
    ) -> None:
        if job_id is not None:
            with contextlib.suppress(HpcrunError):
                self.slurm.cancel([job_id])
        self.store.update_index_job(job_row, status="failed")
        reason = str(exc) or type(exc).__name__
        self.store.set_index_session(session_id, "failed", detail=reason)

    def _install(self, renderer: str) -> IndexInstall:
        if renderer not in {"auto", "nvindex", "open"}:
            raise UsageError(f"--renderer {renderer!r}: choose auto, nvindex or open")
        if renderer != "open":
            found = self.slurm.runner.run(["sh", "-c", "command -v nvindex-slurm"])
            if found.ok:
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
        data is made here first; a remote viewer makes it itself on first use."""
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

    def _open_options(self, workdir: str, auth: str | None) -> tuple[str, ...]:
        """The open renderer's own flags: its rendezvous file, and basic auth from a
        password file the viewer can read (a 0600 copy in the session directory when the
        cluster does not see this machine's files)."""
        options: tuple[str, ...] = ("--rendezvous", posixpath.join(workdir, "rendezvous"))
        if auth:
            user, _, password_file = auth.partition(":")
            path = str(Path(password_file).resolve())
            if not self.site.shares_local_files:
                path = posixpath.join(workdir, "auth-password")
                self.slurm.runner.run(
                    ["sh", "-c", f"umask 077 && cat > {shlex.quote(path)}"],
                    input=Path(password_file).read_text(),
                ).check()
            options += ("--auth", f"{user}:{path}")
        return options

    def _check_free_nodes(self, wanted: int, wait: bool) -> None:
        nodes = self.slurm.nodes()
        usable = [n for n in nodes if n.is_available]
        idle = [n.name for n in nodes if n.state == "idle"]
        if wanted > len(usable):
            raise HpcrunError(
                f"{wanted} nodes requested but the cluster has {len(usable)} usable "
                f"node{'s' * (len(usable) != 1)}",
                "ask for fewer nodes, or create the cluster with more (`hpcrun create --nodes`)",
            )
        if wanted > len(idle):
            if wait:
                self.progress.step(
                    f"waiting for {wanted} free nodes ({len(idle)} free now); Ctrl-C cancels"
                )
                return
            raise HpcrunError(
                f"{wanted} nodes requested but only {len(idle)} are free"
                + (f" ({', '.join(idle)})" if idle else ""),
                "pass --wait to queue until nodes free up, or ask for fewer",
            )

    def _wait_ready(self, job_id: str, log: str, timeout_s: float) -> tuple[str, int]:
        """Block until the viewer prints its URL; fail with the log tail when the step or
        the job dies first, or when the timeout passes."""
        deadline = time.monotonic() + timeout_s
        next_job_check = time.monotonic() + 1.0
        while True:
            text = self.read_text(log)
            found = _URL_RE.search(text)
            if found is not None:
                return found.group(2), int(found.group(3))
            now = time.monotonic()
            if now >= next_job_check:
                next_job_check = now + 1.0
                jobs = self.slurm.jobs([job_id])
                if not jobs or jobs[0].state.is_terminal:
                    state = jobs[0].state if jobs else "gone"
                    raise _step_failed(f"job {job_id} ended ({state}) before the viewer", log, text)
                if _step_exited(text):
                    raise _step_failed("the viewer step exited before it was ready", log, text)
            if now >= deadline:
                raise _step_failed(
                    f"the viewer did not report ready within {timeout_s:g} s", log, text
                )
            time.sleep(0.05)

    def _wait_agents(self, session: IndexSessionRecord, expected: int, timeout_s: float) -> int:
        """Wait until the viewer reports `expected` registered agents; return the count."""
        with self._viewer_link(session) as base:
            return self._poll_agents(session, base, expected, timeout_s)

    def _poll_agents(
        self, session: IndexSessionRecord, base: str | None, expected: int, timeout_s: float
    ) -> int:
        deadline = time.monotonic() + timeout_s
        seen = -1
        while True:
            status, error = self._viewer_status(session, base)
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
            time.sleep(0.1)

    # status ------------------------------------------------------------------------------

    def _slurm_jobs(self, session: IndexSessionRecord) -> dict[str, Job]:
        """What Slurm says of the session's live allocations: one squeue call."""
        ids = [j.slurm_job_id for j in session.live_jobs if j.slurm_job_id]
        # jobs([]) would mean every job of the cluster.
        return {j.job_id: j for j in self.slurm.jobs(ids)} if ids else {}

    def _note_if_ended(
        self, session: IndexSessionRecord, found: dict[str, Job]
    ) -> IndexSessionRecord:
        """Mark a running session stopped once its first job (and so its viewer) is gone."""
        initial = session.initial_job
        if session.status == "running" and initial is not None and initial.slurm_job_id:
            job = found.get(initial.slurm_job_id)
            if job is None or job.state.is_terminal:
                detail = f"job {initial.slurm_job_id} ended ({job.state if job else 'gone'})"
                self.store.set_index_session(session.id, "stopped", detail=detail)
                return self.session(session.id)
        return session

    def view(self, session: IndexSessionRecord) -> SessionView:
        view = SessionView(session)
        found = self._slurm_jobs(session)
        for record in session.jobs:
            if record.slurm_job_id is None:
                continue
            job = found.get(record.slurm_job_id)
            state = str(job.state) if job else record.status.upper()
            view.jobs.append(
                {
                    "job_id": record.slurm_job_id,
                    "role": "initial" if record.initial else "attached",
                    "state": state,
                    "nodes": job.node_count if job else record.nodes,
                    "nodelist": job.nodelist if job else "",
                    "resized": record.resized,
                }
            )
            if job is not None and not job.state.is_terminal and job.nodelist:
                view.nodes += self.slurm.hostnames(job.nodelist)
        view.session = self._note_if_ended(session, found)
        if view.session.status == "running" and session.renderer == "open":
            with self._viewer_link(session) as base:
                view.viewer, view.viewer_error = self._viewer_status(session, base)
        return view

    @contextlib.contextmanager
    def _viewer_link(self, session: IndexSessionRecord) -> Iterator[str | None]:
        """A base URL on this machine that reaches the session's viewer for the duration
        (the viewer itself here; an SSH tunnel through the head node on remote clusters);
        None when the session has no URL yet or the tunnel cannot open."""
        parts = urllib.parse.urlsplit(session.url or "")
        with contextlib.ExitStack() as links:
            port = None
            if parts.hostname and parts.port:
                with contextlib.suppress(HpcrunError):
                    port = links.enter_context(self.backend.reach(parts.hostname, parts.port))
            yield None if port is None else f"http://127.0.0.1:{port}"

    @contextlib.contextmanager
    def tunnel(self, session: IndexSessionRecord, local_port: int = 0) -> Iterator[str]:
        """The viewer at a URL on this machine while the context is open: forwarded through
        the head node on remote clusters, on the same local port as the viewer's when that
        is free (`local_port` 0), else any free one."""
        parts = urllib.parse.urlsplit(session.url or "")
        if session.status != "running" or not parts.hostname or not parts.port:
            raise HpcrunError(
                f"IndeX session {session.id} is {session.status}: no viewer to forward",
                "start one with `hpcrun index`",
            )
        with contextlib.ExitStack() as links:
            try:
                port = links.enter_context(
                    self.backend.reach(parts.hostname, parts.port, local_port or parts.port)
                )
            except HpcrunError:
                if local_port:
                    raise
                port = links.enter_context(self.backend.reach(parts.hostname, parts.port, 0))
            yield f"http://127.0.0.1:{port}"

    def is_running(self, session: IndexSessionRecord) -> bool:
        """One squeue call: is the session's viewer job still alive?"""
        return self._note_if_ended(session, self._slurm_jobs(session)).status == "running"

    def _viewer_status(
        self, session: IndexSessionRecord, base: str | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        if base is None:
            return None, "no URL yet" if not session.url else "cannot reach the viewer"
        request = urllib.request.Request(base + "/api/status")
        auth = session.plan.get("auth")
        try:
            if auth:
                user, _, password_file = str(auth).partition(":")
                password = Path(password_file).read_text().strip()
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                request.add_header("Authorization", f"Basic {token}")
            with urllib.request.urlopen(request, timeout=2.0) as response:
                return json.loads(response.read()), None
        except (OSError, ValueError, urllib.error.URLError) as exc:
            return None, str(getattr(exc, "reason", exc))

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
        session = self.session(session_id)
        found = self._slurm_jobs(session)
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
        if session.renderer == "open":
            expected = sum(j.nodes for j in session.live_jobs)
            self._wait_agents(session, expected, timeout_s)  # joined, or gone after a shrink
        return self.view(session)

    def _live_jobs(self, session: IndexSessionRecord, found: dict[str, Job]) -> list[SessionJob]:
        """The session's allocations with node counts from Slurm (scontrol may have changed
        them since hpcrun recorded them); those Slurm no longer runs are marked ended."""
        live = []
        for record in session.live_jobs:
            job = found.get(record.slurm_job_id or "")
            if job is None or job.state.is_terminal:
                self.store.update_index_job(record.id, status="ended")
                continue
            live.append(
                SessionJob(
                    record.slurm_job_id or "", job.node_count, record.initial, record.resized
                )
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
        self._check_free_nodes(count, wait)
        if merge:
            details = self.slurm.job_details(first)
            gres = details.get("JOB_GRES", "(null)")
            if gres not in {"(null)", ""}:
                raise HpcrunError(
                    f"--merge: job {first} holds GPUs ({gres}) and Slurm cannot expand a job "
                    "that holds GRES",
                    "scale without --merge: the new nodes join as a second job (NVIDIA's way)",
                )
        log = posixpath.join(session.workdir, f"agents-{int(time.time() * 1000)}.log")
        row = self.store.add_index_job(session.id, initial=False, nodes=count, log=log)
        job_id: str | None = None
        merged = False
        try:
            self.progress.step(f"allocating {plural(count, 'more node')}")
            job_id = self.slurm.allocate(
                agents_allocation(plan, count, expand_job=first if merge else None),
                timeout_s=None if wait else 60.0,
            )
            self.store.update_index_job(row, slurm_job_id=job_id, status="running")
            if merge:
                nodelist = self.slurm.jobs([job_id])[0].nodelist
                self.progress.step(f"merging job {job_id}'s nodes into job {first}")
                self.slurm.resize(job_id, 0)
                merged = True
                self.slurm.resize(first, "ALL")
                self.store.update_index_job(row, status="ended")
                live = {j.job_id: j for j in self._live_jobs(session, self._slurm_jobs(session))}
                self.store.update_index_job(
                    initial.id, nodes=live[first].nodes if first in live else None, resized=True
                )
                argv = agents_step(plan, first, first, count, nodelist=nodelist)
            else:
                argv = agents_step(plan, job_id, first, count)
            self.progress.step(f"starting {plural(count, 'render agent')}")
            self.slurm.runner.spawn(argv, log_path=log)
        except BaseException:
            # A donor job Slurm did not merge still holds its nodes: give them back.
            if job_id is not None and not merged:
                with contextlib.suppress(HpcrunError):
                    self.slurm.cancel([job_id])
            self.store.update_index_job(row, status="failed")
            raise

    def _shrink(self, session: IndexSessionRecord, jobs: Sequence[SessionJob], count: int) -> None:
        steps = plan_shrink(jobs, count, can_resize_twice=self.slurm.has_accounting_database())
        rows = {j.slurm_job_id: j for j in session.live_jobs}
        cancelled = [step.job_id for step in steps if step.cancels]
        for step in steps:
            row = rows[step.job_id]
            if step.cancels:
                self.progress.step(f"ending job {step.job_id} (scancel)")
                self.slurm.cancel([step.job_id])
                self.store.update_index_job(row.id, status="ended")
            else:
                self.progress.step(
                    f"shrinking job {step.job_id} to {plural(step.nodes_after, 'node')} "
                    f"(scontrol update NumNodes={step.nodes_after})"
                )
                self.slurm.resize(step.job_id, step.nodes_after)
                self.store.update_index_job(row.id, nodes=step.nodes_after, resized=True)
        # Return once Slurm has the nodes back, so a `scale +K` right after finds them free.
        if cancelled:
            _wait_until(lambda: all(j.state.is_terminal for j in self.slurm.jobs(cancelled)), 30.0)

    # stop --------------------------------------------------------------------------------

    def stop(self, session_id: int | None = None, *, timeout_s: float = 30.0) -> SessionView:
        session = self.session(session_id)
        ids = [j.slurm_job_id for j in session.live_jobs if j.slurm_job_id]
        if ids:  # jobs([]) would mean every job of the cluster
            self.progress.step(f"ending job{'s' * (len(ids) != 1)} {', '.join(ids)}")
            self.slurm.cancel(ids)
            _wait_until(lambda: all(j.state.is_terminal for j in self.slurm.jobs(ids)), timeout_s)
        for job in session.live_jobs:
            self.store.update_index_job(job.id, status="ended")
        self.store.set_index_session(session.id, "stopped", detail="stopped by hpcrun index stop")
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


def _plan_json(plan: IndexPlan, auth: str | None) -> dict[str, Any]:
    return {**asdict(plan), "auth": auth}


def _plan_from_json(data: dict[str, Any]) -> IndexPlan:
    values = {f.name: data[f.name] for f in fields(IndexPlan) if f.name in data}
    values["install"] = IndexInstall(**values["install"])
    values["open_options"] = tuple(values.get("open_options", ()))
    return IndexPlan(**values)


def _step_exited(text: str) -> bool:
    # srun reports a task that ended by itself or was killed before the viewer was up.
    return "srun: error:" in text and ("Exited with exit code" in text or "task 0:" in text)


def _step_failed(reason: str, log: str, text: str) -> HpcrunError:
    tail = "\n".join(text.strip().splitlines()[-15:])
    return HpcrunError(
        reason + (f"; {log} ends with:\n{tail}" if tail else f"; {log} is empty"),
        "fix what the log says, then run `hpcrun index` again (the allocation was released)",
    )


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
