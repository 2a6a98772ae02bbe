"""Resolve Slurm's output filename patterns (`hpcrun-%A_%a.out`) to the file a job wrote.

`squeue` reports array tasks' output paths unexpanded, and a finished job's path is known
only from what hpcrun recorded at submission, so `hpcrun logs` expands the pattern itself
with Slurm's rules for the replacement symbols it supports.
"""

from __future__ import annotations

import re
from pathlib import Path

from hpcrun.errors import HpcrunError

_SYMBOL_RE = re.compile(r"%(\d*)([%AajxuNnst])")


def resolve_output_path(
    pattern: str,
    *,
    job_id: str,
    array_job_id: str | None,
    array_task_id: str | None,
    name: str,
    user: str,
    workdir: str,
) -> Path:
    """Expand %A %a %j %x %u %% (with optional zero-padding width, as in `%4a`)."""
    values = {
        "A": array_job_id or job_id,
        "a": array_task_id if array_task_id is not None else "4294967294",  # Slurm's NO_VAL
        "j": job_id,
        "x": name,
        "u": user,
    }

    def replace(match: re.Match[str]) -> str:
        width, symbol = match.group(1), match.group(2)
        if symbol == "%":
            return "%"
        if symbol not in values:
            raise HpcrunError(
                f"cannot resolve %{symbol} in output pattern {pattern!r} after the fact",
                "open the file yourself; hpcrun resolves %A %a %j %x %u",
            )
        value = values[symbol]
        return value.zfill(int(width)) if width and value.isdigit() else value

    path = Path(_SYMBOL_RE.sub(replace, pattern))
    return path if path.is_absolute() else Path(workdir) / path
