"""Golden-file comparison for generated text (sbatch scripts, argv, Slurm configs).

`assert_golden(name, text)` compares `text` with tests/golden/<name> and fails with a
unified diff. Run with `UPDATE_GOLDEN=1` to (re)write the files instead, then read the
diff in `git diff tests/golden/` before accepting it: the golden files are the review.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"


def updating() -> bool:
    return os.environ.get("UPDATE_GOLDEN") == "1"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN_DIR / name
    if updating():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="") as out:
            out.write(text)
        return
    if not path.exists():
        pytest.fail(
            f"golden file {path} is missing; create it with UPDATE_GOLDEN=1 and review it",
            pytrace=False,
        )
    with path.open(encoding="utf-8", newline="") as src:
        expected = src.read()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"tests/golden/{name} (expected)",
                tofile="generated (actual)",
            )
        )
        pytest.fail(
            f"output differs from tests/golden/{name}:\n{diff}\n"
            "if the change is intended, rerun with UPDATE_GOLDEN=1 and review `git diff`",
            pytrace=False,
        )


def argv_text(argv: Sequence[str]) -> str:
    """One argument per line: argv never passes through a shell, so no quoting is shown."""
    for arg in argv:
        assert "\n" not in arg, f"argument {arg!r} holds a newline; it cannot be shown per line"
    return "".join(f"{arg}\n" for arg in argv)
