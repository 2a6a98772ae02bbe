"""Where commands execute: the `Runner` transport under every scheduler and workspace.

A runner runs an argv and moves files; it knows nothing of Slurm. `LocalRunner` runs
subprocesses on this host with an environment (e.g. `SLURM_CONF` of a local cluster); an
SSH runner for remote head nodes implements the same protocol, so one contract test
suite covers both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hpcrun.errors import CommandError, HpcrunError


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> Completed:
        """Return self, or raise `CommandError` carrying stderr when the command failed."""
        if self.returncode != 0:
            raise CommandError(self.argv, self.returncode, self.stderr or self.stdout)
        return self


def timed_out(
    argv: Sequence[str], timeout_s: float | None, said: str, where: str = ""
) -> HpcrunError:
    """The error for a command that outlived its timeout, with the last lines it wrote to
    stderr: what a command said before it hung is the diagnosis (e.g. sbatch retrying
    "Slurm temporarily unable to accept job" at MaxJobCount), so never drop it."""
    last = said.strip().splitlines()[-3:]
    return HpcrunError(
        f"`{' '.join(argv[:3])}` did not finish within {timeout_s or 0:g} s"
        + (f" on {where}" if where else "")
        + (": " + " / ".join(last) if last else ""),
        "if it says the job limit is reached, wait for ended jobs to age out "
        "(MinJobAge) or cancel some; else check `hpcrun status`",
    )


class Runner(Protocol):
    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout_s: float | None = 60.0
    ) -> Completed: ...

    def put(self, path: str, data: bytes) -> None: ...

    def get(self, path: str, offset: int = 0) -> bytes:
        """The file's bytes from `offset` on (a followed log reads only what is new)."""
        ...

    def spawn(self, argv: Sequence[str], *, log_path: str) -> int: ...


def _interrupt(proc: subprocess.Popen[str], first: signal.Signals, grace_s: float) -> str:
    """Stop a command, politely first: `first` (SIGINT for a Ctrl-C, SIGTERM for a
    timeout), then SIGTERM, then SIGKILL, each after `grace_s` more; return what it
    wrote to stderr. Not SIGKILL at once because Slurm's commands clean up on the others:
    a pending `salloc` withdraws its request, where a killed one leaves it queued, to be
    granted later to no one. The command runs in its own process group, so the signal
    reaches what it started (a shell's children) too; a Ctrl-C at the terminal reaches
    only hpcrun, which passes it on here. A program that ignores SIGINT (it was started
    ignoring it) still ends on SIGTERM."""
    ladder = [first] + ([signal.SIGTERM] if first != signal.SIGTERM else []) + [signal.SIGKILL]
    for signum in ladder:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)
        try:
            # After SIGKILL, only a grandchild outside the group can hold the pipes open.
            _, stderr = proc.communicate(timeout=5.0 if signum == signal.SIGKILL else grace_s)
        except subprocess.TimeoutExpired:
            continue
        except (ValueError, OSError):
            break
        return stderr or ""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return ""


class LocalRunner:
    """Run commands as subprocesses of this process, with extra environment variables."""

    def __init__(
        self, env: Mapping[str, str] | None = None, *, drop: Sequence[str] = ()
    ) -> None:
        # `drop`: variables of this process the commands must not see (credentials).
        inherited = {k: v for k, v in os.environ.items() if k not in drop}
        self._env = {**inherited, **(env or {})}

    @property
    def env(self) -> Mapping[str, str]:
        return self._env

    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout_s: float | None = 60.0
    ) -> Completed:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL if input is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self._env,
                process_group=0,  # so that a stop reaches its children too (see _interrupt)
            )
        except FileNotFoundError as exc:
            raise HpcrunError(
                f"command not found: {argv[0]}",
                "run `make setup` to install Slurm's client commands",
            ) from exc
        with proc:
            try:
                stdout, stderr = proc.communicate(input, timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                # What the command said before it hung is the diagnosis (e.g. sbatch
                # retrying "Slurm temporarily unable to accept job" at MaxJobCount).
                raise timed_out(argv, timeout_s, _interrupt(proc, signal.SIGTERM, 2.0)) from exc
            except BaseException:  # Ctrl-C: the command must not go on without us
                _interrupt(proc, signal.SIGINT, 3.0)
                raise
        return Completed(tuple(argv), proc.returncode, stdout, stderr)

    def put(self, path: str, data: bytes) -> None:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(target)  # readers never see a half-written file

    def get(self, path: str, offset: int = 0) -> bytes:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read()

    def spawn(self, argv: Sequence[str], *, log_path: str) -> int:
        """Start a long-running command (an `srun` step serving a viewer) that outlives this
        process: own session, no stdin, stdout and stderr appended to `log_path`."""
        log = Path(log_path)
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            try:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self._env,
                    start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise HpcrunError(
                    f"command not found: {argv[0]}",
                    "run `make setup` to install Slurm's client commands",
                ) from exc
        return proc.pid
