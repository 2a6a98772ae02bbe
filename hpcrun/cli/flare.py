"""`hpcrun flare`: a provisioned NVIDIA FLARE system (server, sites, admin) on the cluster:
`up`, `submit`, `status`, `download`, `down`, and `example` (a job to start from)."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hpcrun.cli._common import ClusterOption, JsonOption, console, open_service, print_json

if TYPE_CHECKING:
    from hpcrun.cli._common import RichProgress
    from hpcrun.services.flare import FlareSystems, FlareView

flare_app = typer.Typer(
    help="NVIDIA FLARE (federated learning): a real provisioned system as cluster jobs.\n\n"
    "`hpcrun flare up --sites 2` provisions kits with FLARE's own provisioner, runs the "
    "server as one Slurm job and the sites as a job array, and waits until every site "
    "registered. `hpcrun flare example hello-numpy` writes a small job; `hpcrun flare "
    "submit hello-numpy --wait` runs it; `hpcrun flare down` shuts FLARE down and ends "
    "the jobs.",
    no_args_is_help=True,
)

SystemOption = Annotated[
    int | None,
    typer.Option(
        "--system",
        help="FLARE system id (default: the newest not taken down).",
        show_default=False,
    ),
]


def _systems(cluster: str | None, quiet: bool) -> tuple[FlareSystems, RichProgress]:
    from hpcrun.services.flare import FlareSystems

    return open_service(FlareSystems, cluster, quiet)


@flare_app.command("up")
def up(
    sites: Annotated[
        int | None,
        typer.Option(
            help="Sites (FLARE clients): one array task each [default: 2].", show_default=False
        ),
    ] = None,
    gpus_per_site: Annotated[
        int | None, typer.Option(help="GPUs for each site's task.", show_default=False)
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option(
            help="Your project.yml (one server, clients, a project_admin); default: "
            "server `server`, sites site-1..N, admin admin@nvidia.com.",
            show_default=False,
        ),
    ] = None,
    nvflare_version: Annotated[
        str | None,
        typer.Option(
            help="The nvflare the nodes must have [default: this side's].", show_default=False
        ),
    ] = None,
    python: Annotated[
        str | None,
        typer.Option(
            help="The nodes' Python with nvflare [default: this one on the local cluster, "
            "python3 elsewhere].",
            show_default=False,
        ),
    ] = None,
    install_nvflare: Annotated[
        bool,
        typer.Option(
            help="When the nodes' Python lacks nvflare: make a venv of it with nvflare "
            "(--nvflare-version) under hpcrun's workspace on the cluster, once per version."
        ),
    ] = False,
    port: Annotated[
        int | None,
        typer.Option(
            help="Fix the server's FL port (admin: +1); default: free ones on its node.",
            show_default=False,
        ),
    ] = None,
    time: Annotated[
        str | None,
        typer.Option("--time", help="Time limit of the jobs (30, 01:30:00).", show_default=False),
    ] = None,
    partition: Annotated[
        str | None, typer.Option(help="Slurm partition.", show_default=False)
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for every site to register.")
    ] = 600.0,
    image: Annotated[
        str | None,
        typer.Option(
            help="Kubernetes: the pods' image [default: nvflare/nvflare:<this side's version>].",
            show_default=False,
        ),
    ] = None,
    admin_pod: Annotated[
        bool,
        typer.Option(
            help="Kubernetes: also run the admin kit in a pod (kubectl exec ... fl_admin.sh)."
        ),
    ] = False,
    wait: Annotated[bool, typer.Option(help="Wait until every site registered.")] = True,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Provision and start a FLARE system: server job + site array, until registered."""
    from hpcrun.scheduler import parse_duration
    from hpcrun.services.flare import FlareRequest

    request = FlareRequest(
        sites=sites if sites is not None or project is not None else 2,
        gpus_per_site=gpus_per_site,
        project=str(project) if project else None,
        nvflare_version=nvflare_version,
        python=python,
        port=port,
        time_limit_s=parse_duration(time) if time else None,
        queue=partition,
        timeout_s=timeout,
        wait=wait,
        image=image,
        admin_pod=admin_pod,
        install_nvflare=install_nvflare,
    )
    systems, progress = _systems(cluster, json_out)
    try:
        view = systems.up(request)
    finally:
        progress.close()
    if json_out:
        print_json(view.to_json())
        return
    _print_view(view)
    out = console()
    if view.system.status == "running":
        out.print("next:")
        out.print("  hpcrun flare example hello-numpy       # a small numpy job")
        out.print("  hpcrun flare submit hello-numpy --wait")
        out.print("  hpcrun flare down")


@flare_app.command("status")
def status(
    system: SystemOption = None,
    all_systems: Annotated[
        bool, typer.Option("--all", help="List every system of the cluster.")
    ] = False,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Server, sites (registered? their Slurm tasks) and FLARE jobs of a system."""
    systems, _progress = _systems(cluster, True)
    if all_systems:
        records = systems.store.flare_systems(systems.cluster)
        rows = [
            {
                "system": r.id,
                "status": r.status,
                "sites": len(r.plan["participants"]["sites"]),
                "run_dir": r.run_dir,
                "detail": r.detail,
            }
            for r in records
        ]
        if json_out:
            print_json(rows)
            return
        for row in rows:
            console().print(
                f"{row['system']:>3}  {row['status']:<12} {row['sites']} site(s)  {row['run_dir']}"
                + (f"  ({row['detail']})" if row["detail"] else "")
            )
        return
    view = systems.status(systems.system(system))
    if json_out:
        print_json(view.to_json())
        return
    _print_view(view)


@flare_app.command("submit")
def submit(
    job: Annotated[Path, typer.Argument(help="A FLARE job folder (meta.json + apps).")],
    wait: Annotated[
        bool, typer.Option(help="Follow the job until it ends; exit 1 unless it completed.")
    ] = False,
    system: SystemOption = None,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Submit a job through FLARE's admin (the admin kit stays on this side)."""
    systems, progress = _systems(cluster, json_out)
    try:
        result = systems.submit(systems.system(system), str(job), wait=wait)
    finally:
        progress.close()
    if json_out:
        print_json(result)
    else:
        out = console()
        out.print(f"FLARE job {result['job_id']}: {result['status']}")
        if wait:
            out.print(f"results: {result['results']} (FLARE's job store; the workspace is a zip)")
            out.print(f"  hpcrun flare download {result['job_id']} -o DIR   # to fetch them")
        else:
            out.print("follow it with `hpcrun flare status` (FLARE's jobs and their status)")
    if wait and result["status"] != "FINISHED:COMPLETED":
        raise typer.Exit(1)


@flare_app.command("download")
def download(
    job_id: Annotated[str, typer.Argument(help="The FLARE job id (`flare status`).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where the job's workspaces go.")
    ] = Path("."),
    system: SystemOption = None,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """Fetch a finished job's results (server and site workspaces) through the admin."""
    systems, _ = _systems(cluster, True)
    where = systems.download(systems.system(system), job_id, str(output))
    if json_out:
        print_json({"job_id": job_id, "output": where})
    else:
        console().print(f"FLARE job {job_id}: results in {where}")


@flare_app.command("down")
def down(
    system: SystemOption = None,
    cluster: ClusterOption = None,
    json_out: JsonOption = False,
) -> None:
    """FLARE's shutdown, then the Slurm jobs; the run directory (kits, results) stays."""
    systems, progress = _systems(cluster, json_out)
    try:
        record = systems.down(systems.system(system))
    finally:
        progress.close()
    if json_out:
        print_json({"system": record.id, "status": record.status, "run_dir": record.run_dir})
    else:
        console().print(
            f"FLARE system {record.id}: {record.status}; files kept in {record.run_dir}"
        )


@flare_app.command("example")
def example(
    output: Annotated[Path, typer.Argument(help="Folder to write the job to.")] = Path(
        "hello-numpy"
    ),
) -> None:
    """Write hpcrun's small numpy job (scatter and gather, 1 round) to start from."""
    source = resources.files("hpcrun.workloads") / "jobs" / "hello-numpy"
    if output.exists():
        from hpcrun.errors import UsageError

        raise UsageError(f"{output} already exists", "name another folder")
    with resources.as_file(source) as folder:
        shutil.copytree(folder, output)
    console().print(f"wrote {output}/ (meta.json, app/config/); submit it with")
    console().print(f"  hpcrun flare submit {output} --wait")


def _print_view(view: FlareView) -> None:
    data = view.to_json()
    out = console()
    out.print(
        f"FLARE system {data['system']}: {data['status']}"
        + (f" ({data['detail']})" if data["detail"] else "")
    )
    server = data["server"]
    address = server["address"]
    where = (
        f" at {address['host']}:{address['fl_port']} (admin {address['admin_port']})"
        if address
        else ""
    )
    out.print(
        f"  server   job {server['job_id'] or '-'}  {server['state']:<10} "
        f"{server['node'] or '-'}{where}"
    )
    for site in data["sites"]:
        registered = {True: "registered", False: "not registered", None: ""}[site["registered"]]
        out.print(
            f"  {site['name']:<8} task {site['task'] or '-'}  {site['state']:<10} "
            f"{site['node'] or '-'}  {registered}"
        )
    for job in data["jobs"]:
        out.print(f"  job {job.get('job_id')}  {job.get('job_name')}  {job.get('status')}")
    if data["admin_error"]:
        out.print(f"  FLARE's admin did not answer: {data['admin_error']}")
    for problem in data["problems"]:
        out.print(f"  [red]problem[/red]: {problem}")
    out.print(f"  files: {data['run_dir']}")
