"""`RunnerWorkspace`: the cluster's storage (hpcrun's workspace and the user's paths
there) over any `Runner`, each operation one round trip.

Services ask for files, listings and probes through this one class instead of writing
`sh -c` snippets of their own, so the snippets are written (and quoted) once, here: paths
always travel as positional arguments (`"$1"`), never inside the script text. It works the
same over `LocalRunner` and `SSHRunner`; a Kubernetes backend will bring its own
implementation of the same `Workspace` protocol (`hpcrun.scheduler`).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from hpcrun.errors import CommandError, UsageError
from hpcrun.transport.runner import Completed, LocalRunner, Runner


@dataclass(frozen=True)
class FileInfo:
    size: int
    mtime_s: int
    head: bytes = b""  # the first bytes, when asked for


_HEX = 'od -An -v -tx1 | tr -d " \\n"'


class RunnerWorkspace:
    def __init__(self, runner: Runner, root: str) -> None:
        self.runner = runner
        self._root = root

    @property
    def root(self) -> str:
        return self._root

    def _sh(self, script: str, *args: str, timeout_s: float | None = 60.0) -> Completed:
        return self.runner.run(["sh", "-c", script, "sh", *args], timeout_s=timeout_s)

    def _checked(self, script: str, *args: str, timeout_s: float | None = 60.0) -> str:
        done = self._sh(script, *args, timeout_s=timeout_s)
        if not done.ok:
            raise CommandError((script,), done.returncode, done.stderr or done.stdout)
        return done.stdout

    def put(self, path: str, data: bytes) -> None:
        self.runner.put(path, data)

    def put_private(self, path: str, text: str) -> None:
        # umask before the file exists: it is never readable by others, not even briefly;
        # an existing file keeps its mode under umask, so it is emptied and chmod'ed first.
        script = 'umask 077 && : > "$1" && chmod 600 "$1" && cat > "$1"'
        done = self.runner.run(["sh", "-c", script, "sh", path], input=text)
        done.check()

    def get(self, path: str, offset: int = 0) -> bytes:
        return self.runner.get(path, offset)

    def read_text(self, path: str) -> str:
        try:
            return self.runner.get(path).decode(errors="replace")
        except OSError:
            return ""

    def stat(self, path: str, *, head_bytes: int = 0) -> FileInfo | None:
        script = 'stat -L -c "%s %Y" "$1" && test -r "$1"'
        if head_bytes:
            script += f' && head -c {int(head_bytes)} "$1" | {_HEX}'
        done = self._sh(script, path)
        lines = done.stdout.splitlines()
        if not done.ok or not lines:
            return None
        size, mtime = lines[0].split()
        head = bytes.fromhex(lines[1]) if head_bytes and len(lines) > 1 else b""
        return FileInfo(int(size), int(mtime), head)

    def list(self, directory: str) -> list[str]:
        done = self._sh('cd "$1" 2>/dev/null || exit 0; ls -1A', directory)
        return sorted(done.stdout.splitlines()) if done.ok else []

    def tails(self, directory: str, glob: str, nbytes: int) -> dict[str, bytes]:
        script = (
            'cd "$1" 2>/dev/null || exit 0; for f in $2; do [ -f "$f" ] || continue; '
            f'printf "%s %s\\n" "$f" "$(tail -c {int(nbytes)} "$f" | {_HEX})"; done'
        )
        found: dict[str, bytes] = {}
        for line in self._checked(script, directory, glob, timeout_s=300.0).splitlines():
            name, _, hex_bytes = line.rpartition(" ")
            if name:
                found[name] = bytes.fromhex(hex_bytes)
        return found

    def exists(self, path: str) -> bool:
        return self._sh('test -e "$1"', path).ok

    def remove(self, *paths: str) -> None:
        if paths:
            self._checked('rm -rf -- "$@"', *paths)

    def copy(self, source: str, target: str) -> None:
        self._checked('mkdir -p "$(dirname "$2")" && cp "$1" "$2"', source, target)

    def make_dirs(self, *paths: str) -> None:
        if paths:
            self._checked('mkdir -p -- "$@"', *paths)

    def make_writable_dir(self, path: str, named: str) -> None:
        probe = path.rstrip("/") + "/.hpcrun-write-test"
        done = self._sh('mkdir -p "$1" && : > "$2" && rm -f "$2"', path, probe)
        if not done.ok:
            raise UsageError(
                f"{named} is not writable: {done.stderr.strip()}",
                "pick a place you can write to (on storage every node sees)",
            )

    def which(self, programs: Sequence[str]) -> dict[str, str | None]:
        if not programs:
            return {}
        done = self._checked(
            'for p; do printf "%s\\t%s\\n" "$p" "$(command -v "$p" || true)"; done', *programs
        )
        found: dict[str, str | None] = {p: None for p in programs}
        for line in done.splitlines():
            name, _, where = line.partition("\t")
            if name in found:
                found[name] = where.strip() or None
        return found

    def run(self, argv: Sequence[str], *, timeout_s: float | None = 60.0) -> Completed:
        return self.runner.run(argv, timeout_s=timeout_s)


class LocalWorkspace(RunnerWorkspace):
    """`RunnerWorkspace` for storage on this machine (the local cluster's): the probes
    and listings a submit makes are system calls here instead of one `sh` process each
    (a 1000-frame `render` made six, ~5 ms apiece). What fails is handed to the shell
    version, so errors read exactly as they do over SSH; writes that must be atomic
    or private (put, put_private, copy, remove) stay the runner's."""

    def __init__(self, runner: LocalRunner, root: str) -> None:
        super().__init__(runner, root)
        self._path = runner.env.get("PATH", os.defpath)

    def stat(self, path: str, *, head_bytes: int = 0) -> FileInfo | None:
        try:
            info = os.stat(path)
            if not os.access(path, os.R_OK):
                return None
            head = b""
            if head_bytes:
                with open(path, "rb") as f:
                    head = f.read(int(head_bytes))
        except OSError:
            return None
        return FileInfo(info.st_size, int(info.st_mtime), head)

    def list(self, directory: str) -> list[str]:
        try:
            return sorted(os.listdir(directory))
        except OSError:
            return []

    def tails(self, directory: str, glob: str, nbytes: int) -> dict[str, bytes]:
        try:
            names = os.listdir(directory)
        except OSError:
            return {}
        found: dict[str, bytes] = {}
        for pattern in glob.split():  # the shell splits the unquoted patterns too
            for name in sorted(fnmatch.filter(names, pattern)):
                if name.startswith(".") and not pattern.startswith("."):
                    continue  # a shell glob skips dot files
                path = os.path.join(directory, name)
                try:
                    if not stat.S_ISREG(os.stat(path).st_mode):
                        continue
                    with open(path, "rb") as f:
                        size = f.seek(0, os.SEEK_END)
                        f.seek(max(0, size - int(nbytes)))
                        found[name] = f.read()
                except OSError:
                    return super().tails(directory, glob, nbytes)
        return found

    def exists(self, path: str) -> bool:
        return os.path.exists(path)  # `test -e` follows links too

    def make_dirs(self, *paths: str) -> None:
        try:
            for path in paths:
                os.makedirs(path, exist_ok=True)
        except OSError:
            super().make_dirs(*paths)  # the shell's own message

    def make_writable_dir(self, path: str, named: str) -> None:
        probe = path.rstrip("/") + "/.hpcrun-write-test"
        try:
            os.makedirs(path, exist_ok=True)
            with open(probe, "wb"):
                pass
            os.remove(probe)
        except OSError:
            super().make_writable_dir(path, named)  # the shell's own message

    def which(self, programs: Sequence[str]) -> dict[str, str | None]:
        return {p: shutil.which(p, path=self._path) for p in programs}
