"""What the launcher, the viewer and the render agents share: the parsed command line
(`LaunchOptions`), who a task is (`TaskIdentity`), the viewer's basic-auth credentials and
the flag that marks the viewer's own agent child.

It lives apart from `launcher.py` so the dependencies run one way: the launcher parses
and dispatches to `server` (the viewer) and `agent`, and those two import only this
module, never the launcher.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from hpcrun.errors import HpcrunError, UsageError

DEFAULT_PORT = 8080
INTERNAL_AGENT_FLAG = "--internal-agent"
"""Marks the viewer's own agent child (never typed by people)."""
LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


@dataclass(frozen=True)
class LaunchOptions:
    """The parsed command line; `extra` keeps the IndeX options in the order given."""

    verbose: int = 0
    attach_job: str | None = None
    viewer_script: str | None = None
    scenes: tuple[str, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    port: int = DEFAULT_PORT
    auth: str | None = None
    listen: str | None = None  # the HTTP address; None: see `http_bind_address`
    insecure_public: bool = False
    rendezvous: str | None = None
    scene_data: str | None = None
    bricks: int | None = None
    one_machine: bool = False  # every node of the job is this machine: see `agent`
    internal_agent: bool = False
    help: bool = False

    def option(self, key: str) -> str | None:
        """The value of an IndeX option such as `dice::log_timestamp` (last one wins)."""
        found = None
        for name, value in self.extra:
            if name == key:
                found = value
        return found

    @property
    def log_timestamp(self) -> bool:
        value = (self.option("dice::log_timestamp") or "").lower()
        return value in ("yes", "true", "1", "on")


def read_auth(spec: str) -> tuple[str, str]:
    """(user, password) from `USER:PASSWORD_FILE`; the password is the file's first line."""
    user, _, file_name = spec.partition(":")
    path = Path(file_name).expanduser()
    if not user:
        raise UsageError("--auth needs a user name before the colon")
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise HpcrunError(
            f"cannot read the password file {path}: {exc.strerror}",
            "write the password (one line) into it, readable only by you (chmod 600)",
        ) from None
    password = lines[0].strip() if lines else ""
    if not password:
        raise HpcrunError(f"the password file {path} is empty", "write the password into it")
    return user, password


def is_loopback(address: str) -> bool:
    """True for addresses only this host can reach (127.0.0.0/8, ::1, localhost)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything, so it counts as public


def http_bind_address(options: LaunchOptions) -> str:
    """Where the viewer's HTTP server listens: `--listen`, else every interface when
    the viewer is protected (--auth) or told it may be open (--insecure-public), else
    loopback only.

    The page and its API steer the session and show the data, and nothing but --auth
    guards them, so an unprotected viewer never serves the network by accident: a public
    `--listen` without --auth is refused unless --insecure-public says it is meant.
    """
    protected = options.auth is not None or options.insecure_public
    address = options.listen or (ALL_INTERFACES if protected else LOOPBACK)
    if not protected and not is_loopback(address):
        raise UsageError(
            f"--listen {address}: the viewer would serve its page and API to the network "
            "without a password",
            "pass --auth USER:PASSWORD_FILE, or --insecure-public if anyone who can reach "
            "this node may use it (or --listen 127.0.0.1)",
        )
    return address


@dataclass(frozen=True)
class TaskIdentity:
    """Who this task is in Slurm's terms (defaults for a run outside Slurm)."""

    rank: int
    job_id: str
    node: str
    cpus: int = field(default=1)

    @staticmethod
    def from_env(env: os._Environ[str] | dict[str, str] | None = None) -> TaskIdentity:
        """Slurm's task environment, or a Kubernetes pod's (`hpcrun.node.viewer.pod`)."""
        from hpcrun.node.viewer import pod

        env = os.environ if env is None else env
        if pod.in_pod(env):
            return TaskIdentity(
                rank=pod.rank(env),
                job_id=env.get(pod.RELEASE) or "local",
                node=env.get(pod.NODE) or socket.gethostname(),
                cpus=max(1, os.cpu_count() or 1),
            )
        try:
            rank = int(env.get("SLURM_PROCID", "0"))
        except ValueError:
            rank = 0
        cpu_count = os.cpu_count() or 1
        try:
            cpus = min(int(env.get("SLURM_CPUS_ON_NODE", str(cpu_count))), cpu_count)
        except ValueError:
            cpus = cpu_count
        return TaskIdentity(
            rank=rank,
            job_id=env.get("SLURM_JOB_ID") or "local",
            node=env.get("SLURMD_NODENAME") or socket.gethostname(),
            cpus=max(1, cpus),
        )


def log_unused_options(options: LaunchOptions, log: logging.Logger) -> None:
    """With -v, say which IndeX options the open renderer accepts but ignores."""
    used = {"dice::log_timestamp"}
    for key, value in options.extra:
        if key not in used:
            log.info("accepted IndeX option -%s %s (not used by the open renderer)", key, value)
    if options.viewer_script:
        log.info("viewer script %s accepted (the open renderer needs none)",
                 options.viewer_script)
