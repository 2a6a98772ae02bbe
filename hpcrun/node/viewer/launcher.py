"""`hpcrun-nvindex-slurm`: the open renderer's launcher, with nvindex-slurm's command line.

Run as one srun task per node, exactly where NVIDIA's `nvindex-slurm` would run::

    srun -N4 hpcrun-nvindex-slurm -v ./nvindex-viewer.sh --add scene.prj -dice::log_timestamp yes
    srun -N2 hpcrun-nvindex-slurm -a<initial job id> ./nvindex-viewer.sh

Each task decides its role from Slurm's environment: rank 0 of a job started without
`-a` is the viewer (HTTP + websocket server, compositor) and also starts one render agent
as a child process, so its node renders too; every other task is a render agent. With
`-a<jobid>` every task is an agent joining that job's viewer. Options IndeX understands
but the open renderer does not (`-dice::`, `-index::`, `-app::`) are accepted so the same
command line works for both, and listed with -v. This module only parses and dispatches:
the viewer lives in `server.py`, the agent in `agent.py`, and what all three share in
`options.py`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.node.viewer.options import (
    DEFAULT_PORT,
    INTERNAL_AGENT_FLAG,
    LaunchOptions,
    TaskIdentity,
)
from hpcrun.scenes.catalog import SCENE_DATA_ENV

OPTION_PREFIXES = ("-dice::", "-index::", "-app::", "-nvindex::")

USAGE = """\
usage: hpcrun-nvindex-slurm [-v] [-a<jobid>] [VIEWER_SCRIPT] [--add FILE.prj]...
                            [-dice::KEY VALUE]... [--port N] [--auth USER:PASSWORD_FILE]
                            [--listen ADDRESS] [--insecure-public]
                            [--rendezvous DIR] [--scene-data DIR] [--bricks N]
                            [--one-machine]

Open renderer with the command line of NVIDIA's nvindex-slurm; run one task per node
under srun. Rank 0 serves the viewer on http://<node>:PORT/ (default 8080; on 127.0.0.1
only unless --auth or --insecure-public) and renders;
the other ranks render. With -a<jobid> every task joins the viewer of that job.

  -v                    more log output (lists IndeX options that are accepted but unused)
  -a<jobid>, -a JOBID   attach: run render agents for the viewer of job JOBID
  VIEWER_SCRIPT         IndeX's viewer script (./nvindex-viewer.sh); accepted, not needed
  --add FILE.prj        IndeX scene file to show (the first one with a volume is shown)
  -dice::KEY VALUE      IndeX/DiCE option; `-dice::log_timestamp yes` prefixes log lines
                        with a timestamp, others are accepted and ignored
  --port N              HTTP port of the viewer (default 8080; 0: any free port, the
                        readiness line tells which)
  --auth USER:FILE      HTTP basic auth for every page and API; FILE holds the password
  --listen ADDRESS      where the HTTP port listens (default: every interface with --auth
                        or --insecure-public, else 127.0.0.1 only)
  --insecure-public     allow serving the network without --auth (anyone who reaches
                        the node can steer the session and see the data)
  --rendezvous DIR      where the viewer publishes its address for the agents (default
                        $NVINDEX_OPEN_RENDEZVOUS, else ~/.hpcrun/index-rendezvous);
                        must be storage every node sees
  --scene-data DIR      where data of hpcrun's own scenes is generated on first use and
                        read (default $HPCRUN_SCENE_DATA, else $HPCRUN_HOME/scenes);
                        must be storage every node sees
  --bricks N            bricks to cut the volume into (default: 32, fewer for small volumes)
  --one-machine         every node of the job is this one machine (hpcrun's local
                        cluster): render agents load their kernels once the viewer is
                        up, so the viewer gets the shared cores first
"""


def _take_value(args: Sequence[str], index: int, flag: str) -> tuple[str, int]:
    """The value of `flag` at args[index] (`--flag=value` or `--flag value`)."""
    arg = args[index]
    if arg.startswith(flag + "="):
        return arg[len(flag) + 1 :], index + 1
    if index + 1 >= len(args):
        raise UsageError(f"{flag} needs a value", USAGE.splitlines()[0])
    return args[index + 1], index + 2


def _int_in(text: str, flag: str, lower: int, upper: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{flag} takes a number, got {text!r}") from None
    if not lower <= value <= upper:
        raise UsageError(f"{flag} must be within {lower}..{upper}, got {value}")
    return value


def _looks_like_flag(arg: str) -> bool:
    """True for `-x`/`--x`, false for values such as `yes` or `-1.5`."""
    if not arg.startswith("-") or arg == "-":
        return False
    try:
        float(arg)
    except ValueError:
        return True
    return False


def parse_args(argv: Sequence[str]) -> LaunchOptions:
    """Parse nvindex-slurm's command line (argparse cannot: `-a12`, `-dice::key value`)."""
    verbose = 0
    attach: str | None = None
    script: str | None = None
    scenes: list[str] = []
    extra: list[tuple[str, str]] = []
    port = DEFAULT_PORT
    auth: str | None = None
    listen: str | None = None
    insecure_public = False
    rendezvous: str | None = None
    scene_data: str | None = None
    bricks: int | None = None
    one_machine = False
    internal = False
    show_help = False
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            show_help, i = True, i + 1
        elif arg in ("-v", "--verbose") or (arg.startswith("-v") and set(arg[1:]) == {"v"}):
            verbose += 1 if arg == "--verbose" else len(arg) - 1
            i += 1
        elif arg == "-a" or (arg.startswith("-a") and not arg.startswith("-app::")):
            if arg == "-a":
                attach, i = _take_value(args, i, "-a")
            else:
                attach, i = arg[2:].lstrip("="), i + 1
            if not attach or not attach.replace("_", "").replace(".", "").isalnum():
                raise UsageError(f"-a needs a job id, got {attach!r}")
        elif arg == "--attach" or arg.startswith("--attach="):
            attach, i = _take_value(args, i, "--attach")
        elif arg == "--add" or arg.startswith("--add="):
            value, i = _take_value(args, i, "--add")
            scenes.append(value)
        elif arg == "--port" or arg.startswith("--port="):
            value, i = _take_value(args, i, "--port")
            port = _int_in(value, "--port", 0, 65535)
        elif arg == "--auth" or arg.startswith("--auth="):
            auth, i = _take_value(args, i, "--auth")
            if ":" not in auth:
                raise UsageError("--auth takes USER:PASSWORD_FILE", "e.g. --auth admin:~/.pw")
        elif arg == "--listen" or arg.startswith("--listen="):
            listen, i = _take_value(args, i, "--listen")
            if not listen:
                raise UsageError("--listen needs an address", "e.g. --listen 127.0.0.1")
        elif arg == "--insecure-public":
            insecure_public, i = True, i + 1
        elif arg == "--rendezvous" or arg.startswith("--rendezvous="):
            rendezvous, i = _take_value(args, i, "--rendezvous")
        elif arg == "--scene-data" or arg.startswith("--scene-data="):
            scene_data, i = _take_value(args, i, "--scene-data")
        elif arg == "--bricks" or arg.startswith("--bricks="):
            value, i = _take_value(args, i, "--bricks")
            bricks = _int_in(value, "--bricks", 1, 4096)
        elif arg == "--one-machine":
            one_machine, i = True, i + 1
        elif arg == INTERNAL_AGENT_FLAG:
            internal, i = True, i + 1
        elif arg.startswith(OPTION_PREFIXES):
            key = arg[1:]
            if "=" in key:
                key, value = key.split("=", 1)
                i += 1
            elif i + 1 < len(args) and not _looks_like_flag(args[i + 1]):
                value, i = args[i + 1], i + 2
            else:
                value, i = "", i + 1  # a bare flag such as -dice::verbose
            extra.append((key, value))
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg!r}", USAGE.splitlines()[0])
        elif script is None:
            script, i = arg, i + 1
        else:
            raise UsageError(
                f"unexpected argument {arg!r} (the viewer script is already {script!r})",
                "scene files go after --add",
            )
    return LaunchOptions(
        verbose=verbose,
        attach_job=attach,
        viewer_script=script,
        scenes=tuple(scenes),
        extra=tuple(extra),
        port=port,
        auth=auth,
        listen=listen,
        insecure_public=insecure_public,
        rendezvous=rendezvous,
        scene_data=scene_data,
        bricks=bricks,
        one_machine=one_machine,
        internal_agent=internal,
        help=show_help,
    )


class _Formatter(logging.Formatter):
    """`[viewer] text`, optionally behind a timestamp (`-dice::log_timestamp yes`)."""

    def __init__(self, tag: str, timestamp: bool) -> None:
        super().__init__()
        self._tag = tag
        self._timestamp = timestamp

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        if record.exc_info and logging.getLogger().isEnabledFor(logging.DEBUG):
            text += "\n" + self.formatException(record.exc_info)
        line = f"[{self._tag}] {text}"
        if self._timestamp:
            now = time.time()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            line = f"{stamp}.{int(now % 1 * 1000):03d} {line}"
        return line


def setup_logging(tag: str, options: LaunchOptions) -> None:
    """Log lines to stdout (srun captures it; the readiness line must be there), flushed."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Formatter(tag, options.log_timestamp))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if options.verbose > 1 else logging.INFO)
    # aiohttp's access log would print a line per frame request; keep it for -vv.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if options.verbose > 1 else logging.WARNING
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (errors print without a traceback)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        options = parse_args(args)
        if options.help:
            sys.stdout.write(USAGE)
            return 0
        if options.scene_data:
            # Read by hpcrun.scenes wherever a scene is loaded: this task, and the
            # viewer's own agent child, which inherits the environment.
            os.environ[SCENE_DATA_ENV] = options.scene_data
        identity = TaskIdentity.from_env()
        if options.internal_agent or options.attach_job or identity.rank != 0:
            from hpcrun.node.viewer.agent import run_agent

            setup_logging(f"agent {identity.node}", options)
            return run_agent(options, identity)
        from hpcrun.node.viewer.server import run_viewer

        setup_logging("viewer", options)
        return run_viewer(options, identity)
    except HpcrunError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {exc.hint}\n")
        sys.stderr.flush()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
