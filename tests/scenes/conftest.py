"""Helpers for scene tests: write small .prj files (our own, in IndeX's format)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

HEADER = "#! index_app_project 0\n"

WriteScene = Callable[..., Path]


@pytest.fixture
def write_scene(tmp_path: Path) -> WriteScene:
    """write_scene(body, header=True, name="scene.prj", generate=None) -> path of the .prj.

    The body is dedented; the header line is prepended unless header=False, so line
    numbers in error messages are the body's line number + 1.
    """

    def write(
        body: str,
        header: bool = True,
        name: str = "scene/scene.prj",
        generate: str | None = None,
    ) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((HEADER if header else "") + textwrap.dedent(body), encoding="utf-8")
        if generate is not None:
            (path.parent / "generate.json").write_text(textwrap.dedent(generate))
        return path

    return write


SMALL_VOLUME = """\
app::scene::root::children = vol
app::scene::vol::type = sparse_volume
app::scene::vol::importer = raw
app::scene::vol::voxel_format = uint8
app::scene::vol::bbox = 0 0 0 12 10 8
app::scene::vol::input_directory = ../data
app::scene::vol::input_file_base_name = vol_12x10x8
app::scene::vol::input_file_extension = .raw
"""
"""A 12x10x8 uint8 volume whose data lives in ../data, without a colormap."""
