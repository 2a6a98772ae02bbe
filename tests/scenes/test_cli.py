"""`hpcrun scenes`, `scenes show`, `scenes generate`: what a person and a script see."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpcrun.cli.scenes import app
from hpcrun.errors import UsageError
from hpcrun.scenes import SceneError
from tests.conftest import run_cli
from tests.golden_util import assert_golden
from tests.scenes.conftest import SMALL_VOLUME, WriteScene

REPO_SCENES = Path(__file__).resolve().parents[2] / "scenes"
runner = CliRunner()


@pytest.fixture
def scenes_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The catalog's scene files (not their data) under a private HPCRUN_SCENES."""
    root = tmp_path / "scenes"
    for prj in REPO_SCENES.glob("*/scene/scene.prj"):
        shutil.copytree(prj.parent, root / prj.parent.parent.name / "scene")
    monkeypatch.setenv("HPCRUN_SCENES", str(root))
    monkeypatch.setenv("COLUMNS", "160")  # one table row per scene, whatever the terminal
    return root


def test_list_shows_catalog_and_data_state(scenes_copy: Path) -> None:
    result = runner.invoke(app, [])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["name", "title", "size", "format", "data"]
    row = next(line for line in lines if line.startswith("supernova "))
    assert "256x256x256" in row and "uint8" in row and row.rstrip().endswith("on first use")
    assert any(line.startswith("phantom ") and "uint16" in line for line in lines)


def test_list_json(scenes_copy: Path) -> None:
    result = runner.invoke(app, ["--json"])
    rows = json.loads(result.output)
    assert [r["short_name"] for r in rows] == ["supernova", "marschner-lobb", "phantom"]
    volume = rows[0]["volumes"][0]
    assert volume["present"] is False
    assert volume["generator"] == {"name": "supernova", "seed": 1074}
    assert volume["data_path"] == str(
        scenes_copy / "00-supernova_ncsa_small/data/supernova_entropy_256x256x256_uint8.raw"
    )


def test_list_marks_unreadable_scenes(scenes_copy: Path) -> None:
    broken = scenes_copy / "99-broken" / "scene"
    broken.mkdir(parents=True)
    (broken / "scene.prj").write_text("not a prj\n")
    rows = json.loads(runner.invoke(app, ["--json"]).output)
    assert rows[-1]["short_name"] == "99-broken"
    assert "missing header" in rows[-1]["error"]
    assert "(unreadable: see `hpcrun scenes show`)" in runner.invoke(app, []).output


def test_show_describes_volumes_colormaps_and_skipped(scenes_copy: Path) -> None:
    result = runner.invoke(app, ["show", "supernova"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("Core-Collapse Supernova (procedural)\n")
    assert "region of interest: 0 0 0 256 256 256" in text
    assert (
        "supernova_volume: 256x256x256 uint8, bbox 0 0 0 256 256 256, colormap "
        "supernova_colormap" in text
    )
    assert "(missing; generated on first use (generator supernova, seed 1074))" in text
    assert "supernova_colormap: 16 entries, domain 0.15 1" in text
    assert "not shown by the open renderer:\n  headlight (directional_headlight): lights" in text


def test_show_json_and_paths(write_scene: WriteScene) -> None:
    prj = write_scene(
        SMALL_VOLUME + "app::scene::root::children = vol mesh\n"
        "app::scene::mesh::type = triangle_mesh\n"
    )
    data = json.loads(runner.invoke(app, ["show", str(prj), "--json"]).output)
    assert data["path"] == str(prj)
    assert data["volumes"][0]["size"] == [12, 10, 8]
    assert data["volumes"][0]["generator"] is None
    assert data["skipped"] == [
        {
            "name": "mesh",
            "type": "triangle_mesh",
            "reason": "triangle meshes are not rendered (volumes only)",
        }
    ]
    text = runner.invoke(app, ["show", str(prj)]).output
    assert "MISSING, and no generate.json recipe" in text


def test_show_broken_file_raises_scene_error_with_line(write_scene: WriteScene) -> None:
    prj = write_scene("app::scene::root::children = ghost\n")
    result = runner.invoke(app, ["show", str(prj)])
    assert isinstance(result.exception, SceneError)
    assert result.exception.message.startswith(f"{prj}:2: app::scene::root::children names")


def test_generate_in_place_then_nothing_to_do(scenes_copy: Path) -> None:
    result = runner.invoke(app, ["generate", "marschner-lobb"])
    assert result.exit_code == 0, result.output
    data = scenes_copy / "01-marschner_lobb/data/marschner_lobb_192x192x192_uint8.raw"
    assert f"wrote {data}" in result.output
    assert data.stat().st_size == 192**3
    again = runner.invoke(app, ["generate", "marschner-lobb"])
    assert "data already present" in again.output


def test_generate_resized_copy_golden(scenes_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "sn64"
    result = runner.invoke(
        app, ["generate", "supernova", "--size", "64", "-o", str(out), "--no-data"]
    )
    assert result.exit_code == 0, result.output
    prj = out / "scene" / "scene.prj"
    assert_golden("scenes/supernova_64.prj", prj.read_text())
    assert json.loads((out / "scene" / "generate.json").read_text()) == json.loads(
        (scenes_copy / "00-supernova_ncsa_small/scene/generate.json").read_text()
    )
    assert not (out / "data").exists()

    again = runner.invoke(app, ["generate", "supernova", "--size", "64", "-o", str(out)])
    assert isinstance(again.exception, SceneError)
    assert "already exists" in again.exception.message

    forced = runner.invoke(app, ["generate", "supernova", "-s", "64", "-o", str(out), "-f"])
    assert forced.exit_code == 0, forced.output
    assert (out / "data" / "supernova_entropy_64x64x64_uint8.raw").stat().st_size == 64**3
    shown = json.loads(runner.invoke(app, ["show", str(out), "--json"]).output)
    assert shown["volumes"][0]["present"] is True


def test_generate_size_needs_output(scenes_copy: Path) -> None:
    result = runner.invoke(app, ["generate", "supernova", "--size", "64"])
    assert isinstance(result.exception, UsageError)
    assert "--size needs --output DIR" in result.exception.message


def test_generate_refuses_to_overwrite_the_source(scenes_copy: Path) -> None:
    result = runner.invoke(
        app,
        ["generate", "supernova", "-s", "32", "-o", str(scenes_copy / "00-supernova_ncsa_small")],
    )
    assert isinstance(result.exception, SceneError)
    assert "is the scene itself" in result.exception.message


def test_help_teaches_by_example() -> None:
    text = runner.invoke(app, ["--help"]).output
    assert "hpcrun scenes show supernova" in text
    assert "HPCRUN_SCENES" in text
    generate_help = runner.invoke(app, ["generate", "--help"]).output
    assert "--size" in generate_help and "--no-data" in generate_help


# --- through the real `hpcrun` entry point (needs `scenes` registered in cli/__init__) --


def test_real_cli_reports_broken_prj_without_traceback(tmp_path: Path) -> None:
    prj = tmp_path / "bad.prj"
    prj.write_text(
        "#! index_app_project 0\napp::scene::root::children = a\n"
        "app::scene::a::type = sparse_volume\napp::scene::a::importer = raw\n"
    )
    done = run_cli("scenes", "show", str(prj), home=tmp_path, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"error: {prj}:3: sparse_volume 'a' has no `app::scene::a::voxel_format`"
    )
    assert "hint: " in done.stderr and "Traceback" not in done.stderr


def test_scenes_listing_does_not_import_numpy() -> None:
    probe = (
        "import sys\nfrom hpcrun.cli import main\n"
        "for argv in (['scenes', '--help'], ['scenes', '--json'], ['scenes', 'show', "
        "'supernova']):\n"
        "    try:\n        main(argv)\n"
        "    except SystemExit as exc:\n        assert not exc.code, (argv, exc.code)\n"
        "sys.stderr.write(str('numpy' in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert done.stderr.endswith("False"), done.stderr
