"""The open renderer's page never serves the network without a password by accident.

The viewer's HTTP port steers the session and shows its data, and only --auth guards it.
So: without --auth it listens on 127.0.0.1 (where the local cluster's nodes all are), a
public --listen without --auth is refused unless --insecure-public says so, and
`hpcrun index` on a remote cluster (where the viewer must listen on its compute node's
address for the SSH tunnel) refuses to start an unprotected one before allocating.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hpcrun.backends.base import ClusterSite
from hpcrun.errors import UsageError
from hpcrun.node.viewer.launcher import parse_args
from hpcrun.node.viewer.options import http_bind_address, is_loopback
from hpcrun.services.index import IndexSessions, StartRequest, _check_exposure
from hpcrun.state import StateStore
from hpcrun.transport import LocalRunner
from hpcrun.transport.workspace import RunnerWorkspace
from tests.node.viewer._launch import READY, launch, write_scene


@pytest.mark.parametrize(
    ("argv", "bound"),
    [
        ([], "127.0.0.1"),  # no password: this host only
        (["--auth", "a:/pw"], "0.0.0.0"),  # IndeX's own default, now behind a password
        (["--insecure-public"], "0.0.0.0"),
        (["--listen", "127.0.0.2"], "127.0.0.2"),
        (["--listen=::1"], "::1"),
        (["--listen", "localhost"], "localhost"),
        (["--listen", "10.1.2.3", "--auth", "a:/pw"], "10.1.2.3"),
        (["--listen", "0.0.0.0", "--insecure-public"], "0.0.0.0"),
    ],
)
def test_where_the_page_listens(argv: list[str], bound: str) -> None:
    assert http_bind_address(parse_args(argv)) == bound


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "10.1.2.3", "node-1.cluster"])
def test_a_public_listen_without_auth_is_refused_naming_both_ways_out(address: str) -> None:
    with pytest.raises(UsageError) as refused:
        http_bind_address(parse_args(["--listen", address]))
    assert f"--listen {address}" in refused.value.message
    assert "--auth USER:PASSWORD_FILE" in (refused.value.hint or "")
    assert "--insecure-public" in (refused.value.hint or "")


def test_loopback_means_this_host_only() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.9.9.9") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert not is_loopback("example.org")  # a name may resolve anywhere


@pytest.mark.parametrize(
    ("on_this_host", "auth", "insecure", "refused"),
    [
        (False, None, False, True),  # remote cluster, no password: refused
        (False, "alice:/pw", False, False),
        (False, None, True, False),
        (True, None, False, False),  # local cluster: the viewer listens on 127.0.0.1
    ],
)
def test_hpcrun_index_refuses_an_unprotected_remote_viewer(
    on_this_host: bool, auth: str | None, insecure: bool, refused: bool
) -> None:
    request = StartRequest(nodes=1, scene="supernova", auth=auth, insecure_public=insecure)
    if not refused:
        _check_exposure(request, on_this_host=on_this_host)
        return
    with pytest.raises(UsageError) as error:
        _check_exposure(request, on_this_host=on_this_host)
    text = f"{error.value.message} {error.value.hint}"
    assert "--auth USER:PASSWORD_FILE" in text and "--insecure-public" in text


def test_the_viewer_process_refuses_a_public_bind_without_auth(tmp_path: Path) -> None:
    """A real launcher process: one error line (and its hint), exit 2, nothing started."""
    task = launch("viewer", ["--add", str(tmp_path / "none.prj"), "--listen", "0.0.0.0",
                             "--port", "0", "--rendezvous", str(tmp_path / "r")], job_id="31")
    assert task.process.wait(30) == 2
    task.wait_for("error: --listen 0.0.0.0: the viewer would serve its page and API")
    errors = [line for _, line in task.lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in task.output
    assert READY not in task.output
    assert not (tmp_path / "r").exists()


def _routed_address() -> str | None:
    """This host's non-loopback address, as the viewer's advertised_host finds it."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith(("127.", "0.")) else address


@pytest.mark.slow  # a real viewer loads a small scene (about 2 s)
def test_without_auth_the_page_is_on_loopback_only(tmp_path: Path) -> None:
    routed = _routed_address()
    if routed is None:
        pytest.skip("this host has no non-loopback address to try")
    prj = write_scene(tmp_path / "scene", 16)
    task = launch("viewer", ["--add", str(prj), "--port", "0", "--rendezvous",
                             str(tmp_path / "r")], job_id="32", env={"NVINDEX_OPEN_HOST": routed})
    try:
        _, line = task.wait_for(READY, timeout_s=60)
        url = line.split(READY, 1)[1].strip()
        assert url.startswith("http://127.0.0.1:"), url  # what the user is told to open
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        with pytest.raises(OSError):  # refused on the address other hosts would use
            socket.create_connection((routed, port), timeout=5).close()
    finally:
        task.stop()


def _sessions(tmp: Path, *, on_this_host: bool) -> IndexSessions:
    """An IndexSessions whose site and workspace are set directly (no cluster needed:
    `_open_options` only reads the site and writes the password copy)."""
    sessions = IndexSessions(StateStore(tmp / "home"), "c", backend=None)  # type: ignore[arg-type]
    sessions._site = ClusterSite(workspace=str(tmp / "ws"), launcher="hpcrun-nvindex-slurm",
                                 scenes_dir=None, shares_local_files=on_this_host)
    sessions._workspace = RunnerWorkspace(LocalRunner(), str(tmp / "ws"))
    return sessions


@pytest.mark.parametrize(
    ("on_this_host", "auth", "insecure", "bound"),
    [
        (True, False, False, "127.0.0.1"),  # the local cluster: every node is this host
        (True, True, False, "0.0.0.0"),
        (True, False, True, "0.0.0.0"),
        (False, True, False, "0.0.0.0"),  # remote: the tunnel reaches the node's address
        (False, False, True, "0.0.0.0"),
    ],
)
def test_the_viewer_options_hpcrun_index_passes_decide_its_bind(
    tmp_path: Path, on_this_host: bool, auth: bool, insecure: bool, bound: str
) -> None:
    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    workdir = str(tmp_path / "ws" / "index" / "1")
    Path(workdir).mkdir(parents=True)  # as `start` makes it before asking for the options
    options = _sessions(tmp_path, on_this_host=on_this_host)._open_options(
        workdir, f"alice:{password}" if auth else None, insecure
    )
    parsed = parse_args(list(options))
    assert http_bind_address(parsed) == bound
    if auth and not on_this_host:  # the viewer reads a 0600 copy on the cluster
        copy = Path(workdir) / "auth-password"
        assert parsed.auth == f"alice:{copy}" and copy.stat().st_mode & 0o077 == 0
