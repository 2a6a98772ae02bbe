"""One change at a time to what two hpcrun processes must not change together.

Two `hpcrun scale +1` at the same moment would each see the same free nodes and the same
session, and `index stop` during a `scale` would end jobs the scale is still recording.
Changes of one thing (an IndeX session, say) therefore hold an exclusive lock named after
it; a second change is refused at once, naming the process that holds it and what it is
doing, rather than queued behind a change the user cannot see. The locks are `flock`s
on files in hpcrun's home: the kernel drops one when its holder dies, so a SIGKILLed
hpcrun never leaves a lock behind, and the file's content (who holds it) is only a hint.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from hpcrun.errors import HpcrunError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class Busy(HpcrunError):
    """Another hpcrun process is changing the same thing right now."""


def lock_path(home: Path, name: str) -> Path:
    return home / "locks" / f"{_UNSAFE.sub('_', name)}.lock"


@contextlib.contextmanager
def exclusive(home: Path, name: str, *, what: str, doing: str) -> Iterator[None]:
    """Hold the lock `name` for the block; `what` names the thing for the refusal
    ("IndeX session 3") and `doing` is what this process does with it ("scale +1")."""
    path = lock_path(home, name)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(
                f"{what} is being changed by another hpcrun ({_holder(fd)})",
                "wait until that command ends (or stop it), then run this one again",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "doing": doing, "since": time.time()})
                  .encode(), 0)
        yield
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        since = time.time() - float(info["since"])
        return f"pid {int(info['pid'])}: {info['doing']}, for {since:.0f} s"
    except (OSError, ValueError, KeyError, TypeError):
        return "its details are not recorded yet"
