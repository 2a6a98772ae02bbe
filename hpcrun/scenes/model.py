"""What a parsed IndeX scene is, as plain frozen data shared by the CLI and the renderer.

The parser (`prj.py`) turns a `scene.prj` into these objects once; everything downstream
(the `hpcrun scenes` commands, the viewer, the render agents) reads them and never goes
back to the text. Only elements the open renderer can draw become `Volume`/`Colormap`;
every other IndeX element is kept as a `Skipped` with the reason, so users learn what a
real IndeX installation would show that ours does not. `SceneError` (a scene that cannot
be used) lives here too, so the parser and these objects share it without importing
each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hpcrun.errors import HpcrunError

# (x0, y0, z0, x1, y1, z1): IndeX's bbox / region_of_interest order, in voxel space.
Box = tuple[float, float, float, float, float, float]
RGBA = tuple[float, float, float, float]

VOXEL_FORMATS: dict[str, int] = {"uint8": 1, "uint16": 2, "float32": 4}
"""Voxel formats the open renderer reads, with their size in bytes (little-endian)."""

GENERATOR_FORMATS: dict[str, str] = {
    "supernova": "uint8",
    "marschner_lobb": "uint8",
    "ct_phantom": "uint16",
}
"""Generator name (as written in generate.json) -> the voxel format it produces. Kept
here, not in generators.py, so checking a generate.json does not import NumPy."""


class SceneError(HpcrunError):
    """A scene file that cannot be used; the message starts with `file:line:` if known."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint
            or "the format is IndeX's project file: `#! index_app_project 0`, then "
            "`key = value` lines (see scenes/00-supernova_ncsa_small/scene/scene.prj)",
        )


@dataclass(frozen=True)
class Volume:
    """A regular grid of voxels stored as one raw file, x fastest (IndeX raw importer).

    `size` is (nx, ny, nz); the array handed to the renderer has shape (nz, ny, nx).
    `present` is true when the data file exists with exactly the expected byte count,
    so a truncated or half-written file never counts as data.
    """

    name: str
    size: tuple[int, int, int]
    bbox: Box
    voxel_format: str
    data_path: Path
    colormap: str | None
    present: bool

    @property
    def nbytes(self) -> int:
        nx, ny, nz = self.size
        return nx * ny * nz * VOXEL_FORMATS[self.voxel_format]

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        nx, ny, nz = self.size
        return (nz, ny, nx)


@dataclass(frozen=True)
class Colormap:
    """A transfer function: RGBA entries (0..1) spread evenly over `domain`; values
    outside the domain clamp to the end entries.

    For integer voxels IndeX's domain is in the normalised [0, 1] range (uint8 0..255 ->
    0..1). For float32 voxels real IndeX scenes give it in data units (e.g. 3.5 .. 9.5 for
    a log density), so a renderer normalising floats by their min..max must map the domain
    the same way before using it.
    """

    name: str
    table: tuple[RGBA, ...]
    domain: tuple[float, float]


@dataclass(frozen=True)
class Skipped:
    """An IndeX scene element the open renderer reads but does not draw, and why."""

    name: str
    type: str
    reason: str


@dataclass(frozen=True)
class VolumeRecipe:
    """How to make one volume's data file: a named generator and its seed."""

    volume: str
    generator: str
    seed: int


@dataclass(frozen=True)
class Generator:
    """The `generate.json` sidecar next to a scene.prj: recipes for its data files.

    Real IndeX ignores the sidecar; it exists so scenes can ship without their data
    (never downloaded, never committed) and be generated at any size on first use.
    """

    path: Path
    recipes: tuple[VolumeRecipe, ...]

    def recipe(self, volume: str) -> VolumeRecipe | None:
        return next((r for r in self.recipes if r.volume == volume), None)


@dataclass(frozen=True)
class Scene:
    """One parsed scene.prj: what to render, what to skip, and how to make its data."""

    path: Path
    name: str
    description: str
    region_of_interest: Box
    volumes: tuple[Volume, ...]
    colormaps: tuple[Colormap, ...]
    skipped: tuple[Skipped, ...]
    generator: Generator | None

    def colormap(self, name: str) -> Colormap | None:
        return next((c for c in self.colormaps if c.name == name), None)

    def volume(self, name: str | None = None) -> Volume:
        """The named volume, or the first one (most scenes have exactly one)."""
        for volume in self.volumes:
            if name is None or volume.name == name:
                return volume
        known = ", ".join(v.name for v in self.volumes) or "none"
        what = f"no volume named {name!r}" if name else "no volume the open renderer can show"
        raise SceneError(f"{self.path}: {what} (volumes: {known})")
