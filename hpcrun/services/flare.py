"""NVIDIA FLARE systems on a cluster: provision, start, follow, submit, tear down.

`up` records the system before anything else and provisions the kits on the user's side
with FLARE's own provisioner (`nvflare provision`). On Slurm it puts them in a run
directory every node sees and submits the server job and the site array
(`hpcrun.workloads.flare`); the server's task picks its ports on its node and publishes
where it listens, the sites point there, and `up` follows FLARE's own server log until
every site registered. On Kubernetes the backend's FLARE layer (`FlareDriver`,
`hpcrun.k8s.flare`) makes a namespace of Secrets, a claim, Deployments and the Service
`server`, and FLARE's admin is asked who registered.

The admin side is FLARE's own API in this process (`flare_admin`), with the admin kit,
which never leaves this machine, over `Backend.reach` (the port itself on the local
cluster, an SSH tunnel through the head node, a port-forward on Kubernetes). `down` asks
FLARE to shut down first (a cancelled server leaves a running job's workers behind for
~20 s), then cancels the jobs or deletes the namespace, then makes sure no process of the
system is left.

Keys: the provisioner writes them 0600; hpcrun copies kits to the cluster with
`put_private` for every private file, writes none to the state store or a log, and keeps
the root CA's state (`provision/`) in the run directory, 0700/0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from hpcrun.backends.base import Feature
from hpcrun.errors import HpcrunError, UsageError
from hpcrun.scheduler import JobRef, Progress, TaskState, TaskStatus
from hpcrun.services.base import ClusterService
from hpcrun.services.flare_admin import FlareAdmin
from hpcrun.state import FLARE_ENDED, FlareState, FlareSystemRecord
from hpcrun.workloads.flare import (
    MIN_VERSION,
    PLAN,
    TASK,
    FlarePlan,
    Participants,
    address_file,
    check_job,
    default_project,
    parse_version,
    read_project,
    server_job_log,
    server_spec,
    site_job_log,
    sites_spec,
)

_POLL_S = 0.5
# How long an admin login may try before status says FLARE did not answer: a
# port-forward binds at once even when nothing listens behind it yet, and a login takes
# ~1.4 s here.
_KUBE_LOGIN_S = 5.0
_POD_WORKSPACE = "/workspace/nvfl"  # where hpcrun.k8s.flare's pods keep the kits


class FlareDriver(Protocol):
    """What a Kubernetes backend's FLARE layer does for this service."""

    def namespace(self, system_id: int) -> str: ...

    def admin_host(self, system_id: int, server: str = "server") -> str: ...

    def start(
        self,
        system_id: int,
        people: Participants,
        kits: Path,
        *,
        image: str,
        gpus_per_site: int | None = None,
        admin_pod: bool = False,
        progress: Progress | None = None,
    ) -> None: ...

    def states(
        self, system_id: int, people: Participants
    ) -> tuple[TaskStatus | None, dict[int, TaskStatus]]: ...

    def stop(self, system_id: int, progress: Progress | None = None) -> int: ...


@dataclass(frozen=True)
class FlareRequest:
    sites: int | None = 2  # None: as many as the --project file names
    gpus_per_site: int | None = None
    project: str | None = None  # a project.yml of the user's
    nvflare_version: str | None = None  # what the nodes must have [default: this side's]
    python: str | None = None  # the nodes' Python with nvflare [default: this one locally]
    port: int | None = None  # fix the server's FL port (admin: port + 1) instead of picking
    time_limit_s: int | None = None
    queue: str | None = None
    timeout_s: float = 600.0  # for every site to register
    wait: bool = True
    image: str | None = None  # Kubernetes: [default: nvflare/nvflare:<this side's version>]
    admin_pod: bool = False  # Kubernetes: also run the admin kit in a pod, for kubectl exec
    install_nvflare: bool = False  # Slurm: a venv with nvflare when the nodes' Python lacks it

    def validate(self) -> None:
        if self.sites is not None and self.sites < 1:
            raise UsageError(f"--sites {self.sites}: a FLARE system needs at least 1 site")
        if self.gpus_per_site is not None and self.gpus_per_site < 1:
            raise UsageError(f"--gpus-per-site {self.gpus_per_site}: at least 1, or leave it out")
        if self.port is not None and not 1024 <= self.port <= 65534:
            raise UsageError(f"--port {self.port}: between 1024 and 65534 (the admin port is +1)")


@dataclass
class FlareView:
    """A system as it stands: what `flare status` prints and `--json` returns."""

    system: FlareSystemRecord
    server: TaskStatus | None = None
    sites: dict[int, TaskStatus] = field(default_factory=dict)
    registered: list[str] | None = None  # None: FLARE was not asked (or did not answer)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    address: dict[str, Any] | None = None
    admin_error: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return list(self.system.plan["participants"]["sites"])

    def to_json(self) -> dict[str, Any]:
        record = self.system
        registered = set(self.registered or ())
        return {
            "system": record.id,
            "status": record.status,
            "detail": record.detail,
            "run_dir": record.run_dir,
            "admin_kit": record.plan.get("admin_kit"),
            "server": {
                "name": record.plan["participants"]["server"],
                "job_id": record.server_job_id,
                "state": _state(self.server),
                "node": self.server.node if self.server else None,
                "address": self.address,
                "log": record.plan.get("server_log"),
            },
            "sites": [
                {
                    "name": name,
                    "task": f"{record.sites_job_id}_{index}"
                    if record.sites_job_id
                    else self.sites[index].ref.id
                    if index in self.sites
                    else None,
                    "state": _state(self.sites.get(index)),
                    "node": self.sites[index].node if index in self.sites else None,
                    "registered": None if self.registered is None else name in registered,
                }
                for index, name in enumerate(self.names, start=1)
            ],
            "jobs": self.jobs,
            "admin_error": self.admin_error,
            "problems": self.problems,
        }


def _state(task: TaskStatus | None) -> str:
    if task is None:
        return "unknown"
    return task.native.lower() if task.native else str(task.state)


class FlareSystems(ClusterService):
    """FLARE systems of one cluster."""

    # which system ---------------------------------------------------------------------

    def system(self, system_id: int | None = None) -> FlareSystemRecord:
        """The one named, else the newest not yet taken down, else the newest."""
        if system_id is not None:
            found = self.store.flare_system(system_id)
            if found is None or found.cluster != self.cluster:
                raise UsageError(
                    f"no FLARE system {system_id} on cluster {self.cluster}",
                    "list them with `hpcrun flare status --all`",
                )
            return found
        systems = self.store.flare_systems(self.cluster)
        if not systems:
            raise UsageError(
                f"no FLARE system on cluster {self.cluster}",
                "start one with `hpcrun flare up --sites 2`",
            )
        live = [s for s in systems if s.status not in FLARE_ENDED]
        return (live or systems)[-1]

    # up -------------------------------------------------------------------------------

    @property
    def on_kubernetes(self) -> bool:
        return Feature.SLURM in self.backend.unsupported

    def up(self, request: FlareRequest) -> FlareView:
        request.validate()
        program, version = _local_nvflare()
        wanted = request.nvflare_version or version  # the nodes' (or the image's) nvflare
        project_text, source = self._project_text(request)
        people = read_project(project_text, source)
        python = request.python or (sys.executable if self.site.shares_local_files else "python3")
        if self.on_kubernetes:
            if request.port is not None or request.python is not None:
                raise UsageError(
                    "--port and --python are for Slurm clusters: on Kubernetes the Service "
                    f"`server` has the project's ports ({people.fl_port}/{people.admin_port}) "
                    "and the image brings its Python",
                    "leave them out (choose the image with --image)",
                )
        else:
            self._check_capacity(len(people.sites), request.gpus_per_site)
            python = self._nodes_python(python, wanted, request.install_nvflare)
            if request.port is not None:
                self._check_ports_free(request.port)
                people = replace(people, fl_port=request.port, admin_port=request.port + 1)
        system_id = self.store.create_flare_system(
            self.cluster, {"participants": people.to_json(), "source": source}
        )
        try:
            if self.on_kubernetes:
                image = request.image or f"nvflare/nvflare:{wanted}"
                self._provision_and_apply(
                    system_id, request, people, (program, project_text), image
                )
            else:
                self._provision_and_submit(
                    system_id, request, people, (program, project_text), python
                )
        except KeyboardInterrupt:
            self.store.set_flare_system(
                system_id,
                self._recorded(system_id).status,
                detail="interrupted during `flare up`: `hpcrun flare down` cleans what started",
            )
            raise
        except BaseException as exc:
            self._undo(system_id, exc)
            raise
        if not request.wait:
            return self.status(self._recorded(system_id), ask_flare=False)
        try:
            return self.wait_registered(self._recorded(system_id), request.timeout_s)
        except KeyboardInterrupt:
            self.store.set_flare_system(
                system_id,
                FlareState.STARTING,
                detail="`flare up` was interrupted while the sites registered; the jobs run "
                "on: `hpcrun flare status` follows them, `hpcrun flare down` ends them",
            )
            raise

    def _recorded(self, system_id: int) -> FlareSystemRecord:
        found = self.store.flare_system(system_id)
        assert found is not None
        return found

    def _project_text(self, request: FlareRequest) -> tuple[str, str]:
        if request.project is None:
            return default_project(request.sites or 2), "hpcrun's project (--sites)"
        path = Path(request.project).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise UsageError(f"--project {request.project}: {exc.strerror}") from None
        people = read_project(text, str(path))
        if request.sites is not None and request.sites != len(people.sites):
            raise UsageError(
                f"--sites {request.sites}, but {path} names {len(people.sites)} site(s): "
                f"{', '.join(people.sites)}",
                "leave --sites out with --project (the file says how many)",
            )
        return text, str(path)

    def _check_capacity(self, sites: int, gpus: int | None) -> None:
        """One CPU for the server and one per site (and `gpus` GPUs per site's node)."""
        nodes = [n for n in self.backend.slurm().nodes() if n.is_available or "idle" in n.state]
        cpus = sum(n.cpus for n in nodes)
        if cpus and sites + 1 > cpus:
            raise UsageError(
                f"--sites {sites}: the cluster runs at most {cpus} tasks at once "
                f"({len(nodes)} nodes up), and the server needs one of them",
                f"use --sites {max(cpus - 1, 1)} or fewer, or grow the cluster",
            )
        if gpus:
            slots = sum(_gpus(n.gres) // gpus for n in nodes)
            if slots < sites:
                raise UsageError(
                    f"--sites {sites} --gpus-per-site {gpus}: the nodes of cluster "
                    f"{self.cluster} hold {slots} such site(s) at once",
                    "ask fewer GPUs per site, fewer sites, or add GPU nodes "
                    "(FLARE sites run on CPUs too: leave --gpus-per-site out)",
                )

    def _nodes_python(self, python: str, wanted: str, install: bool) -> str:
        """The nodes' Python with a usable nvflare: `python` itself, or with `install`
        a venv of it under the workspace holding nvflare `wanted` (made once per version,
        reused by later systems)."""
        found = self._nodes_nvflare(python)
        if found is None and install:
            venv = posixpath.join(self.workspace.root, "flare", "venv", f"nvflare-{wanted}")
            python_there = posixpath.join(venv, "bin", "python")
            made = self.workspace.exists(python_there)
            if not made or self._nodes_nvflare(python_there) != wanted:
                self.progress.step(
                    f"installing nvflare {wanted} into {venv} with {python} (pip, once per version)"
                )
                for argv in (
                    [python, "-m", "venv", venv],
                    [python_there, "-m", "pip", "install", "-q", f"nvflare=={wanted}"],
                ):
                    done = self.workspace.run(argv, timeout_s=1800.0)
                    if not done.ok:
                        tail = " ".join((done.stderr or done.stdout).split())[-300:]
                        raise HpcrunError(
                            f"installing nvflare {wanted} on the cluster failed: {tail}",
                            f"install it by hand ({python} -m pip install 'nvflare=={wanted}') "
                            "and pass --python",
                        )
            return python_there
        how = (
            f"pass --install-nvflare (hpcrun makes a venv of {python} with nvflare {wanted} "
            f"under its workspace), install it yourself ({python} -m pip install "
            f"'nvflare=={wanted}'), or pass --python with a Python that has it"
        )
        if found is None:
            raise HpcrunError(f"nvflare is not installed in {python} on the cluster", how)
        if parse_version(found) < MIN_VERSION:
            raise HpcrunError(
                f"the cluster's nvflare is {found}; hpcrun needs "
                f"{'.'.join(map(str, MIN_VERSION))} or newer (2.4 and 2.5 refuse Python "
                "3.11, and their kits are signed)",
                how,
            )
        if parse_version(found)[:2] != parse_version(wanted)[:2]:
            raise HpcrunError(
                f"the cluster's nvflare is {found}; this side's provisioner makes kits "
                f"for {wanted}",
                f"install nvflare {found} here (pip install 'nvflare=={found}'), or {how}",
            )
        return python

    def _nodes_nvflare(self, python: str) -> str | None:
        """The nvflare version in the cluster's `python`; None when it has none."""
        probe = "import nvflare; print(nvflare.__version__)"
        missing = HpcrunError(
            f"{python} is not there on the cluster's nodes",
            "pass --python with the path of a Python 3.11+ there",
        )
        try:
            done = self.workspace.run([python, "-c", probe], timeout_s=120.0)
        except HpcrunError:  # the runner's "command not found"
            raise missing from None
        if done.returncode == 127 or "No such file" in done.stderr[:300]:
            raise missing
        lines = done.stdout.strip().splitlines()
        return lines[-1].strip() if done.ok and lines else None

    def _check_ports_free(self, port: int) -> None:
        if not self.site.shares_local_files:
            return  # the server's node is not known yet; its task reports a taken port
        for candidate in (port, port + 1):
            with socket.socket() as probe:
                try:
                    probe.bind(("", candidate))
                except OSError:
                    raise UsageError(
                        f"--port {port}: port {candidate} is in use on this cluster's nodes",
                        "pick another --port, or leave it out (hpcrun then picks free ones)",
                    ) from None

    def _provision_and_submit(
        self,
        system_id: int,
        request: FlareRequest,
        people: Participants,
        provisioning: tuple[str, str],  # FLARE's provisioner, the project file's text
        python: str,
    ) -> FlarePlan:
        run_dir = posixpath.join(self.workspace.root, "flare", str(system_id))
        local_dir = (
            Path(run_dir)
            if self.site.shares_local_files
            else self.store.home / "flare" / self.cluster / str(system_id)
        )
        plan = FlarePlan(
            name=f"flare-{system_id}",
            run_dir=run_dir,
            python=python,
            task=posixpath.join(run_dir, TASK),
            participants=people,
            gpus_per_site=request.gpus_per_site,
            time_limit_s=request.time_limit_s,
            queue=request.queue,
            fixed_ports=request.port is not None,
        )
        self.store.set_flare_system(
            system_id,
            FlareState.PROVISIONING,
            run_dir=run_dir,
            plan=self._record_plan(people, request, local_dir, plan.server_log, python=python),
        )
        self.progress.step(f"provisioning {len(people.sites)} site(s) with FLARE's provisioner")
        _provision(*provisioning, local_dir, request.project)
        self._ship(plan, local_dir)
        server = self.scheduler.submit(server_spec(plan))
        self.store.set_flare_system(system_id, FlareState.PROVISIONING, server_job_id=server.id)
        sites = self.scheduler.submit(sites_spec(plan, server))
        self.store.set_flare_system(system_id, FlareState.STARTING, sites_job_id=sites.id)
        self.progress.step(
            f"server job {server}, site array {sites} ({len(people.sites)} task(s), "
            "starting once the server does)"
        )
        return plan

    def _record_plan(
        self,
        people: Participants,
        request: FlareRequest,
        local_dir: Path,
        server_log: str,
        **more: Any,
    ) -> dict[str, Any]:
        """What the state store keeps of a system: names, paths, ports; no key."""
        return {
            "participants": people.to_json(),
            "source": str(request.project or "hpcrun"),
            "admin_kit": str(local_dir / "kits" / people.admin),
            "server_log": server_log,
            "gpus_per_site": request.gpus_per_site,
            "local_dir": str(local_dir),
            **more,
        }

    def _provision_and_apply(
        self,
        system_id: int,
        request: FlareRequest,
        people: Participants,
        provisioning: tuple[str, str],  # FLARE's provisioner, the project file's text
        image: str,
    ) -> None:
        """Kubernetes: the kits as Secrets, the server's workspace on a claim, a Deployment
        per participant, in a namespace of the system's own (`hpcrun.k8s.flare`)."""
        driver = self._driver()
        run_dir = posixpath.join(self.workspace.root, "flare", str(system_id))
        local_dir = Path(run_dir)  # a Kubernetes cluster's workspace is on this machine
        namespace = driver.namespace(system_id)
        self.store.set_flare_system(
            system_id,
            FlareState.PROVISIONING,
            run_dir=run_dir,
            plan=self._record_plan(
                people,
                request,
                local_dir,
                f"{namespace}: kubectl -n {namespace} logs deploy/flare-{system_id}-server",
                namespace=namespace,
                admin_host=driver.admin_host(system_id, people.server),
                image=image,
            ),
        )
        self.progress.step(f"provisioning {len(people.sites)} site(s) with FLARE's provisioner")
        _provision(*provisioning, local_dir, request.project)
        for name in (people.server, *people.sites):
            _point_storage(local_dir / "kits" / name, f"{_POD_WORKSPACE}/store/{name}")
        self.progress.step(f"namespace {namespace}: image {image}")
        driver.start(
            system_id,
            people,
            local_dir / "kits",
            image=image,
            gpus_per_site=request.gpus_per_site,
            admin_pod=request.admin_pod,
            progress=self.progress,
        )
        self.store.set_flare_system(
            system_id, FlareState.STARTING, server_job_id=f"deployment/flare-{system_id}-server"
        )

    def _ship(self, plan: FlarePlan, local_dir: Path) -> None:
        """flare.json, the task, and (on a remote cluster) every kit but the admin's."""
        from hpcrun.node.zipapp import flare_task

        ws = self.workspace
        ws.make_dirs(posixpath.dirname(server_job_log(plan.run_dir)))
        ws.put(posixpath.join(plan.run_dir, PLAN), json.dumps(plan.node_plan(), indent=2).encode())
        ws.put(plan.task, flare_task())
        if self.site.shares_local_files:
            return
        people = plan.participants
        for name in (people.server, *people.sites):
            kit = local_dir / "kits" / name
            for path in sorted(p for p in kit.rglob("*") if p.is_file()):
                target = posixpath.join(plan.kit(name), *path.relative_to(kit).parts)
                if path.stat().st_mode & 0o077 == 0:
                    ws.put_private(target, path.read_text())
                else:
                    ws.put(target, path.read_bytes())

    def _undo(self, system_id: int, exc: BaseException) -> None:
        record = self._recorded(system_id)
        if self.on_kubernetes:
            with contextlib.suppress(HpcrunError):
                self._driver().stop(system_id, self.progress)
        refs = [JobRef(i) for i in (record.server_job_id, record.sites_job_id) if i]
        if refs:
            with contextlib.suppress(HpcrunError):
                self.scheduler.cancel(refs)
        reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        self.store.set_flare_system(system_id, FlareState.FAILED, detail=reason)

    def wait_registered(self, record: FlareSystemRecord, timeout_s: float) -> FlareView:
        """Follow the registrations until every site is in; fail on a dead task."""
        total = len(record.plan["participants"]["sites"])
        deadline = time.monotonic() + timeout_s
        said = ""
        while True:
            view = self.status(record, ask_flare=False)
            seen = self._registered_count(record, view)
            message = _progress_line(view, seen, total)
            if message != said:
                self.progress.advance(seen, total, message)
                said = message
            if seen >= total:
                self.store.set_flare_system(record.id, FlareState.RUNNING)
                # The server's own count says every site registered: no admin login
                # (~1.5 s) to list them again.
                view = self.status(self._recorded(record.id), ask_flare=False)
                view.registered = view.names
                return view
            dead = self._dead_tasks(view)
            if dead:
                logs = (
                    f"kubectl -n {record.plan['namespace']} logs deploy/NAME"
                    if self.on_kubernetes
                    else f"the logs in {posixpath.join(record.run_dir, 'logs')}"
                )
                raise HpcrunError(
                    f"FLARE system {record.id} did not come up: {dead}",
                    f"read {logs}; `hpcrun flare down` cleans up",
                )
            if time.monotonic() > deadline:
                raise HpcrunError(
                    f"{seen} of {total} site(s) registered after {timeout_s:.0f} s",
                    "`hpcrun flare status` shows where each task is (pending in the queue?); "
                    "`hpcrun flare down` ends the system",
                )
            time.sleep(_POLL_S)

    def _registered_count(self, record: FlareSystemRecord, view: FlareView) -> int:
        """Slurm: the server's own log (`Total clients: N`), one read on shared storage.
        Kubernetes: the pods' files are not ours to read, so FLARE's admin is asked once
        the server's pod is Ready."""
        if not self.on_kubernetes:
            return _registered_in_log(self.workspace.read_text(record.plan["server_log"]))
        if view.server is None or view.server.state != TaskState.RUNNING:
            return 0
        try:
            with self.admin(record, timeout_s=_KUBE_LOGIN_S) as admin:
                return len(admin.clients())
        except HpcrunError:
            return 0  # the server's port answers only once FLARE listens

    def _dead_tasks(self, view: FlareView) -> str:
        record = view.system
        parts = []
        for name, task in [(record.plan["participants"]["server"], view.server)] + [
            (view.names[i - 1], t) for i, t in sorted(view.sites.items())
        ]:
            if task is not None and task.state.is_terminal:
                log = self._log_tail(view, name)
                parts.append(f"{name}'s task {task.name} ended ({task.native}){log}")
        return "; ".join(parts)

    def _log_tail(self, view: FlareView, name: str) -> str:
        record = view.system
        if self.on_kubernetes:
            return ""
        if name == record.plan["participants"]["server"]:
            path = server_job_log(record.run_dir)
        else:
            path = site_job_log(record.run_dir, view.names.index(name) + 1)
        lines = [ln for ln in self.workspace.read_text(path).splitlines() if ln.strip()]
        return f": {lines[-1].strip()[:300]}" if lines else ""

    # status ---------------------------------------------------------------------------

    def status(self, record: FlareSystemRecord, *, ask_flare: bool = True) -> FlareView:
        view = FlareView(system=record)
        if record.status == FlareState.PROVISIONING and not record.server_job_id:
            return view
        view.server, view.sites = self._tasks(record)
        if record.status in FLARE_ENDED:
            return view
        view.address = self._address(record)
        what = "pod" if self.on_kubernetes else "Slurm task"
        if not self.on_kubernetes:
            running = [t.node for t in [view.server, *view.sites.values()] if t and t.node]
            for trouble in self.scheduler.node_trouble(sorted(set(running))):
                view.problems.append(f"node {trouble.node}: {trouble.why}; {trouble.then}")
        for index, name in enumerate(view.names, start=1):
            site = view.sites.get(index)
            if record.status == FlareState.RUNNING and (site is None or site.state.is_terminal):
                native = site.native if site else "gone"
                view.problems.append(
                    f"{name}: its {what} ended ({native}); FLARE lists the site until "
                    "its heartbeat times out"
                )
        if view.server is not None and view.server.state.is_terminal:
            view.problems.append(f"server: its {what} ended ({view.server.native})")
        elif ask_flare and view.address is not None and _running(view.server):
            try:
                with self.admin(record, timeout_s=_KUBE_LOGIN_S) as admin:
                    view.registered = admin.clients()
                    view.jobs = admin.jobs()
            except HpcrunError as exc:
                view.admin_error = exc.message
        return view

    def _tasks(self, record: FlareSystemRecord) -> tuple[TaskStatus | None, dict[int, TaskStatus]]:
        """The server's task and each site's (by index from 1): Slurm's tasks, or the
        pods of the system's Deployments; one or two calls either way."""
        if self.on_kubernetes:
            people = Participants.from_json(record.plan["participants"])
            return self._driver().states(record.id, people)
        refs = [JobRef(i) for i in (record.server_job_id, record.sites_job_id) if i]
        server = None
        sites: dict[int, TaskStatus] = {}
        for task in self.scheduler.states(refs) if refs else []:
            if task.ref.id == record.server_job_id:
                server = task
            elif task.index is not None:
                sites[task.index] = task
        return server, sites

    def _driver(self) -> FlareDriver:
        """The Kubernetes backends' FLARE layer (`hpcrun.k8s.flare`), which services
        reach only through the backend."""
        make = getattr(self.backend, "flare_driver", None)
        if make is None:
            raise HpcrunError(f"cluster {self.cluster}'s backend cannot run FLARE systems")
        driver: FlareDriver = make()
        return driver

    def _address(self, record: FlareSystemRecord) -> dict[str, Any] | None:
        """Where the server listens: the Service on Kubernetes; on Slurm what its task
        published once it picked its ports (None before)."""
        if self.on_kubernetes:
            people = record.plan["participants"]
            return {
                "host": record.plan["admin_host"],
                "fl_port": people["fl_port"],
                "admin_port": people["admin_port"],
            }
        text = self.workspace.read_text(address_file(record.run_dir))
        found: dict[str, Any] | None = json.loads(text) if text.strip() else None
        return found

    # admin ----------------------------------------------------------------------------

    @contextmanager
    def admin(self, record: FlareSystemRecord, *, timeout_s: float = 30.0) -> Iterator[FlareAdmin]:
        """A session as the project admin, through a port this side reaches the server's
        admin port on (the admin kit is pointed there first)."""
        address = self._address(record)
        if address is None:
            raise HpcrunError(
                f"FLARE system {record.id}'s server has not started yet",
                "`hpcrun flare status` shows its job",
            )
        kit = Path(record.plan["admin_kit"])
        config_path = kit / "startup" / "fed_admin.json"
        with self.backend.reach(address["host"], int(address["admin_port"])) as port:
            config = json.loads(config_path.read_text())
            config["admin"]["host"] = "127.0.0.1"
            config["admin"]["port"] = port
            config_path.write_text(json.dumps(config, indent=2))
            people = record.plan["participants"]
            with FlareAdmin(kit, people["admin"], timeout_s=timeout_s) as admin:
                yield admin

    # submit ---------------------------------------------------------------------------

    def submit(self, record: FlareSystemRecord, job_dir: str, *, wait: bool) -> dict[str, Any]:
        folder = Path(job_dir).expanduser().resolve()
        if not folder.is_dir():
            raise UsageError(f"{job_dir} is not a folder", "give a FLARE job folder (meta.json)")
        meta_path = folder / "meta.json"
        meta = check_job(
            meta_path.read_text() if meta_path.is_file() else None,
            job_dir,
            record.plan["participants"]["sites"],
        )
        if record.status != FlareState.RUNNING:
            raise HpcrunError(
                f"FLARE system {record.id} is {record.status}: it takes jobs once running",
                "`hpcrun flare status` says why; `hpcrun flare up` starts a new one",
            )
        with self.admin(record) as admin:
            job_id = admin.submit(folder)
            self.progress.step(f"FLARE job {job_id} ({meta.get('name', folder.name)}) submitted")
            result: dict[str, Any] = {"job_id": job_id, "name": meta.get("name", folder.name)}
            if not wait:
                result["status"] = "SUBMITTED"
                return result
            done = admin.follow(job_id, self.progress)
        status = str(done.get("status", "UNKNOWN"))
        result.update(status=status, duration=done.get("duration"))
        result["results"] = posixpath.join(
            record.run_dir, "store", record.plan["participants"]["server"], "jobs-storage", job_id
        )
        return result

    def download(self, record: FlareSystemRecord, job_id: str, output: str) -> str:
        target = Path(output).expanduser().resolve()
        with self.admin(record) as admin:
            return admin.download(job_id, target)

    # down -----------------------------------------------------------------------------

    def down(self, record: FlareSystemRecord) -> FlareSystemRecord:
        if record.status == FlareState.STOPPED:
            return record  # nothing of it runs; its files stay
        self.store.set_flare_system(record.id, FlareState.STOPPING)
        view = self.status(record, ask_flare=False)
        said_shutdown = ""
        if _running(view.server) and view.address:
            self.progress.step("asking FLARE to shut the server and sites down")
            try:
                with self.admin(record, timeout_s=_KUBE_LOGIN_S) as admin:
                    admin.shutdown()
            except HpcrunError as exc:
                said_shutdown = f" (FLARE's shutdown failed: {exc.message})"
        if self.on_kubernetes:
            self._driver().stop(record.id, self.progress)  # it says what it removed
        else:
            refs = [JobRef(i) for i in (record.server_job_id, record.sites_job_id) if i]
            if refs:
                self.progress.step(f"cancelling jobs {', '.join(r.id for r in refs)}")
                self.scheduler.cancel(refs)
                self._wait_ended(refs)
            if self.site.shares_local_files:
                _end_processes_under(Path(record.run_dir) / "kits")
        self.store.set_flare_system(
            record.id,
            FlareState.STOPPED,
            detail=f"taken down by `hpcrun flare down`{said_shutdown}",
        )
        return self._recorded(record.id)

    def _wait_ended(self, refs: list[JobRef], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(t.state.is_terminal for t in self.scheduler.states(refs)):
                return
            time.sleep(_POLL_S)


def _running(task: TaskStatus | None) -> bool:
    return task is not None and task.state == TaskState.RUNNING


def _point_storage(kit: Path, store: str) -> None:
    """The kit's resources.json with FLARE's job and snapshot storage at `store`."""
    from hpcrun.node.flare.cli import storage_config

    default = kit / "local" / "resources.json.default"
    if default.exists():
        (kit / "local" / "resources.json").write_text(storage_config(default.read_text(), store))


def _gpus(gres: str) -> int:
    total = 0
    for part in gres.split(","):
        bits = part.split("(")[0].split(":")
        if bits[0] == "gpu" and bits[-1].isdigit():
            total += int(bits[-1])
    return total


def _registered_in_log(text: str) -> int:
    """FLARE's server logs `Total clients: N` at each registration (and each end)."""
    marker = "Total clients: "
    at = text.rfind(marker)
    if at < 0:
        return 0
    digits = text[at + len(marker) :].split()[0] if text[at + len(marker) :].split() else "0"
    return int(digits) if digits.isdigit() else 0


def _progress_line(view: FlareView, seen: int, total: int) -> str:
    server = view.server
    if server is None or server.state == TaskState.PENDING:
        return f"server job {view.system.server_job_id}: pending in the queue"
    if view.address is None:
        return f"server starting on {server.node or '?'}"
    where = f"{view.address['host']}:{view.address['fl_port']}"
    return f"server on {where}; {seen} of {total} site(s) registered"


def _local_nvflare() -> tuple[str, str]:
    """The nvflare program on this side and its version; provisioning and the admin run
    here."""
    from importlib import metadata

    try:
        version = metadata.version("nvflare")
    except metadata.PackageNotFoundError:
        raise HpcrunError(
            "nvflare is not installed on this side: hpcrun provisions the kits and runs the "
            "admin here",
            "pip install 'hpcrun[flare]' (nvflare 2.6 or newer)",
        ) from None
    program = Path(sys.executable).with_name("nvflare")
    found = str(program) if program.exists() else shutil.which("nvflare")
    if found is None:
        raise HpcrunError("nvflare is installed but its `nvflare` program is not on PATH")
    return found, version


def _provision(program: str, project_text: str, local_dir: Path, source: str | None) -> None:
    """FLARE's provisioner (`program`) into `local_dir/provision`, the kits moved to
    `local_dir/kits`."""
    local_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(local_dir, 0o700)
    project_file = local_dir / "project.yml"
    project_file.write_text(project_text)
    workspace = local_dir / "provision"
    done = subprocess.run(
        [program, "provision", "-p", str(project_file), "-w", str(workspace), "--force"],
        capture_output=True,
        text=True,
        cwd=local_dir,
        timeout=300,
    )
    if done.returncode != 0:
        said = " ".join((done.stdout + done.stderr).split())
        message = said.split("Hint:")[0].strip() or f"exit status {done.returncode}"
        raise UsageError(
            f"FLARE's provisioner rejected {source or 'the project file'}: {message}",
            f"fix the file and run `hpcrun flare up` again (it was copied to {project_file})",
        )
    produced = sorted(workspace.glob("*/prod_00"))
    if not produced:
        raise HpcrunError(f"nvflare provision made no kits under {workspace}")
    produced[-1].rename(local_dir / "kits")
    # What stays of the provisioning workspace is the root CA's state (its private key in
    # state/cert.json, written 0644): only the owner's.
    for path in [workspace, *workspace.rglob("*")]:
        os.chmod(path, 0o700 if path.is_dir() else 0o600)
    os.chmod(local_dir / "kits", 0o700)


def _end_processes_under(kits: Path) -> None:
    """What FLARE left running from these kits on this host (the local cluster): a job's
    workers outlive a cancelled server for ~20 s."""
    from hpcrun.node.flare.cli import end_leftovers

    if kits.is_dir():
        for kit in kits.iterdir():
            end_leftovers(kit)


__all__ = ["FlareDriver", "FlareRequest", "FlareSystems", "FlareView"]
