"""Scene commands: `hpcrun scenes`, `scenes show`, `scenes generate`.

Scenes are NVIDIA IndeX project files (`<dir>/scene/scene.prj`); these commands list the
catalog, explain what a scene holds (and what the open renderer would leave out), and
write a scene with its data at another size. `hpcrun.scenes` is imported inside the
commands, and NumPy only when voxels are generated, so `hpcrun --help` stays fast.
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hpcrun.cli._common import JsonOption, RichProgress, console, print_json
from hpcrun.errors import UsageError

if TYPE_CHECKING:
    from hpcrun.scenes import Scene, Volume

app = typer.Typer(
    name="scenes",
    help="IndeX scenes: list them, inspect a scene.prj, generate data at any size.\n\n"
    "A scene is an NVIDIA IndeX project file, <dir>/scene/scene.prj, with its volume data "
    "under <dir>/data/. The built-in scenes ship without data: each has a generate.json "
    "recipe and its data is generated on first use (or with `hpcrun scenes generate`) into "
    "$HPCRUN_HOME/scenes/<dir>/data/, not into the install tree.\n\n"
    "Examples:\n\n"
    "\b\n"
    "  hpcrun scenes                      # the catalog; is the data there?\n"
    "  hpcrun scenes show supernova       # volumes, colormaps, what is skipped\n"
    "  hpcrun scenes show /opt/scenes/01-brain/scene/scene.prj\n"
    "  hpcrun scenes generate supernova   # make its missing data (into the cache)\n"
    "  hpcrun scenes generate supernova --size 512 -o ~/scenes/supernova-512\n\n"
    "Scenes are looked up in $HPCRUN_SCENES, else the repository's scenes/ directory.",
    no_args_is_help=False,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

SceneArgument = Annotated[
    str,
    typer.Argument(
        metavar="NAME|FILE.prj",
        help="A short name from `hpcrun scenes` (e.g. supernova), a scene directory, or a "
        "path to a .prj file.",
        show_default=False,
    ),
]


@app.callback()
def scenes(ctx: typer.Context, json_out: JsonOption = False) -> None:
    """List the scenes: short name, title, size, voxel format, data present or not."""
    if ctx.invoked_subcommand is not None:
        return
    from hpcrun.scenes import SceneError, list_scenes, load_scene, scenes_root

    rows: list[dict[str, Any]] = []
    for entry in list_scenes():
        row: dict[str, Any] = {
            "short_name": entry.short_name,
            "directory": entry.directory,
            "path": str(entry.prj),
        }
        try:
            scene = load_scene(entry.prj)
        except SceneError as exc:
            row["error"] = exc.message
        else:
            row["name"] = scene.name
            row["volumes"] = [_volume_json(scene, v) for v in scene.volumes]
        rows.append(row)
    if json_out:
        print_json(rows)
        return
    if not rows:
        console().print(
            f"No scenes in {scenes_root()} (set HPCRUN_SCENES to look elsewhere).", markup=False
        )
        return
    from rich.table import Table

    table = Table("name", "title", "size", "format", "data", box=None, pad_edge=False)
    for row in rows:
        if "error" in row:
            table.add_row(row["short_name"], "(unreadable: see `hpcrun scenes show`)", "", "", "")
            continue
        volumes = row["volumes"]
        table.add_row(
            row["short_name"],
            row["name"],
            ", ".join("x".join(map(str, v["size"])) for v in volumes) or "-",
            ", ".join(v["voxel_format"] for v in volumes) or "-",
            _data_summary(volumes),
        )
    console().print(table, markup=False)
    console().print(
        "\ndata 'on first use': generated the first time the scene is rendered, or now with "
        "`hpcrun scenes generate NAME`.\n`hpcrun scenes show NAME` describes a scene.",
        markup=False,
    )


def _data_summary(volumes: list[dict[str, Any]]) -> str:
    if not volumes:
        return "-"
    if all(v["present"] for v in volumes):
        return "present"
    if all(v["present"] or v["generator"] for v in volumes):
        return "on first use"
    return "MISSING"


def _volume_json(scene: Scene, volume: Volume) -> dict[str, Any]:
    recipe = scene.generator.recipe(volume.name) if scene.generator else None
    return {
        "name": volume.name,
        "size": list(volume.size),
        "bbox": list(volume.bbox),
        "voxel_format": volume.voxel_format,
        "data_path": str(volume.data_path),
        "present": volume.present,
        "colormap": volume.colormap,
        "generator": {"name": recipe.generator, "seed": recipe.seed} if recipe else None,
    }


def _scene_json(scene: Scene) -> dict[str, Any]:
    return {
        "name": scene.name,
        "description": scene.description,
        "path": str(scene.path),
        "region_of_interest": list(scene.region_of_interest),
        "volumes": [_volume_json(scene, v) for v in scene.volumes],
        "colormaps": [
            {"name": c.name, "entries": len(c.table), "domain": list(c.domain)}
            for c in scene.colormaps
        ],
        "skipped": [{"name": s.name, "type": s.type, "reason": s.reason} for s in scene.skipped],
    }


def _numbers(values: tuple[float, ...] | list[float]) -> str:
    return " ".join(f"{v:g}" for v in values)


def describe(scene: Scene) -> str:
    """The human-readable `scenes show` text (plain, so paths print as they are)."""
    wrap = textwrap.TextWrapper(
        width=88,
        initial_indent="  ",
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    lines = [scene.name, f"  file: {scene.path}"]
    if scene.description:
        lines.append(wrap.fill(scene.description))
    lines.append(f"region of interest: {_numbers(scene.region_of_interest)}")
    lines.append("volumes:" if scene.volumes else "volumes: none the open renderer can show")
    for v in scene.volumes:
        nx, ny, nz = v.size
        lines.append(
            f"  {v.name}: {nx}x{ny}x{nz} {v.voxel_format}, bbox {_numbers(v.bbox)}, "
            f"colormap {v.colormap or '(viewer default)'}"
        )
        recipe = scene.generator.recipe(v.name) if scene.generator else None
        if v.present:
            state = "present"
        elif recipe:
            state = (
                f"missing; generated on first use (generator {recipe.generator}, "
                f"seed {recipe.seed})"
            )
        elif "${" in str(v.data_path):
            state = "missing: the path uses an NVINDEX_ variable that is not set here"
        else:
            state = "MISSING, and no generate.json recipe: the open renderer cannot show it"
        lines.append(f"    data: {v.data_path} ({state})")
    if scene.colormaps:
        lines.append("colormaps:")
        for c in scene.colormaps:
            lines.append(f"  {c.name}: {len(c.table)} entries, domain {_numbers(c.domain)}")
    if scene.skipped:
        lines.append("not shown by the open renderer:")
        for s in scene.skipped:
            lines.append(f"  {s.name} ({s.type}): {s.reason}")
    return "\n".join(lines) + "\n"


@app.command()
def show(name: SceneArgument, json_out: JsonOption = False) -> None:
    """Describe a scene: volumes (bbox, format, data file, present?), colormaps, and the
    elements the open renderer skips, with reasons. A broken .prj reports file:line."""
    from hpcrun.scenes import load_scene, resolve_scene

    scene = load_scene(resolve_scene(name))
    if json_out:
        print_json(_scene_json(scene))
    else:
        sys.stdout.write(describe(scene))


@app.command()
def generate(
    name: SceneArgument,
    size: Annotated[
        int | None,
        typer.Option(
            "--size",
            "-s",
            min=2,
            max=4096,
            help="Voxels along the longest axis of the new scene (others scale with it); needs -o.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Directory of the new scene (gets scene/scene.prj, scene/generate.json, "
            "data/). Without it, the scene's own missing data is generated (for the built-in "
            "scenes into $HPCRUN_HOME/scenes/<dir>/data/).",
            show_default=False,
        ),
    ] = None,
    no_data: Annotated[
        bool,
        typer.Option("--no-data", help="Write the scene files only; data comes on first use."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Overwrite an existing scene in DIR.")
    ] = False,
) -> None:
    """Generate a scene's data, or write a full copy of it at another size.

    Without -o: generate the scene's missing data files in place (atomic, a no-op when
    present). With -o DIR [--size N]: write DIR/scene/scene.prj with size, bbox, region of
    interest and file names rewritten, its generate.json, and the data under DIR/data/.
    """
    from hpcrun.scenes import ensure_data, load_scene, resolve_scene

    scene = load_scene(resolve_scene(name))
    progress = RichProgress()
    started = time.perf_counter()
    if output is None:
        if size is not None:
            raise UsageError(
                "--size needs --output DIR: a scene keeps its size in place",
                f"e.g. `hpcrun scenes generate {name} --size {size} -o ./{name}-{size}`",
            )
        written = [] if no_data else ensure_data(scene, progress.step)
        _report(written, started, scene.path)
        return
    from hpcrun.scenes.resize import write_scene_copy

    prj = write_scene_copy(scene, output, size, overwrite=force)
    written = [] if no_data else ensure_data(load_scene(prj), progress.step)
    _report(written, started, prj)


def _report(written: list[Path], started: float, prj: Path) -> None:
    out = console()
    for path in written:
        out.print(f"wrote {path}", markup=False)
    took = time.perf_counter() - started
    what = f"{len(written)} data file(s) in {took:.1f} s" if written else "data already present"
    out.print(f"scene {prj}: {what}", markup=False)
