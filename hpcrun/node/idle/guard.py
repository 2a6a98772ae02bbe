"""`check`: on the head node, the guard's one round, run every 5 minutes.

It asks Slurm there (its queue, and its accounting where the cluster keeps one) what the
plan says (`--plan`: a JSON file hpcrun writes from `hpcrun.slurm.client.IDLE_QUERIES`,
since node code does not speak Slurm itself), remembers in
its state file the last moment it saw a job (active, or the end of one that ended), and
computes idle time as `compute` defines it, the cluster's start being the later of the
head node's boot and the guard's installation: a head node someone starts again after
the guard stopped it gets the full limit again. Once idle reaches the limit it runs the
power-off action: by default every compute node is set POWER_DOWN (ParallelCluster's
clustermgtd terminates their instances), the guard waits for that, and then halts the
head node (`shutdown -h now`). The head node cannot delete its own CloudFormation stack
without broad IAM rights, so EBS volumes and the Elastic IP remain until `hpcrun down`.
`--action CMD` (or HPCRUN_IDLE_ACTION) replaces that with any shell command, which is how
the tests run the real guard against a real Slurm cluster with a harmless action.
Every round writes one line to the log file (and stdout: the journal, under systemd).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .compute import Idle, IdleFacts, compute_idle, parse_job_times

if TYPE_CHECKING:
    from .compute import JobTime

ACTION_ENV = "HPCRUN_IDLE_ACTION"
POWER_DOWN_WAIT_S = 300.0  # clustermgtd acts on a powered-down node within its 60 s loop
SLURM_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Round:
    idle: Idle
    acted: bool
    message: str


class Slurm:
    """Slurm on this node, through the plan's queries (argv lists, times as epoch s)."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.ended = frozenset(plan["ended_states"])

    def _run(self, name: str, **fill: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.update(self.plan.get("env") or {})
        argv = [word.format(**fill) if fill else word for word in self.plan[name]]
        return subprocess.run(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SLURM_TIMEOUT_S,
            check=False,
        )

    def queue(self) -> tuple[list[JobTime] | None, str]:
        """Every job the controller lists with its end time, or None and why not."""
        try:
            done = self._run("queue")
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"Slurm's queue: {exc}"
        if done.returncode != 0:
            said = done.stderr.strip() or f"exit status {done.returncode}"
            return None, f"Slurm's queue: {said}"
        return parse_job_times(done.stdout, self.ended), ""

    def accounting(self) -> list[JobTime] | None:
        """Jobs of the last 30 days from accounting; None where there is none."""
        try:
            done = self._run("accounting")
        except (OSError, subprocess.TimeoutExpired):
            return None
        return parse_job_times(done.stdout, self.ended) if done.returncode == 0 else None

    def node_states(self) -> dict[str, str]:
        """Every node's state as Slurm words it."""
        try:
            done = self._run("nodes")
        except (OSError, subprocess.TimeoutExpired):
            return {}
        found: dict[str, str] = {}
        for line in done.stdout.splitlines():
            name, _, state = line.strip().partition("|")
            if name:
                found[name] = state
        return found

    def powered_down(self, state: str) -> bool:
        return state.endswith(self.plan["powered_down_suffix"])

    def power_down(self, names: list[str]) -> subprocess.CompletedProcess[str]:
        return self._run("power_down", nodes=",".join(names))


def load_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as handle:
            data = json.load(handle)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_state(path: str, state: dict[str, Any]) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as handle:
        json.dump(state, handle, sort_keys=True)
    os.replace(tmp, path)


def boot_time() -> float | None:
    try:
        with open("/proc/stat") as handle:
            for line in handle:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def log_line(path: str | None, message: str) -> None:
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} hpcrun-idle-guard: {message}"
    print(line, flush=True)
    if path:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(line + "\n")


def check(
    idle_minutes: float,
    *,
    plan: dict[str, Any],
    state_path: str,
    log_path: str | None,
    action: str | None = None,
    dry_run: bool = False,
    power_off: Callable[[Slurm, str | None], str] | None = None,
) -> Round:
    """One round: gather, remember, compute, and act once idle reaches the limit."""
    now = time.time()
    slurm = Slurm(plan)
    queue, error = slurm.queue()
    busy = queue is not None and not _all_ended(queue)
    accounting = slurm.accounting() if queue is not None and not busy else None
    state = load_json(state_path)
    state.setdefault("installed_at", now)
    if queue is not None:
        seen = [end for _, _, end, ended in queue if ended and end is not None]
        last_seen = max([float(state.get("last_job_seen", 0.0)), *seen, *([now] if busy else [])])
        if last_seen:
            state["last_job_seen"] = last_seen
    save_state(state_path, state)
    starts = [t for t in (boot_time(), state.get("installed_at")) if t is not None]
    idle = compute_idle(
        IdleFacts(
            now_s=now,
            queue=queue,
            accounting=accounting,
            up_since_s=max(starts) if starts else None,
            recorded_s=state.get("last_job_seen"),
            error=error,
        )
    )
    limit = f"limit {idle_minutes:g} min"
    if not idle.at_least(idle_minutes):
        why = "left up" if idle.known else "unknown idle time: left up"
        message = f"idle: {idle.text(now)}; {limit}: {why}"
        log_line(log_path, message)
        return Round(idle, False, message)
    doing = "would power off (dry run)" if dry_run else "powering off"
    message = f"idle: {idle.text(now)}; {limit} reached: {doing}"
    log_line(log_path, message)
    if dry_run:
        return Round(idle, False, message)
    chosen = action if action is not None else os.environ.get(ACTION_ENV) or None
    if chosen:
        env = dict(os.environ)
        env.update(
            {"HPCRUN_IDLE_S": str(int(idle.idle_s or 0)), "HPCRUN_IDLE_TEXT": idle.text(now)}
        )
        done = subprocess.run(["/bin/sh", "-c", chosen], env=env, check=False)
        outcome = f"action `{chosen}` exited {done.returncode}"
    else:
        outcome = (power_off or power_off_cluster)(slurm, log_path)
    log_line(log_path, outcome)
    return Round(idle, True, f"{message}; {outcome}")


def _all_ended(queue: list[JobTime]) -> bool:
    return all(ended for *_, ended in queue)


def power_off_cluster(slurm: Slurm, log_path: str | None) -> str:
    """The default action: compute nodes powered down, a wait for that, this node halted."""
    queue, _ = slurm.queue()
    if queue is None or not _all_ended(queue):
        return "a job arrived (or Slurm did not answer) just before powering off: left up"
    names = sorted(n for n, state in slurm.node_states().items() if not slurm.powered_down(state))
    if names:
        done = slurm.power_down(names)
        said = f": {done.stderr.strip()}" if done.stderr.strip() else ""
        log_line(
            log_path,
            f"compute nodes {','.join(names)} powering down (exit {done.returncode}{said})",
        )
        deadline = time.monotonic() + POWER_DOWN_WAIT_S
        while time.monotonic() < deadline:
            if all(slurm.powered_down(s) for s in slurm.node_states().values()):
                break
            time.sleep(10)
        else:
            log_line(log_path, f"compute nodes still powering down after {POWER_DOWN_WAIT_S:.0f} s")
    log_line(log_path, "halting the head node (shutdown -h now)")
    halted = subprocess.run(["shutdown", "-h", "now"], check=False)
    return f"shutdown -h now exited {halted.returncode}"
