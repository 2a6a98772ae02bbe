"""One contract for the `Workspace`: what services ask of the cluster's storage behaves the
same over LocalRunner, in-process (`LocalWorkspace`) and over SSHRunner (a real sshd on
loopback), with paths that would break a shell snippet that quoted them badly."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcrun.errors import CommandError, SlurmCommandError, UsageError
from hpcrun.transport import LocalRunner
from hpcrun.transport.workspace import LocalWorkspace, RunnerWorkspace
from tests.sshd import SshServer, runner_for, sshd_server  # noqa: F401

PNG_END = b"IEND\xaeB`\x82"
HOSTILE = "it's a $(dir) `x` ; *"


@pytest.fixture(params=["local", "in-process", pytest.param("ssh", marks=pytest.mark.ssh)])
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunnerWorkspace]:
    root = tmp_path / HOSTILE
    root.mkdir()
    if request.param == "local":
        yield RunnerWorkspace(LocalRunner(), str(root))
        return
    if request.param == "in-process":  # the local cluster's: system calls, not `sh`
        yield LocalWorkspace(LocalRunner(), str(root))
        return
    server: SshServer = request.getfixturevalue("sshd_server")
    runner = runner_for(server)
    try:
        yield RunnerWorkspace(runner, str(root))
    finally:
        runner.close()


def test_put_get_and_read_text(workspace: RunnerWorkspace) -> None:
    path = f"{workspace.root}/deep/er/file.txt"
    workspace.put(path, b"hello\nworld\n")
    assert workspace.get(path) == b"hello\nworld\n"
    assert workspace.get(path, 6) == b"world\n"
    assert workspace.read_text(path) == "hello\nworld\n"
    assert workspace.read_text(f"{workspace.root}/absent.log") == ""
    with pytest.raises(OSError):
        workspace.get(f"{workspace.root}/absent.log")


def test_stat_with_head(workspace: RunnerWorkspace) -> None:
    path = f"{workspace.root}/scene.blend"
    workspace.put(path, b"BLENDER-v300" + b"\x00" * 100)
    info = workspace.stat(path, head_bytes=7)
    assert info is not None
    assert (info.size, info.head) == (112, b"BLENDER")
    assert info.mtime_s == int(Path(path).stat().st_mtime)
    assert workspace.stat(path) == type(info)(112, info.mtime_s, b"")
    assert workspace.stat(f"{workspace.root}/nothing") is None


def test_list_exists_and_remove(workspace: RunnerWorkspace) -> None:
    root = workspace.root
    assert workspace.list(f"{root}/not-yet") == []
    for name in ("b.txt", "a b.txt", ".hidden"):
        workspace.put(f"{root}/d/{name}", b"x")
    workspace.make_dirs(f"{root}/d/sub dir")
    assert workspace.list(f"{root}/d") == [".hidden", "a b.txt", "b.txt", "sub dir"]
    assert workspace.exists(f"{root}/d/a b.txt")
    assert not workspace.exists(f"{root}/d/c.txt")
    workspace.remove(f"{root}/d/a b.txt", f"{root}/d/sub dir", f"{root}/never-there")
    assert workspace.list(f"{root}/d") == [".hidden", "b.txt"]


def test_tails_of_matching_files(workspace: RunnerWorkspace) -> None:
    frames = f"{workspace.root}/frames"
    workspace.put(f"{frames}/frame_0001.png", b"\x89PNG" + b"x" * 20 + PNG_END)
    workspace.put(f"{frames}/frame_0002.png", b"\x89PNG" + b"x" * 20)  # cut short
    workspace.put(f"{frames}/frame_0003.png", b"")
    workspace.put(f"{frames}/notes.txt", PNG_END)
    tails = workspace.tails(frames, "frame_[0-9][0-9][0-9][0-9].png", len(PNG_END))
    assert tails == {
        "frame_0001.png": PNG_END,
        "frame_0002.png": b"x" * 8,
        "frame_0003.png": b"",
    }
    assert workspace.tails(f"{workspace.root}/none", "*.png", 8) == {}
    # As the shell globs: no dot files for `*`, no directories, several patterns.
    workspace.put(f"{frames}/.partial.png", b"x")
    workspace.make_dirs(f"{frames}/dir.png")
    assert set(workspace.tails(frames, "*.png", 1)) == {
        "frame_0001.png", "frame_0002.png", "frame_0003.png"
    }
    assert set(workspace.tails(frames, "*.txt frame_0001.png", 1)) == {
        "notes.txt", "frame_0001.png"
    }


def test_copy_and_private_files(workspace: RunnerWorkspace) -> None:
    source = f"{workspace.root}/model.json"
    workspace.put(source, b"{}")
    workspace.copy(source, f"{workspace.root}/repo/fil/1/xgboost.json")
    assert workspace.get(f"{workspace.root}/repo/fil/1/xgboost.json") == b"{}"
    secret = f"{workspace.root}/auth-password"
    workspace.put_private(secret, "s3cret\n")
    assert workspace.get(secret) == b"s3cret\n"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600


def test_writable_dir_and_which(workspace: RunnerWorkspace, tmp_path: Path) -> None:
    target = f"{workspace.root}/out/frames"
    workspace.make_writable_dir(target, "--output out/frames")
    assert workspace.list(target) == []  # the probe file is gone
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root writes anywhere
        with pytest.raises(UsageError, match="--output locked is not writable"):
            workspace.make_writable_dir(f"{locked}/x", "--output locked")
    found = workspace.which(["sh", "no-such-program-hpcrun"])
    assert found["no-such-program-hpcrun"] is None
    assert found["sh"] is not None and found["sh"].endswith("/sh")


def test_a_failed_operation_is_a_command_error_not_a_slurm_one(
    workspace: RunnerWorkspace, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(CommandError) as err:
        workspace.make_dirs(f"{blocker}/below")
    assert not isinstance(err.value, SlurmCommandError)
    assert "mkdir" in err.value.message
