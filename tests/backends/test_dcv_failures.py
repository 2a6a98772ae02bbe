"""What `hpcrun dcv` finds on the user's side: whether a graphical browser exists, whether
the DCV port answers from here (and what the error says when not), and a head node that
does not answer SSH at all (then it is not called a DCV problem)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hpcrun.backends.dcv import (
    DcvDesktop,
    DcvSession,
    blocked_port_error,
    local_browser,
    port_unreachable,
)
from hpcrun.errors import HpcrunError
from tests.conftest import free_port


def fresh_webbrowser(monkeypatch: pytest.MonkeyPatch, browser: str) -> None:
    """webbrowser registers its browsers once a process: make it look again, with only
    $BROWSER (no display, so no graphical browser found on its own)."""
    import webbrowser

    monkeypatch.setenv("BROWSER", browser)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})


def test_a_browser_variable_naming_no_program_means_no_browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh_webbrowser(monkeypatch, str(tmp_path / "no-such-browser"))
    assert local_browser() is None


def test_a_text_browser_is_not_used_for_a_desktop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lynx = tmp_path / "lynx"
    lynx.write_text("#!/bin/sh\nexit 0\n")
    lynx.chmod(0o755)
    fresh_webbrowser(monkeypatch, str(lynx))
    assert local_browser() is None
    graphical = lynx.rename(tmp_path / "firefox")
    fresh_webbrowser(monkeypatch, str(graphical))
    assert local_browser() is not None


def test_the_port_check_tells_a_listening_port_from_a_closed_one() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert port_unreachable("127.0.0.1", listener.getsockname()[1], 1.0) is None
    assert port_unreachable("127.0.0.1", free_port(), 1.0) == "Connection refused"


def test_a_blocked_port_names_the_cidr_of_the_cluster_file_and_that_ssh_answered() -> None:
    session = DcvSession(8443, "s1", "Tok-123_x")
    desktop = DcvDesktop(
        "127.0.0.1",
        session,
        ssh_target="ec2-user@127.0.0.1:22",
        dcv_settings={"enabled": True, "port": 8443, "allowed_cidr": "203.0.113.0/24"},
    )
    assert "Tok-123_x" not in repr(desktop)
    error = blocked_port_error(
        "54.1.2.3",
        8443,
        "no answer within 3 s",
        ssh_target="ec2-user@54.1.2.3:22",
        dcv={"allowed_cidr": "203.0.113.0/24"},
    )
    assert error.message.startswith("the DCV port 8443 on 54.1.2.3 does not answer from here")
    assert "answers SSH (ec2-user@54.1.2.3:22)" in error.message
    hint = error.hint or ""
    assert "dcv.allowed_cidr" in hint and "now 203.0.113.0/24" in hint
    assert "HeadNode.Dcv.AllowedIps" in hint and "your address/32" in hint
    everyone = blocked_port_error("h", 8443, "x", ssh_target="h:22", dcv={})
    assert "already admits everyone" in (everyone.hint or "")
    plain = blocked_port_error("h", 8443, "x", ssh_target="h:22")
    assert "security group" in (plain.hint or "") and "your address/32" in (plain.hint or "")


def test_a_head_node_that_does_not_answer_ssh_is_not_called_a_dcv_problem(
    tmp_path: Path,
) -> None:
    from hpcrun.backends.remote import SshBackend
    from hpcrun.state import StateStore

    config = {
        "backend": "ssh",
        "name": "desk",
        "host": "127.0.0.1",
        "port": free_port(),  # nothing listens: SSH is refused
        "known_hosts_path": str(tmp_path / "known_hosts"),
        "home": "/home/u",
    }
    backend = SshBackend(config, StateStore(tmp_path / "home"))
    with pytest.raises(HpcrunError) as info:
        backend.desktop(attempts=1, wait_s=0)
    assert info.value.message.startswith("the head node 127.0.0.1 did not answer SSH")
    assert "Connection refused" in info.value.message
    assert "not a DCV port problem" in (info.value.hint or "")
