"""Where a local cluster keeps its files and which ports it uses, and its config files.

Everything a local cluster writes lives under `$HPCRUN_HOME/clusters/<name>/`: generated
configs in etc/, daemon logs in log/, PID files and sockets in run/, Slurm's state and
spool, MariaDB's data. Nothing goes to /etc, so several clusters can live side by side
and `down --purge` removes one completely.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcrun.errors import PortInUse, UsageError

DEFAULT_PORT_BASE = 16800
PORT_SEARCH_END = 30000
PORT_STRIDE = 20
# AF_UNIX paths are limited to 108 bytes; leave room for the socket file names.
MAX_SOCKET_DIR = 90


@dataclass(frozen=True)
class Ports:
    base: int
    nodes: int

    @property
    def slurmctld(self) -> int:
        return self.base

    @property
    def slurmdbd(self) -> int:
        return self.base + 1

    @property
    def mariadb(self) -> int:
        return self.base + 2

    @property
    def slurmd_first(self) -> int:
        return self.base + 3

    @property
    def slurmd_last(self) -> int:
        return self.base + 2 + self.nodes

    def all(self) -> dict[int, str]:
        ports = {self.slurmctld: "slurmctld", self.slurmdbd: "slurmdbd", self.mariadb: "mariadb"}
        for i in range(self.nodes):
            ports[self.slurmd_first + i] = f"slurmd n{i + 1}"
        return ports


@dataclass(frozen=True)
class LocalPaths:
    root: Path

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def slurm_conf(self) -> Path:
        return self.etc / "slurm.conf"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def devices(self) -> Path:
        return self.root / "dev"

    @property
    def munge(self) -> Path:
        return self.root / "munge"

    @property
    def munge_key(self) -> Path:
        return self.munge / "munge.key"

    @property
    def munge_socket(self) -> Path:
        return self.run / "munge.sock"

    @property
    def db(self) -> Path:
        return self.root / "db"

    @property
    def env_file(self) -> Path:
        return self.root / "env.sh"

    def make_dirs(self) -> None:
        if len(str(self.run)) > MAX_SOCKET_DIR:
            raise UsageError(
                f"cluster directory {self.root} is too long for unix sockets "
                f"({len(str(self.run))} > {MAX_SOCKET_DIR} characters)",
                "set HPCRUN_HOME to a shorter path",
            )
        for path in (self.etc, self.log, self.run, self.state, self.spool, self.devices):
            path.mkdir(parents=True, exist_ok=True)
        self.munge.mkdir(mode=0o700, exist_ok=True)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def check_ports(ports: Ports) -> None:
    """Raise `PortInUse` naming the first busy port and what it was meant for."""
    for port, purpose in sorted(ports.all().items()):
        if not port_is_free(port):
            raise PortInUse(port, purpose)


def find_free_ports(nodes: int, claimed: set[int]) -> Ports:
    """The first block of nodes+3 ports from 16800 that is free and no other cluster claims."""
    for base in range(DEFAULT_PORT_BASE, PORT_SEARCH_END, PORT_STRIDE):
        ports = Ports(base, nodes)
        wanted = set(ports.all())
        if wanted & claimed:
            continue
        if all(port_is_free(p) for p in wanted):
            return ports
    raise UsageError(
        f"no block of {nodes + 3} free TCP ports between {DEFAULT_PORT_BASE} and {PORT_SEARCH_END}",
        "stop clusters you no longer need (`hpcrun down`), or pass `--port-base N`",
    )


def render_config_files(paths: LocalPaths, config: dict[str, Any], ports: Ports) -> dict[str, str]:
    """Text of slurm.conf, gres.conf and (with accounting) slurmdbd.conf; pure, golden-tested."""
    from hpcrun.templates import environment

    env = environment("hpcrun.backends")
    context = {**config, "paths": paths, "ports": ports}
    files = {
        "slurm.conf": env.get_template("slurm.conf.j2").render(context),
        "gres.conf": env.get_template("gres.conf.j2").render(context),
    }
    if config["accounting"]:
        files["slurmdbd.conf"] = env.get_template("slurmdbd.conf.j2").render(context)
    return files
