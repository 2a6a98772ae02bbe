"""IndeX scenes: parse scene.prj files, find scenes by short name, make their data.

The one place that knows the IndeX project-file format and the procedural stand-ins for
its sample data. Importing this package is cheap (NumPy loads only when voxels are
touched), so the CLI can list and describe scenes without the renderer's dependencies.

    scene = load_scene(resolve_scene("supernova"))
    ensure_data(scene)                  # generate missing data files (atomic, idempotent)
    voxels = load_volume(scene.volume())  # read-only memmap, shape (nz, ny, nx)
"""

from __future__ import annotations

from hpcrun.scenes.catalog import (
    SHORT_NAMES,
    CatalogEntry,
    UnknownScene,
    list_scenes,
    resolve_scene,
    scenes_root,
)
from hpcrun.scenes.data import ensure_data, generate_volume, load_volume, with_presence
from hpcrun.scenes.model import (
    VOXEL_FORMATS,
    Colormap,
    Generator,
    Scene,
    SceneError,
    Skipped,
    Volume,
    VolumeRecipe,
)
from hpcrun.scenes.prj import load_scene

__all__ = [
    "SHORT_NAMES",
    "VOXEL_FORMATS",
    "CatalogEntry",
    "Colormap",
    "Generator",
    "Scene",
    "SceneError",
    "Skipped",
    "UnknownScene",
    "Volume",
    "VolumeRecipe",
    "ensure_data",
    "generate_volume",
    "list_scenes",
    "load_scene",
    "load_volume",
    "resolve_scene",
    "scenes_root",
    "with_presence",
]
