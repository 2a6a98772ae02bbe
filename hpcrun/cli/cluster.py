"""Cluster lifecycle commands: create, status, down, clusters, use."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hpcrun.cli._common import (
    ClusterOption,
    JsonOption,
    RichProgress,
    console,
    open_store,
    print_json,
    require,
    resolve_cluster,
)
from hpcrun.errors import HpcrunError, UnknownCluster, UsageError

if TYPE_CHECKING:
    from hpcrun.backends.base import Backend, ClusterStatus
    from hpcrun.cli._common import Target
    from hpcrun.config.cost import CostEstimate
    from hpcrun.services.idle import Idle
    from hpcrun.state import ClusterRecord, StateStore


def _as_recorded(store: StateStore, backend: str, given: dict[str, Any]) -> dict[str, Any]:
    """The shape a local cluster was created with, when `create` names one that exists:
    `hpcrun create --name big` heals an 8-node cluster as 8 nodes (flags still change
    what they name), where the defaults would call it "a different configuration". Every
    hint after a fault says just `hpcrun create --name X`. The ports are chosen afresh."""
    from hpcrun.config.models import LocalClusterConfig

    if backend != "local":
        return {}
    default_name = LocalClusterConfig.model_fields["name"].default
    record = store.cluster(str(given.get("name") or default_name))
    if record is None or record.backend != backend:
        return {}
    return {k: v for k, v in record.config.items() if k != "port_base"}


def create(
    backend: Annotated[str, typer.Option(help="Where the cluster comes from.")] = "local",
    name: Annotated[
        str | None, typer.Option(help="Cluster name [default: dev].", show_default=False)
    ] = None,
    nodes: Annotated[
        int | None,
        typer.Option("--nodes", "-N", help="Slurm nodes, 1-16 [default: 4].", show_default=False),
    ] = None,
    cpus_per_node: Annotated[
        int | None, typer.Option(help="CPUs each node declares [default: 8].", show_default=False)
    ] = None,
    gpus_per_node: Annotated[
        int | None, typer.Option(help="GPUs each node declares [default: 2].", show_default=False)
    ] = None,
    accounting: Annotated[
        bool | None,
        typer.Option(
            "--accounting/--no-accounting",
            help="Run MariaDB + slurmdbd [default: on].",
            show_default=False,
        ),
    ] = None,
    port_base: Annotated[
        int | None,
        typer.Option(
            help="First of nodes+3 TCP ports [default: a free block from 16800].",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="Cluster file (YAML); flags override its keys.", show_default=False
        ),
    ] = None,
    trust_new_host: Annotated[
        bool,
        typer.Option(
            "--trust-new-host",
            help="ssh/AWS clusters: accept and remember the head node's host key if this "
            "machine has never seen it (a changed key is still refused).",
        ),
    ] = False,
    suppress_validators: Annotated[
        list[str] | None,
        typer.Option(
            "--suppress-validators",
            help="ParallelCluster: skip a validator of its dry run, as pcluster's own flag "
            "(type:KeyPairValidator); repeatable.",
            show_default=False,
        ),
    ] = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="AWS clusters: create without asking after the cost estimate."
        ),
    ] = False,
    idle_down: Annotated[
        int | None,
        typer.Option(
            "--idle-down",
            metavar="MINUTES",
            help="ParallelCluster: a guard on the head node powers the cluster off (compute "
            "nodes, then the head node) after MINUTES (10-43200) without a job; the cluster "
            "file's idle_down_minutes. `hpcrun down` then deletes what remains.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Bring up a cluster: by default a real Slurm cluster on this machine.

    Starts munged, MariaDB + slurmdbd, slurmctld and one slurmd per node under a
    supervisor, and waits until every node is idle. Running it again on a cluster that
    is up changes nothing; after a crash it recovers.

    A cluster file with `backend: ssh` attaches to a Slurm cluster over SSH instead
    (its head node runs every command). `backend: parallelcluster` creates one on AWS
    with `pcluster create-cluster` (its validators first, as a dry run), follows the
    CloudFormation stack and shows the events that explain a failure; credentials come
    from the usual AWS chain (AWS_PROFILE, SSO, environment). Before an AWS cluster
    (parallelcluster, eks) is made, its hourly cost at AWS on-demand list price is shown
    and `create` asks; --yes skips the question (needed where stdin is not a terminal).

    \b
    Examples:
      hpcrun create                       # 4 nodes, named dev
      hpcrun create --nodes 8 --name big --no-accounting
      hpcrun create --config configs/local.yaml
      hpcrun create --config configs/ssh.yaml --trust-new-host
      hpcrun create --config configs/index-aws.yaml --trust-new-host
      hpcrun create --config configs/index-aws.yaml --idle-down 60
      hpcrun create --config configs/index-eks.yaml --yes
    """
    from hpcrun.backends import backend_entry, refusal
    from hpcrun.backends.base import Feature
    from hpcrun.config.models import load_cluster_file, validate_cluster_data

    loaded = load_cluster_file(config) if config else None
    chosen = loaded.backend if loaded is not None else backend
    entry = backend_entry(chosen)
    flags = {
        "name": name,
        "nodes": nodes,
        "cpus_per_node": cpus_per_node,
        "gpus_per_node": gpus_per_node,
        "accounting": accounting,
        "port_base": port_base,
    }
    given = {k: v for k, v in flags.items() if v is not None}
    if loaded is None and entry.needs_file:
        raise UsageError(
            f"--backend {chosen}: describe the cluster in a file",
            "start from `hpcrun config init --preset index-aws` (or configs/ssh.yaml) "
            "and pass it with --config",
        )
    local_only = sorted(set(given) - entry.flag_keys)
    if local_only:
        raise UsageError(
            f"--{local_only[0].replace('_', '-')} applies to local clusters only",
            f"set the cluster's shape in {config}",
        )
    if idle_down is not None:
        _check_idle_down(chosen)
        given["idle_down_minutes"] = idle_down
    store = open_store()
    base: dict[str, Any] = (
        loaded.model_dump() if loaded is not None else _as_recorded(store, chosen, given)
    )
    validated = validate_cluster_data(
        {**base, **given, "backend": chosen}, str(config) if config else "flags"
    )
    cluster_config = validated.model_dump()
    if Feature.CREATE in entry.unsupported(cluster_config):
        raise refusal(cluster_config["name"], chosen, Feature.CREATE, "hpcrun create")
    cost = _cost_before_create(validated, yes=yes, to_stderr=json_out)
    target = entry.new(
        cluster_config,
        store,
        trust_new_host=trust_new_host,
        suppress_validators=suppress_validators or [],
    )
    progress = RichProgress(quiet=json_out)
    started = time.monotonic()
    try:
        changed = target.create(progress)
    finally:
        progress.close()
    elapsed = time.monotonic() - started
    status = target.status()
    store.set_current_cluster(status.name)
    recovered = _recover_runs(store, status.name, target) if changed else []
    if json_out:
        print_json(
            {
                **status.to_json(),
                "changed": changed,
                "seconds": round(elapsed, 2),
                "recovered": recovered,
                **({"cost": cost.to_json()} if cost is not None else {}),
            }
        )
        return
    out = console()
    for line in recovered:
        out.print(f"• {line}")
    if not changed:
        out.print(f"Cluster [bold]{status.name}[/bold] is already up; nothing changed.")
    elif entry.on_this_machine:
        out.print(
            f"Cluster [bold]{status.name}[/bold] is up: {len(status.nodes)} nodes idle "
            f"in {elapsed:.1f} s."
        )
    elif not status.slurm:
        gpus = sum(n["gpus"] for n in status.kube_nodes)
        out.print(
            f"Cluster [bold]{status.name}[/bold] ({status.backend}, {status.detail}) is up: "
            f"{len(status.kube_nodes)} nodes, {gpus} GPUs, in {elapsed:.1f} s."
        )
    else:
        idle = sum(1 for n in status.nodes if n.node.state == "idle")
        out.print(
            f"Cluster [bold]{status.name}[/bold] ({status.backend}, {status.detail}) is up: "
            f"{len(status.nodes)} nodes, {idle} idle, in {elapsed:.1f} s."
        )
    if entry.on_this_machine:
        out.print(f"Slurm commands work after: export SLURM_CONF={status.slurm_conf}")
    elif not status.slurm:
        out.print(
            "Next: `hpcrun index --nodes 2 --scene supernova`; kubectl works with its kubeconfig."
        )
    else:
        out.print("A shell on its head node: hpcrun ssh")


def _check_idle_down(backend: str) -> None:
    """`--idle-down` powers off a cluster hpcrun made on AWS; refuse it elsewhere."""
    if backend == "parallelcluster":
        return
    if backend == "local":
        raise UsageError(
            "--idle-down: a local cluster costs nothing while idle and has no head node "
            "to power off",
            "to stop it anyway once idle, run from cron: `hpcrun down --cluster NAME --if-idle 60`",
        )
    if backend == "ssh":
        raise UsageError(
            "--idle-down: an ssh cluster is not hpcrun's to power off",
            "`hpcrun down --if-idle MINUTES` detaches from it once it is idle",
        )
    raise UsageError(
        f"--idle-down applies to ParallelCluster clusters, not {backend}",
        "a Kubernetes cluster's node groups scale down by their autoscaler",
    )


def _cost_before_create(config: object, *, yes: bool, to_stderr: bool) -> CostEstimate | None:
    """Show what an AWS cluster costs per hour and ask before anything is made: a GPU
    cluster at its largest runs to tens of dollars an hour. Without a terminal to ask on
    (CI), refuse unless --yes. Clusters AWS does not bill (local, ssh, an existing
    Kubernetes) get no estimate and no question. `to_stderr` keeps --json's stdout JSON."""
    import sys

    from hpcrun.config.cost import estimate_cost

    cost = estimate_cost(config)
    if cost is None:
        return None
    out = console(stderr=to_stderr)
    for line in cost.text_lines():
        out.print(line, markup=False)
    if yes:
        return cost
    if sys.stdin is None or not sys.stdin.isatty():
        raise UsageError(
            f"refusing to create cluster {cost.cluster!r} without confirmation "
            "(stdin is not a terminal to ask on)",
            "pass --yes (-y) to create it at the cost above",
        )
    typer.confirm("Create it?", abort=True, err=to_stderr)
    return cost


def _recover_runs(store: StateStore, cluster: str, target: Backend) -> list[str]:
    """Unfinished runs of a cluster `create` just repaired, checked for lost jobs."""
    from hpcrun.services.recovery import recover_runs

    return recover_runs(store, cluster, target)


def status(cluster: ClusterOption = None, json_out: JsonOption = False) -> None:
    """Show the cluster, its daemons, its nodes and their state, and its jobs.

    `Idle:` says how long it has had no job: what `down --if-idle` and the head-node
    guard of `create --idle-down` go by."""
    target = resolve_cluster(cluster)
    current = target.backend.status()
    recorded = _recorded_work(target.store, current.name) if current.jobs_error else None
    cost = _running_cost(target.record, current)
    idle = _status_idle(target, current)
    if json_out:
        print_json(
            {
                **current.to_json(),
                **({"recorded": recorded} if recorded else {}),
                **({"cost": cost.to_json()} if cost is not None else {}),
                **({"idle": idle.to_json()} if idle is not None else {}),
            }
        )
        return
    from rich.table import Table

    out = console()
    colour = {"up": "green", "degraded": "yellow"}.get(current.state, "red")
    out.print(
        f"Cluster [bold]{current.name}[/bold] ({current.backend}): "
        f"[{colour}]{current.state}[/{colour}]" + (f" — {current.detail}" if current.detail else "")
    )
    if current.slurm_conf:
        out.print(f"SLURM_CONF={current.slurm_conf}")
    if current.nodes:
        table = Table("node", "state", "cpus", "gres", "reason", box=None, pad_edge=False)
        for node in current.nodes:
            style = "red" if node.is_down else ""
            table.add_row(
                node.node.name,
                node.summary,
                str(node.node.cpus),
                node.node.gres,
                node.node.reason,
                style=style,
            )
        out.print(table)
    if cost is not None:
        out.print(cost.running_text(), markup=False)
    for group in current.node_groups:
        out.print(
            f"node group {group['name']}: {group['status']}, "
            f"{', '.join(group['instance_types'])} {group['capacity_type'] or ''}, "
            f"{group['min_size']}-{group['max_size']} nodes (desired {group['desired_size']})"
        )
    if current.kube_nodes:
        _print_kube_nodes(current.kube_nodes)
    if not current.slurm:
        return
    dead = [d for d in current.daemons if d.died and not d.name.startswith("slurmd-")]
    for daemon in dead:
        out.print(
            f"[red]{daemon.name} exited with status {daemon.returncode}[/red]; log: {daemon.log}"
        )
    if recorded is not None:
        # Slurm did not answer: "0 jobs" would be a guess; say so and show what hpcrun
        # itself recorded of the work it started here.
        out.print(f"Jobs: [red]unknown[/red], Slurm did not say: {current.jobs_error}")
        counts = [
            f"{what} {sum(by.values())} ({', '.join(f'{n} {s}' for s, n in by.items())})"
            for what, by in recorded.items()
            if by
        ]
        out.print(
            "Last known from hpcrun's records: " + "; ".join(counts)
            if counts
            else "hpcrun has recorded no work on this cluster."
        )
        return
    active = [j for j in current.jobs if not j.state.is_terminal]
    out.print(
        f"Jobs: {len(active)} active, {len(current.jobs) - len(active)} recently ended"
        + (" (`hpcrun jobs` lists them)" if current.jobs else "")
    )
    if idle is not None:
        out.print(f"Idle: {idle.text()}", markup=False)


def _status_idle(target: Target, current: ClusterStatus) -> Idle | None:
    """How long the cluster has had no job, for a Slurm cluster that answered (else the
    status already says Slurm did not, and idle would only repeat it)."""
    if not current.slurm or current.jobs_error is not None or current.state not in _ANSWERS:
        return None
    from hpcrun.services.idle import cluster_idle

    return cluster_idle(target.store, target.record, target.backend, status=current)


_ANSWERS = {"up", "degraded"}  # states in which a Slurm cluster's controller may answer


def _running_cost(record: ClusterRecord, current: ClusterStatus) -> CostEstimate | None:
    """A ParallelCluster cluster's cost per hour now: its head node and the compute nodes
    Slurm has not powered down (state without `~`; powering up `#` and down `%` are still
    billed). Only when Slurm answered (state up): otherwise the count would be a guess."""
    if record.backend != "parallelcluster" or current.state != "up":
        return None
    from pydantic import ValidationError

    from hpcrun.config.cost import running_cost
    from hpcrun.config.pcluster import ParallelClusterConfig

    keys = ParallelClusterConfig.model_fields
    try:
        model = ParallelClusterConfig.model_validate(
            {k: v for k, v in record.config.items() if k in keys}
        )
    except ValidationError:
        return None
    up = [n.node.name for n in current.nodes if "~" not in n.node.state]
    return running_cost(model, up)


def _print_kube_nodes(nodes: list[dict[str, Any]]) -> None:
    """A Kubernetes cluster's nodes, as `kubectl get nodes` plus their GPUs in use."""
    from rich.table import Table

    table = Table(
        "node", "state", "instance type", "node group", "gpus used", box=None, pad_edge=False
    )
    for node in nodes:
        table.add_row(
            node["name"],
            "Ready" if node["ready"] else "NotReady",
            node["instance_type"] or "-",
            node["node_group"] or "-",
            f"{node['gpus_used']}/{node['gpus']}",
            style="" if node["ready"] else "red",
        )
    console().print(table)
    used, total = sum(n["gpus_used"] for n in nodes), sum(n["gpus"] for n in nodes)
    console().print(f"GPUs: {used} of {total} in use on {len(nodes)} nodes")


def _recorded_work(store: StateStore, cluster: str) -> dict[str, dict[str, int]]:
    """What the state store knows of the work hpcrun started on `cluster`, by kind and by
    last recorded status: `{"jobs": {"submitted": 3, "failed": 1}, "render runs": ...}`."""
    from collections import Counter

    kinds: dict[str, list[str]] = {
        "jobs": [str(j.status) for j in store.jobs(cluster, limit=1_000_000)],
        "render runs": [str(r.status) for r in store.array_runs(cluster, "render")],
        "score runs": [str(r.status) for r in store.array_runs(cluster, "score")],
        "IndeX sessions": [str(s.status) for s in store.index_sessions(cluster)],
    }
    return {what: dict(Counter(states).most_common()) for what, states in kinds.items()}


def down(
    cluster: ClusterOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before stopping.")] = False,
    purge: Annotated[
        bool, typer.Option(help="Also remove the cluster's directory and record.")
    ] = False,
    if_idle: Annotated[
        float | None,
        typer.Option(
            "--if-idle",
            min=0,
            metavar="MINUTES",
            help="Only if the cluster has had no job for MINUTES (0: no job now); for cron. "
            "Implies --yes. Exit 0: taken down (or already down); 3: left up, busy or not "
            "idle long enough; 1: idle time unknown (Slurm did not answer), left up.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Take the cluster down: a local one stops every daemon (by PID; job output is left
    alone), a ParallelCluster one is deleted with its AWS resources, an ssh one is
    detached (hpcrun's IndeX jobs end; the cluster keeps running).

    With --if-idle MINUTES only a cluster idle that long goes (idle: no job pending or
    running, and the last one ended MINUTES ago or more; `hpcrun status` shows it), so a
    cron line can take a forgotten cluster down without a question:

    \b
      */10 * * * * hpcrun down --cluster big --if-idle 60 >/dev/null
    """
    from hpcrun.backends import backend_entry

    target = resolve_cluster(cluster)
    name = target.record.name
    verb, done_verb = backend_entry(target.record.backend).down_verbs
    if if_idle is not None:
        why = _idle_enough(target, if_idle)
        if why is None:
            return
        console().print(f"{why}: taking it down", markup=False)
        yes = True  # the condition is the confirmation; cron has no terminal to ask on
    if not yes:
        import sys

        if not sys.stdin.isatty():
            raise UsageError(
                f"refusing to {verb} cluster {name!r} without confirmation", "pass --yes"
            )
        what = f"{verb} and forget" if purge else verb
        typer.confirm(f"{what.capitalize()} cluster {name!r}?", abort=True)
    progress = RichProgress()
    started = time.monotonic()
    try:
        target.backend.destroy(progress, purge=purge)
    finally:
        progress.close()
    console().print(
        f"Cluster [bold]{name}[/bold] {done_verb} in {time.monotonic() - started:.1f} s"
        + (" and removed." if purge else ".")
    )


def _idle_enough(target: Target, minutes: float) -> str | None:
    """Why `down --if-idle MINUTES` takes the cluster down now; None when there is
    nothing to take down. A cluster that stays up ends the command: exit 3 (busy, or not
    idle long enough) or an error (idle time unknown: never taken down on a guess)."""
    from hpcrun.services.idle import LEFT_UP_EXIT, cluster_idle, down_decision

    name = target.record.name
    if target.record.status in _GONE:
        console().print(f"cluster {name} is already {target.record.status}: nothing to do")
        return None
    current = target.backend.status()
    if not current.slurm:
        raise UsageError(
            f"--if-idle: cluster {name} ({target.record.backend}) runs no Slurm jobs to "
            "measure idle time by",
            f"`hpcrun down --cluster {name}` takes it down",
        )
    if current.state in _GONE:
        console().print(f"cluster {name} is already {current.state}: nothing to do")
        return None
    if current.state == "stopped":  # ParallelCluster: its head node (slurmctld) is off
        return f"cluster {name}: head node stopped ({current.detail}), so no job can run"
    idle = cluster_idle(target.store, target.record, target.backend, status=current)
    left_up = down_decision(name, idle, minutes)
    if left_up is None:
        return f"cluster {name}: {idle.text()}, limit {minutes:g} min"
    if not left_up.known:
        raise HpcrunError(
            left_up.message,
            "see `hpcrun status`; an unknown idle time never takes a cluster down",
        )
    console().print(left_up.message, markup=False)
    raise typer.Exit(LEFT_UP_EXIT)


_GONE = {"down", "deleted", "detached", "gone"}


def clusters(json_out: JsonOption = False) -> None:
    """List the clusters hpcrun knows; the current one is marked with *.

    The idle column (how long since the last job) is asked of local clusters that are up,
    with a 5 s limit; a remote cluster's would cost an SSH connection to its head node
    each (or a long wait on one that is off), so `hpcrun status -c NAME` shows it."""
    store = open_store()
    records = store.clusters()
    current = store.current_cluster()
    idle = {r.name: _listed_idle(store, r) for r in records}
    if json_out:
        print_json(
            [
                {
                    "name": r.name,
                    "backend": r.backend,
                    "status": r.status,
                    "current": r.name == current,
                    "config": r.config,
                    "idle": _idle_json(idle[r.name]),
                }
                for r in records
            ]
        )
        return
    from rich.table import Table

    if not records:
        console().print("No clusters yet: `hpcrun create` makes one.")
        return
    table = Table("", "name", "backend", "status", "nodes", "idle", box=None, pad_edge=False)
    for r in records:
        table.add_row(
            "*" if r.name == current else "",
            r.name,
            r.backend,
            r.status,
            str(r.config.get("nodes", "")),
            _idle_cell(r, idle[r.name]),
        )
    console().print(table)
    if any(r.status == "up" and not _idle_listed(r) for r in records):
        console().print("idle of remote clusters: `hpcrun status -c NAME` asks their head node")


def _idle_json(idle: Idle | None) -> dict[str, Any] | None:
    return idle.to_json() if idle is not None else None


def _idle_listed(record: ClusterRecord) -> bool:
    """Whether `clusters` asks this cluster its idle time: local ones only (cheap)."""
    from hpcrun.backends import backend_entry

    return backend_entry(record.backend).on_this_machine


def _listed_idle(store: StateStore, record: ClusterRecord) -> Idle | None:
    if record.status != "up" or not _idle_listed(record):
        return None
    from hpcrun.backends import open_backend
    from hpcrun.backends.local import LocalBackend
    from hpcrun.services.idle import Idle, cluster_idle

    backend = open_backend(record, store)
    if isinstance(backend, LocalBackend) and not backend.controller_listening():
        return Idle(False, None, {}, reason="slurmctld is not running")
    return cluster_idle(store, record, backend, timeout_s=_LIST_TIMEOUT_S)


# A Slurm query that answers at all answers in ~20 ms here; one that reaches no controller
# waits ~9 s (Slurm's retries), which the port check above avoids in the common case.
_LIST_TIMEOUT_S = 5.0


def _idle_cell(record: ClusterRecord, idle: Idle | None) -> str:
    """`23 min` (`~23 min`: no accounting, estimated), `no (2 jobs running)`, `unknown`,
    `see status` (remote), `-` (not up)."""
    if idle is None:
        return "see status" if record.status == "up" else "-"
    if not idle.known:
        return "unknown"
    if idle.busy:
        return f"no ({idle.active_text()})"
    from hpcrun.node.idle.compute import duration_text

    return ("~" if idle.approximate else "") + duration_text(idle.idle_s or 0.0)


def use(name: Annotated[str, typer.Argument(help="Cluster to make current.")]) -> None:
    """Make NAME the cluster commands act on when --cluster is not given."""
    store = open_store()
    if store.cluster(name) is None:
        raise UnknownCluster(name, [c.name for c in store.clusters()])
    store.set_current_cluster(name)
    console().print(f"Current cluster: [bold]{name}[/bold]")


def dcv(
    print_url: Annotated[
        bool,
        typer.Option(
            "--print-url",
            "--no-browser",
            help="Print the one-time URL instead of opening a browser (to open it elsewhere).",
        ),
    ] = False,
    attempts: Annotated[
        int,
        typer.Option(
            min=1,
            help="Times to run the connect script while a fresh head node's DCV server starts.",
        ),
    ] = 6,
    retry_wait: Annotated[
        float, typer.Option(min=0.0, help="Seconds between those attempts.")
    ] = 5.0,
    as_json: JsonOption = False,
    cluster: ClusterOption = None,
) -> None:
    """Open the head node's remote desktop (NICE DCV) in a browser, as `pcluster dcv
    connect` does: SSH to the head node, get a session token, open a one-time URL that
    works for 30 seconds. Without a graphical browser here (headless, an SSH session)
    the URL is printed instead; --json prints {"url": ..., "expires_in_s": 30}."""
    from hpcrun.backends.base import Feature
    from hpcrun.backends.dcv import URL_LIFETIME_S, local_browser

    target = resolve_cluster(cluster)
    require(target, Feature.DESKTOP, "hpcrun dcv")
    progress = RichProgress(quiet=as_json)
    desktop = target.backend.desktop(progress.step, attempts=attempts, wait_s=retry_wait)
    if desktop is None:
        raise HpcrunError(f"cluster {target.record.name} has no DCV session to offer")
    url, blocked = desktop.url, desktop.port_problem()
    elsewhere = print_url or as_json
    if blocked is not None and not elsewhere:
        raise blocked
    if blocked is not None:  # the URL may still open on another machine
        err = console(stderr=True)
        err.print(f"warning: {blocked.message}", soft_wrap=True, markup=False)
        err.print(f"hint: {blocked.hint}", soft_wrap=True, markup=False)
    if as_json:
        print_json(
            {"url": url, "expires_in_s": URL_LIFETIME_S, "port_answers_here": blocked is None}
        )
        return
    message = (
        f"Open this one-time URL in your browser within {URL_LIFETIME_S} seconds "
        f"(it expires {URL_LIFETIME_S} s after it was made; `hpcrun dcv` makes a new one):\n{url}"
    )
    if print_url:
        console().print(message, soft_wrap=True, markup=False)
        return
    browser = local_browser()
    if browser is None:
        why = "No graphical web browser here (a headless machine, an SSH session or CI)"
    elif not browser.open_new(url):
        why = "The web browser here could not be started"
    else:
        console().print(
            f"Opened the DCV desktop of cluster {target.record.name} in your browser "
            f"(its one-time URL works for {URL_LIFETIME_S} seconds)."
        )
        return
    console().print(f"{why}, so none was opened.\n{message}", soft_wrap=True, markup=False)


def ssh(
    command: Annotated[
        list[str] | None,
        typer.Argument(help="A command to run instead of a shell, after `--`.", show_default=False),
    ] = None,
    cluster: ClusterOption = None,
) -> None:
    """Open a shell on the cluster's head node, with the key and the verified host key
    hpcrun uses (OpenSSH's `ssh`, so your terminal and ~/.ssh/config work as usual).

    \b
    Examples:
      hpcrun ssh
      hpcrun ssh -- squeue -u $USER
    """
    import os
    import shutil

    from hpcrun.backends.base import Feature

    target = resolve_cluster(cluster)
    require(target, Feature.SHELL, "hpcrun ssh")
    argv = target.backend.shell_argv(command or [])
    if shutil.which(argv[0]) is None:
        raise HpcrunError(
            f"`{argv[0]}` (the OpenSSH client) is not installed here",
            "install it (Debian/Ubuntu: apt-get install openssh-client)",
        )
    os.execvp(argv[0], argv)
