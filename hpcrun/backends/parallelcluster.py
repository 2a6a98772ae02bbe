"""AWS ParallelCluster: the cluster's life through `pcluster`, its use through SSH.

`create` renders the hpcrun file to ParallelCluster 3 YAML, runs ParallelCluster's own
validators against the account (`create-cluster --dryrun`), creates, follows the
CloudFormation stack with progress, and on failure shows the stack events that explain
it. Once the head node is up, everything else (Slurm, IndeX sessions, logs, DCV, a
shell) is the `ssh` backend pointed at the head node's address with the config's key
and the login user of its OS. The state store records intent before each step
("creating", "deleting") and the outcome after, so an interrupted create can be looked
at with `hpcrun status` and cleaned up with `hpcrun down`. Credentials come from the
normal AWS chain and are never written: the record holds the cluster file's keys and
the head node's address only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcrun.backends import previous_record
from hpcrun.backends.base import ClusterStatus, NodeStatus, Progress
from hpcrun.backends.remote import SshBackend
from hpcrun.errors import HpcrunError, UsageError
from hpcrun.slurm import Job, Node
from hpcrun.state import ClusterRecord, ClusterState, StateStore

if TYPE_CHECKING:
    from hpcrun.backends.pcluster_api import ClusterDescription
    from hpcrun.config.pcluster import ParallelClusterConfig

# The login user of each ParallelCluster OS (what `pcluster ssh` uses).
LOGIN_USER = {
    "alinux2": "ec2-user",
    "alinux2023": "ec2-user",
    "rhel8": "ec2-user",
    "rhel9": "ec2-user",
    "rocky8": "rocky",
    "rocky9": "rocky",
    "ubuntu2004": "ubuntu",
    "ubuntu2204": "ubuntu",
    "ubuntu2404": "ubuntu",
}
# The head-node idle guard (`create --idle-down`): its package, its name inside the
# zipapp, its files as staged (in the workspace) and where they live on the head node.
IDLE_GUARD_PACKAGE = "hpcrun.node.idle"
IDLE_GUARD_NAME = "hpcrun_idle"
IDLE_GUARD_FILE = "idle-guard.pyz"
IDLE_GUARD_PATH = "/opt/hpcrun/idle-guard.pyz"
IDLE_GUARD_PLAN_FILE = "idle-guard-plan.json"
IDLE_GUARD_PLAN = "/opt/hpcrun/idle-guard-plan.json"
STACK_POLL_S = 15.0
STACK_TIMEOUT_S = 3600.0


class ParallelClusterBackend(SshBackend):
    name = "parallelcluster"

    def __init__(
        self,
        config: dict[str, Any],
        store: StateStore,
        *,
        trust_new_host: bool = False,
        suppress_validators: Sequence[str] = (),
    ) -> None:
        super().__init__(config, store, trust_new_host=trust_new_host)
        self.region = str(self.config["region"])
        self.suppress_validators = tuple(suppress_validators)

    @classmethod
    def from_record(cls, record: ClusterRecord, store: StateStore) -> ParallelClusterBackend:
        return cls(record.config, store)

    @property
    def host(self) -> str:
        host = self.config.get("host")
        if not host:
            raise HpcrunError(
                f"cluster {self.cluster_name} has no head node address yet "
                f"(status: {self._recorded_status()})",
                "wait for `hpcrun create` to finish, or see `hpcrun status`",
            )
        return str(host)

    def _recorded_status(self) -> str:
        record = self.store.cluster(self.cluster_name)
        return record.status if record else "unknown"

    # create -------------------------------------------------------------------------

    def create(self, progress: Progress) -> bool:
        from hpcrun.backends import pcluster_api as api

        model = self._model()
        previous = previous_record(self.store, self.cluster_name, self.name)
        if previous is not None and previous.status == "up" and previous.config.get("host"):
            self.config = {**previous.config, **self.config, "host": previous.config["host"]}
            progress.step(f"cluster {self.cluster_name} exists: checking its head node")
            super().create(progress)
            self._install_idle_guard(progress)
            return False
        if model.format != "pcluster-v3":
            raise UsageError(
                f"{model.name}: format: {model.format} clusters are made by ParallelCluster "
                "2.x, which hpcrun does not drive",
                "render the INI with `hpcrun config render FILE --format pcluster-v2` and run "
                "`pcluster create` (2.x); or set format: pcluster-v3",
            )
        path = self._write_rendered(model)
        # Intent first: from here on `hpcrun status` can explain an interrupted create.
        self.store.put_cluster(self.cluster_name, self.name, self.config, ClusterState.CREATING)
        try:
            progress.step("ParallelCluster's validators (pcluster create-cluster --dryrun)")
            checked = api.dry_run(
                path, self.cluster_name, self.region, suppress=self.suppress_validators
            )
            for message in checked.messages:
                if message.level != "ERROR":
                    progress.step(f"{message.level.lower()}: {message.type}: {message.message}")
            if not checked.ok:
                listed = "".join(f"\n  {m}" for m in checked.errors)
                raise HpcrunError(
                    f"ParallelCluster rejects {path.name}: {checked.message}{listed}",
                    "fix the cluster file (`hpcrun config validate` names its keys); a "
                    "validator that is wrong about your account can be skipped with "
                    "--suppress-validators type:NAME",
                )
            progress.step(f"creating {self.cluster_name} in {self.region} (create-cluster)")
            api.create_cluster(
                path, self.cluster_name, self.region, suppress=self.suppress_validators
            )
            progress.step("CloudFormation builds the cluster: usually 10-20 minutes")
            described = self._wait_for("CREATE_COMPLETE", progress)
        except BaseException as exc:
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self.store.set_cluster_status(
                self.cluster_name, ClusterState.FAILED, reason.splitlines()[0]
            )
            raise
        address = described.head_node_public_ip or described.head_node_private_ip
        if not address:
            self.store.set_cluster_status(
                self.cluster_name, ClusterState.FAILED, "no head node address"
            )
            raise HpcrunError(
                f"cluster {self.cluster_name} is {described.status} but describe-cluster "
                "shows no head node address",
                f"see `pcluster describe-cluster -n {self.cluster_name} --region {self.region}`",
            )
        self.config = {
            **self.config,
            "host": address,
            "user": self.config.get("user") or LOGIN_USER.get(model.os, "ec2-user"),
            "stack_arn": described.stack_arn,
        }
        self.store.put_cluster(self.cluster_name, self.name, self.config, ClusterState.CREATING)
        progress.step(f"head node {address}: connecting over SSH")
        super().create(progress)  # records "up" with the resolved paths
        self._install_idle_guard(progress)
        return True

    def _install_idle_guard(self, progress: Progress) -> None:
        """With idle_down_minutes, the guard (`hpcrun.node.idle`) on the head node: its
        zipapp and its plan (what to ask Slurm: `IDLE_QUERIES`) copied to /opt/hpcrun as
        root (the login user's sudo, as on every ParallelCluster OS); the zipapp then
        writes and starts its systemd timer (cron where systemd is absent). Installing
        again replaces the limit and restarts its clock."""
        minutes = self.config.get("idle_down_minutes")
        if not minutes:
            return
        import json
        import shlex

        from hpcrun.node.zipapp import build_zipapp
        from hpcrun.slurm.client import IDLE_QUERIES

        program = build_zipapp(IDLE_GUARD_PACKAGE, name=IDLE_GUARD_NAME)
        staged = f"{self.site().workspace}/{IDLE_GUARD_FILE}"
        staged_plan = f"{self.site().workspace}/{IDLE_GUARD_PLAN_FILE}"
        progress.step(f"installing the idle guard on the head node ({minutes} min)")
        self.runner.put(staged, program)
        self.runner.put(staged_plan, json.dumps(IDLE_QUERIES, indent=2).encode())
        conf = self.config.get("slurm_conf")
        install = [
            IDLE_GUARD_PATH, "install", "--idle-minutes", str(int(minutes)),
            "--plan", IDLE_GUARD_PLAN, *(["--slurm-conf", str(conf)] if conf else []),
        ]  # fmt: skip
        # The guard needs Python 3.7+: the OS's python3 where it is that new (Amazon
        # Linux 2: 3.7), else the one ParallelCluster installs for itself (RHEL 8: 3.6).
        script = (
            'if [ "$(id -u)" = 0 ]; then as_root=; else as_root="sudo -n"; fi; py=; '
            "for p in python3 /opt/parallelcluster/pyenv/versions/*/bin/python3; do "
            'if "$p" -c "import sys; sys.exit(sys.version_info < (3, 7))" 2>/dev/null; '
            'then py=$(command -v "$p"); break; fi; done; '
            '[ -n "$py" ] || { echo "no Python 3.7 or newer on the head node" >&2; exit 1; }; '
            f"$as_root install -D -m 0755 {shlex.quote(staged)} {IDLE_GUARD_PATH} && "
            f"$as_root install -D -m 0644 {shlex.quote(staged_plan)} {IDLE_GUARD_PLAN} && "
            f'$as_root "$py" {shlex.join(install)}'
        )
        done = self.runner.run(["sh", "-c", script], timeout_s=120)
        if not done.ok:
            raise HpcrunError(
                f"cluster {self.cluster_name} is up, but its idle guard did not install: "
                f"{(done.stderr or done.stdout).strip()}",
                "the login user needs passwordless sudo on the head node (ParallelCluster's "
                "default); `hpcrun create` again retries, `hpcrun down --if-idle` from cron "
                "does the same from here",
            )
        progress.step(f"idle guard: {done.stdout.strip()}")

    def _wait_for(self, status: str, progress: Progress) -> ClusterDescription:
        """Follow the stack until `status`, one progress line per change of state."""
        from hpcrun.backends import pcluster_api as api

        return api.wait_for(
            self.cluster_name,
            self.region,
            {status},
            lambda now, elapsed_s: progress.step(f"{now} after {elapsed_s:.0f} s"),
            timeout_s=STACK_TIMEOUT_S,
            poll_s=STACK_POLL_S,
        )

    def _model(self) -> ParallelClusterConfig:
        from hpcrun.config.pcluster import ParallelClusterConfig

        keys = ParallelClusterConfig.model_fields
        return ParallelClusterConfig.model_validate(
            {k: v for k, v in self.config.items() if k in keys}
        )

    def _write_rendered(self, model: ParallelClusterConfig) -> Path:
        """The ParallelCluster 3 YAML, kept beside the state: what was asked of AWS."""
        from hpcrun.config.pcluster import render_v3

        directory = self.store.home / "clusters" / self.cluster_name
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "pcluster-config.yaml"
        path.write_text(render_v3(model))
        return path

    # status / destroy ---------------------------------------------------------------

    def status(self) -> ClusterStatus:
        from hpcrun.backends import pcluster_api as api

        recorded = self._recorded_status()
        nodes: list[Node] = []
        jobs: list[Job] = []
        try:
            described = api.describe_cluster(self.cluster_name, self.region)
        except api.ClusterNotFound:
            state = "deleted" if recorded in {"deleted", "deleting"} else "gone"
            detail = f"no such cluster in {self.region}"
            if recorded == "failed":
                record = self.store.cluster(self.cluster_name)
                state, detail = "failed", (record.detail if record else detail)
            return ClusterStatus(self.cluster_name, self.name, state, detail)
        state = _STATE.get(described.status, described.status.lower())
        head = described.head_node_public_ip or described.head_node_private_ip or "no head node"
        detail = f"{self.region}, head node {head}, stack {described.stack_status}"
        if described.failure_reason:
            detail += f": {described.failure_reason}"
        jobs_error: str | None = None
        head_state = str((described.raw.get("headNode") or {}).get("state") or "")
        if state == "up" and head_state in {"stopping", "stopped"}:
            # The idle guard (`create --idle-down`) halts an idle head node: Slurm is off
            # with it, and `hpcrun down` deletes what remains.
            state, detail = "stopped", f"{detail}; head node {head_state}"
            jobs_error = f"the head node is {head_state}"
        if state == "up" and self.config.get("host"):
            try:
                client = self.slurm()
                nodes, jobs = client.nodes(), client.jobs()
            except HpcrunError as exc:
                state, detail = "degraded", f"{detail}; Slurm: {exc.message}"
                jobs_error = exc.message
        return ClusterStatus(
            name=self.cluster_name,
            backend=self.name,
            state=state,
            detail=detail,
            nodes=[NodeStatus(n) for n in nodes],
            jobs=jobs,
            jobs_error=jobs_error,
        )

    def destroy(self, progress: Progress, *, purge: bool = False) -> None:
        """Delete the cluster and every AWS resource of its stack."""
        from hpcrun.backends import pcluster_api as api

        self.store.set_cluster_status(self.cluster_name, ClusterState.DELETING)
        self.store.end_index_sessions(self.cluster_name, "the cluster was deleted")
        progress.step(f"deleting {self.cluster_name} in {self.region} (pcluster delete-cluster)")
        try:
            api.delete_cluster(self.cluster_name, self.region, missing_ok=True)
            self._wait_for("DELETE_COMPLETE", progress)
        except HpcrunError as exc:
            self.store.set_cluster_status(
                self.cluster_name, ClusterState.FAILED, exc.message.splitlines()[0]
            )
            raise
        finally:
            self.close()
        if purge:
            self.store.delete_cluster(self.cluster_name)
        else:
            self.store.set_cluster_status(self.cluster_name, ClusterState.DELETED)


_STATE = {
    "CREATE_COMPLETE": "up",
    "UPDATE_COMPLETE": "up",
    "CREATE_IN_PROGRESS": "creating",
    "UPDATE_IN_PROGRESS": "updating",
    "DELETE_IN_PROGRESS": "deleting",
    "CREATE_FAILED": "failed",
    "UPDATE_FAILED": "degraded",
    "DELETE_FAILED": "failed",
}
