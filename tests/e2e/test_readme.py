"""Run the README's examples top to bottom and compare what they print with the README.

Every ```console block is a shell session: `$ ` lines are commands (run with bash, the
project's venv first on PATH, in a fresh `$HPCRUN_HOME`; `make` lines in the repository),
the lines after them are the expected stdout and stderr. The README's test Kubernetes
control plane (`make k8s-up`, in ~/.cache/hpcrun/kwok) is the test's own, in its home.
`...` inside a line matches any text; a line of just `...` matches any number of lines.
Trailing spaces are ignored. So the docs cannot rot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import (
    clean_environ,
    free_port,
    processes_mentioning,
    run_cli,
    short_tempdir,
    slurm_installed,
)

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def console_sessions(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for every `$ ` line of every console block."""
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
    return steps


def matches(expected: list[str], actual: str) -> bool:
    pattern = []
    for line in expected:
        if line.strip() == "...":
            pattern.append(r"(?:[^\n]*\n)*?")
        else:
            parts = [re.escape(p) for p in line.rstrip().split("...")]
            pattern.append("[^\\n]*".join(parts) + r"[ \t]*\n")
    normalised = "".join(line.rstrip() + "\n" for line in actual.splitlines())
    return re.fullmatch("".join(pattern), normalised) is not None


def test_pattern_matching_is_strict() -> None:
    assert matches(["a ... c"], "a b c\n")
    assert not matches(["a ... c"], "a b d\n")
    assert matches(["x", "...", "z"], "x\n1\n2\nz\n")
    assert not matches(["x", "z"], "x\ny\nz\n")


def test_readme_examples_run_as_documented() -> None:
    if not slurm_installed():
        pytest.skip("Slurm is not installed: run `make setup`")
    steps = console_sessions(README.read_text())
    assert len(steps) >= 10, "the README lost its examples"
    home = short_tempdir("hrr")
    workdir = home / "work"
    workdir.mkdir()
    env = clean_environ(
        HPCRUN_HOME=str(home),
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}:/usr/sbin",
        COLUMNS="120",
    )
    # The README shows IndeX's default port; the test serves on a free one, so a demo
    # session on 8080 on the same machine does not make the docs look broken.
    port = free_port()
    env["HPCRUN_INDEX_PORT"] = str(port)
    kwok = home / "kwok"
    env["HPCRUN_KWOK_WORKDIR"] = str(kwok)
    try:
        for readme_command, readme_expected in steps:
            expected = [line.replace(":8080", f":{port}") for line in readme_expected]
            command = readme_command.replace("~/.cache/hpcrun/kwok", str(kwok))
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                env=env,
                cwd=REPO if command.startswith("make ") else workdir,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=240,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            assert done.returncode == 0, f"$ {command}\nexited {done.returncode}:\n{done.stdout}"
            assert matches(expected, done.stdout), (
                f"$ {command}\n--- README expects:\n"
                + "\n".join(expected)
                + f"\n--- it printed:\n{done.stdout}"
            )
    finally:
        subprocess.run(
            ["make", "-s", "k8s-down"], cwd=REPO, env=env, capture_output=True, check=False,
            timeout=120,
        )
        run_cli("index", "stop", "--cluster", "dev", home=home, check=False)
        run_cli("down", "--yes", "--purge", "--cluster", "dev", home=home, check=False)
        leftovers = processes_mentioning(str(home))
        shutil.rmtree(home, ignore_errors=True)
        assert not leftovers
