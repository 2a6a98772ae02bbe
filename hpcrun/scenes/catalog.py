"""Short scene names and where scenes live, so users type `supernova`, not a path.

Scenes follow NVIDIA's layout, `<root>/<dir>/scene/scene.prj` (as /opt/scenes on the
IndeX AMI), so a directory copied from there works here and ours work there. The root is
`$HPCRUN_SCENES` or the repository's `scenes/`; any extra directory under it is listed
by its directory name.

The scenes that come with hpcrun (the `scenes/` beside the package) ship without their
data: it is generated on first use into a cache, `$HPCRUN_HOME/scenes/<dir>/data`, never
into the install tree (read-only and shared when installed from a wheel). Data that
does ship in the tree is still read from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hpcrun.errors import HpcrunError

SHORT_NAMES: dict[str, str] = {
    "supernova": "00-supernova_ncsa_small",
    "marschner-lobb": "01-marschner_lobb",
    "phantom": "02-ct_head_phantom",
}
"""Short name -> scene directory, as IndeX's AMI names its scenes."""

PRJ_IN_DIR = Path("scene") / "scene.prj"


class UnknownScene(HpcrunError):
    def __init__(self, name: str, known: list[str]) -> None:
        listing = ", ".join(known) if known else "none found"
        super().__init__(
            f"no scene named {name!r} (scenes: {listing})",
            "pass a short name from `hpcrun scenes`, or a path to a scene.prj file "
            f"(scenes are looked up in {scenes_root()}; set HPCRUN_SCENES to change that)",
        )


@dataclass(frozen=True)
class CatalogEntry:
    """A scene found under the scenes root: its short name and its scene.prj."""

    short_name: str
    directory: str
    prj: Path


SCENE_DATA_ENV = "HPCRUN_SCENE_DATA"
"""Overrides where generated scene data goes; the open renderer's `--scene-data` sets it
on the nodes, so the viewer and every agent read one directory every node sees."""


def bundled_scenes_root() -> Path:
    """The scenes that come with hpcrun, beside the package (the install tree)."""
    return Path(__file__).resolve().parents[2] / "scenes"


def scenes_root() -> Path:
    """Where scene directories live: $HPCRUN_SCENES, else <repo>/scenes."""
    env = os.environ.get("HPCRUN_SCENES")
    if env:
        return Path(env).expanduser()
    return bundled_scenes_root()


def scene_data_root() -> Path:
    """Where data generated for hpcrun's own scenes goes: $HPCRUN_SCENE_DATA, else
    `$HPCRUN_HOME/scenes` (the state home, resolved as `hpcrun.state.hpcrun_home` does;
    scenes/ may not import the state store)."""
    env = os.environ.get(SCENE_DATA_ENV)
    if env:
        return Path(env).expanduser()
    home = Path(os.environ.get("HPCRUN_HOME") or Path.home() / ".hpcrun").expanduser()
    return home / "scenes"


def cached_data_path(data_path: Path) -> Path | None:
    """Where a data file of a bundled scene lives in the cache, None for other scenes.

    `<tree>/scenes/01-marschner_lobb/data/x.raw` -> `<cache>/01-marschner_lobb/data/x.raw`.
    Scenes elsewhere (a user's directory, $HPCRUN_SCENES, `scenes generate -o DIR`) keep
    their data beside them."""
    try:
        relative = Path(os.path.realpath(data_path)).relative_to(bundled_scenes_root())
    except ValueError:
        return None
    return scene_data_root() / relative


def list_scenes() -> list[CatalogEntry]:
    """Every scene under the root, short-named ones first in catalog order."""
    root = scenes_root()
    by_dir = {d: s for s, d in SHORT_NAMES.items()}
    found: list[CatalogEntry] = []
    try:
        dirs = sorted(p for p in root.iterdir() if (p / PRJ_IN_DIR).is_file())
    except OSError:
        dirs = []
    for path in dirs:
        found.append(CatalogEntry(by_dir.get(path.name, path.name), path.name, path / PRJ_IN_DIR))
    order = list(SHORT_NAMES)
    found.sort(
        key=lambda e: (
            order.index(e.short_name) if e.short_name in order else len(order),
            e.directory,
        )
    )
    return found


def index_scene_dir(name: str) -> str | None:
    """The IndeX scene directory for a short or directory name, None for anything else.

    For clusters with real IndeX: `supernova` -> `00-supernova_ncsa_small`, to be found
    under the cluster's own scenes root (/opt/scenes on NVIDIA's AMI). Paths (anything
    with a `/` or ending in .prj) give None: they name a file on the cluster as they are.
    """
    if "/" in name or name.endswith(".prj"):
        return None
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    if name in SHORT_NAMES.values() or (scenes_root() / name / PRJ_IN_DIR).is_file():
        return name
    return None


def resolve_scene(name_or_path: str | Path) -> Path:
    """The scene.prj for a short name, a scene directory name, or a path.

    A path may be the .prj itself or a directory holding `scene/scene.prj` or
    `scene.prj`. Names are tried first, so a stray file named `supernova` in the working
    directory does not hide the catalog scene.
    """
    text = str(name_or_path)
    root = scenes_root()
    directory = SHORT_NAMES.get(text, text)
    if "/" not in directory and (root / directory / PRJ_IN_DIR).is_file():
        return root / directory / PRJ_IN_DIR
    path = Path(text).expanduser()
    if path.is_file():
        return path
    for candidate in (path / PRJ_IN_DIR, path / "scene.prj"):
        if candidate.is_file():
            return candidate
    raise UnknownScene(text, [e.short_name for e in list_scenes()])
