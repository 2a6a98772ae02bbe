"""Every failure hpcrun reports to a person is an `HpcrunError`.

Each error carries a one-line message (what is wrong, where) and a hint (how to fix it),
so the CLI can print both without a traceback; `--debug` shows the traceback instead.
Usage mistakes exit 2, everything else 1, as the shell and Click expect.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class HpcrunError(Exception):
    """Base of every error meant for a human; `hint` says what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(HpcrunError):
    """Bad flags or arguments: the user typed something we cannot act on."""

    exit_code = 2


class SlurmNotInstalled(HpcrunError):
    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(
            f"Slurm is not installed here (not on PATH: {', '.join(missing)})",
            "run `make setup` (as root) to install slurm-wlm, munge, slurmdbd and mariadb-server; "
            "if they are installed, add /usr/sbin to PATH",
        )


class DaemonFailed(HpcrunError):
    """A daemon of the local cluster did not start or died; the log tail says why."""

    def __init__(self, daemon: str, reason: str, log_path: str, log_tail: str) -> None:
        tail = "\n".join("    " + line for line in log_tail.splitlines())
        super().__init__(
            f"{daemon} {reason}; last lines of {log_path}:\n{tail}",
            "fix the cause above, then run `hpcrun create` again (it recovers what it can)",
        )
        self.daemon = daemon
        self.log_path = log_path


class PortInUse(HpcrunError):
    def __init__(self, port: int, purpose: str) -> None:
        super().__init__(
            f"port {port} ({purpose}) is already in use on 127.0.0.1",
            f"stop whatever listens there (`ss -ltnp sport = :{port}`), or pick other ports "
            "with `hpcrun create --port-base N`",
        )
        self.port = port


class UnknownCluster(HpcrunError):
    def __init__(self, name: str | None, known: Iterable[str]) -> None:
        names = sorted(known)
        listing = ", ".join(names) if names else "none yet"
        what = f"no cluster named {name!r}" if name else "no current cluster"
        super().__init__(
            f"{what} (known clusters: {listing})",
            "create one with `hpcrun create`, or pick one with "
            "`--cluster NAME` / `hpcrun use NAME`",
        )


class UnknownJob(HpcrunError):
    """`known` are the cluster's recent job ids, newest first; the ten newest are shown."""

    def __init__(self, job_id: str, cluster: str, known: Iterable[str]) -> None:
        names = list(dict.fromkeys(known))[:10]
        shown = ", ".join(names) if names else "none"
        super().__init__(
            f"no job {job_id} on cluster {cluster!r} (recent jobs, newest first: {shown})",
            "`hpcrun jobs` lists them",
        )


class ClusterNotRunning(HpcrunError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"cluster {name!r} is not running", f"start it with `hpcrun create --name {name}`"
        )


class CommandError(HpcrunError):
    """A command on the cluster (or here) exited non-zero; its stderr is the most useful
    thing to show. Transports raise it; they do not know what the command was for."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        detail = stderr.strip() or "(no output)"
        super().__init__(
            f"`{' '.join(argv[:3])}{' ...' if len(argv) > 3 else ''}` failed "
            f"(exit {returncode}): {detail}",
            None,
        )
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


class SlurmCommandError(CommandError):
    """A Slurm command (sbatch, squeue, scontrol...) exited non-zero."""


class ControllerDown(SlurmCommandError):
    """A Slurm command could not reach slurmctld ("Unable to contact slurm controller"):
    one clear message instead of each command's own wording of it."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(argv, returncode, stderr)
        self.message = "Slurm's controller (slurmctld) is not answering"
        self.hint = (
            "`hpcrun create` restarts it on the local cluster; elsewhere ask the cluster's "
            "admin / check `systemctl status slurmctld`"
        )
        self.args = (self.message,)


class FeatureMissing(HpcrunError):
    """A command needs a feature (Slurm, a remote desktop, a shell) the cluster's backend
    lacks: refused before any work starts."""

    def __init__(self, message: str, hint: str | None, *, feature: str) -> None:
        super().__init__(message, hint)
        self.feature = feature
