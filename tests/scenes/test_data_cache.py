"""Data of hpcrun's own scenes is generated into $HPCRUN_HOME/scenes, never into the
install tree (read-only and shared when hpcrun is installed from a wheel)."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcrun.node.viewer.launcher import parse_args
from hpcrun.scenes import catalog, ensure_data, load_scene, resolve_scene
from hpcrun.scenes.generators import supernova
from tests.scenes.conftest import HEADER, SMALL_VOLUME

RECIPE = '{"volumes": {"vol": {"generator": "supernova", "seed": 9}}}'
SCENE_DIR = "09-small"
DATA_NAME = "vol_12x10x8.raw"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _make_read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture
def install_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A read-only stand-in for the scenes/ that ships beside the package, as the
    bundled root, with HPCRUN_HOME in tmp_path."""
    tree = tmp_path / "site-packages" / "scenes"
    scene = tree / SCENE_DIR / "scene"
    scene.mkdir(parents=True)
    (scene / "scene.prj").write_text(HEADER + SMALL_VOLUME)
    (scene / "generate.json").write_text(RECIPE)
    monkeypatch.setattr(catalog, "bundled_scenes_root", lambda: tree.resolve())
    monkeypatch.delenv("HPCRUN_SCENES", raising=False)
    monkeypatch.delenv(catalog.SCENE_DATA_ENV, raising=False)
    monkeypatch.setenv("HPCRUN_HOME", str(tmp_path / "home"))
    yield tree
    for path in [tree, *tree.rglob("*")]:  # let tmp_path's cleanup remove it
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_generation_writes_into_the_state_home_not_the_install_tree(
    install_tree: Path, tmp_path: Path
) -> None:
    before = _files(install_tree)
    _make_read_only(install_tree)
    scene = load_scene(resolve_scene(SCENE_DIR))
    cached = tmp_path / "home" / "scenes" / SCENE_DIR / "data" / DATA_NAME
    assert scene.volumes[0].data_path == cached
    assert not scene.volumes[0].present
    assert ensure_data(scene) == [cached]
    assert cached.read_bytes() == supernova((12, 10, 8), 9).tobytes()
    assert _files(install_tree) == before  # nothing written there, not even a lock file
    # Loading again (a viewer, an agent) finds the generated data: nothing to do.
    again = load_scene(resolve_scene(SCENE_DIR))
    assert again.volumes[0].data_path == cached and again.volumes[0].present
    assert ensure_data(again) == []


def test_data_shipped_in_the_tree_is_read_there_unless_the_cache_has_it(
    install_tree: Path, tmp_path: Path
) -> None:
    shipped = install_tree / SCENE_DIR / "data" / DATA_NAME
    shipped.parent.mkdir()
    shipped.write_bytes(bytes(12 * 10 * 8))
    _make_read_only(install_tree)
    scene = load_scene(resolve_scene(SCENE_DIR))
    assert scene.volumes[0].data_path == shipped and scene.volumes[0].present
    assert ensure_data(scene) == []

    cached = tmp_path / "home" / "scenes" / SCENE_DIR / "data" / DATA_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(bytes(12 * 10 * 8))
    assert load_scene(resolve_scene(SCENE_DIR)).volumes[0].data_path == cached


def test_scene_data_env_names_the_cache_the_nodes_share(
    install_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "workspace" / "scenes"
    monkeypatch.setenv(catalog.SCENE_DATA_ENV, str(shared))
    scene = load_scene(resolve_scene(SCENE_DIR))
    assert scene.volumes[0].data_path == shared / SCENE_DIR / "data" / DATA_NAME


def test_scenes_outside_the_install_tree_keep_their_data_beside_them(
    install_tree: Path, tmp_path: Path
) -> None:
    own = tmp_path / "mine" / "scene"
    own.mkdir(parents=True)
    (own / "scene.prj").write_text(HEADER + SMALL_VOLUME)
    (own / "generate.json").write_text(RECIPE)
    scene = load_scene(own / "scene.prj")
    assert scene.volumes[0].data_path == tmp_path / "mine" / "data" / DATA_NAME


def test_the_real_catalog_caches_under_the_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(catalog.SCENE_DATA_ENV, raising=False)
    monkeypatch.setenv("HPCRUN_HOME", str(tmp_path))
    in_tree = catalog.bundled_scenes_root() / "01-marschner_lobb" / "data" / "x.raw"
    assert catalog.cached_data_path(in_tree) == tmp_path / "scenes/01-marschner_lobb/data/x.raw"
    assert catalog.cached_data_path(tmp_path / "elsewhere" / "x.raw") is None


def test_the_launcher_takes_scene_data() -> None:
    assert parse_args(["--scene-data", "/shared/scenes"]).scene_data == "/shared/scenes"
    assert parse_args(["--scene-data=/s"]).scene_data == "/s"
    assert parse_args([]).scene_data is None


def test_state_home_matches_the_state_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpcrun.state import hpcrun_home

    monkeypatch.delenv(catalog.SCENE_DATA_ENV, raising=False)
    for home in (str(tmp_path), ""):
        monkeypatch.setenv("HPCRUN_HOME", home)
        assert catalog.scene_data_root() == hpcrun_home() / "scenes"
