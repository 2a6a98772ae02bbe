"""Write a copy of a scene at another size: the same .prj with sizes rewritten in place.

Benchmarks and tests want the supernova at 64^3 or 512^3, and users want a scene they
can edit without touching the catalog. The copy keeps every line and comment of the
original (so it diffs cleanly and real IndeX still reads it); only bbox, size, region
of interest, data file names and input_directory change. Its data goes to `<dir>/data`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hpcrun.scenes.model import Scene, SceneError
from hpcrun.scenes.prj import SCENE_PREFIX, parse_project, rewrite_values


def _numbers(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:g}" for v in values)


def resized_prj(scene: Scene, size: int | None) -> str:
    """The scene's .prj text with its volumes scaled so the longest axis is `size`.

    Every volume and the region of interest scale by the same factor, so multi-volume
    scenes stay aligned. `size=None` keeps sizes and only points the data at ../data.
    """
    if not scene.volumes:
        raise SceneError(
            f"{scene.path}: the scene has no volume the open renderer can "
            "generate, so there is nothing to resize"
        )
    text = scene.path.read_text(encoding="utf-8")
    project = parse_project(scene.path, text)
    longest = max(max(v.size) for v in scene.volumes)
    factor = size / longest if size else 1.0
    values: dict[str, str] = {}
    for volume in scene.volumes:
        nx, ny, nz = volume.size
        new = tuple(max(1, round(d * factor)) for d in volume.size)
        origin = tuple(float(round(b * factor)) for b in volume.bbox[:3])
        bbox = (*origin, *(o + d for o, d in zip(origin, new, strict=True)))
        prefix = f"{SCENE_PREFIX}{volume.name}::"
        values[f"{prefix}bbox"] = _numbers(bbox)
        if project.get(f"{prefix}size") is not None:
            values[f"{prefix}size"] = _numbers(tuple(float(d) for d in new))
        values[f"{prefix}input_directory"] = "../data"
        base_entry = project.get(f"{prefix}input_file_base_name")
        if base_entry is not None:
            old_dims, new_dims = f"{nx}x{ny}x{nz}", "x".join(map(str, new))
            values[base_entry.key] = base_entry.value.replace(old_dims, new_dims)
    for key in ("index::region_of_interest", "app::scene::root::region_of_interest"):
        if project.get(key) is not None:
            roi = tuple(round(v * factor, 3) for v in scene.region_of_interest)
            values[key] = _numbers(roi)
    return rewrite_values(text, values)


def write_scene_copy(
    scene: Scene, directory: Path, size: int | None, *, overwrite: bool = False
) -> Path:
    """Write `directory/scene/scene.prj` (resized) plus the other files beside the
    original .prj (generate.json, colormap files); return the new .prj path."""
    target = directory / "scene"
    prj = target / "scene.prj"
    source_dir = scene.path.parent.resolve()
    if target.resolve() == source_dir:
        raise SceneError(f"{directory} is the scene itself; pick another --output directory")
    if prj.exists() and not overwrite:
        raise SceneError(f"{prj} already exists", "pass --force to overwrite it")
    text = resized_prj(scene, size)
    try:
        target.mkdir(parents=True, exist_ok=True)
        for item in source_dir.iterdir():
            if item.is_file() and item.name != scene.path.name and not item.name.startswith("."):
                shutil.copy2(item, target / item.name)
        fd, tmp = tempfile.mkstemp(prefix=".scene.prj.", dir=target)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, prj)
    except OSError as exc:
        raise SceneError(f"cannot write the scene to {target}: {exc.strerror}") from None
    return prj
