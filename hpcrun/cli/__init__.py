"""The `hpcrun` command line, assembled from one module per command group.

Importing this package must stay cheap (`hpcrun --help` is a benchmark): command modules
import Typer and nothing heavy at module level; pydantic, jinja2 and the backends are
imported inside the commands that need them.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

# Typer's rich help panels cost ~120 ms of a ~280 ms `hpcrun --help` (measured here); plain
# Click-style help is as informative. `TYPER_USE_RICH=1` brings the panels back.
os.environ.setdefault("TYPER_USE_RICH", "0")

import typer

from hpcrun import __version__
from hpcrun.cli import cluster, config, farm, flare, index, jobs, render, scenes, score, serve
from hpcrun.errors import HpcrunError

app = typer.Typer(
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


app.command(rich_help_panel="Clusters")(cluster.create)
app.command(rich_help_panel="Clusters")(cluster.status)
app.command(rich_help_panel="Clusters")(cluster.down)
app.command(rich_help_panel="Clusters")(cluster.clusters)
app.command(rich_help_panel="Clusters")(cluster.use)
app.command(rich_help_panel="Clusters")(cluster.dcv)
app.command(rich_help_panel="Clusters", context_settings={"allow_interspersed_args": False})(
    cluster.ssh
)
app.add_typer(config.app, name="config", rich_help_panel="Clusters")
app.command(rich_help_panel="Jobs", context_settings={"allow_interspersed_args": False})(
    jobs.submit
)
app.command(rich_help_panel="Jobs")(jobs.jobs)
app.command(rich_help_panel="Jobs")(jobs.logs)
app.command(rich_help_panel="Jobs")(jobs.cancel)
app.command(rich_help_panel="Workloads")(render.render)
app.command(rich_help_panel="Workloads")(score.score)
app.add_typer(flare.flare_app, name="flare", rich_help_panel="Workloads")
app.add_typer(serve.serve_app, name="serve", rich_help_panel="Workloads")
app.add_typer(farm.farm_app, name="farm", rich_help_panel="Workloads")
app.add_typer(index.index_app, name="index", rich_help_panel="IndeX")
app.add_typer(scenes.app, name="scenes", rich_help_panel="IndeX")
# `-1` must reach the command as an argument, not be taken for an unknown option.
app.command(rich_help_panel="IndeX", context_settings={"ignore_unknown_options": True})(
    index.scale
)


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
