"""Files that hold something sensitive are the owner's alone from the moment they exist:
the state store (and SQLite's -wal/-shm beside it), the viewer-password copy that
`Workspace.put_private` writes, the rendezvous file holding the agents' token."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hpcrun.node.viewer import rendezvous
from hpcrun.state import StateStore
from hpcrun.transport import LocalRunner
from hpcrun.transport.workspace import RunnerWorkspace


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_state_store_is_private_even_under_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        store = StateStore(tmp_path / "parent" / "home")
        store.put_cluster("c", "local", {"nodes": 1}, "up")  # type: ignore[arg-type]
    finally:
        os.umask(old)
    home = tmp_path / "parent" / "home"
    assert mode(home) == 0o700
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        assert mode(home / name) == 0o600, name
    store.close()


def test_an_older_world_readable_store_is_tightened(tmp_path: Path) -> None:
    StateStore(tmp_path).close()
    (tmp_path / "state.db").chmod(0o644)
    StateStore(tmp_path).close()
    assert mode(tmp_path / "state.db") == 0o600


def test_put_private_is_0600_even_over_an_existing_readable_file(tmp_path: Path) -> None:
    target = tmp_path / "auth-password"
    target.write_text("old")
    target.chmod(0o644)
    RunnerWorkspace(LocalRunner(), str(tmp_path)).put_private(str(target), "s3cret\n")
    assert target.read_text() == "s3cret\n" and mode(target) == 0o600
    fresh = tmp_path / "fresh"
    RunnerWorkspace(LocalRunner(), str(tmp_path)).put_private(str(fresh), "x")
    assert mode(fresh) == 0o600


def test_the_rendezvous_file_with_the_agents_token_is_0600(tmp_path: Path) -> None:
    info = rendezvous.Rendezvous("7", "127.0.0.1", 1, 2, os.getpid(), "token")
    assert mode(rendezvous.write(tmp_path / "r", info)) == 0o600
