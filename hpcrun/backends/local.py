"""The default backend: a real Slurm cluster made of daemons on this host.

`create` writes configs from templates, starts munged (own key and socket), MariaDB and
slurmdbd (accounting: without it Slurm 22.05 refuses to update a job a second time after
a resize), slurmctld, and one `slurmd -N nX` per node (Debian builds Slurm with
multiple-slurmd support), all in the foreground under the supervisor, then waits until
every node is idle. It is idempotent: on a cluster that is up it changes nothing, after a
crash it ends stale processes and starts again, and on a degraded cluster it restarts
only the daemons that died.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcrun.backends import backend_entry
from hpcrun.backends.base import (
    ClusterSite,
    ClusterStatus,
    DaemonStatus,
    Feature,
    NodeStatus,
    Progress,
)
from hpcrun.backends.local_layout import (
    LocalPaths,
    Ports,
    check_ports,
    find_free_ports,
    render_config_files,
)
from hpcrun.backends.processes import (
    SupervisorClient,
    kill_stale,
    process_alive,
    process_belongs,
    processes_mentioning,
)
from hpcrun.errors import DaemonFailed, HpcrunError, SlurmNotInstalled, UsageError
from hpcrun.scheduler import Scheduler, Workspace
from hpcrun.scheduler.index import IndexDriver
from hpcrun.slurm import ACCOUNTING_PROGRAMS, DAEMON_PROGRAMS, Node, SlurmClient
from hpcrun.slurm.index import SlurmIndexDriver
from hpcrun.slurm.scheduler import SlurmScheduler
from hpcrun.state import ClusterRecord, ClusterState, StateStore
from hpcrun.transport import LocalRunner
from hpcrun.transport.workspace import LocalWorkspace

if TYPE_CHECKING:
    from hpcrun.backends.dcv import DcvDesktop


logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 60.0
# The user's AWS keys never reach this cluster's Slurm commands: its jobs need none
# (hpcrun moves S3 files itself, on this machine), and slurmctld writes a batch job's
# whole environment into its state directory under HPCRUN_HOME (found by
# tests/security/test_secrets.py). A job that does need them reads ~/.aws as usual.
CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                  "AWS_SECURITY_TOKEN")


# Drain reasons Slurm sets by itself after a fault on this host: a restarted slurmctld that
# lost a job's start launches it again on a node still running it ("Duplicate jobid");
# a node whose slurmd died under a step that would not die ("Kill task failed").
SLURM_OWN_DRAINS = ("Duplicate jobid", "Kill task failed")

class LocalBackend:
    name = "local"
    unsupported: frozenset[Feature]  # declared in the registry (hpcrun.backends)

    def __init__(self, config: dict[str, Any], store: StateStore) -> None:
        self.config = dict(config)
        self.unsupported = backend_entry(self.name).unsupported(self.config)
        self.store = store
        self.cluster_name: str = self.config["name"]
        self.paths = LocalPaths(store.home / "clusters" / self.cluster_name)
        self.supervisor = SupervisorClient(self.paths.run)

    @classmethod
    def from_record(cls, record: ClusterRecord, store: StateStore) -> LocalBackend:
        return cls(record.config, store)

    # what other layers use ----------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.paths.slurm_conf)}

    def _runner(self) -> LocalRunner:
        """Where Slurm's commands and the workspace's run: this cluster's SLURM_CONF, the
        user's environment less `CREDENTIAL_ENV`."""
        return LocalRunner(self.env, drop=CREDENTIAL_ENV)

    def slurm(self) -> SlurmClient:
        return SlurmClient(self._runner())

    def scheduler(self) -> Scheduler:
        # The supervisor knows the moment a slurmd dies; Slurm takes 18 s to mark the
        # node not responding and 43 s to declare it down (measured, SlurmdTimeout=30).
        create = f"hpcrun create --name {self.cluster_name} --nodes {self.config['nodes']}"
        return SlurmScheduler(
            self.slurm(), dead_agents=self.dead_slurmds, restart_hint=f"`{create}` restarts it"
        )

    def dead_slurmds(self) -> dict[str, str]:
        """Nodes whose slurmd process is not running, each with how it ended."""
        return {
            d.name.removeprefix("slurmd-"): (
                "slurmd is not running"
                + (f" (it exited, status {d.returncode})" if d.returncode is not None else "")
            )
            for d in self._daemons()
            if d.name.startswith("slurmd-") and not d.running
        }

    def workspace(self) -> Workspace:
        return LocalWorkspace(self._runner(), str(self.paths.root))

    def index_driver(self) -> IndexDriver:
        runner = self._runner()
        return SlurmIndexDriver(SlurmClient(runner), runner)

    def desktop(
        self,
        progress: Callable[[str], None] | None = None,
        *,
        attempts: int | None = None,
        wait_s: float | None = None,
    ) -> DcvDesktop | None:
        return None  # this machine's own desktop is the one in front of the user

    def endpoint(self, host: str, port: int) -> str:
        return f"http://127.0.0.1:{port}"  # every node is this host

    def site(self) -> ClusterSite:
        from hpcrun.scenes.catalog import scenes_root

        # The venv's own launcher first: `.venv/bin/hpcrun` works without activating the
        # venv, so PATH may not hold it.
        launcher: str | None = str(Path(sys.executable).with_name("hpcrun-nvindex-slurm"))
        if not Path(str(launcher)).exists():
            launcher = shutil.which("hpcrun-nvindex-slurm")
        return ClusterSite(
            workspace=str(self.paths.root),
            launcher=launcher,
            scenes_dir=str(scenes_root()),
            shares_local_files=True,
        )

    def default_workdir(self) -> str | None:
        return None  # the nodes see this machine's current directory

    @contextlib.contextmanager
    def reach(self, host: str, port: int, local_port: int = 0) -> Iterator[int]:
        yield port  # every node is this host: nothing to forward

    def shell_argv(self, command: Sequence[str] = ()) -> list[str]:
        raise HpcrunError(
            f"cluster {self.cluster_name} runs on this machine: there is no head node to log in to",
            f"use this shell after `export SLURM_CONF={self.paths.slurm_conf}`",
        )

    @property
    def ports(self) -> Ports:
        return Ports(int(self.config["port_base"]), int(self.config["nodes"]))

    def controller_listening(self) -> bool:
        """Whether anything accepts connections on slurmctld's port: a cheap first look
        for `hpcrun clusters`, since a Slurm command waits ~9 s on a dead controller."""
        return _tcp_answers(self.ports.slurmctld)

    # create ---------------------------------------------------------------------------

    def create(self, progress: Progress) -> bool:
        """Bring the cluster up; return False when it already was (nothing changed)."""
        self._check_installed()
        previous = self.store.cluster(self.cluster_name)
        if self.supervisor.alive():
            running = previous.config if previous else self.config
            if self._differs(running):
                raise UsageError(
                    f"cluster {self.cluster_name!r} is up with a different configuration "
                    f"({_describe(running)})",
                    f"stop it first: `hpcrun down --cluster {self.cluster_name} --yes`",
                )
            self.config = dict(running)
            daemons = self._daemons()
            dead = [d for d in daemons if d.died]
            if not dead and self._all_started(daemons):
                resumed: set[str] = set()
                if not self._resume_own_drains(progress, self.slurm().nodes(), resumed):
                    return False
                self._wait_nodes_idle(progress, int(self.config["nodes"]), resumed)
                return True
        elif previous is not None and self._orphaned_daemons():
            # The supervisor was killed and its daemons run on, with the jobs on them:
            # a new supervisor takes them back; ending them as stale would end the jobs.
            if self._differs(previous.config):
                raise UsageError(
                    f"cluster {self.cluster_name!r} runs with a different configuration "
                    f"({_describe(previous.config)}) and lost its supervisor",
                    f"stop it first: `hpcrun down --cluster {self.cluster_name} --yes`",
                )
            self.config = dict(previous.config)
            self._adopt_orphans(progress)
        else:
            self._recover_stale(progress)
            self._assign_ports()
        # Intent first: a crash from here on leaves a "creating" row `status` can explain.
        self.store.put_cluster(self.cluster_name, self.name, self.config, ClusterState.CREATING)
        try:
            self._start_all(progress)
        except BaseException as exc:
            detail = exc.message if isinstance(exc, HpcrunError) else repr(exc)
            self.store.set_cluster_status(self.cluster_name, ClusterState.FAILED, detail)
            raise
        self.store.set_cluster_status(self.cluster_name, ClusterState.UP)
        return True

    def _differs(self, running: dict[str, Any]) -> bool:
        keys = [k for k in self.config if k != "port_base"]
        if self.config.get("port_base") is not None:
            keys.append("port_base")
        return any(self.config.get(k) != running.get(k) for k in keys)

    def _check_installed(self) -> None:
        wanted = DAEMON_PROGRAMS + (ACCOUNTING_PROGRAMS if self.config["accounting"] else ())
        missing = [p for p in wanted if shutil.which(p) is None]
        if missing:
            raise SlurmNotInstalled(missing)

    def _assign_ports(self) -> None:
        if self.config.get("port_base") is not None:
            check_ports(Ports(int(self.config["port_base"]), int(self.config["nodes"])))
            return
        claimed = {
            port
            for record in self.store.clusters()
            if record.name != self.cluster_name
            and record.status != "down"
            and record.config.get("port_base") is not None
            for port in Ports(int(record.config["port_base"]), int(record.config["nodes"])).all()
        }
        self.config["port_base"] = find_free_ports(int(self.config["nodes"]), claimed).base

    def _orphaned_daemons(self) -> list[dict[str, Any]]:
        """Daemons a dead supervisor recorded that still run (checked in /proc to be alive
        and this cluster's: PIDs are reused)."""
        root = str(self.paths.root)
        return [
            d
            for d in self.supervisor.recorded_daemons()
            if d.get("running")
            and process_alive(int(d.get("pid", 0)))
            and process_belongs(int(d["pid"]), root)
        ]

    def _adopt_orphans(self, progress: Progress) -> None:
        """Start a supervisor and hand it the daemons its killed predecessor left running;
        `_start_all` then restarts only those that died meanwhile."""
        orphans = self._orphaned_daemons()  # read before the new supervisor saves its own
        self.supervisor.start_supervisor(self.paths.log / "supervisor.log")
        for d in orphans:
            self.supervisor.request(
                "adopt",
                name=d["name"],
                argv=d["argv"],
                log=d["log"],
                pid=int(d["pid"]),
                started_at=float(d.get("started_at") or time.time()),
            )
        progress.step(
            f"supervisor restarted; it took back {len(orphans)} daemon(s) that ran on "
            "without it (their jobs kept running)"
        )

    def _recover_stale(self, progress: Progress) -> None:
        """End what a crashed supervisor left running, so ports and sockets are free again."""
        if not self.paths.run.exists():
            return
        pids = [int(d["pid"]) for d in self.supervisor.recorded_daemons() if d.get("pid")]
        supervisor_pid = self.supervisor.recorded_supervisor_pid()
        if supervisor_pid:
            pids.append(supervisor_pid)
        # Job steps started from outside the supervisor (IndeX's background `srun`) and
        # tasks that outlived their slurmstepd name the cluster in SLURM_CONF.
        pids += processes_mentioning(str(self.paths.root))
        ended = kill_stale(sorted(set(pids)), str(self.paths.root))
        self.store.end_index_sessions(self.cluster_name, "the cluster was stopped")
        if ended:
            progress.step(f"ended {len(ended)} stale process(es) from an earlier run")
        for stale in self.paths.run.glob("*"):
            if stale.suffix in {".pid", ".sock"}:
                stale.unlink(missing_ok=True)

    def _write_files(self) -> None:
        self.paths.make_dirs()
        for name, text in render_config_files(self.paths, self.config, self.ports).items():
            target = self.paths.etc / name
            target.write_text(text)
            if name == "slurmdbd.conf":
                target.chmod(0o600)  # slurmdbd refuses a config others can read
        if not self.paths.munge_key.exists():
            # 0600 from its first byte (write-then-chmod left it readable for a moment).
            fd = os.open(self.paths.munge_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as key:
                key.write(secrets.token_bytes(1024))
        for index in range(int(self.config["gpus_per_node"])):
            (self.paths.devices / f"gpu{index}").touch()
        self.paths.env_file.write_text(f"export SLURM_CONF={self.paths.slurm_conf}\n")

    def _start_all(self, progress: Progress) -> None:
        """Start every daemon that does not run; say only what this actually starts.

        On a fresh cluster each start is announced before it happens; on a degraded one
        (the supervisor is up) the daemons that were still running are left alone and
        silent, and the ones brought back are named once they answer."""
        healing = self.supervisor.alive()
        if not healing:
            progress.step("writing configs under " + str(self.paths.root))
            self._write_files()
            self.supervisor.start_supervisor(self.paths.log / "supervisor.log")
        known = {d.name: d for d in self._daemons()} if healing else {}
        brought_back: list[str] = []

        def needed(name: str) -> bool:
            daemon = known.get(name)
            if daemon is not None and daemon.running:
                return False
            if healing:
                verb = "restarted" if daemon is not None else "started"
                brought_back.append(f"{_label(name)} {verb}")
            else:
                progress.step(f"starting {_label(name)}")
            return True

        self._start_daemons(progress, needed)
        for line in brought_back:
            progress.step(line)

    def _start_daemons(self, progress: Progress, needed: Callable[[str], bool]) -> None:
        p = self.paths
        if needed("munged"):
            self._start(
                "munged",
                [
                    "munged",
                    "-F",
                    "--force",
                    f"--socket={p.munge_socket}",
                    f"--key-file={p.munge_key}",
                    f"--pid-file={p.run}/munged.pid",
                    f"--seed-file={p.munge}/seed",
                    f"--log-file={p.log}/munged.log",
                ],
                ready=lambda: _unix_socket_answers(p.munge_socket),
            )
        if self.config["accounting"]:
            self._start_accounting(progress, needed)
        if needed("slurmctld"):
            self._start(
                "slurmctld",
                ["slurmctld", "-D", "-i", "-f", str(p.slurm_conf)],
                ready=lambda: _tcp_answers(self.ports.slurmctld),
            )
        nodes = int(self.config["nodes"])
        for index in range(1, nodes + 1):
            if needed(f"slurmd-n{index}"):
                self._start(
                    f"slurmd-n{index}",
                    ["slurmd", "-D", "-N", f"n{index}", "-f", str(p.slurm_conf)],
                    ready=None,
                )
        self._wait_nodes_idle(progress, nodes)

    def _start_accounting(self, progress: Progress, needed: Callable[[str], bool]) -> None:
        p = self.paths
        runner = LocalRunner(self.env)
        # MariaDB's temporary tables go to a folder of this cluster's, not the shared /tmp,
        # where another process cleaning up once removed one mid-install ("Could not
        # remove temporary table ... Unknown table 'mysql.tmp_user_sys'").
        tmpdir = p.run / "mariadb-tmp"
        tmpdir.mkdir(parents=True, exist_ok=True)
        if not (p.db / "mysql").exists():
            progress.step("initialising the accounting database (MariaDB)")
            shutil.rmtree(p.db, ignore_errors=True)
            runner.run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={p.db}",
                    f"--tmpdir={tmpdir}",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                timeout_s=120,
            ).check()
        if needed("mariadb"):
            self._start(
                "mariadb",
                [
                    "mariadbd",
                    "--no-defaults",
                    f"--datadir={p.db}",
                    f"--tmpdir={tmpdir}",
                    f"--socket={p.run}/mariadb.sock",
                    f"--port={self.ports.mariadb}",
                    "--bind-address=127.0.0.1",
                    "--user=root",
                    f"--pid-file={p.run}/mariadb.pid",
                    f"--log-error={p.log}/mariadb.log",
                    "--skip-name-resolve",
                    "--innodb-lock-wait-timeout=900",
                ],
                ready=lambda: _tcp_answers(self.ports.mariadb),
            )
        if not needed("slurmdbd"):
            return  # it ran all along: the cluster is registered with it already
        self._start(
            "slurmdbd",
            ["slurmdbd", "-D"],
            ready=lambda: _tcp_answers(self.ports.slurmdbd),
        )
        added = runner.run(["sacctmgr", "-i", "add", "cluster", self.cluster_name])
        if not added.ok and "already exists" not in added.stdout + added.stderr:
            added.check()

    def _start(self, name: str, argv: list[str], *, ready: Callable[[], bool] | None) -> None:
        argv = [shutil.which(argv[0]) or argv[0], *argv[1:]]
        self.supervisor.request(
            "start", name=name, argv=argv, env=self.env, log=str(self.paths.log / f"{name}.out")
        )
        if ready is None:
            return
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready():
            self._fail_if_dead([name])
            if time.monotonic() > deadline:
                log = self._main_log(name)
                raise DaemonFailed(
                    name, f"did not answer within {READY_TIMEOUT_S:g} s", str(log), _tail(log)
                )
            time.sleep(0.05)

    def _main_log(self, name: str) -> Path:
        """Each daemon is configured to log to log/<name>.log (stdout goes to <name>.out)."""
        return self.paths.log / f"{name}.log"

    def _fail_if_dead(self, names: list[str]) -> None:
        """Raise with the log tail if any of `names` died; one supervisor query for all."""
        wanted = set(names)
        for daemon in self._daemons():
            if daemon.name in wanted and daemon.died:
                log = self._main_log(daemon.name)
                tail = _tail(log)
                if not tail:  # it died before opening its own log: stderr has the reason
                    log = self.paths.log / f"{daemon.name}.out"
                    tail = _tail(log)
                raise DaemonFailed(
                    daemon.name, f"exited with status {daemon.returncode}", str(log), tail
                )

    def _resume_own_drains(
        self, progress: Progress, nodes: Sequence[Node], resumed: set[str]
    ) -> bool:
        """Put back into service, once each (`resumed`), the nodes Slurm drained for a
        reason of its own (`SLURM_OWN_DRAINS`); whether there were any."""
        ours = [
            n
            for n in nodes
            if n.state.startswith("drain")
            and n.reason.startswith(SLURM_OWN_DRAINS)
            and n.name not in resumed
        ]
        if not ours:
            return False
        names = [n.name for n in ours]
        progress.step(f"resuming {', '.join(names)} (drained by Slurm: {ours[0].reason})")
        self.slurm().resume_nodes(names)
        resumed.update(names)
        return True

    def _wait_nodes_idle(
        self, progress: Progress, count: int, resumed: set[str] | None = None
    ) -> None:
        """Until `count` nodes are usable. A node Slurm drained itself for a reason this
        machine's own faults cause (`SLURM_OWN_DRAINS`) is put back: on this cluster
        hpcrun is the administrator, and `create` is what a user runs to heal it."""
        client = self.slurm()
        deadline = time.monotonic() + READY_TIMEOUT_S
        idle = 0
        resumed = set() if resumed is None else resumed
        while True:
            nodes = client.nodes()
            # Registered and usable: a cluster healed under running jobs (a supervisor
            # taken back) has nodes allocated or mixed, never all idle.
            idle = sum(1 for n in nodes if n.is_available)
            progress.advance(idle, count, f"nodes idle {idle}/{count}")
            if idle == count:
                return
            self._fail_if_dead([f"slurmd-n{index}" for index in range(1, count + 1)])
            broken = [n for n in nodes if n.state.startswith(("inval", "drain"))]
            if self._resume_own_drains(progress, broken, resumed):
                time.sleep(0.1)
                continue
            if broken:
                node = broken[0]
                raise DaemonFailed(
                    f"slurmd-{node.name}",
                    f"registered as {node.state} ({node.reason or 'no reason'})",
                    str(self.paths.log / "slurmctld.log"),
                    _tail(self.paths.log / "slurmctld.log"),
                )
            if time.monotonic() > deadline:
                raise DaemonFailed(
                    "slurmd",
                    f"only {idle} of {count} nodes became idle within {READY_TIMEOUT_S:g} s",
                    str(self.paths.log / "slurmctld.log"),
                    _tail(self.paths.log / "slurmctld.log"),
                )
            time.sleep(0.1)

    def _daemons(self) -> list[DaemonStatus]:
        try:
            records = self.supervisor.request("status", timeout_s=10.0)["daemons"]
        except HpcrunError:
            records = [
                {**d, "running": bool(d.get("running")) and process_alive(int(d.get("pid", 0)))}
                for d in self.supervisor.recorded_daemons()
            ]
        return [
            DaemonStatus(
                name=d["name"],
                pid=int(d["pid"]),
                running=bool(d["running"]),
                returncode=d.get("returncode"),
                log=d.get("log", ""),
            )
            for d in records
        ]

    def _all_started(self, daemons: list[DaemonStatus]) -> bool:
        names = {d.name for d in daemons if d.running}
        wanted = {"munged", "slurmctld"} | {
            f"slurmd-n{i}" for i in range(1, int(self.config["nodes"]) + 1)
        }
        if self.config["accounting"]:
            wanted |= {"mariadb", "slurmdbd"}
        return wanted <= names

    # status / destroy -----------------------------------------------------------------

    def status(self) -> ClusterStatus:
        record = self.store.cluster(self.cluster_name)
        recorded = record.status if record else "down"
        supervised = self.supervisor.alive()
        daemons = self._daemons()
        running = {d.name for d in daemons if d.running}
        nodes: list[Node] = []
        jobs = []
        detail = record.detail if record else ""
        jobs_error: str | None = "slurmctld is not running"
        if "slurmctld" in running:
            client = self.slurm()
            try:
                nodes = client.nodes()
                jobs = client.jobs()
            except HpcrunError as exc:
                detail = jobs_error = exc.message
            else:
                jobs_error = None
        by_name = {d.name: d for d in daemons}
        node_status = [NodeStatus(n, by_name.get(f"slurmd-{n.name}")) for n in nodes]
        if not supervised and recorded == "up" and running:
            # Killed alone, the supervisor leaves its daemons (and their jobs) running.
            state = "degraded"
            detail = (
                f"the supervisor is gone (killed or crashed); {len(running)} of "
                f"{len(daemons)} daemons still run, unwatched; `hpcrun create "
                f"--name {self.cluster_name}` takes them back without stopping jobs"
            )
        elif not supervised:
            state = recorded if recorded in {"creating", "failed"} else "down"
            if recorded == "up":
                detail = (
                    "the supervisor is gone (crashed or host restarted); `hpcrun create` recovers"
                )
        elif any(d.died for d in daemons) or any(n.is_down for n in node_status):
            state = "degraded"
        else:
            state = recorded
        return ClusterStatus(
            name=self.cluster_name,
            backend=self.name,
            state=state,
            detail=detail,
            slurm_conf=str(self.paths.slurm_conf),
            daemons=daemons,
            nodes=node_status,
            jobs=jobs,
            jobs_error=jobs_error,
        )

    def destroy(self, progress: Progress, *, purge: bool = False) -> None:
        """Stop every daemon we started, by PID; keep the directory unless `purge`."""
        self.store.set_cluster_status(self.cluster_name, ClusterState.STOPPING)
        supervisor_pid = self.supervisor.recorded_supervisor_pid()
        if self.supervisor.alive():
            self._cancel_jobs(progress)
            progress.step("stopping daemons")
            self.supervisor.request("shutdown")
            deadline = time.monotonic() + 90.0
            while supervisor_pid and process_alive(supervisor_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        pids = [int(d["pid"]) for d in self.supervisor.recorded_daemons() if d.get("pid")]
        if supervisor_pid:
            pids.append(supervisor_pid)
        # Job steps started from outside the supervisor (IndeX's background `srun`) and
        # tasks that outlived their slurmstepd name the cluster in SLURM_CONF.
        pids += processes_mentioning(str(self.paths.root))
        ended = kill_stale(sorted(set(pids)), str(self.paths.root))
        self.store.end_index_sessions(self.cluster_name, "the cluster was stopped")
        if ended:
            progress.step(f"ended {len(ended)} process(es) the supervisor did not")
        if purge:
            progress.step(f"removing {self.paths.root}")
            shutil.rmtree(self.paths.root, ignore_errors=True)
            self.store.delete_cluster(self.cluster_name)
        else:
            self.store.set_cluster_status(self.cluster_name, ClusterState.DOWN)

    def _cancel_jobs(self, progress: Progress) -> None:
        """End running jobs through Slurm first, so their steps and tasks stop cleanly."""
        try:
            client = self.slurm()
            active = [j.job_id for j in client.jobs() if not j.state.is_terminal]
            if active:
                progress.step(f"cancelling {len(active)} job(s)")
                client.cancel(active)
                deadline = time.monotonic() + 10.0
                while time.monotonic() < deadline and any(
                    not j.state.is_terminal for j in client.jobs(active)
                ):
                    time.sleep(0.1)
        except HpcrunError as exc:  # a half-dead controller: the PID sweep below still runs
            logger.warning("could not cancel jobs before stopping: %s", exc)


def _label(daemon: str) -> str:
    """How a daemon is named to users: "slurmd of n2", "MariaDB", "slurmctld"."""
    if daemon.startswith("slurmd-"):
        return f"slurmd of {daemon.removeprefix('slurmd-')}"
    return {"mariadb": "MariaDB"}.get(daemon, daemon)


def _describe(config: dict[str, Any]) -> str:
    return (
        f"{config['nodes']} nodes, {config['cpus_per_node']} CPUs and "
        f"{config['gpus_per_node']} GPUs per node, "
        f"accounting {'on' if config['accounting'] else 'off'}"
    )


def _tcp_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _unix_socket_answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(0.5)
            conn.connect(str(path))
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
