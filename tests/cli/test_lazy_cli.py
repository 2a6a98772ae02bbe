"""The lazy root group (hpcrun/cli/__init__.py): `hpcrun --help` lists every command from
`COMMANDS` without importing one, so its summaries must say what the commands' own help
says, and each command must build and run as if registered the ordinary way."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer._click.utils import make_default_short_help

from hpcrun.cli import COMMANDS, build_command


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_summary_is_the_commands_own_help_at_every_width(name: str) -> None:
    built = build_command(name)
    assert built is not None and built.name == name
    for limit in range(20, 240, 7):
        assert make_default_short_help(COMMANDS[name].summary, limit) == (
            built.get_short_help_str(limit)
        ), (name, limit)


def test_an_unknown_command_is_none() -> None:
    assert build_command("nope") is None


def test_help_imports_no_command_module() -> None:
    probe = (
        "import sys, contextlib, io\n"
        "from hpcrun.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('hpcrun.cli.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_running_a_command_imports_only_its_module() -> None:
    probe = (
        "import sys, contextlib, io\n"
        "from hpcrun.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['submit', '--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('hpcrun.cli.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['hpcrun.cli._common', 'hpcrun.cli.jobs']", done.stdout


@pytest.mark.parametrize("rich", ["0", "1"])
def test_the_root_help_lists_every_command_in_both_help_styles(rich: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hpcrun", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"TYPER_USE_RICH": rich, "PATH": "/usr/bin:/bin", "COLUMNS": "120"},
    )
    for name in COMMANDS:
        assert f" {name} " in done.stdout, (name, done.stdout)
