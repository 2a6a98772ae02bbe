"""A render whose output disk fills up, on the real local cluster with real Blender
(issue 14, fault 4b): a 1 MiB tmpfs as `--output`, almost full before the run starts.

The run must fail and say why (no space), and no frame Blender could not finish writing
may be counted as done or left behind looking like one.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Cluster
from tests.e2e.test_render import TINY, as_json, blend, render

__all__ = ["blend"]

pytestmark = [pytest.mark.slurm, pytest.mark.blender, pytest.mark.slow]

FREE_BYTES = 6_000  # room for a frame or two of the tiny render, not for eight


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    try:
        fs = os.statvfs(mount)
        (mount / "filler").write_bytes(b"\0" * (fs.f_bavail * fs.f_frsize - FREE_BYTES))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_render_onto_a_full_disk_fails_clearly_and_counts_no_partial_frame(
    local_cluster: Cluster, blend: Path, full_disk: Path
) -> None:
    out = full_disk / "frames"
    args = [str(blend), "--frames", "1-8", "--chunk", "4", *TINY, "--output", str(out)]
    done = render(local_cluster, *args, "--json", check=False)
    assert done.returncode == 1, done.stderr
    result = as_json(done)
    assert result["status"] == "failed", result
    # Each failed chunk's log ends saying why, and it stopped at once: no retry makes room.
    assert result["failed_chunks"], result
    for chunk in result["failed_chunks"]:
        last = chunk["log_tail"].strip().splitlines()[-1]
        assert f"no space left on {out}" in last, chunk
        assert chunk["attempts"] == 1, chunk
    complete = bytes.fromhex("49454e44ae426082")  # a PNG's IEND chunk: the file is whole
    done_frames = [
        frame
        for c in result["chunks"]
        if c["status"] == "done"
        for frame in range(c["first"], c["last"] + 1)
    ]
    for frame in done_frames:
        assert (out / f"frame_{frame:04d}.png").read_bytes()[-8:] == complete, frame
    for png in out.glob("frame_*.png"):  # nothing cut off left looking like a frame
        assert png.read_bytes()[-8:] == complete, f"partial {png}"
