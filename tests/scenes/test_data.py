"""Data files: generated atomically and once, mapped read-only, checked for size."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from hpcrun.scenes import SceneError, ensure_data, load_scene, load_volume, with_presence
from hpcrun.scenes import data as data_module
from hpcrun.scenes.generators import supernova
from tests.scenes.conftest import SMALL_VOLUME, WriteScene

RECIPE = '{"volumes": {"vol": {"generator": "supernova", "seed": 9}}}'


def test_ensure_data_generates_then_is_a_no_op(write_scene: WriteScene) -> None:
    scene = load_scene(write_scene(SMALL_VOLUME, generate=RECIPE))
    messages: list[str] = []
    written = ensure_data(scene, messages.append)
    path = scene.volumes[0].data_path
    assert written == [path]
    assert messages == ["generating vol_12x10x8.raw (supernova, 12x10x8 uint8)"]
    assert path.read_bytes() == supernova((12, 10, 8), 9).tobytes()
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert ensure_data(scene) == []
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert with_presence(scene).volumes[0].present


def test_truncated_file_is_regenerated(write_scene: WriteScene) -> None:
    scene = load_scene(write_scene(SMALL_VOLUME, generate=RECIPE))
    path = scene.volumes[0].data_path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half")
    assert ensure_data(scene) == [path]
    assert path.stat().st_size == 12 * 10 * 8


def test_concurrent_callers_generate_once(
    write_scene: WriteScene, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = load_scene(write_scene(SMALL_VOLUME, generate=RECIPE))
    calls: list[int] = []
    real = data_module.generate_volume

    def counted(*args: object, **kwargs: object) -> Path:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(data_module, "generate_volume", counted)
    results: list[list[Path]] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_data(scene))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(len(r) for r in results) == [0, 0, 0, 1]


def test_failed_generation_leaves_nothing_behind(
    write_scene: WriteScene, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = load_scene(write_scene(SMALL_VOLUME, generate=RECIPE))

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    from hpcrun.scenes import generators

    monkeypatch.setitem(generators.GENERATORS, "supernova", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        ensure_data(scene)
    folder = scene.volumes[0].data_path.parent
    assert [p.name for p in folder.iterdir() if not p.name.endswith(".lock")] == []


def test_missing_data_without_recipe_is_an_error(write_scene: WriteScene) -> None:
    prj = write_scene(SMALL_VOLUME)
    with pytest.raises(SceneError, match=r"is missing and the scene has no generate\.json"):
        ensure_data(load_scene(prj))


def test_load_volume_is_a_read_only_zyx_memmap(write_scene: WriteScene) -> None:
    scene = load_scene(write_scene(SMALL_VOLUME, generate=RECIPE))
    ensure_data(scene)
    volume = load_volume(scene.volumes[0])
    assert volume.shape == (8, 10, 12) and volume.dtype == np.uint8
    assert isinstance(volume, np.memmap)
    assert np.array_equal(volume, supernova((12, 10, 8), 9))
    with pytest.raises(ValueError):
        volume[0, 0, 0] = 1


def test_load_volume_errors(write_scene: WriteScene) -> None:
    scene = load_scene(write_scene(SMALL_VOLUME))
    with pytest.raises(SceneError, match="does not exist"):
        load_volume(scene.volumes[0])
    path = scene.volumes[0].data_path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\0" * 10)
    with pytest.raises(SceneError, match="has 10 bytes, but a 12x10x8 uint8 volume needs 960"):
        load_volume(scene.volumes[0])


def test_uint16_volumes_are_little_endian(write_scene: WriteScene) -> None:
    body = SMALL_VOLUME.replace("uint8", "uint16")
    scene = load_scene(write_scene(body, generate=RECIPE.replace("supernova", "ct_phantom")))
    ensure_data(scene)
    raw = scene.volumes[0].data_path.read_bytes()
    volume = load_volume(scene.volumes[0])
    assert volume.dtype == np.dtype("<u2")
    assert int.from_bytes(raw[:2], "little") == int(volume[0, 0, 0])
