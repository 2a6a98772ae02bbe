"""A Slurm cluster hpcrun did not make, reached over SSH: every Slurm command, log read
and background step runs on its head node through one `SSHRunner`.

This is the `ssh` backend of cluster files (a lab cluster, a ParallelCluster head node
made by hand) and the remote half of the ParallelCluster backend, which adds the AWS
lifecycle around it. "Creating" such a cluster means attaching to it: the host key is
checked (or trusted once with `--trust-new-host`), Slurm must answer, and the paths
hpcrun needs there (its workspace, the open renderer) are resolved once and recorded, so
later commands cost no extra round trips. `down` detaches: it ends hpcrun's own IndeX
sessions and leaves the cluster running.
"""

from __future__ import annotations

import contextlib
import posixpath
import shlex
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from hpcrun.backends import backend_entry, previous_record
from hpcrun.backends.base import ClusterSite, ClusterStatus, Feature, NodeStatus, Progress
from hpcrun.errors import HpcrunError
from hpcrun.scheduler import Scheduler, Workspace
from hpcrun.scheduler.index import IndexDriver
from hpcrun.slurm import Job, Node, SlurmClient
from hpcrun.slurm.index import SlurmIndexDriver
from hpcrun.slurm.scheduler import SlurmScheduler
from hpcrun.state import ClusterRecord, ClusterState, StateStore
from hpcrun.transport.ssh import SSHRunner
from hpcrun.transport.workspace import RunnerWorkspace

if TYPE_CHECKING:
    from hpcrun.backends.dcv import DcvDesktop

LAUNCHER = "hpcrun-nvindex-slurm"


class SshBackend:
    name = "ssh"
    unsupported: frozenset[Feature]  # declared in the registry (hpcrun.backends)

    def __init__(
        self, config: dict[str, Any], store: StateStore, *, trust_new_host: bool = False
    ) -> None:
        self.config = dict(config)
        self.unsupported = backend_entry(self.name).unsupported(self.config)
        self.store = store
        self.cluster_name: str = self.config["name"]
        self.trust_new_host = trust_new_host
        self._runner: SSHRunner | None = None

    @classmethod
    def from_record(cls, record: ClusterRecord, store: StateStore) -> SshBackend:
        return cls(record.config, store)

    # what other layers use ----------------------------------------------------------

    @property
    def host(self) -> str:
        return str(self.config["host"])

    @property
    def runner(self) -> SSHRunner:
        if self._runner is None:
            conf = self.config.get("slurm_conf")
            known_hosts = self.config.get("known_hosts_path")
            self._runner = SSHRunner(
                self.host,
                port=int(self.config.get("port") or 22),
                user=self.config.get("user"),
                key_path=self.config.get("private_key_path"),
                # hpcrun's own file unless the cluster file names one; with hpcrun's own,
                # the user's ~/.ssh/known_hosts is read too (never written).
                known_hosts_path=known_hosts or self.store.home / "known_hosts",
                read_system_known_hosts=known_hosts is None,
                trust_new_host=self.trust_new_host,
                env={"SLURM_CONF": conf} if conf else None,
            )
        return self._runner

    def slurm(self) -> SlurmClient:
        return SlurmClient(self.runner)

    def scheduler(self) -> Scheduler:
        return SlurmScheduler(self.slurm())

    def workspace(self) -> Workspace:
        return RunnerWorkspace(self.runner, self.site().workspace)

    def index_driver(self) -> IndexDriver:
        return SlurmIndexDriver(self.slurm(), self.runner)

    def endpoint(self, host: str, port: int) -> str:
        return f"http://{host}:{port}"  # as seen inside the cluster's network (or DCV)

    def site(self) -> ClusterSite:
        workspace = self.config.get("workspace")
        if not workspace:  # a record made before the paths were resolved
            workspace = self._resolve()["workspace"]
        return ClusterSite(
            workspace=str(workspace),
            launcher=self.config.get("open_renderer"),
            scenes_dir=self.config.get("scenes_dir"),
            shares_local_files=False,
        )

    def default_workdir(self) -> str | None:
        return str(self.config.get("home") or self._resolve()["home"])

    @contextlib.contextmanager
    def reach(self, host: str, port: int, local_port: int = 0) -> Iterator[int]:
        bound, close = self.runner.forward_local_port(host, port, local_port)
        try:
            yield bound
        finally:
            close()

    def desktop(
        self,
        progress: Callable[[str], None] | None = None,
        *,
        attempts: int | None = None,
        wait_s: float | None = None,
    ) -> DcvDesktop:
        """The head node's DCV session, as `pcluster dcv connect` prepares it: SSH first
        (a failure there is said to be SSH's, not DCV's), then the connect script,
        retried while a fresh head node's DCV server starts (`progress` hears of each
        failed attempt). Whether its port answers from here is `port_problem()`'s."""
        from hpcrun.backends import dcv

        host = self.desktop_host()
        try:
            self.runner.connect()
        except HpcrunError as exc:
            if "host key" in exc.message:  # answered, but unverified: that error says why
                raise
            raise dcv.ssh_failed_error(host, exc) from None
        home = self.config.get("home") or self._resolve()["home"]
        script = str(self.config.get("dcv_connect_script") or dcv.DCV_CONNECT_SCRIPT)
        session = dcv.prepare_session(
            self.runner,
            host,
            str(home),
            script=script,
            progress=progress,
            attempts=dcv.ATTEMPTS if attempts is None else attempts,
            wait_s=dcv.RETRY_WAIT_S if wait_s is None else wait_s,
        )
        settings = self.config.get("dcv")
        return dcv.DcvDesktop(
            host,
            session,
            ssh_target=self.runner.target,
            dcv_settings=settings if isinstance(settings, dict) else None,
        )

    def desktop_host(self) -> str:
        """The address the user's browser reaches DCV at: the head node's."""
        return self.host

    def shell_argv(self, command: Sequence[str] = ()) -> list[str]:
        """OpenSSH's own client for an interactive shell (a real terminal, the user's
        ssh config), held to the same host key hpcrun verified."""
        argv = ["ssh", "-p", str(self.runner.port)]
        if self.runner.key_path is not None:
            argv += ["-i", str(self.runner.key_path), "-o", "IdentitiesOnly=yes"]
        argv += [
            "-o",
            f"UserKnownHostsFile={self.runner.known_hosts_path}",
            "-o",
            "StrictHostKeyChecking=yes",
        ]
        if self.runner.user:
            argv += ["-l", self.runner.user]
        argv.append(self.host)
        if command:
            argv += ["--", *command]
        return argv

    # attach / status / detach -------------------------------------------------------

    def create(self, progress: Progress) -> bool:
        """Attach: check the host key and that Slurm answers, resolve and record paths.
        False when the same cluster was already attached (nothing changed)."""
        previous = previous_record(self.store, self.cluster_name, self.name)
        progress.step(f"connecting to {self.runner.target} over SSH")
        self.runner.connect()
        progress.step("asking Slurm for its nodes (sinfo)")
        try:
            nodes = self.slurm().nodes()
        except HpcrunError as exc:
            raise HpcrunError(
                f"Slurm does not answer on {self.host}: {exc.message}",
                "check that Slurm's client commands work there (`hpcrun ssh` after attaching, "
                "or plain ssh), and set slurm_conf in the cluster file if SLURM_CONF is "
                "not the default",
            ) from exc
        resolved = {**self.config, **self._resolve()}
        unchanged = previous is not None and previous.config == resolved and previous.status == "up"
        self.config = resolved
        self.store.put_cluster(self.cluster_name, self.name, resolved, ClusterState.UP)
        progress.step(f"{len(nodes)} Slurm nodes on {self.host}")
        return not unchanged

    def _resolve(self) -> dict[str, str | None]:
        """Home, workspace (made if missing) and the open renderer's launcher on the host,
        in two round trips."""
        found = self.runner.run(
            ["sh", "-c", f'printf "%s\\n" "$HOME"; command -v {LAUNCHER} || true']
        ).check()
        lines = [*found.stdout.splitlines(), "", ""]
        home = lines[0].strip() or "/tmp"
        workspace = _expand(str(self.config.get("workspace") or "~/.hpcrun"), home)
        launcher = self.config.get("open_renderer") or lines[1].strip() or None
        if launcher is not None:
            launcher = _expand(str(launcher), home)
        scenes = self.config.get("scenes_dir")
        scenes = _expand(str(scenes), home) if scenes else None
        checks = [f"mkdir -p {shlex.quote(workspace)}"]
        if launcher:
            checks.append(f"test -x {shlex.quote(launcher)} || echo launcher")
        if scenes:
            checks.append(f"test -d {shlex.quote(scenes)} || echo scenes_dir")
        done = self.runner.run(["sh", "-c", "; ".join(checks)])
        if not done.ok:
            raise HpcrunError(
                f"cannot make hpcrun's workspace {workspace} on {self.host}: {done.stderr.strip()}",
                "set workspace in the cluster file to a writable directory every node sees",
            )
        missing = done.stdout.split()
        if "launcher" in missing:
            raise HpcrunError(
                f"open_renderer: {launcher} is not an executable on {self.host}",
                f"install hpcrun there (pip install 'hpcrun[viewer]') and point open_renderer "
                f"at its {LAUNCHER}, or leave it out if IndeX is installed",
            )
        if "scenes_dir" in missing:
            raise HpcrunError(
                f"scenes_dir: {scenes} is not a directory on {self.host}",
                "copy hpcrun's scenes/ there, or leave scenes_dir out and pass .prj paths",
            )
        return {
            "home": home,
            "workspace": workspace,
            "open_renderer": launcher,
            "scenes_dir": scenes,
        }

    def status(self) -> ClusterStatus:
        record = self.store.cluster(self.cluster_name)
        nodes: list[Node] = []
        jobs: list[Job] = []
        state = record.status if record else "detached"
        detail = f"ssh {self.runner.target}"
        jobs_error: str | None = None
        if state == "up":
            try:
                client = self.slurm()
                nodes = client.nodes()
                jobs = client.jobs()
            except HpcrunError as exc:
                state, detail = "unreachable", exc.message
                jobs_error = exc.message
            else:
                if nodes and all(not n.is_available for n in nodes):
                    state = "degraded"
        return ClusterStatus(
            name=self.cluster_name,
            backend=self.name,
            state=state,
            detail=detail,
            slurm_conf=self.config.get("slurm_conf"),
            nodes=[NodeStatus(n) for n in nodes],
            jobs=jobs,
            jobs_error=jobs_error,
        )

    def destroy(self, progress: Progress, *, purge: bool = False) -> None:
        """Detach: end hpcrun's IndeX sessions here; the cluster itself keeps running."""
        sessions = self.store.index_sessions(self.cluster_name, active_only=True)
        ids = [j.slurm_job_id for s in sessions for j in s.live_jobs if j.slurm_job_id]
        if ids:
            progress.step(f"ending hpcrun's IndeX jobs {', '.join(ids)}")
            with contextlib.suppress(HpcrunError):
                self.slurm().cancel(ids)
        self.store.end_index_sessions(self.cluster_name, "hpcrun detached from the cluster")
        progress.step(f"the cluster on {self.host} keeps running: hpcrun did not create it")
        if purge:
            self.store.delete_cluster(self.cluster_name)
        else:
            self.store.set_cluster_status(self.cluster_name, ClusterState.DETACHED)
        self.close()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()


def _expand(path: str, home: str) -> str:
    """`~` and relative paths are relative to the remote home, as in an ssh session."""
    if path == "~" or path.startswith("~/"):
        path = home + path[1:]
    return path if path.startswith("/") else posixpath.join(home, path)
