"""`install` / `uninstall`: run the guard every 5 minutes on this (head) node.

With systemd (every ParallelCluster 3 OS) a oneshot service and a timer
(`hpcrun-idle-guard.timer`: 5 minutes after boot, then every 5 minutes); elsewhere an
entry in /etc/cron.d. Both run this very zipapp as root (scontrol and shutdown need it)
with Slurm's commands on PATH (ParallelCluster keeps them in /opt/slurm/bin). Installing
again replaces the units (a new limit) and restarts the clock: the state file is reset.
`root` puts every file under another directory and enables nothing, for tests.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

from .guard import load_json, save_state

UNIT = "hpcrun-idle-guard"
STATE = "/var/lib/hpcrun/idle-guard.json"
PLAN = "/opt/hpcrun/idle-guard-plan.json"  # what to ask Slurm (written by hpcrun)
PLAN_KEYS = ("queue", "accounting", "ended_states", "nodes", "powered_down_suffix", "power_down")
LOG = "/var/log/hpcrun-idle-guard.log"
SLURM_PATH = "/opt/slurm/bin"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INTERVAL_MIN = 5

SERVICE = """\
# Written by hpcrun (`hpcrun create --idle-down`): power the cluster off after
# {minutes} minutes without a Slurm job. Log: {log}
[Unit]
Description=hpcrun idle guard (power off after {minutes} min without a job)
After=network-online.target

[Service]
Type=oneshot
Environment=PATH={path}
{extra_env}ExecStart={command}
"""
TIMER = """\
# Written by hpcrun: runs {unit}.service every {interval} minutes.
[Unit]
Description=Run the hpcrun idle guard every {interval} minutes

[Timer]
OnBootSec={interval}min
OnUnitActiveSec={interval}min

[Install]
WantedBy=timers.target
"""
CRON = """\
# Written by hpcrun (`hpcrun create --idle-down`): power the cluster off after
# {minutes} minutes without a Slurm job. Log: {log}
PATH={path}
{extra_env}*/{interval} * * * * root {command} >/dev/null 2>&1
"""


def guard_command(
    program: str, minutes: int, *, python: str, plan: str, state: str, log: str
) -> list[str]:
    return [python, program, "check", "--idle-minutes", str(minutes), "--plan", plan,
            "--state", state, "--log", log]  # fmt: skip


def install(
    minutes: int,
    *,
    plan: str = PLAN,
    program: str | None = None,
    python: str | None = None,
    slurm_path: str = SLURM_PATH,
    slurm_conf: str | None = None,
    root: str = "/",
    scheduler: str = "auto",
    enable: bool = True,
) -> str:
    """Write the timer (or cron entry) and enable it; return what was done, in words."""
    plan = os.path.abspath(plan)
    missing = [k for k in PLAN_KEYS if k not in load_json(plan)]
    if missing:
        raise SystemExit(f"{plan}: not the guard's plan (no {', '.join(missing)})")
    program = os.path.abspath(program or sys.argv[0])
    python = python or sys.executable or "/usr/bin/python3"
    command = " ".join(
        shlex.quote(a)
        for a in guard_command(program, minutes, python=python, plan=plan, state=STATE, log=LOG)
    )
    path = f"{slurm_path}:{BASE_PATH}" if slurm_path else BASE_PATH
    if scheduler == "auto":
        scheduler = "systemd" if os.path.isdir(os.path.join(root, "run/systemd/system")) else "cron"
    fields = {
        "minutes": minutes, "log": LOG, "path": path, "command": command, "unit": UNIT,
        "interval": INTERVAL_MIN,
    }  # fmt: skip
    enable = enable and root == "/"
    save_state(_under(root, STATE), {"installed_at": time.time(), "idle_minutes": minutes})
    if scheduler == "systemd":
        env = f"Environment=SLURM_CONF={slurm_conf}\n" if slurm_conf else ""
        units = _under(root, "/etc/systemd/system")
        _write(os.path.join(units, UNIT + ".service"), SERVICE.format(extra_env=env, **fields))
        _write(os.path.join(units, UNIT + ".timer"), TIMER.format(**fields))
        if enable:
            _run(["systemctl", "daemon-reload"])
            _run(["systemctl", "enable", "--now", UNIT + ".timer"])
            _run(["systemctl", "restart", UNIT + ".timer"])  # a changed limit takes effect
        return (
            f"systemd timer {UNIT}.timer every {INTERVAL_MIN} min, power off after "
            f"{minutes} min idle; log {LOG}"
        )
    env = f"SLURM_CONF={slurm_conf}\n" if slurm_conf else ""
    _write(_under(root, "/etc/cron.d/" + UNIT), CRON.format(extra_env=env, **fields))
    return (
        f"cron entry /etc/cron.d/{UNIT} every {INTERVAL_MIN} min, power off after "
        f"{minutes} min idle; log {LOG}"
    )


def uninstall(root: str = "/") -> str:
    """Stop and remove the timer or cron entry (the log stays)."""
    if root == "/" and os.path.isdir("/run/systemd/system"):
        subprocess.run(["systemctl", "disable", "--now", UNIT + ".timer"], check=False)
    removed = []
    for path in (
        f"/etc/systemd/system/{UNIT}.service",
        f"/etc/systemd/system/{UNIT}.timer",
        "/etc/cron.d/" + UNIT,
        STATE,
    ):
        full = _under(root, path)
        if os.path.exists(full):
            os.remove(full)
            removed.append(path)
    return "removed " + (", ".join(removed) if removed else "nothing (no guard installed)")


def _under(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o644)


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError("{}: {}".format(" ".join(argv), done.stderr.strip()))
