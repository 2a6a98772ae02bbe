"""Volume data on disk: map it read-only, or generate what is missing, safely.

Render agents on several nodes may start at once against one shared scenes directory,
so generation must be safe under concurrency: each data file is written to a temporary
name in the same directory and renamed into place (readers never see half a file), and
an advisory lock makes concurrent callers on one host wait for the first instead of
repeating its work. NumPy is imported inside the functions so that importing
`hpcrun.scenes` stays cheap for the CLI.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from hpcrun.scenes.model import GENERATOR_FORMATS, VOXEL_FORMATS, Scene, SceneError, Volume

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

Progress = Callable[[str], None]


def _dtype(voxel_format: str) -> str:
    return {"uint8": "<u1", "uint16": "<u2", "float32": "<f4"}[voxel_format]


def load_volume(volume: Volume) -> npt.NDArray[np.generic]:
    """The volume's voxels as a read-only memory map of shape (nz, ny, nx).

    Mapping instead of reading lets every agent touch only its own bricks' pages.
    """
    import numpy as np

    try:
        actual = volume.data_path.stat().st_size
    except OSError:
        raise SceneError(
            f"data file {volume.data_path} of volume {volume.name!r} does not exist",
            "generate it with `hpcrun scenes generate NAME` or the scene's generate.json "
            "(ensure_data), or point input_directory at the data",
        ) from None
    if actual != volume.nbytes:
        nx, ny, nz = volume.size
        raise SceneError(
            f"data file {volume.data_path} has {actual} bytes, but a {nx}x{ny}x{nz} "
            f"{volume.voxel_format} volume needs {volume.nbytes}",
            "check bbox and voxel_format in the scene, or delete the file to regenerate it",
        )
    array = np.memmap(
        volume.data_path, dtype=_dtype(volume.voxel_format), mode="r", shape=volume.shape_zyx
    )
    return array


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created if needed) while inside."""
    import fcntl

    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _present(volume: Volume) -> bool:
    try:
        return volume.data_path.stat().st_size == volume.nbytes
    except OSError:
        return False


def generate_volume(volume: Volume, generator: str, seed: int) -> Path:
    """Write `volume`'s data file with the named generator: temp file, fsync, rename."""
    import numpy as np

    from hpcrun.scenes.generators import GENERATORS

    function, produced = GENERATORS[generator], GENERATOR_FORMATS[generator]
    if produced != volume.voxel_format or volume.voxel_format not in VOXEL_FORMATS:
        raise SceneError(
            f"generator {generator!r} makes {produced} voxels, volume {volume.name!r} "
            f"is {volume.voxel_format}"
        )
    folder = volume.data_path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SceneError(f"cannot create {folder}: {exc.strerror}") from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{volume.data_path.name}.", suffix=".tmp", dir=folder)
    tmp = Path(tmp_name)
    try:
        os.ftruncate(fd, volume.nbytes)
        os.close(fd)
        fd = -1
        out = np.memmap(tmp, dtype=_dtype(volume.voxel_format), mode="r+", shape=volume.shape_zyx)
        function(volume.size, seed, out=out)
        out.flush()
        del out
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, volume.data_path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return volume.data_path


def ensure_data(scene: Scene, progress: Progress | None = None) -> list[Path]:
    """Generate every missing data file the scene's generate.json knows how to make.

    Returns the files written (empty when all were present: calling it again is free).
    Volumes that are missing with no recipe raise `SceneError`, since nothing could
    render them.
    """
    written: list[Path] = []
    for volume in scene.volumes:
        if _present(volume):
            continue
        recipe = scene.generator.recipe(volume.name) if scene.generator else None
        if recipe is None:
            raise SceneError(
                f"{scene.path}: data file {volume.data_path} of volume {volume.name!r} is "
                "missing and the scene has no generate.json recipe for it",
                "copy the data there, or add the volume to the scene's generate.json",
            )
        lock = volume.data_path.parent / f".{volume.data_path.name}.lock"
        volume.data_path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(lock):
            if _present(volume):  # another process generated it while we waited
                continue
            if progress:
                nx, ny, nz = volume.size
                progress(
                    f"generating {volume.data_path.name} ({recipe.generator}, "
                    f"{nx}x{ny}x{nz} {volume.voxel_format})"
                )
            written.append(generate_volume(volume, recipe.generator, recipe.seed))
    return written


def with_presence(scene: Scene) -> Scene:
    """The scene with each volume's `present` flag re-read from disk."""
    volumes = tuple(replace(v, present=_present(v)) for v in scene.volumes)
    return replace(scene, volumes=volumes)
