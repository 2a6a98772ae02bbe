"""What every command shares: finding the cluster, printing JSON or tables, progress.

Only `cli/` knows about Typer and the terminal. Commands stay thin: parse flags, call one
service, print the result, as a table for people or `--json` for scripts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from hpcrun.errors import UnknownCluster

if TYPE_CHECKING:
    from rich.console import Console

    from hpcrun.backends.base import Backend, Feature
    from hpcrun.state import ClusterRecord, StateStore

S = TypeVar("S")

ClusterOption = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        "-c",
        help="Cluster to act on (default: the current one, set by `create` or `use`).",
        envvar="HPCRUN_CLUSTER",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
PartitionOption = Annotated[
    str | None,
    typer.Option(
        "--partition",
        "-p",
        help="Slurm partition (a ParallelCluster queue) to run in; default: the cluster's "
        "default partition. `hpcrun status` lists them.",
        show_default=False,
    ),
]


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """`--json` output. A list (jobs, tasks, runs: thousands of records) is printed one
    record per line: json's C encoder runs only without `indent`, and its Python encoder
    took ~0.3 s to indent the 10 000 tasks of `hpcrun jobs --json`. An object is printed
    one key per line, a list in it one record per line, the rest compact: a 1000-chunk
    `render --json` spent ~40 ms in the indenting encoder."""
    if isinstance(data, list):
        print_json_lines([json.dumps(item) for item in data])
    elif isinstance(data, dict) and data:
        members = []
        for key, value in data.items():
            if isinstance(value, list) and value:
                records = ",\n    ".join(json.dumps(item) for item in value)
                text = f"[\n    {records}\n  ]"
            else:
                text = json.dumps(value)
            members.append(f"  {json.dumps(str(key))}: {text}")
        sys.stdout.write("{\n" + ",\n".join(members) + "\n}\n")
    else:
        sys.stdout.write(json.dumps(data) + "\n")


def print_json_lines(records: list[str]) -> None:
    """`print_json` of a list whose records are already JSON text, one per line (what
    `hpcrun jobs --json` writes by hand, `hpcrun.slurm.parse.jobs_json_lines`)."""
    text = "[\n  " + ",\n  ".join(records) + "\n]\n" if records else "[]\n"
    sys.stdout.write(text)


def open_store() -> StateStore:
    from hpcrun.state import StateStore

    return StateStore()


@dataclass
class Target:
    store: StateStore
    record: ClusterRecord
    backend: Backend


def resolve_cluster(name: str | None) -> Target:
    """The named cluster, or the current one; unknown names list the known ones."""
    from hpcrun.backends import open_backend

    store = open_store()
    chosen = name or store.current_cluster()
    record = store.cluster(chosen) if chosen else None
    if record is None:
        raise UnknownCluster(chosen, [c.name for c in store.clusters()])
    return Target(store, record, open_backend(record, store))


def require(target: Target, feature: Feature, what: str) -> None:
    """Refuse `what` (e.g. "hpcrun dcv") before any work starts when the cluster's backend
    lacks `feature`: one line saying what is missing where, and a hint saying what to do."""
    if feature not in target.backend.unsupported:
        return
    from hpcrun.backends import refusal

    raise refusal(target.record.name, target.record.backend, feature, what, target.backend)


def open_service(
    service: Callable[[StateStore, str, Backend, RichProgress], S], cluster: str | None, quiet: bool
) -> tuple[S, RichProgress]:
    """A service (IndeX sessions, render runs) of the chosen cluster, reporting progress
    on stderr unless `quiet` (--json)."""
    return service_of(service, resolve_cluster(cluster), quiet)


def service_of(
    service: Callable[[StateStore, str, Backend, RichProgress], S], target: Target, quiet: bool
) -> tuple[S, RichProgress]:
    """`open_service` for a cluster already resolved (and checked with `require`)."""
    progress = RichProgress(quiet=quiet)
    return service(target.store, target.record.name, target.backend, progress), progress


class RichProgress:
    """Draw a backend's progress: one line per step, a live counter for `advance`.

    The console is made when something is first drawn: a quiet one (`--json`) never
    imports rich (~25 ms of a `render --json`)."""

    def __init__(self, quiet: bool = False) -> None:
        self._quiet = quiet
        self._out: Console | None = None
        self._status: Any = None

    @property
    def _console(self) -> Console:
        if self._out is None:
            self._out = console(stderr=True)
        return self._out

    def step(self, message: str) -> None:
        if not self._quiet:
            self._console.print(f"[dim]•[/dim] {message}")

    def advance(self, done: int, total: int, message: str) -> None:
        if self._quiet:
            return
        if self._status is None:
            self._status = self._console.status(message)
            self._status.start()
        self._status.update(message)
        if done >= total:
            self.close()
            self._console.print(f"[dim]•[/dim] {message}")

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
