"""A file named on the command line that cannot be read, is not UTF-8 text, or holds the
wrong kind of value: one line naming the file, a usage exit code, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

NOT_UTF8 = b"name: caf\xe9\nnodes: 2\n"  # Latin-1, as an old editor saves it

COMMANDS = {
    "config validate": ["config", "validate", "{file}"],
    "config import": ["config", "import", "{file}"],
    "create --config": ["create", "--config", "{file}"],
    "render --job": ["render", "--job", "{file}"],
}


def refused(done_args: list[str], file: Path, home: Path) -> str:
    """Run the CLI; check it was refused without a traceback, the first line naming
    `file`; return that line."""
    done = run_cli(*[a.replace("{file}", str(file)) for a in done_args], home=home, check=False)
    output = done.stdout + done.stderr
    assert done.returncode in (1, 2), output
    assert "Traceback" not in output, output
    first = done.stderr.splitlines()[0]
    assert first.startswith(f"error: {file}: "), output
    return first


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_file_that_is_not_utf8_names_the_byte(tmp_path: Path, command: str) -> None:
    file = tmp_path / "latin1.txt"
    file.write_bytes(NOT_UTF8)
    first = refused(COMMANDS[command], file, tmp_path / "home")
    assert first == f"error: {file}: not UTF-8 text (byte 0xe9 at offset 9)"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_file_that_cannot_be_read_says_why(tmp_path: Path, command: str) -> None:
    file = tmp_path / "absent.yaml"
    first = refused(COMMANDS[command], file, tmp_path / "home")
    assert first == f"error: {file}: cannot read: No such file or directory"


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"file": "a.blend", "start": "x", "end": "4"}, 'start must be a whole number, not "x"'),
        ({"file": "a.blend", "start": 1, "end": 2.5}, "end must be a whole number, not 2.5"),
        ({"file": "a.blend", "start": 1, "end": None}, "end must be a whole number, not null"),
        ({"file": "a.blend", "start": True, "end": 3}, "start must be a whole number, not true"),
        ({"file": 7, "start": 1, "end": 3}, "file must be a path to a .blend, not 7"),
        ({"file": "a.blend", "start": 1}, "a job needs file, start and end (missing end)"),
        (["a.blend", 1, 3], "a job needs file, start and end"),
    ],
    ids=["start-x", "end-float", "end-null", "start-bool", "file-number", "no-end", "list"],
)
def test_a_render_job_file_with_bad_values_names_the_key(
    tmp_path: Path, job: object, message: str
) -> None:
    file = tmp_path / "job.json"
    file.write_text(json.dumps(job))
    first = refused(COMMANDS["render --job"], file, tmp_path / "home")
    assert first == f"error: {file}: {message}"


def test_a_render_job_file_that_is_not_json(tmp_path: Path) -> None:
    file = tmp_path / "job.json"
    file.write_text("{file: a.blend}")
    assert refused(COMMANDS["render --job"], file, tmp_path / "home").startswith(
        f"error: {file}: not JSON"
    )
