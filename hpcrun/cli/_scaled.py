"""What `hpcrun serve` and `hpcrun farm` share on the command line: the options of a
workload kept up by replicas between a floor and a ceiling, and opening its service,
with a Slurm cluster refused before any work."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from hpcrun.cli._common import RichProgress, require, resolve_cluster, service_of

if TYPE_CHECKING:
    from hpcrun.backends.base import Backend
    from hpcrun.state import StateStore

S = TypeVar("S")

MinOption = Annotated[int, typer.Option("--min", help="Fewest replicas.")]
MaxOption = Annotated[int, typer.Option("--max", help="Most replicas.")]
TargetCpuOption = Annotated[
    int, typer.Option(help="Scale to keep each replica at this % of its --cpu.")
]
CpuOption = Annotated[str, typer.Option(help="CPU each replica asks for.")]
MemoryOption = Annotated[str, typer.Option(help="Memory each replica asks for.")]
NoWaitOption = Annotated[bool, typer.Option("--no-wait", help="Return once the objects exist.")]


def open_scaled(
    service: Callable[[StateStore, str, Backend, RichProgress], S],
    cluster: str | None,
    quiet: bool,
    command: str,
) -> tuple[S, RichProgress]:
    """The service of the chosen cluster; one without a way to keep servers up (Slurm)
    is refused with what to use instead."""
    from hpcrun.backends.base import Feature

    target = resolve_cluster(cluster)
    require(target, Feature.SERVE, command)
    return service_of(service, target, quiet)
