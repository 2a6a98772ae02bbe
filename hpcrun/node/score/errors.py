"""The score task's one error: a problem the user can fix.

A `TaskError` says what is wrong and where (message) and how to fix it (hint). `inspect`
prints it as one JSON line the submitting side turns into a usage error; `shard` and
`merge` print it to stderr, where the job's log keeps it. It is not an `HpcrunError`: the
task runs where hpcrun is not installed.
"""

from __future__ import annotations


class TaskError(Exception):
    """A problem the user can fix: what is wrong and where (message), how to fix it (hint)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
