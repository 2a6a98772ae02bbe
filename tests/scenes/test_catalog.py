"""Short scene names, the scenes root, and paths given instead of names."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcrun.scenes import UnknownScene, list_scenes, resolve_scene, scenes_root
from hpcrun.scenes.catalog import SHORT_NAMES, index_scene_dir
from tests.scenes.conftest import SMALL_VOLUME, WriteScene

REPO_SCENES = Path(__file__).resolve().parents[2] / "scenes"


def test_default_root_is_the_repository_scenes_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCRUN_SCENES", raising=False)
    assert scenes_root() == REPO_SCENES


def test_short_names_map_to_index_directories(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCRUN_SCENES", raising=False)
    assert SHORT_NAMES["supernova"] == "00-supernova_ncsa_small"
    assert resolve_scene("supernova") == REPO_SCENES / "00-supernova_ncsa_small/scene/scene.prj"
    assert resolve_scene("01-marschner_lobb") == REPO_SCENES / "01-marschner_lobb/scene/scene.prj"
    for short, directory in SHORT_NAMES.items():
        assert resolve_scene(short).parts[-3] == directory


def test_paths_resolve_to_the_prj(write_scene: WriteScene, tmp_path: Path) -> None:
    prj = write_scene(SMALL_VOLUME, name="mine/scene/scene.prj")
    assert resolve_scene(prj) == prj
    assert resolve_scene(str(tmp_path / "mine")) == prj
    assert resolve_scene(tmp_path / "mine" / "scene") == prj


def test_unknown_name_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCRUN_SCENES", raising=False)
    with pytest.raises(UnknownScene) as caught:
        resolve_scene("supernvoa")
    assert caught.value.message.startswith(
        "no scene named 'supernvoa' (scenes: supernova, marschner-lobb, phantom"
    )
    assert "HPCRUN_SCENES" in (caught.value.hint or "")


def test_hpcrun_scenes_env_and_extra_directories(
    write_scene: WriteScene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_scene(SMALL_VOLUME, name="root/zz-custom/scene/scene.prj")
    write_scene(SMALL_VOLUME, name="root/00-supernova_ncsa_small/scene/scene.prj")
    (tmp_path / "root" / "not-a-scene").mkdir()
    monkeypatch.setenv("HPCRUN_SCENES", str(tmp_path / "root"))
    assert [(e.short_name, e.directory) for e in list_scenes()] == [
        ("supernova", "00-supernova_ncsa_small"),
        ("zz-custom", "zz-custom"),
    ]
    assert resolve_scene("zz-custom") == tmp_path / "root/zz-custom/scene/scene.prj"


def test_missing_root_lists_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPCRUN_SCENES", str(tmp_path / "absent"))
    assert list_scenes() == []
    with pytest.raises(UnknownScene, match="none found"):
        resolve_scene("supernova")


def test_index_scene_dir_for_clusters_with_real_index() -> None:
    assert index_scene_dir("supernova") == "00-supernova_ncsa_small"
    assert index_scene_dir("00-supernova_ncsa_small") == "00-supernova_ncsa_small"
    assert index_scene_dir("/opt/scenes/01-brain/scene/scene.prj") is None
    assert index_scene_dir("my.prj") is None
    assert index_scene_dir("unknown") is None
