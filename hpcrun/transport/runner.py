"""Where commands execute: the `Runner` transport under every scheduler and workspace.

A runner runs an argv and moves files; it knows nothing of Slurm. `LocalRunner` runs
subprocesses on this host with an environment (e.g. `SLURM_CONF` of a local cluster); an
SSH runner for remote head nodes implements the same protocol, so one contract test
suite covers both.
"""

from __future__ import annotations

import os
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


class LocalRunner:
    """Run commands as subprocesses of this process, with extra environment variables."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = {**os.environ, **(env or {})}

    @property
    def env(self) -> Mapping[str, str]:
        return self._env

    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout_s: float | None = 60.0
    ) -> Completed:
        try:
            proc = subprocess.run(
                list(argv),
                input=input,
                capture_output=True,
                text=True,
                env=self._env,
                timeout=timeout_s,
                check=False,
            )
        except FileNotFoundError as exc:
            raise HpcrunError(
                f"command not found: {argv[0]}",
                "run `make setup` to install Slurm's client commands",
            ) from exc
        except subprocess.TimeoutExpired as exc:
            # What the command said before it hung is the diagnosis (e.g. sbatch retrying
            # "Slurm temporarily unable to accept job" at MaxJobCount): never drop it.
            said = exc.stderr or b""
            said_text = said.decode(errors="replace") if isinstance(said, bytes) else said
            raise timed_out(argv, timeout_s, said_text) from exc
        return Completed(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

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
