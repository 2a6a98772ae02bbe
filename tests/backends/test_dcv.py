"""DCV connect: the script's output parsed, the one-time URL built, retries, and the token
kept out of reprs. The script is a real executable run by a real runner."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from hpcrun.backends.dcv import DcvSession, parse_connect_output, prepare_session, redact
from hpcrun.errors import HpcrunError
from hpcrun.transport.runner import LocalRunner

LINE = "PclusterDcvServerPort=8443 PclusterDcvSessionId=a1b2c3 PclusterDcvSessionToken=Tok-123_x"


def connect(runner: Any, host: str, home: str, **options: Any) -> str:
    """The one-time URL of the session the connect script prepares (what `hpcrun dcv`
    prints)."""
    return prepare_session(runner, host, home, **options).url(host)


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "pcluster_dcv_connect.sh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_the_three_values_are_found_after_an_ssh_notice() -> None:
    text = "Warning: Permanently added '1.2.3.4' to the list of known hosts.\n" + LINE + "\n"
    assert parse_connect_output(text) == DcvSession(8443, "a1b2c3", "Tok-123_x")
    assert parse_connect_output("nothing here") is None


def test_session_ids_with_dashes_and_dots_parse() -> None:
    # DCV session names may hold '-' and '.' (the e2e head node's did): \w+ missed them.
    text = LINE.replace("a1b2c3", "session-7.user")
    assert parse_connect_output(text) == DcvSession(8443, "session-7.user", "Tok-123_x")


def test_url_is_https_with_the_token_and_the_session_after_the_hash() -> None:
    session = DcvSession(8443, "a1b2c3", "Tok-123_x")
    assert session.url("54.1.2.3") == "https://54.1.2.3:8443?authToken=Tok-123_x#a1b2c3"
    assert "Tok-123_x" not in repr(session)


def test_connect_runs_the_script_with_the_home_directory(tmp_path: Path) -> None:
    seen = tmp_path / "args"
    path = script(tmp_path, f'echo "$1" > {seen}\necho "{LINE}"\n')
    url = connect(LocalRunner(), "10.0.0.5", "/home/ec2-user", script=path)
    assert url == "https://10.0.0.5:8443?authToken=Tok-123_x#a1b2c3"
    assert seen.read_text().strip() == "/home/ec2-user"


def test_connect_retries_while_the_dcv_server_starts(tmp_path: Path) -> None:
    count = tmp_path / "count"
    path = script(
        tmp_path,
        f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}\n"
        f'if [ "$n" -lt 2 ]; then echo "dcv not ready" >&2; exit 1; fi\necho "{LINE}"\n',
    )
    waits: list[float] = []
    said: list[str] = []
    url = connect(
        LocalRunner(),
        "h",
        "/home/u",
        script=path,
        sleep=waits.append,
        wait_s=1.0,
        progress=said.append,
    )
    assert url.endswith("#a1b2c3")
    assert waits == [1.0, 1.0]
    assert said == [
        "DCV server on h not ready yet (attempt 1/6): dcv not ready; retrying in 1 s",
        "DCV server on h not ready yet (attempt 2/6): dcv not ready; retrying in 1 s",
    ]


def test_connect_gives_up_with_the_scripts_last_words(tmp_path: Path) -> None:
    path = script(tmp_path, 'echo "dcv: permission denied" >&2; exit 1\n')
    with pytest.raises(HpcrunError, match="after 2 attempts over 0 s") as info:
        connect(LocalRunner(), "h", "/home/u", script=path, attempts=2, sleep=lambda _: None)
    assert "its connect script said: dcv: permission denied" in info.value.message
    assert "--attempts" in (info.value.hint or "")


def test_a_script_that_prints_nothing_useful_is_retried_and_named(tmp_path: Path) -> None:
    path = script(tmp_path, 'echo "no session yet"\n')
    said: list[str] = []
    with pytest.raises(HpcrunError, match="printed no DCV session parameters"):
        connect(
            LocalRunner(),
            "h",
            "/home/u",
            script=path,
            attempts=3,
            sleep=lambda _: None,
            progress=said.append,
        )
    assert len(said) == 2 and "(attempt 2/3)" in said[1] and "no session yet" in said[1]


def test_a_token_in_the_scripts_failure_output_is_hidden(tmp_path: Path) -> None:
    path = script(tmp_path, f'echo "{LINE.replace("8443", "x")}" >&2; exit 1\n')
    said: list[str] = []
    with pytest.raises(HpcrunError) as info:
        connect(
            LocalRunner(),
            "h",
            "/home/u",
            script=path,
            attempts=2,
            sleep=lambda _: None,
            progress=said.append,
        )
    assert "Tok-123_x" not in info.value.message and "Tok-123_x" not in said[0]
    assert "PclusterDcvSessionToken=<hidden>" in info.value.message
    assert redact("https://h:1?authToken=abc-1#s") == "https://h:1?authToken=<hidden>#s"


def test_a_head_node_without_the_script_says_dcv_is_not_enabled(tmp_path: Path) -> None:
    with pytest.raises(HpcrunError, match="without DCV support") as info:
        connect(LocalRunner(), "h", "/home/u", script=str(tmp_path / "absent.sh"))
    assert "dcv" in (info.value.hint or "")
