"""The `hpcrun` command line, assembled from one module per command group.

Start-up is a benchmark (`hpcrun --help`, and every `hpcrun submit` a user or script runs),
and most of it was Typer building every one of ~80 commands from its signature before
running one. So the root group is lazy: `COMMANDS` names each command, its module and the
first sentence of its help, and only the command being run is imported and built
(`hpcrun --help` lists the sentences and imports no command module at all; a test keeps
them equal to the commands' own help). Command modules import Typer and nothing heavy at
module level; pydantic, jinja2 and the backends are imported inside the commands.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

# Typer's rich help panels cost ~120 ms of a ~280 ms `hpcrun --help` (measured here); plain
# Click-style help is as informative. `TYPER_USE_RICH=1` brings the panels back.
os.environ.setdefault("TYPER_USE_RICH", "0")

import typer
from typer.core import TyperGroup

from hpcrun import __version__
from hpcrun.errors import HpcrunError

if TYPE_CHECKING:
    from typer import _click as click  # Typer's own Click, which its classes derive from


@dataclass(frozen=True)
class Entry:
    """One top-level command: where it lives, and what `hpcrun --help` says of it."""

    module: str  # hpcrun.cli.<module>
    attr: str  # its function, or its Typer app for a group of commands
    summary: str  # the first sentence of its help (tests/cli/test_lazy_cli.py checks it)
    panel: str
    group: bool = False
    context: dict[str, Any] = field(default_factory=dict)


COMMANDS: dict[str, Entry] = {
    "create": Entry(
        "cluster",
        "create",
        "Bring up a cluster: by default a real Slurm cluster on this machine.",
        "Clusters",
    ),
    "status": Entry(
        "cluster",
        "status",
        "Show the cluster, its daemons, its nodes and their state, and its jobs.",
        "Clusters",
    ),
    "down": Entry(
        "cluster",
        "down",
        "Take the cluster down: a local one stops every daemon (by PID; job output is left "
        "alone), a ParallelCluster one is deleted with its AWS resources, an ssh one is "
        "detached (hpcrun's IndeX jobs end; the cluster keeps running).",
        "Clusters",
    ),
    "clusters": Entry(
        "cluster",
        "clusters",
        "List the clusters hpcrun knows; the current one is marked with *.",
        "Clusters",
    ),
    "use": Entry(
        "cluster",
        "use",
        "Make NAME the cluster commands act on when --cluster is not given.",
        "Clusters",
    ),
    "dcv": Entry(
        "cluster",
        "dcv",
        "Open the head node's remote desktop (NICE DCV) in a browser, as `pcluster dcv "
        "connect` does: SSH to the head node, get a session token, open a one-time URL that "
        "works for 30 seconds.",
        "Clusters",
    ),
    "ssh": Entry(
        "cluster",
        "ssh",
        "Open a shell on the cluster's head node, with the key and the verified host key "
        "hpcrun uses (OpenSSH's `ssh`, so your terminal and ~/.ssh/config work as usual).",
        "Clusters",
        context={"allow_interspersed_args": False},
    ),
    "submit": Entry(
        "jobs",
        "submit",
        "Submit a batch job; print its id.",
        "Jobs",
        context={"allow_interspersed_args": False},
    ),
    "jobs": Entry(
        "jobs",
        "jobs",
        "List jobs in the queue and recently ended ones (one Slurm call, any number of tasks).",
        "Jobs",
    ),
    "logs": Entry(
        "jobs",
        "logs",
        "Print a job's output (stdout, then stderr when it has its own file).",
        "Jobs",
    ),
    "cancel": Entry("jobs", "cancel", "Cancel jobs (an array id cancels every task).", "Jobs"),
    "render": Entry(
        "render",
        "render",
        "Render Blender frames across the cluster and encode them to an mp4.",
        "Workloads",
    ),
    "score": Entry(
        "score",
        "score",
        "Score a table with a tree model across the cluster, through Triton.",
        "Workloads",
    ),
    # `-1` must reach the command as an argument, not be taken for an unknown option.
    "scale": Entry(
        "index",
        "scale",
        "Add or remove render nodes of the running IndeX session, without restarting it.",
        "IndeX",
        context={"ignore_unknown_options": True},
    ),
    "config": Entry(
        "config",
        "app",
        "Cluster files: start one from a preset, validate it, render pcluster configs.",
        "Clusters",
        group=True,
    ),
    "flare": Entry(
        "flare",
        "flare_app",
        "NVIDIA FLARE (federated learning): a real provisioned system as cluster jobs.",
        "Workloads",
        group=True,
    ),
    "serve": Entry(
        "serve",
        "serve_app",
        "Online serving on Kubernetes (EKS or any cluster): Triton with the FIL backend "
        "behind a HorizontalPodAutoscaler.",
        "Workloads",
        group=True,
    ),
    "farm": Entry(
        "farm",
        "farm_app",
        "A queue-fed Blender render farm on Kubernetes (EKS or any cluster).",
        "Workloads",
        group=True,
    ),
    "index": Entry(
        "index",
        "index_app",
        "Multi-node NVIDIA IndeX rendering, as NVIDIA's AMI runs it.",
        "IndeX",
        group=True,
    ),
    "scenes": Entry(
        "scenes",
        "app",
        "IndeX scenes: list them, inspect a scene.prj, generate data at any size.",
        "IndeX",
        group=True,
    ),
}


def build_command(name: str) -> click.Command | None:
    """The Click command of `name`, its module imported and the command built now."""
    entry = COMMANDS.get(name)
    if entry is None:
        return None
    target = getattr(importlib.import_module(f"hpcrun.cli.{entry.module}"), entry.attr)
    if entry.group:
        built = typer.main.get_command(target)
        built.rich_help_panel = entry.panel  # type: ignore[attr-defined]  # a TyperGroup's
    else:
        single = typer.Typer(add_completion=False)
        single.command(name=name, rich_help_panel=entry.panel, context_settings=entry.context)(
            target
        )
        built = typer.main.get_command(single)
    built.name = name
    return built


class LazyGroup(TyperGroup):
    """The root group: commands are built when asked for, and listed from `COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return build_command(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's command list, from the summaries: nothing is imported to show it."""
        from typer._click.utils import make_default_short_help

        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(n, make_default_short_help(e.summary, limit)) for n, e in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    cls=LazyGroup,
    name="hpcrun",
    help="Run GPU visualisation and batch work on Slurm clusters with one command.\n\n"
    "Start with `hpcrun create` (a real Slurm cluster on this machine), then "
    "`hpcrun submit -N 4 --wait -- srun hostname`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"hpcrun {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")
    ] = 0,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    import logging

    level = logging.DEBUG if verbose > 1 or debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: errors meant for people print without a traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="hpcrun")
    except HpcrunError as exc:
        if "--debug" in args:
            raise
        sys.stderr.write(f"error: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {exc.hint}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
