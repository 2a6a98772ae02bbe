"""One contract for every `Runner`: LocalRunner and SSHRunner must be interchangeable.

`SlurmClient` and the workloads only ever see the `Runner` protocol, so whatever one
transport does (exit codes, stderr, stdin, timeouts keeping what the command said,
quoting of hostile arguments, environment, atomic put, detached spawn), the other must
do the same. The SSH half runs against a real sshd on loopback (`tests/sshd.py`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from hpcrun.errors import HpcrunError
from hpcrun.transport import LocalRunner, Runner
from hpcrun.transport.ssh import SSHRunner
from tests.sshd import SshServer, runner_for, sshd_server  # noqa: F401

MakeRunner = Callable[..., Runner]

NASTY_ARGS = [
    "two words",
    "it's",
    'say "hi"',
    "$HOME and ${PATH}",
    "a; rm -rf /nonexistent-hpcrun",
    "line one\nline two",
    "tab\there",
    "back\\slash",
    "`uname`",
    "$(echo injected)",
    "ünïcødé ✓ 日本",
    "*",
    "",
    "-n",
    "&& || | > <",
]


@pytest.fixture(params=["local", pytest.param("ssh", marks=pytest.mark.ssh)])
def make_runner(request: pytest.FixtureRequest) -> Iterator[MakeRunner]:
    """A factory `make_runner(env=None)` for the transport under test."""
    made: list[SSHRunner] = []

    def local(env: Mapping[str, str] | None = None) -> Runner:
        return LocalRunner(env)

    def ssh(env: Mapping[str, str] | None = None) -> Runner:
        server: SshServer = request.getfixturevalue("sshd_server")
        runner = runner_for(server, env=env)
        made.append(runner)
        return runner

    yield local if request.param == "local" else ssh
    for runner in made:
        runner.close()


def test_stdout_stderr_and_exit_code(make_runner: MakeRunner) -> None:
    done = make_runner().run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")
    assert not done.ok
    with pytest.raises(HpcrunError, match="exit 3"):
        done.check()
    assert make_runner().run(["true"]).check().ok


def test_input_reaches_stdin(make_runner: MakeRunner) -> None:
    script = "#!/bin/bash\n#SBATCH --job-name='x y'\necho \"$1\"\n"
    done = make_runner().run(["cat"], input=script)
    assert done.stdout == script
    assert make_runner().run(["wc", "-c"], input="").stdout.strip() == "0"


def test_large_input_and_output_do_not_deadlock(make_runner: MakeRunner) -> None:
    # Bigger than an SSH window (2 MiB) and a pipe buffer, in both directions at once.
    data = "0123456789abcdef" * (300 * 1024)
    done = make_runner().run(["cat"], input=data, timeout_s=30)
    assert len(done.stdout) == len(data) and done.stdout == data


def test_nasty_arguments_arrive_unchanged(make_runner: MakeRunner) -> None:
    done = make_runner().run(["printf", "%s\\0", *NASTY_ARGS]).check()
    assert done.stdout.split("\0")[:-1] == NASTY_ARGS


def test_env_reaches_the_command(make_runner: MakeRunner) -> None:
    env = {"HPCRUN_PROBE": "a b $c 'd' \"e\"; f", "SLURM_CONF": "/tmp/x y/slurm.conf"}
    runner = make_runner(env)
    done = runner.run(["sh", "-c", 'printf "%s|%s" "$HPCRUN_PROBE" "$SLURM_CONF"']).check()
    assert done.stdout == f"{env['HPCRUN_PROBE']}|{env['SLURM_CONF']}"


def test_timeout_keeps_what_the_command_said(make_runner: MakeRunner) -> None:
    # 2 s, not less: on a loaded machine (the suite's two workers) an SSH session took
    # over 0.5 s to start the command, which then had said nothing yet
    started = time.monotonic()
    with pytest.raises(HpcrunError) as err:
        make_runner().run(["sh", "-c", "echo 'limit reached' >&2; sleep 20"], timeout_s=2)
    assert time.monotonic() - started < 10
    assert "did not finish within 2 s" in err.value.message
    assert err.value.message.endswith(": limit reached")


def test_missing_command_is_a_clear_error(make_runner: MakeRunner) -> None:
    with pytest.raises(HpcrunError, match=r"command not found.*hpcrun-no-such-command"):
        make_runner().run(["hpcrun-no-such-command", "--version"])


def test_put_is_atomic_and_get_reads_back(make_runner: MakeRunner, tmp_path: Path) -> None:
    runner = make_runner()
    target = tmp_path / "deep" / "dir" / "job script.sh"
    payload = bytes(range(256)) * 1000
    runner.put(str(target), payload)
    assert runner.get(str(target)) == payload
    runner.put(str(target), b"second")  # replaces in place
    assert runner.get(str(target)) == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["job script.sh"]  # no temp left
    assert runner.get(str(target), 2) == b"cond"  # from an offset: what a followed log gained
    assert runner.get(str(target), 6) == b""
    with pytest.raises(FileNotFoundError):
        runner.get(str(tmp_path / "missing"))


def test_spawn_detaches_and_logs(make_runner: MakeRunner, tmp_path: Path) -> None:
    runner = make_runner({"HPCRUN_PROBE": "spawned ok"})
    log = tmp_path / "logs" / "viewer.log"
    pid = runner.spawn(
        ["sh", "-c", 'echo "$HPCRUN_PROBE"; echo to-stderr >&2; exec sleep 30'], log_path=str(log)
    )
    try:
        deadline = time.monotonic() + 5
        while "to-stderr" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "spawned command wrote nothing"
            time.sleep(0.02)
        assert log.read_text().splitlines() == ["spawned ok", "to-stderr"]
        # The returned PID is the command itself, in its own session (no terminal to hang
        # up). Its cmdline reads empty for an instant while `exec sleep` replaces the shell.
        cmdline = Path(f"/proc/{pid}/cmdline")
        while cmdline.read_bytes().split(b"\0")[0] != b"sleep":
            assert time.monotonic() < deadline, f"pid {pid} is not the command: {cmdline}"
            time.sleep(0.01)
        assert os.getsid(pid) == pid
        if isinstance(runner, SSHRunner):
            runner.close()  # the command must outlive the connection that started it
            time.sleep(0.1)
            assert Path(f"/proc/{pid}").exists()
    finally:
        os.kill(pid, 15)


def test_command_that_closes_its_output_early_still_reports_exit(make_runner: MakeRunner) -> None:
    started = time.monotonic()
    done = make_runner().run(["sh", "-c", "echo early; exec >&- 2>&-; sleep 0.3; exit 4"])
    assert (done.returncode, done.stdout) == (4, "early\n")
    assert 0.25 < time.monotonic() - started < 5


def test_command_that_ignores_its_input_is_fine(make_runner: MakeRunner) -> None:
    done = make_runner().run(["sh", "-c", "exit 0"], input="x" * (5 * 1024 * 1024), timeout_s=30)
    assert done.returncode == 0
