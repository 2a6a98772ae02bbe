"""`python flare_task.pyz server|site RUN_DIR [INDEX]`: one FLARE participant as a task.

The run directory holds `flare.json` (written by hpcrun: the participants' names, the
project's org, the ports when the user fixed them) and `kits/<name>/`. The server task picks
two free ports on its node unless fixed, writes them into its kit and, once FLARE's server
is started, `server.json` (host, ports, pid) for the sites and for hpcrun's admin side.
A site task waits for `server.json` and points its kit's `target` there: clients check
the server by its certificate's name, not by its host name, so the kit stays valid.

FLARE's programs run as children. SIGTERM (Slurm's cancel) stops the child and then
every process still running from this participant's kit (a running FLARE job's workers
sit in process groups of their own and outlive the server by ~20 s otherwise), so a
cancelled task leaves no process and no port behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SERVER_ADDRESS = "server.json"  # in the run directory, once the server listens
PLAN = "flare.json"
_STORAGE = "/tmp/nvflare"  # FLARE's default job and snapshot store, shared by every system
_WAIT_FOR_SERVER_S = 900.0
_STOP_GRACE_S = 10.0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] not in {"server", "site"}:
        print("usage: flare_task.pyz server RUN_DIR | site RUN_DIR INDEX", file=sys.stderr)
        return 2
    run_dir = Path(args[1])
    plan = json.loads((run_dir / PLAN).read_text())
    if args[0] == "server":
        return _serve(run_dir, plan)
    index = int(args[2] if len(args) > 2 else os.environ.get("HPCRUN_TASK_INDEX", "1"))
    return _site(run_dir, plan, plan["sites"][index - 1])


def _serve(run_dir: Path, plan: dict[str, Any]) -> int:
    name = plan["server"]
    kit = run_dir / "kits" / name
    fl_port, admin_port = plan.get("fl_port") or 0, plan.get("admin_port") or 0
    if not fl_port:
        fl_port, admin_port = free_ports(2)
    host = _host_name()
    config_path = kit / "startup" / "fed_server.json"
    config = json.loads(config_path.read_text())
    server = config["servers"][0]
    server["service"]["target"] = f"{host}:{fl_port}"
    server["admin_port"] = admin_port
    server["admin_server"] = host
    _write(config_path, json.dumps(config, indent=2))
    _point_storage(kit, run_dir / "store" / name)
    argv = [sys.executable, "-u", "-m", "nvflare.private.fed.app.server.server_train"]
    argv += ["-m", str(kit), "-s", "fed_server.json", "--set", "secure_train=true"]
    argv += ["config_folder=config", f"org={plan['org']}"]
    address = {
        "host": host,
        "fl_port": fl_port,
        "admin_port": admin_port,
        "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
    }
    return _supervise(
        argv, kit, lambda pid: _write(run_dir / SERVER_ADDRESS, json.dumps({**address, "pid": pid}))
    )


def _site(run_dir: Path, plan: dict[str, Any], name: str) -> int:
    kit = run_dir / "kits" / name
    address_path = run_dir / SERVER_ADDRESS
    deadline = time.monotonic() + _WAIT_FOR_SERVER_S
    print(f"{name}: waiting for the server to publish {address_path}", flush=True)
    while not address_path.exists():
        if time.monotonic() > deadline:
            print(f"{name}: no server after {_WAIT_FOR_SERVER_S:.0f} s", file=sys.stderr)
            return 1
        time.sleep(0.2)
    address = json.loads(address_path.read_text())
    config_path = kit / "startup" / "fed_client.json"
    config = json.loads(config_path.read_text())
    config["servers"][0]["service"]["target"] = f"{address['host']}:{address['fl_port']}"
    _write(config_path, json.dumps(config, indent=2))
    _point_storage(kit, run_dir / "store" / name)
    print(f"{name}: server at {address['host']}:{address['fl_port']}", flush=True)
    argv = [sys.executable, "-u", "-m", "nvflare.private.fed.app.client.client_train"]
    argv += ["-m", str(kit), "-s", "fed_client.json", "--set", "secure_train=true"]
    argv += [f"uid={name}", "config_folder=config", f"org={plan['org']}"]
    return _supervise(argv, kit, lambda pid: None)


def _supervise(argv: list[str], kit: Path, started: Callable[[int], None]) -> int:
    """Run FLARE's program in the kit; on SIGTERM/SIGINT stop it and whatever it left."""
    child = subprocess.Popen(argv, cwd=kit)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        child.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started(child.pid)
    try:
        while True:
            try:
                code = child.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        end_leftovers(kit)
    return 0 if stopping else code


def end_leftovers(kit: Path) -> None:
    """Every process whose command line names this kit: FLARE's job workers, which live in
    process groups of their own. TERM first, KILL after a grace."""
    deadline = time.monotonic() + _STOP_GRACE_S
    sig = signal.SIGTERM
    while True:
        pids = _pids_naming(str(kit))
        if not pids:
            return
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        if sig == signal.SIGKILL:
            return
        time.sleep(0.3)


def _pids_naming(kit: str) -> list[int]:
    """Processes with `kit` (or a path under it) as an argument: site-1's kit is not
    site-10's."""
    own = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a == kit or a.startswith(kit + "/") for a in args):
            found.append(int(entry.name))
    return found


def _point_storage(kit: Path, store: Path) -> None:
    """The kit's resources.json with job and snapshot storage in the run directory: two
    systems on one node would share FLARE's default /tmp/nvflare, and down could not
    tell their files apart."""
    default = kit / "local" / "resources.json.default"
    if not default.exists():
        return
    store.mkdir(parents=True, exist_ok=True)
    _write(kit / "local" / "resources.json", storage_config(default.read_text(), str(store)))


def storage_config(default_text: str, store: str) -> str:
    """resources.json.default with FLARE's job and snapshot storage under `store`."""
    return default_text.replace(_STORAGE, store)


def free_ports(count: int) -> list[int]:
    """Ports free on this node now: bound together, so no two are the same."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _host_name() -> str:
    """How the other nodes reach this one: its host name when that resolves, else its
    address on the default route."""
    name = socket.gethostname()
    try:
        socket.getaddrinfo(name, None)
        return name
    except OSError:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])


def _write(path: Path, text: str) -> None:
    """Atomically, keeping the mode of the file it replaces (0600 stays 0600)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)
