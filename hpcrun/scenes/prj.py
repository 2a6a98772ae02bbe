"""Parser for NVIDIA IndeX project files (`scene.prj`), the format real IndeX reads.

A project file starts with `#! index_app_project 0`, then holds `key = value` lines and
`#` comments; a key given twice keeps its last value, as IndeX does. The scene is a tree:
`app::scene::root::children` names elements, each declared by `app::scene::<name>::type`
plus its own `app::scene::<name>::<attribute>` keys; groups (`static_scene_group`) have
children of their own. As in IndeX, attributes such as a colormap apply to the elements
that follow them in the same group and below.

We read every element of the tree: raw sparse volumes and colormaps become `Volume` and
`Colormap`; everything else (kernel programs, lights, heightfields, meshes, planes, other
importers) becomes `Skipped` with a reason, so `hpcrun scenes show` can say what a real
IndeX would draw that the open renderer does not. A file we cannot understand raises
`SceneError` whose message starts with `file:line:` and says what is wrong.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from hpcrun.scenes.catalog import cached_data_path
from hpcrun.scenes.model import (
    GENERATOR_FORMATS,
    RGBA,
    VOXEL_FORMATS,
    Box,
    Colormap,
    Generator,
    Scene,
    SceneError,
    Skipped,
    Volume,
    VolumeRecipe,
)

HEADER = "#! index_app_project"
SCENE_PREFIX = "app::scene::"
GROUP_TYPES = frozenset({"static_scene_group", "scene_group"})
RAW_IMPORTERS = frozenset({"raw", "nv::index::plugin::base_importer.Sparse_volume_importer_raw"})

# Why the open renderer leaves an element type out; anything not listed gets a generic
# reason. Kept as data so `scenes show` and the docs say the same thing.
SKIP_REASONS: dict[str, str] = {
    "rendering_kernel_program": "XAC/CUDA kernel programs run only inside IndeX; "
    "the open renderer uses its own emission-absorption and MIP kernels",
    "rendering_kernel_program_parameters": "parameters of an XAC kernel program "
    "(kernel programs run only inside IndeX)",
    "rendering_kernel_program_scene_element_mapping": "binds scene elements to an XAC "
    "kernel program (kernel programs run only inside IndeX)",
    "sparse_volume_rendering_properties": "IndeX sampling settings (filter_mode, "
    "sampling_distance) are not applied: the open renderer samples trilinearly at the "
    "viewer's step",
    "volume_rendering_properties": "IndeX sampling settings are not applied",
    "directional_headlight": "lights are not modelled (emission-absorption without shading)",
    "directional_light": "lights are not modelled (emission-absorption without shading)",
    "light": "lights are not modelled (emission-absorption without shading)",
    "texture_filter_mode": "the open renderer always filters trilinearly",
    "material": "surface materials apply to surfaces, which are not rendered",
    "phong_gl": "surface materials apply to surfaces, which are not rendered",
    "regular_heightfield": "heightfield surfaces are not rendered (volumes only)",
    "irregular_volume": "irregular (unstructured) volumes are not rendered",
    "corner_point_grid": "corner-point grids are not rendered",
    "triangle_mesh": "triangle meshes are not rendered (volumes only)",
    "plane": "planes and slices are not rendered (volumes only)",
    "sphere": "geometric shapes are not rendered (volumes only)",
    "cone": "geometric shapes are not rendered (volumes only)",
    "cylinder": "geometric shapes are not rendered (volumes only)",
    "ellipsoid": "geometric shapes are not rendered (volumes only)",
    "point_set": "point sets are not rendered",
    "line_set": "line sets are not rendered",
    "label": "labels are not rendered",
    "icon": "icons are not rendered",
    "font": "fonts are only used by labels, which are not rendered",
    "clip_region": "clip regions are not applied; use the viewer's region of interest",
    "transformed_group": "transformed groups are not supported (volumes must be in voxel space)",
}


@dataclass(frozen=True)
class Entry:
    """One `key = value` line: the value as written and where it was."""

    key: str
    value: str
    line: int


@dataclass
class Project:
    """The key/value content of a .prj file (last definition of a key wins)."""

    path: Path
    entries: dict[str, Entry] = field(default_factory=dict)

    def get(self, key: str) -> Entry | None:
        return self.entries.get(key)

    def where(self, entry: Entry | None) -> str:
        return f"{self.path}:{entry.line if entry else 1}"

    def element(self, name: str, attribute: str) -> Entry | None:
        return self.entries.get(f"{SCENE_PREFIX}{name}::{attribute}")

    def numbers(self, entry: Entry, count: int | None = None) -> tuple[float, ...]:
        """The value as whitespace-separated finite numbers, `count` of them if given."""
        words = entry.value.split()
        values = []
        for word in words:
            try:
                number = float(word)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                want = f"{count} numbers" if count else "numbers"
                raise SceneError(
                    f"{self.where(entry)}: {entry.key}: {word!r} is not a number (expected {want})"
                )
            values.append(number)
        if count is not None and len(values) != count:
            raise SceneError(
                f"{self.where(entry)}: {entry.key}: expected {count} numbers, "
                f"got {len(values)} ({entry.value!r})"
            )
        return tuple(values)


def parse_project(path: Path, text: str | None = None) -> Project:
    """Read the key/value lines of a .prj file, checking the header and syntax."""
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SceneError(
                f"{path}: no such scene file", "list scenes with `hpcrun scenes`"
            ) from None
        except UnicodeDecodeError as exc:
            raise SceneError(f"{path}: not a text file ({exc.reason})") from None
        except OSError as exc:
            raise SceneError(f"{path}: cannot read: {exc.strerror}") from None
    lines = text.splitlines()
    if not lines or not lines[0].startswith(HEADER):
        first = lines[0][:60] if lines else "(empty file)"
        raise SceneError(
            f"{path}:1: missing header `{HEADER} 0` (first line is {first!r})",
            "IndeX project files must start with the line `#! index_app_project 0`",
        )
    project = Project(path)
    expand = False
    for number, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or any(c.isspace() for c in key):
            raise SceneError(
                f"{path}:{number}: expected `key = value`, got {line[:80]!r}",
                "comments start with `#`; keys have no spaces, e.g. "
                "`app::scene::root::children = my_volume`",
            )
        if key == "app::variable_expansion":
            expand = value.lower() in ("true", "yes", "1", "on")
        elif expand:
            value = _expand(value, path)
        project.entries[key] = Entry(key, value, number)
    return project


_VARIABLE = re.compile(r"\$\{(NVINDEX_[A-Za-z0-9_]*)\}")


def _expand(value: str, path: Path) -> str:
    """IndeX expands `${NVINDEX_*}` environment variables when asked to; unknown ones stay
    as written (the data is then simply not found). NVINDEX_SCENES_DIR defaults to the
    directory of the .prj, which is what IndeX deployments set it to."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in os.environ:
            return os.environ[name]
        if name == "NVINDEX_SCENES_DIR":
            return str(path.parent)
        return match.group(0)

    return _VARIABLE.sub(lookup, value)


@dataclass(frozen=True)
class _State:
    """Attributes in force while walking the tree (IndeX applies them to what follows)."""

    colormap: str | None = None


@dataclass
class _Walk:
    project: Project
    volumes: list[Volume] = field(default_factory=list)
    colormaps: list[Colormap] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def children(self, owner: str) -> Iterator[str]:
        entry = self.project.get(f"{SCENE_PREFIX}{owner}::children")
        if entry is None:
            return
        for child in entry.value.split():
            if self.project.element(child, "type") is None:
                defined = any(
                    k.startswith(f"{SCENE_PREFIX}{child}::") for k in self.project.entries
                )
                why = "has no `::type`" if defined else "is not defined"
                raise SceneError(
                    f"{self.project.where(entry)}: {entry.key} names {child!r}, which "
                    f"{why} (expected a line `{SCENE_PREFIX}{child}::type = ...`)"
                )
            yield child

    def group(self, name: str, state: _State, path: tuple[str, ...]) -> None:
        for child in self.children(name):
            if child in path:
                entry = self.project.get(f"{SCENE_PREFIX}{name}::children")
                cycle = " -> ".join([*path[path.index(child) :], child])
                raise SceneError(f"{self.project.where(entry)}: scene tree has a cycle: {cycle}")
            state = self.element(child, state, (*path, child))

    def element(self, name: str, state: _State, path: tuple[str, ...]) -> _State:
        """Visit one element; return the attribute state for its following siblings."""
        type_entry = self.project.element(name, "type")
        assert type_entry is not None
        kind = type_entry.value
        first_visit = name not in self.seen
        self.seen.add(name)
        if kind in GROUP_TYPES:
            self.group(name, state, path)
            return state
        if kind == "colormap":
            colormap = _colormap(self.project, name, type_entry)
            if isinstance(colormap, Skipped):
                if first_visit:
                    self.skipped.append(colormap)
                return state
            if first_visit:
                self.colormaps.append(colormap)
            return replace(state, colormap=name)
        if kind == "sparse_volume":
            volume = _volume(self.project, name, type_entry, state.colormap)
            if first_visit:
                if isinstance(volume, Volume):
                    self.volumes.append(volume)
                else:
                    self.skipped.append(volume)
            return state
        if first_visit:
            reason = SKIP_REASONS.get(
                kind, f"element type {kind!r} is not supported by the open renderer"
            )
            self.skipped.append(Skipped(name, kind, reason))
        return state


def _required(project: Project, name: str, attribute: str, type_entry: Entry) -> Entry:
    entry = project.element(name, attribute)
    if entry is None or not entry.value:
        raise SceneError(
            f"{project.where(type_entry)}: {type_entry.value} {name!r} has no "
            f"`{SCENE_PREFIX}{name}::{attribute}`"
        )
    return entry


def _flag(project: Project, name: str, attribute: str) -> bool:
    entry = project.element(name, attribute)
    return entry is not None and entry.value.lower() in ("true", "yes", "1", "on")


def _volume(
    project: Project, name: str, type_entry: Entry, colormap: str | None
) -> Volume | Skipped:
    kind = type_entry.value
    importer_entry = project.element(name, "importer")
    importer = importer_entry.value if importer_entry else "(none)"
    if importer not in RAW_IMPORTERS:
        return Skipped(
            name,
            kind,
            f"importer {importer!r} is not supported (the open renderer reads raw files only)",
        )
    fmt_entry = _required(project, name, "voxel_format", type_entry)
    if fmt_entry.value not in VOXEL_FORMATS:
        return Skipped(
            name,
            kind,
            f"voxel format {fmt_entry.value!r} is not supported "
            f"(supported: {', '.join(VOXEL_FORMATS)})",
        )
    if _flag(project, name, "convert_zyx_to_xyz"):
        return Skipped(
            name,
            kind,
            "convert_zyx_to_xyz = true (z-fastest raw files) is "
            "not supported; store the data x-fastest",
        )
    bbox_entry = _required(project, name, "bbox", type_entry)
    bbox = project.numbers(bbox_entry, 6)
    size_entry = project.element(name, "size")
    if size_entry is not None:
        dims = project.numbers(size_entry, 3)
    else:
        dims = tuple(bbox[i + 3] - bbox[i] for i in range(3))
    if any(d < 1 or d != int(d) for d in dims):
        where = size_entry or bbox_entry
        raise SceneError(
            f"{project.where(where)}: {where.key}: volume {name!r} must span a whole "
            f"number of voxels (>= 1) per axis, got {' x '.join(f'{d:g}' for d in dims)}"
        )
    nx, ny, nz = (int(d) for d in dims)
    directory = _required(project, name, "input_directory", type_entry).value
    base = _required(project, name, "input_file_base_name", type_entry).value
    ext_entry = project.element(name, "input_file_extension")
    ext = ext_entry.value if ext_entry else ""
    folder = Path(directory)
    if "://" not in directory and "${" not in directory and not folder.is_absolute():
        # IndeX resolves relative paths from its working directory; we resolve them from
        # the .prj, so a scene directory can be copied or moved as one piece.
        folder = project.path.parent / folder
    # normpath, not resolve(): `scene/../data` reads better, and symlinks stay as given.
    data_path = _data_location(Path(os.path.normpath(folder / f"{base}{ext}")))
    volume = Volume(
        name=name,
        size=(nx, ny, nz),
        bbox=(bbox[0], bbox[1], bbox[2], bbox[3], bbox[4], bbox[5]),
        voxel_format=fmt_entry.value,
        data_path=data_path,
        colormap=colormap,
        present=False,
    )
    return replace(volume, present=_has_data(volume))


def _data_location(in_tree: Path) -> Path:
    """Where a volume's data is read and generated: for hpcrun's own scenes the cache
    (first) or data shipped in the install tree, else the path the .prj names."""
    cached = cached_data_path(in_tree)
    if cached is None or cached.exists() or not in_tree.exists():
        return cached or in_tree
    return in_tree


def _has_data(volume: Volume) -> bool:
    try:
        return volume.data_path.stat().st_size == volume.nbytes
    except OSError:
        return False


def _colormap(project: Project, name: str, type_entry: Entry) -> Colormap | Skipped:
    map_type_entry = project.element(name, "map_type")
    map_type = map_type_entry.value if map_type_entry else "lookup_table"
    domain_entry = project.element(name, "domain")
    domain = (0.0, 1.0)
    if domain_entry is not None:
        low, high = project.numbers(domain_entry, 2)
        if not low < high:
            raise SceneError(
                f"{project.where(domain_entry)}: {domain_entry.key}: domain must be "
                f"`low high` with low < high, got {domain_entry.value!r}"
            )
        domain = (low, high)
    if map_type == "data":
        data_entry = _required(project, name, "data", type_entry)
        values = project.numbers(data_entry)
        size_entry = project.element(name, "size")
        if len(values) % 4 or not values:
            raise SceneError(
                f"{project.where(data_entry)}: {data_entry.key}: expected RGBA entries "
                f"(a multiple of 4 numbers), got {len(values)} numbers"
            )
        if size_entry is not None:
            (size,) = project.numbers(size_entry, 1)
            if size * 4 != len(values):
                raise SceneError(
                    f"{project.where(data_entry)}: {data_entry.key}: holds "
                    f"{len(values) // 4} RGBA entries but {size_entry.key} "
                    f"(line {size_entry.line}) says {size:g}"
                )
        return Colormap(name, _rgba(values, 1.0), domain)
    if map_type == "lookup_table":
        index_entry = project.element(name, "map_index")
        index = int(project.numbers(index_entry, 1)[0]) if index_entry else 0
        file_entry = project.get(f"app::colormap::file_{index}")
        if file_entry is None:
            return Skipped(
                name,
                "colormap",
                f"map_index {index} refers to one of IndeX's "
                "built-in colormaps, which the open renderer does not have; "
                "the viewer's default colormap is used",
            )
        table_path = Path(file_entry.value)
        if not table_path.is_absolute():
            table_path = project.path.parent / table_path
        try:
            text = table_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return Skipped(
                name,
                "colormap",
                f"colormap file {table_path} ({file_entry.key}) is not readable here",
            )
        return Colormap(name, _cmap_file(project, file_entry, table_path, text), domain)
    return Skipped(
        name, "colormap", f"map_type {map_type!r} is not supported (supported: data, lookup_table)"
    )


def _rgba(values: tuple[float, ...], scale: float) -> tuple[RGBA, ...]:
    def unit(v: float) -> float:
        return min(1.0, max(0.0, v / scale))

    return tuple(
        (unit(values[i]), unit(values[i + 1]), unit(values[i + 2]), unit(values[i + 3]))
        for i in range(0, len(values), 4)
    )


def _cmap_file(project: Project, entry: Entry, path: Path, text: str) -> tuple[RGBA, ...]:
    """IndeX .cmap files: one `R G B A` line per entry, 0..1 floats or 16-bit integers."""
    values: list[float] = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        fake = Entry(entry.key, line, number)
        row = Project(path).numbers(fake, 4)
        values.extend(row)
    if not values:
        raise SceneError(f"{project.where(entry)}: {entry.key}: colormap file {path} is empty")
    scale = 65535.0 if max(values) > 1.0 else 1.0
    return _rgba(tuple(values), scale)


def _region_of_interest(project: Project, volumes: list[Volume]) -> Box:
    for key in ("index::region_of_interest", "app::scene::root::region_of_interest"):
        entry = project.get(key)
        if entry is not None:
            roi = project.numbers(entry, 6)
            if not all(roi[i] < roi[i + 3] for i in range(3)):
                raise SceneError(
                    f"{project.where(entry)}: {key}: expected `x0 y0 z0 x1 y1 z1` with "
                    f"x0 < x1, y0 < y1, z0 < z1, got {entry.value!r}"
                )
            return (roi[0], roi[1], roi[2], roi[3], roi[4], roi[5])
    if not volumes:
        return (0.0, 0.0, 0.0, 1.0, 1.0, 1.0)
    lows = [min(v.bbox[i] for v in volumes) for i in range(3)]
    highs = [max(v.bbox[i + 3] for v in volumes) for i in range(3)]
    return (lows[0], lows[1], lows[2], highs[0], highs[1], highs[2])


def load_generator(path: Path, volumes: Mapping[str, Volume]) -> Generator:
    """Read a generate.json sidecar: {"volumes": {element: {"generator", "seed"}}}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SceneError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except OSError as exc:
        raise SceneError(f"{path}: cannot read: {exc.strerror}") from None
    if not isinstance(data, dict) or not isinstance(data.get("volumes"), dict):
        raise SceneError(
            f'{path}:1: expected {{"volumes": {{"<volume element>": '
            '{"generator": "...", "seed": N}}}'
        )
    recipes = []
    for volume, spec in data["volumes"].items():
        if volume not in volumes:
            raise SceneError(
                f"{path}: volume {volume!r} is not a raw sparse_volume of the "
                f"scene (volumes: {', '.join(volumes) or 'none'})"
            )
        if not isinstance(spec, dict) or not isinstance(spec.get("generator"), str):
            raise SceneError(
                f'{path}: volume {volume!r}: expected {{"generator": "...", "seed": N}}'
            )
        name, seed = spec["generator"], spec.get("seed", 0)
        if name not in GENERATOR_FORMATS:
            raise SceneError(
                f"{path}: volume {volume!r}: unknown generator {name!r} "
                f"(known: {', '.join(GENERATOR_FORMATS)})"
            )
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise SceneError(f"{path}: volume {volume!r}: seed must be an integer >= 0")
        produced = GENERATOR_FORMATS[name]
        wanted = volumes[volume].voxel_format
        if produced != wanted:
            raise SceneError(
                f"{path}: volume {volume!r}: generator {name!r} makes "
                f"{produced} voxels but the scene says voxel_format {wanted}"
            )
        recipes.append(VolumeRecipe(volume, name, seed))
    return Generator(path, tuple(recipes))


GENERATOR_FILE = "generate.json"


def load_scene(path: Path | str) -> Scene:
    """Parse a scene.prj (and its generate.json sidecar, if any) into a `Scene`."""
    path = Path(path)
    project = parse_project(path)
    root_entry = project.get(f"{SCENE_PREFIX}root::children")
    if root_entry is None:
        raise SceneError(
            f"{path}:1: no `{SCENE_PREFIX}root::children` line: the scene is empty",
            f"name the top elements, e.g. `{SCENE_PREFIX}root::children = my_group`",
        )
    walk = _Walk(project)
    walk.group("root", _State(), ("root",))
    name_entry = project.get("app::scene::info::name")
    description_entry = project.get("app::scene::info::description")
    default_name = path.parent.parent.name if path.parent.name == "scene" else path.stem
    sidecar = path.parent / GENERATOR_FILE
    generator = (
        load_generator(sidecar, {v.name: v for v in walk.volumes}) if sidecar.exists() else None
    )
    return Scene(
        path=path,
        name=name_entry.value if name_entry else default_name,
        description=description_entry.value if description_entry else "",
        region_of_interest=_region_of_interest(project, walk.volumes),
        volumes=tuple(walk.volumes),
        colormaps=tuple(walk.colormaps),
        skipped=tuple(walk.skipped),
        generator=generator,
    )


def rewrite_values(text: str, values: Mapping[str, str]) -> str:
    """`text` with the values of the given keys replaced in place (spacing, comments and
    order kept), so a rewritten scene diffs against its original line by line."""
    missing = dict(values)
    out = []
    for line in text.splitlines(keepends=True):
        stripped = line.lstrip()
        key, sep, value = stripped.partition("=")
        if sep and not stripped.startswith("#") and key.strip() in values:
            key_text = line[: len(line) - len(stripped)] + key
            spacing = value[: len(value) - len(value.lstrip())] or " "
            ending = line[len(line.rstrip("\r\n")) :]
            out.append(f"{key_text}={spacing}{values[key.strip()]}{ending}")
            missing.pop(key.strip(), None)
        else:
            out.append(line)
    if missing:
        raise SceneError(f"cannot rewrite keys that are not in the file: {', '.join(missing)}")
    return "".join(out)
