"""IndeX scenes: parse scene.prj files, find scenes by short name, make their data.

The one place that knows the IndeX project-file format and the procedural stand-ins for
its sample data. Importing this package is cheap (NumPy loads only when voxels are
touched), so the CLI can list and describe scenes without the renderer's dependencies;
each name loads its own module when first used, so `hpcrun render`, which only asks
where the scenes are (`catalog.scenes_root`), does not load the project-file parser
and the data makers (~10 ms).

    scene = load_scene(resolve_scene("supernova"))
    ensure_data(scene)                  # generate missing data files (atomic, idempotent)
    voxels = load_volume(scene.volume())  # read-only memmap, shape (nz, ny, nx)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULE_OF = {
    "SHORT_NAMES": "catalog",
    "CatalogEntry": "catalog",
    "UnknownScene": "catalog",
    "list_scenes": "catalog",
    "resolve_scene": "catalog",
    "scenes_root": "catalog",
    "ensure_data": "data",
    "generate_volume": "data",
    "load_volume": "data",
    "with_presence": "data",
    "VOXEL_FORMATS": "model",
    "Colormap": "model",
    "Generator": "model",
    "Scene": "model",
    "SceneError": "model",
    "Skipped": "model",
    "Volume": "model",
    "VolumeRecipe": "model",
    "load_scene": "prj",
}


def __getattr__(name: str) -> Any:
    """Each exported name from its own module, loaded on first use (see above)."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


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
