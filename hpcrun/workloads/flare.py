"""An NVIDIA FLARE system as any scheduler sees it: one server job, then one site array.

Pure planning, no I/O. `default_project` is the project file hpcrun provisions from when
the user gives none (server `server`, sites site-1..N, one project admin), golden-tested;
`read_project` takes a user's project file apart into the `Participants` hpcrun needs
(refusing what it cannot run: several servers, no client, no project admin) and leaves
everything else to FLARE's provisioner. `server_spec` and `sites_spec` are the jobs: the
site array starts once the server job started (its tasks wait for the address it
publishes). `check_job` names a job folder's mistakes before FLARE sees it: no meta.json,
a deploy map naming a site the system does not have.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hpcrun.errors import UsageError
from hpcrun.node.flare.cli import PLAN, SERVER_ADDRESS
from hpcrun.scheduler import INDEX_PLACEHOLDER, After, JobRef, WorkSpec
from hpcrun.templates import yaml_environment

__all__ = ["PLAN", "SERVER_ADDRESS"]

TASK = "flare_task.pyz"  # the participant task's zipapp (hpcrun.node.zipapp), one per run
PROJECT = "hpcrun"
SERVER = "server"
ORG = "nvidia"
ADMIN = "admin@nvidia.com"
# What FLARE's sample project uses; on Slurm the server's task picks free ports instead,
# on Kubernetes these are the Service's ports.
FL_PORT = 8002
ADMIN_PORT = 8003
MIN_VERSION = (2, 6)  # 2.4 and 2.5 refuse Python 3.11; 2.4's kits are signed
_ALL_SITES = "@ALL"
SERVER_TARGET = "server"  # how a deploy map names the server, whatever its own name


@dataclass(frozen=True)
class Participants:
    """Who a provisioned system holds, by the names in its kits."""

    project: str
    server: str
    org: str
    sites: tuple[str, ...]
    admin: str
    fl_port: int = FL_PORT
    admin_port: int = ADMIN_PORT

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["sites"] = list(self.sites)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Participants:
        return cls(**{**data, "sites": tuple(data["sites"])})


@dataclass(frozen=True)
class FlarePlan:
    """One system on one cluster: where its files are and what its jobs ask for."""

    name: str  # flare-<id>: the jobs' names
    run_dir: str  # on the cluster, seen by every node: kits/, store/, logs/
    python: str  # the nodes' Python with nvflare
    task: str  # flare_task.pyz there
    participants: Participants
    gpus_per_site: int | None = None
    time_limit_s: int | None = None
    queue: str | None = None
    fixed_ports: bool = False  # the user's --port: the server task uses those, no others
    env: Mapping[str, str] = field(default_factory=dict)

    def node_plan(self) -> dict[str, Any]:
        """flare.json: what the participant task reads (no secret in it)."""
        people = self.participants
        return {
            "server": people.server,
            "org": people.org,
            "sites": list(people.sites),
            "fl_port": people.fl_port if self.fixed_ports else 0,
            "admin_port": people.admin_port if self.fixed_ports else 0,
        }

    def kit(self, name: str) -> str:
        return posixpath.join(self.run_dir, "kits", name)

    @property
    def server_log(self) -> str:
        """FLARE's own server log: `Total clients: N` tells registrations."""
        return posixpath.join(self.kit(self.participants.server), "log.txt")


def address_file(run_dir: str) -> str:
    """Where the server's task publishes its host and ports (`hpcrun.node.flare`)."""
    return posixpath.join(run_dir, SERVER_ADDRESS)


def server_job_log(run_dir: str) -> str:
    return posixpath.join(run_dir, "logs", "server.out")


def site_job_log(run_dir: str, index: int | str) -> str:
    """Site `index`'s task log (`{index}` in the array's spec)."""
    return posixpath.join(run_dir, "logs", f"site-{index}.out")


def site_names(count: int) -> tuple[str, ...]:
    return tuple(f"site-{i}" for i in range(1, count + 1))


def default_project(sites: int, *, fl_port: int = FL_PORT, admin_port: int = ADMIN_PORT) -> str:
    """The project file of a system with `sites` sites."""
    if sites < 1:
        raise UsageError(f"--sites {sites}: a FLARE system needs at least 1 site")
    return (
        yaml_environment("hpcrun.workloads")
        .get_template("flare_project.yml.j2")
        .render(
            project=PROJECT,
            server=SERVER,
            org=ORG,
            admin=ADMIN,
            sites=site_names(sites),
            fl_port=fl_port,
            admin_port=admin_port,
        )
    )


def read_project(text: str, source: str) -> Participants:
    """The participants of a project file; what FLARE's provisioner checks beyond that
    (names, roles, builders) it reports itself."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{source} is not YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("participants"), list):
        raise UsageError(
            f"{source}: no `participants` list",
            "start from `nvflare provision -g` (a sample) or leave --project out",
        )
    people = [p for p in data["participants"] if isinstance(p, dict)]
    servers = [p for p in people if p.get("type") == "server"]
    clients = [str(p.get("name")) for p in people if p.get("type") == "client"]
    admins = [p for p in people if p.get("type") == "admin"]
    if len(servers) != 1:
        raise UsageError(
            f"{source}: {len(servers)} participants of type server; hpcrun runs exactly one",
            "keep one server (FLARE's HA setups with an overseer are not supported)",
        )
    if not clients:
        raise UsageError(f"{source}: no participant of type client (a site)")
    project_admins = [p for p in admins if p.get("role") == "project_admin"]
    if not project_admins:
        raise UsageError(
            f"{source}: no admin with role project_admin",
            "add one (- name: admin@example.com, type: admin, org: ..., role: project_admin): "
            "hpcrun submits jobs and shuts the system down as that admin",
        )
    server = servers[0]
    fl_port = int(server.get("fed_learn_port") or FL_PORT)
    return Participants(
        project=str(data.get("name") or PROJECT),
        server=str(server.get("name")),
        org=str(server.get("org") or ORG),
        sites=tuple(clients),
        admin=str(project_admins[0].get("name")),
        fl_port=fl_port,
        admin_port=int(server.get("admin_port") or fl_port + 1),
    )


def server_spec(plan: FlarePlan) -> WorkSpec:
    return WorkSpec(
        name=f"{plan.name}-server",
        argv=(plan.python, plan.task, "server", plan.run_dir),
        time_limit_s=plan.time_limit_s,
        queue=plan.queue,
        env=plan.env,
        workdir=plan.run_dir,
        log_path=server_job_log(plan.run_dir),
    )


def sites_spec(plan: FlarePlan, server: JobRef) -> WorkSpec:
    """Task N is site N (the project's Nth client); each asks for its own GPUs."""
    return WorkSpec(
        name=f"{plan.name}-sites",
        argv=(plan.python, plan.task, "site", plan.run_dir),
        array=tuple(range(1, len(plan.participants.sites) + 1)),
        gpus_per_node=plan.gpus_per_site,
        after=(server,),
        after_condition=After.STARTED,
        time_limit_s=plan.time_limit_s,
        queue=plan.queue,
        env=plan.env,
        workdir=plan.run_dir,
        log_path=site_job_log(plan.run_dir, INDEX_PLACEHOLDER),
    )


def check_job(meta_text: str | None, folder: str, sites: Sequence[str]) -> dict[str, Any]:
    """A job folder's meta.json, once it names only sites this system has."""
    if meta_text is None:
        raise UsageError(
            f"{folder} has no meta.json: it is not a FLARE job folder",
            "a job folder holds meta.json and one folder per app; "
            "`hpcrun flare example DIR` writes one to start from",
        )
    try:
        meta = json.loads(meta_text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{folder}/meta.json is not JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{folder}/meta.json: expected an object")
    deploy = meta.get("deploy_map")
    if not isinstance(deploy, dict) or not deploy:
        raise UsageError(
            f"{folder}/meta.json has no deploy_map",
            'add one: "deploy_map": {"app": ["@ALL"]}',
        )
    known = {SERVER_TARGET, _ALL_SITES, *sites}
    named = [str(n) for targets in deploy.values() for n in (targets or [])]
    unknown = sorted({n for n in named if n not in known})
    if unknown:
        raise UsageError(
            f"{folder}/meta.json deploys to {', '.join(unknown)}, which this system does "
            f"not have (its sites: {', '.join(sites)})",
            "name only these sites, or @ALL",
        )
    needed = meta.get("min_clients")
    if isinstance(needed, int) and needed > len(sites):
        raise UsageError(
            f"{folder}/meta.json needs min_clients {needed}; this system has {len(sites)} site(s)",
            f"lower min_clients, or bring a system up with `hpcrun flare up --sites {needed}`",
        )
    return meta


def parse_version(text: str) -> tuple[int, ...]:
    """`2.9.0` -> (2, 9, 0); `2.6.0rc1` -> (2, 6, 0)."""
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])
