"""IndeX commands: `hpcrun index` (start, status, stop) and `hpcrun scale`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from hpcrun.cli._common import (
    ClusterOption,
    JsonOption,
    PartitionOption,
    RichProgress,
    console,
    open_service,
    print_json,
    require,
    resolve_cluster,
    service_of,
)

if TYPE_CHECKING:
    from hpcrun.services.index import IndexSessions, SessionView
    from hpcrun.state import IndexSessionRecord

SessionOption = Annotated[
    int | None,
    typer.Option(
        "--session", help="Session id (default: the newest running one).", show_default=False
    ),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the viewer and its agents.")
]
WaitOption = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Queue until enough nodes are free, instead of failing at once.",
    ),
]

TunnelOption = Annotated[
    bool,
    typer.Option(
        "--tunnel",
        help="Remote clusters: forward the viewer to localhost through the head node and "
        "hold it open until Ctrl-C.",
    ),
]
TunnelPortOption = Annotated[
    int,
    typer.Option(
        "--tunnel-port",
        help="Local port of the tunnel [default: the viewer's own port if free, else any].",
        show_default=False,
    ),
]

index_app = typer.Typer(
    help="Multi-node NVIDIA IndeX rendering, as NVIDIA's AMI runs it.\n\n"
    "`hpcrun index --nodes 4 --scene supernova` allocates 4 whole nodes (salloc --exclusive), "
    "runs `srun -N4 nvindex-slurm -v ./nvindex-viewer.sh --add <scene.prj>` and prints the "
    "viewer's URL. Where IndeX is not installed (the local cluster), hpcrun's open renderer "
    "takes the same command line. Then: `hpcrun scale +2`, `hpcrun index status`, "
    "`hpcrun index stop`.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _sessions(cluster: str | None, quiet: bool) -> tuple[IndexSessions, RichProgress]:
    from hpcrun.services.index import IndexSessions

    return open_service(IndexSessions, cluster, quiet)


@index_app.callback()
def index(
    ctx: typer.Context,
    nodes: Annotated[int, typer.Option("--nodes", "-N", help="Nodes to render on.")] = 4,
    scene: Annotated[
        str,
        typer.Option(
            "--scene",
            "-s",
            help="A scene name (see `hpcrun scenes`) or the path of an IndeX .prj file.",
        ),
    ] = "supernova",
    gpus_per_node: Annotated[
        int | None,
        typer.Option(
            "--gpus-per-node",
            help="Take G GPUs per node instead of whole nodes (--exclusive, the default).",
            show_default=False,
        ),
    ] = None,
    exclusive: Annotated[
        bool,
        typer.Option(
            "--exclusive",
            help="Whole nodes (salloc --exclusive), NVIDIA's way; the default unless "
            "--gpus-per-node is given.",
        ),
    ] = False,
    port: Annotated[
        int,
        typer.Option(
            "--port",
            help="The viewer's HTTP port (on Kubernetes: its Service's port).",
            envvar="HPCRUN_INDEX_PORT",
        ),
    ] = 8080,
    time_limit: Annotated[
        str | None,
        typer.Option(
            "--time",
            "-t",
            help="Slurm time limit for the session's allocations (e.g. 2:00:00); "
            "default: none, as NVIDIA's recipe.",
            show_default=False,
        ),
    ] = None,
    renderer: Annotated[
        str,
        typer.Option(
            "--renderer",
            help="auto: IndeX's nvindex-slurm where installed, else the open renderer; "
            "nvindex or open to insist.",
        ),
    ] = "auto",
    auth: Annotated[
        str | None,
        typer.Option(
            "--auth",
            help="USER:PASSWORD_FILE: require HTTP basic auth on the viewer (open renderer).",
            show_default=False,
        ),
    ] = None,
    insecure_public: Annotated[
        bool,
        typer.Option(
            "--insecure-public",
            help="Remote clusters: let the open renderer's viewer serve the cluster's network "
            "without --auth (anyone there can steer it).",
        ),
    ] = False,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the viewer in a browser once it is ready.")
    ] = False,
    chart: Annotated[
        str | None,
        typer.Option(
            "--chart",
            help="Kubernetes: install this helm chart (NVIDIA's charts/nvindex, or any chart "
            "to its values: nodeCount, gpuCount, scene, ingress, auth) instead of hpcrun's "
            "own objects; scale is `helm upgrade --set nodeCount=N`, stop `helm uninstall`.",
            show_default=False,
        ),
    ] = None,
    partition: PartitionOption = None,
    wait: WaitOption = False,
    timeout_s: TimeoutOption = 120.0,
    tunnel: TunnelOption = False,
    tunnel_port: TunnelPortOption = 0,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Start an IndeX session and print the viewer's URL.

    On a remote cluster the viewer listens on a compute node, inside the cluster's
    network: open it in the head node's desktop (`hpcrun dcv`), or pass --tunnel to
    forward it to this machine through the head node until Ctrl-C.
    """
    if ctx.invoked_subcommand is not None:
        return
    from hpcrun.errors import UsageError
    from hpcrun.services.index import StartInterrupted, StartRequest, plural

    if exclusive and gpus_per_node is not None:
        raise UsageError(
            "--exclusive and --gpus-per-node both say how much of each node to take",
            "give one: --exclusive for whole nodes, or --gpus-per-node G for G GPUs per node",
        )

    sessions, progress = _sessions(cluster, quiet=json_out)
    started = time.monotonic()
    try:
        view = sessions.start(
            StartRequest(
                nodes=nodes,
                scene=scene,
                gpus_per_node=gpus_per_node,
                port=port,
                renderer=renderer,
                auth=auth,
                insecure_public=insecure_public,
                wait_for_nodes=wait,
                timeout_s=timeout_s,
                time_limit=time_limit,
                chart=chart,
                partition=partition,
            )
        )
    except StartInterrupted as stopped:
        progress.close()  # before the line, so a live counter does not overwrite it
        console(stderr=True).print(stopped.summary)
        raise typer.Exit(130) from None
    finally:
        progress.close()
    if json_out:
        print_json(view.to_json())
    else:
        out = console()
        s = view.session
        agents = f", {view.agents} agents" if view.agents is not None else ""
        out.print(
            f"IndeX session {s.id} on {plural(len(view.nodes), 'node')}{agents} "
            f"({_noun(s)} {view.jobs[0]['job_id']}, {s.detail}, all up in "
            f"{time.monotonic() - started:.1f} s)"
        )
        out.print(f"Viewer: {s.url}")
        if view.login is not None:
            out.print(
                f"Login:  {view.login[0]} / {view.login[1]}  (shown once: hpcrun keeps only "
                "its hash, in the session's Secret)"
            )
        if ".svc:" in s.url:  # a Kubernetes Service's address: no ingress publishes it
            out.print("(inside the cluster: `hpcrun index tunnel` forwards it to this machine)")
        out.print("Next: `hpcrun scale +2` adds nodes, `hpcrun index stop` ends the session.")
    if tunnel:
        _hold_tunnel(sessions, view.session, tunnel_port, open_browser)
    elif open_browser:
        import webbrowser

        webbrowser.open(view.session.url)


def _hold_tunnel(
    sessions: IndexSessions, session: IndexSessionRecord, local_port: int, open_browser: bool
) -> None:
    """Forward the viewer to this machine until Ctrl-C or until the session ends."""
    import sys

    if sessions.site.shares_local_files:
        console().print(f"The viewer is on this machine already: {session.url}")
        return
    with sessions.tunnel(session, local_port) as url:
        host, port = sessions.viewer.address(session) or ("?", 0)
        console().print(f"Tunnel: {url} -> the viewer at {host}:{port} (Ctrl-C closes it)")
        sys.stdout.flush()
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        try:
            while True:
                time.sleep(5.0)
                if not sessions.is_running(session):
                    console(stderr=True).print(f"IndeX session {session.id} ended.")
                    return
        except KeyboardInterrupt:
            console(stderr=True).print("tunnel closed")


@index_app.command("tunnel")
def index_tunnel(
    session: SessionOption = None,
    tunnel_port: TunnelPortOption = 0,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the forwarded viewer in a browser.")
    ] = False,
    cluster: ClusterOption = None,
) -> None:
    """Forward a running session's viewer to this machine through the head node, until
    Ctrl-C (what `index --tunnel` does after starting one)."""
    sessions, _ = _sessions(cluster, quiet=True)
    _hold_tunnel(sessions, sessions.session(session), tunnel_port, open_browser)


@index_app.command("status")
def index_status(
    session: SessionOption = None,
    all_sessions: Annotated[
        bool, typer.Option("--all", help="Every session of the cluster, ended ones too.")
    ] = False,
    heal: Annotated[
        bool,
        typer.Option(
            "--heal",
            help="Start the render agent again on each node of the session that has none "
            "(its agent died; the node stays allocated and renders nothing until then).",
        ),
    ] = False,
    timeout_s: TimeoutOption = 120.0,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """The session's jobs, nodes, registered agents and URL, and any node whose render
    agent is missing (`--heal` restarts it there)."""
    if heal:
        from hpcrun.errors import UsageError

        if all_sessions:
            raise UsageError("--heal works on one session: leave out --all")
        healing, progress = _sessions(cluster, quiet=json_out)
        try:
            healed = healing.heal(session, timeout_s=timeout_s)
        finally:
            progress.close()
        if json_out:
            print_json(healed.to_json())
        else:
            _print_view(healed)
        return
    sessions, _ = _sessions(cluster, quiet=True)
    if all_sessions:
        records = sessions.store.index_sessions(sessions.cluster)
        views = [sessions.view(r) for r in records]
        if json_out:
            print_json([v.to_json() for v in views])
            return
        for v in views:
            _print_view(v)
        if not views:
            console().print("No IndeX sessions on this cluster.")
        return
    view = sessions.view(sessions.session(session))
    if json_out:
        print_json(view.to_json())
    else:
        _print_view(view)


def _noun(session: IndexSessionRecord) -> str:
    """What a session's allocation is called: a Kubernetes release, or a Slurm job."""
    return "release" if (session.plan.get("install") or {}).get("image") else "job"


def _print_view(view: SessionView) -> None:
    from hpcrun.services.index import plural

    out = console()
    s = view.session
    out.print(f"IndeX session {s.id}: {s.status}" + (f" ({s.detail})" if s.detail else ""))
    out.print(f"  scene:    {s.scene}")
    out.print(f"  renderer: {'NVIDIA IndeX' if s.renderer == 'nvindex' else 'open renderer'}")
    if s.url:
        out.print(f"  viewer:   {s.url}")
    # On Kubernetes a session is one release whose scale is its worker replicas.
    noun = _noun(s)
    for job in view.jobs:
        role = "" if noun == "release" else f" ({job['role']})"
        out.print(
            f"  {noun} {job['job_id']}{role}: {job['state']}, {plural(job['nodes'], 'node')}"
            + (f" {job['nodelist']}" if job["nodelist"] else "")
        )
    for workload in view.workloads:
        out.print(
            f"  {workload['kind']} {workload['name']}: {workload['ready']} of "
            f"{workload['desired']} Ready"
        )
    if view.viewer is not None:
        v = view.viewer
        out.print(
            f"  agents:   {v.get('agents')} registered on {', '.join(v.get('nodes', []))}; "
            f"frame {v.get('frame')}, {float(v.get('fps') or 0):.1f} fps"
        )
    elif view.viewer_error and s.status == "running":
        out.print(f"  agents:   unknown (viewer: {view.viewer_error})")
    if view.healed:
        out.print(f"  healed:   render agent restarted on {', '.join(view.healed)}")
    for dead in view.dead_nodes:
        out.print(f"  [yellow]warning:[/] {dead['message']}")
    if view.missing_agents:
        missing = ", ".join(view.missing_agents)
        out.print(
            f"  [yellow]warning:[/] no render agent on {missing}: the node is allocated but "
            "renders nothing; `hpcrun index status --heal` restarts the agent there, "
            "`hpcrun scale -1` gives a node back (the newest job's, not necessarily this one)"
        )


@index_app.command("stop")
def index_stop(
    session: SessionOption = None,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """End the session: cancel its jobs and free every node."""
    sessions, progress = _sessions(cluster, quiet=json_out)
    try:
        view = sessions.stop(session)
    finally:
        progress.close()
    if json_out:
        print_json(view.to_json())
    else:
        console().print(f"IndeX session {view.session.id} stopped; its nodes are free.")


def scale(
    change: Annotated[
        str,
        typer.Argument(
            help="+K adds K nodes, -K removes K, =N (or N) makes it N nodes in all.",
            show_default=False,
        ),
    ],
    merge: Annotated[
        bool,
        typer.Option(
            "--merge",
            help="Grow the first Slurm job itself (job expansion) instead of attaching a "
            "second allocation, so accounting shows one job. Not for jobs holding GPUs.",
        ),
    ] = False,
    session: SessionOption = None,
    wait: WaitOption = False,
    timeout_s: TimeoutOption = 120.0,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Add or remove render nodes of the running IndeX session, without restarting it.

    Growing is NVIDIA's way: a new allocation whose `nvindex-slurm -a<first job>` agents
    attach to the viewer. Shrinking ends whole attached jobs where that fits, otherwise
    `scontrol update JobId=<id> NumNodes=<n>`.
    """
    from hpcrun.backends.base import Feature
    from hpcrun.services.index import IndexSessions

    target = resolve_cluster(cluster)
    if merge:
        require(target, Feature.JOB_EXPANSION, "hpcrun scale --merge")
    sessions, progress = service_of(IndexSessions, target, quiet=json_out)
    started = time.monotonic()
    try:
        view = sessions.scale(
            change, session_id=session, merge=merge, wait_for_nodes=wait, timeout_s=timeout_s
        )
    finally:
        progress.close()
    if json_out:
        print_json(view.to_json())
        return
    from hpcrun.services.index import plural

    agents = f", {view.agents} agents registered" if view.agents is not None else ""
    console().print(
        f"IndeX session {view.session.id} now has {plural(len(view.nodes), 'node')}{agents} "
        f"({time.monotonic() - started:.1f} s). Viewer: {view.session.url}"
    )
