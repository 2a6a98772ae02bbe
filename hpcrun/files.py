"""Reading a file a person named on the command line (a cluster file, a ParallelCluster
config, a render job): one reader, so every command words an unreadable or non-text file
the same way, as a usage error naming the file, never a traceback."""

from __future__ import annotations

from pathlib import Path

from hpcrun.errors import UsageError


def read_text_file(path: Path | str, what: str = "file") -> str:
    """The file's text (UTF-8); a `UsageError` that starts with the file's name when it
    cannot be read or is not UTF-8 text. `what` says what the file was for, in the hint."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{path}: cannot read: it is a directory", f"give a {what}") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"{path}: cannot read: {reason}", f"check the {what}'s path") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            f"give a text {what} saved as UTF-8",
        ) from None
