"""The .prj parser: what real IndeX scene files hold, and precise errors for broken ones."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from hpcrun.scenes import Colormap, SceneError, Skipped, Volume, load_scene
from hpcrun.scenes.prj import parse_project, rewrite_values
from tests.scenes.conftest import SMALL_VOLUME, WriteScene

# A scene in the style of NVIDIA's sample scenes, using most element types they use.
FULL_SCENE = """\
# -*- mode: Conf; -*-
app::scene::info::name = Test nebula
app::scene::info::description = Two volumes, a colormap file and many elements we skip.
app::variable_expansion = true

index::region_of_interest = 1 2 3 40 30 20
index::subcube_size = 252 252 252

app::scene::root::children = headlight xac_mapping group_a group_b outside

app::scene::headlight::type = directional_headlight
app::scene::headlight::direction = 0 0 -1

app::scene::xac_mapping::type = rendering_kernel_program_scene_element_mapping
app::scene::xac_mapping::1 = vol_a

app::scene::group_a::type = static_scene_group
app::scene::group_a::children = props xac cmap_data vol_a

app::scene::props::type = sparse_volume_rendering_properties
app::scene::props::sampling_distance = 0.5

app::scene::xac::type = rendering_kernel_program
app::scene::xac::target = volume_sample_program
app::scene::xac::source_file = ${NVINDEX_SCENES_DIR}/kernel.cuh

app::scene::cmap_data::type = colormap
app::scene::cmap_data::map_type = data
app::scene::cmap_data::domain = 0.25 0.75
app::scene::cmap_data::size = 2
app::scene::cmap_data::data = 0 0 0 0 1 0.5 0.25 0.8

app::scene::vol_a::type = sparse_volume
app::scene::vol_a::importer = raw
app::scene::vol_a::voxel_format = uint16
app::scene::vol_a::bbox = 0 0 0 40 30 20
app::scene::vol_a::convert_zyx_to_xyz = false
app::scene::vol_a::input_directory = ${NVINDEX_TEST_DATA}
app::scene::vol_a::input_file_base_name = a
app::scene::vol_a::input_file_extension = .raw

app::scene::group_b::type = static_scene_group
app::scene::group_b::children = cmap_file vol_b heightfield mesh slice seismic zyx rgba builtin

app::scene::cmap_file::type = colormap
app::scene::cmap_file::map_type = lookup_table
app::scene::cmap_file::map_index = 41

app::scene::vol_b::type = sparse_volume
app::scene::vol_b::importer = nv::index::plugin::base_importer.Sparse_volume_importer_raw
app::scene::vol_b::voxel_format = float32
app::scene::vol_b::bbox = 10 10 10 20 20 20
app::scene::vol_b::size = 4 4 4
app::scene::vol_b::input_directory = /abs/data
app::scene::vol_b::input_file_base_name = b

app::scene::heightfield::type = regular_heightfield
app::scene::mesh::type = triangle_mesh
app::scene::slice::type = plane

app::scene::seismic::type = sparse_volume
app::scene::seismic::importer = nv::index::plugin::vds_importer.Sparse_volume_importer

app::scene::zyx::type = sparse_volume
app::scene::zyx::importer = raw
app::scene::zyx::convert_zyx_to_xyz = true
app::scene::zyx::voxel_format = uint8

app::scene::rgba::type = sparse_volume
app::scene::rgba::importer = raw
app::scene::rgba::voxel_format = rgba8

app::scene::builtin::type = colormap
app::scene::builtin::map_type = lookup_table
app::scene::builtin::map_index = 3

app::scene::outside::type = time_series_volume

app::colormap::file_41 = ${NVINDEX_SCENES_DIR}/ramp.cmap
"""


def test_full_scene_reads_every_element(
    write_scene: WriteScene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NVINDEX_TEST_DATA", "/srv/test-data")
    prj = write_scene(FULL_SCENE)
    (prj.parent / "ramp.cmap").write_text("0 0 0 0\n65535 32767.5 0 65535\n")
    scene = load_scene(prj)

    assert scene.name == "Test nebula"
    assert scene.description.startswith("Two volumes")
    assert scene.region_of_interest == (1, 2, 3, 40, 30, 20)
    assert scene.volumes == (
        Volume(
            "vol_a",
            (40, 30, 20),
            (0, 0, 0, 40, 30, 20),
            "uint16",
            Path("/srv/test-data/a.raw"),
            "cmap_data",
            False,
        ),
        Volume(
            "vol_b",
            (4, 4, 4),
            (10, 10, 10, 20, 20, 20),
            "float32",
            Path("/abs/data/b"),
            "cmap_file",
            False,
        ),
    )
    assert scene.colormaps[0] == Colormap(
        "cmap_data", ((0, 0, 0, 0), (1, 0.5, 0.25, 0.8)), (0.25, 0.75)
    )
    ramp = scene.colormaps[1]
    assert ramp.name == "cmap_file" and ramp.domain == (0, 1)
    assert ramp.table[1] == pytest.approx((1, 0.5, 0, 1))
    skipped = {s.name: s for s in scene.skipped}
    assert list(skipped) == [
        "headlight",
        "xac_mapping",
        "props",
        "xac",
        "heightfield",
        "mesh",
        "slice",
        "seismic",
        "zyx",
        "rgba",
        "builtin",
        "outside",
    ]
    assert skipped["xac"] == Skipped(
        "xac",
        "rendering_kernel_program",
        "XAC/CUDA kernel programs run only inside IndeX; the open renderer uses its own "
        "emission-absorption and MIP kernels",
    )
    assert "vds_importer" in skipped["seismic"].reason
    assert "convert_zyx_to_xyz" in skipped["zyx"].reason
    assert "'rgba8'" in skipped["rgba"].reason
    assert "built-in colormaps" in skipped["builtin"].reason
    assert skipped["heightfield"].reason.startswith("heightfield surfaces are not rendered")
    assert skipped["outside"].reason == (
        "element type 'time_series_volume' is not supported by the open renderer"
    )


def raw_volume(name: str) -> str:
    """The lines of a 2x2x2 raw uint8 volume element."""
    prefix = f"app::scene::{name}::"
    return (
        f"{prefix}type = sparse_volume\n{prefix}importer = raw\n{prefix}voxel_format = uint8\n"
        f"{prefix}bbox = 0 0 0 2 2 2\n{prefix}input_directory = d\n"
        f"{prefix}input_file_base_name = {name}\n"
    )


def test_colormap_applies_to_following_siblings_only(write_scene: WriteScene) -> None:
    body = """\
        app::scene::root::children = before group after
        app::scene::group::type = static_scene_group
        app::scene::group::children = cmap inner
        app::scene::cmap::type = colormap
        app::scene::cmap::map_type = data
        app::scene::cmap::data = 0 0 0 0 1 1 1 1
        """
    volumes = "".join(raw_volume(n) for n in ("before", "inner", "after"))
    scene = load_scene(write_scene(textwrap.dedent(body) + volumes))
    assert [(v.name, v.colormap) for v in scene.volumes] == [
        ("before", None),
        ("inner", "cmap"),
        ("after", None),
    ]


def test_last_definition_wins_and_shared_elements_are_listed_once(
    write_scene: WriteScene,
) -> None:
    scene = load_scene(
        write_scene(
            SMALL_VOLUME
            + """\
        app::scene::vol::voxel_format = uint16
        app::scene::root::children = g1 g2
        app::scene::g1::type = static_scene_group
        app::scene::g1::children = vol light
        app::scene::g2::type = static_scene_group
        app::scene::g2::children = vol light
        app::scene::light::type = directional_headlight
        """
        )
    )
    assert [v.voxel_format for v in scene.volumes] == ["uint16"]
    assert [s.name for s in scene.skipped] == ["light"]


def test_data_path_is_relative_to_the_prj_and_presence_checks_the_size(
    write_scene: WriteScene,
) -> None:
    prj = write_scene(SMALL_VOLUME)
    data = prj.parent.parent / "data" / "vol_12x10x8.raw"
    assert load_scene(prj).volumes[0].data_path == data
    assert not load_scene(prj).volumes[0].present
    data.parent.mkdir()
    data.write_bytes(b"\0" * 100)  # truncated: not present
    assert not load_scene(prj).volumes[0].present
    data.write_bytes(b"\0" * 12 * 10 * 8)
    assert load_scene(prj).volumes[0].present


def test_defaults_name_from_directory_roi_from_volumes(write_scene: WriteScene) -> None:
    prj = write_scene(SMALL_VOLUME, name="my-scene/scene/scene.prj")
    scene = load_scene(prj)
    assert scene.name == "my-scene"
    assert scene.description == ""
    assert scene.region_of_interest == (0, 0, 0, 12, 10, 8)
    assert scene.generator is None


def test_empty_scene_is_valid(write_scene: WriteScene) -> None:
    scene = load_scene(write_scene("app::scene::root::children =\n"))
    assert scene.volumes == () and scene.skipped == ()
    assert scene.region_of_interest == (0, 0, 0, 1, 1, 1)


def test_catalog_scenes_parse() -> None:
    from hpcrun.scenes import list_scenes

    entries = list_scenes()
    assert [e.short_name for e in entries][:3] == ["supernova", "marschner-lobb", "phantom"]
    for entry in entries:
        scene = load_scene(entry.prj)
        assert len(scene.volumes) == 1
        volume = scene.volumes[0]
        assert volume.colormap is not None and scene.colormap(volume.colormap) is not None
        assert scene.generator is not None and scene.generator.recipe(volume.name)
        assert scene.description


# --- errors: each names file:line and what is wrong ---------------------------------


def error_of(prj: Path) -> str:
    with pytest.raises(SceneError) as caught:
        load_scene(prj)
    return caught.value.message


@pytest.mark.parametrize(
    ("body", "line", "expected"),
    [
        ("app::scene::root::children vol\n", 2, "expected `key = value`"),
        (
            "app::scene::root::children = vol\n",
            2,
            "names 'vol', which is not defined (expected a line `app::scene::vol::type = ...`)",
        ),
        (
            "app::scene::root::children = vol\napp::scene::vol::bbox = 0 0 0 1 1 1\n",
            2,
            "names 'vol', which has no `::type`",
        ),
        (
            SMALL_VOLUME.replace("app::scene::vol::bbox = 0 0 0 12 10 8\n", ""),
            3,
            "sparse_volume 'vol' has no `app::scene::vol::bbox`",
        ),
        (
            SMALL_VOLUME.replace("0 0 0 12 10 8", "0 0 0 X Y Z"),
            6,
            "app::scene::vol::bbox: 'X' is not a number (expected 6 numbers)",
        ),
        (
            SMALL_VOLUME.replace("0 0 0 12 10 8", "0 0 0 12 10"),
            6,
            "app::scene::vol::bbox: expected 6 numbers, got 5",
        ),
        (
            SMALL_VOLUME.replace("0 0 0 12 10 8", "0 0 0 12.5 10 8"),
            6,
            "must span a whole number of voxels",
        ),
        (
            SMALL_VOLUME + "index::region_of_interest = 0 0 0 0 10 8\n",
            10,
            "expected `x0 y0 z0 x1 y1 z1` with x0 < x1",
        ),
        (SMALL_VOLUME + "index::region_of_interest = 0 0 0 nan 1 1\n", 10, "'nan' is not a number"),
        (
            "app::scene::root::children = g\napp::scene::g::type = static_scene_group\n"
            "app::scene::g::children = h\napp::scene::h::type = static_scene_group\n"
            "app::scene::h::children = g\n",
            6,
            "scene tree has a cycle: g -> h -> g",
        ),
        (
            "app::scene::root::children = c\napp::scene::c::type = colormap\n"
            "app::scene::c::map_type = data\napp::scene::c::data = 0 0 0 1 1\n",
            5,
            "expected RGBA entries (a multiple of 4 numbers), got 5 numbers",
        ),
        (
            "app::scene::root::children = c\napp::scene::c::type = colormap\n"
            "app::scene::c::map_type = data\napp::scene::c::size = 3\n"
            "app::scene::c::data = 0 0 0 1\n",
            6,
            "holds 1 RGBA entries but app::scene::c::size",
        ),
        (
            "app::scene::root::children = c\napp::scene::c::type = colormap\n"
            "app::scene::c::domain = 1 0\n",
            4,
            "domain must be `low high` with low < high",
        ),
        ("index::region_of_interest = 0 0 0 1 1 1\n", 1, "no `app::scene::root::children` line"),
    ],
)
def test_broken_prj_names_file_line_and_problem(
    write_scene: WriteScene, body: str, line: int, expected: str
) -> None:
    prj = write_scene(body)
    message = error_of(prj)
    assert message.startswith(f"{prj}:{line}: "), message
    assert expected in message


def test_missing_header_is_reported_on_line_1(write_scene: WriteScene) -> None:
    prj = write_scene("app::scene::root::children =\n", header=False)
    message = error_of(prj)
    assert message == (
        f"{prj}:1: missing header `#! index_app_project 0` "
        "(first line is 'app::scene::root::children =')"
    )


def test_missing_and_binary_files(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope.prj") == f"{tmp_path / 'nope.prj'}: no such scene file"
    binary = tmp_path / "bin.prj"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "not a text file" in error_of(binary)


def test_scene_error_has_a_hint() -> None:
    assert SceneError("x").hint and "index_app_project" in (SceneError("x").hint or "")


# --- generate.json sidecar ------------------------------------------------------


@pytest.mark.parametrize(
    ("sidecar", "expected"),
    [
        (
            '{"volumes": {\n  "vol": {"generator": "supernova",}\n}}',
            r"generate\.json:2: not valid JSON",
        ),
        ('{"volumes": []}', r"generate\.json:1: expected"),
        (
            '{"volumes": {"other": {"generator": "supernova"}}}',
            r"volume 'other' is not a raw sparse_volume of the scene \(volumes: vol\)",
        ),
        (
            '{"volumes": {"vol": {"generator": "bogus"}}}',
            r"unknown generator 'bogus' \(known: supernova, marschner_lobb, ct_phantom\)",
        ),
        (
            '{"volumes": {"vol": {"generator": "ct_phantom"}}}',
            r"makes uint16 voxels but the scene says voxel_format uint8",
        ),
        (
            '{"volumes": {"vol": {"generator": "supernova", "seed": -1}}}',
            r"seed must be an integer >= 0",
        ),
    ],
)
def test_bad_generate_json(write_scene: WriteScene, sidecar: str, expected: str) -> None:
    message = error_of(write_scene(SMALL_VOLUME, generate=sidecar))
    assert re.search(expected, message), message


def test_generate_json_recipes(write_scene: WriteScene) -> None:
    prj = write_scene(
        SMALL_VOLUME, generate='{"volumes": {"vol": {"generator": "supernova", "seed": 5}}}'
    )
    generator = load_scene(prj).generator
    assert generator is not None and generator.path == prj.parent / "generate.json"
    recipe = generator.recipe("vol")
    assert recipe is not None and (recipe.generator, recipe.seed) == ("supernova", 5)
    assert generator.recipe("other") is None


# --- project-level reading ---------------------------------------------------------


def test_variable_expansion_only_when_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NVINDEX_X", "/x")
    monkeypatch.delenv("NVINDEX_UNSET", raising=False)
    text = (
        "#! index_app_project 0\na = ${NVINDEX_X}/1\napp::variable_expansion = yes\n"
        "b = ${NVINDEX_X}/2 ${NVINDEX_UNSET} ${HOME}\nc = ${NVINDEX_SCENES_DIR}\n"
    )
    project = parse_project(tmp_path / "s.prj", text)
    values = {k: e.value for k, e in project.entries.items()}
    assert values["a"] == "${NVINDEX_X}/1"
    assert values["b"] == "/x/2 ${NVINDEX_UNSET} ${HOME}"
    assert values["c"] == str(tmp_path)
    assert project.entries["b"].line == 4


def test_rewrite_values_keeps_layout() -> None:
    text = "#! index_app_project 0\n# a = 1\na   =  1 2\nb = x\n"
    assert (
        rewrite_values(text, {"a": "3 4"}) == "#! index_app_project 0\n# a = 1\na   =  3 4\nb = x\n"
    )
    with pytest.raises(SceneError, match="not in the file: c"):
        rewrite_values(text, {"c": "1"})
