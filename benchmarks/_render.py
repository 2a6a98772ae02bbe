"""What the render benchmarks share: the seed farm's scene, made by the repo's generator."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from _common import ROOT


def rolling_ball(path: Path, frames: int) -> Path:
    """Write rolling_ball.blend with `frames` frames (Blender must be installed)."""
    if shutil.which("blender") is None:
        raise RuntimeError("blender is not installed: apt-get install blender ffmpeg")
    subprocess.run(
        ["blender", "-b", "--factory-startup", "--python-exit-code", "1", "--python",
         str(ROOT / "scripts/blender/make_rolling_ball.py"), "--", str(path),
         "--frames", str(frames)],
        check=True, capture_output=True,
    )
    return path
