"""The brick ray caster against a plain NumPy reference, voxel types, step, ROI, Partial."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from hpcrun.node.viewer.bricks import Brick
from hpcrun.node.viewer.camera import Camera, View
from hpcrun.node.viewer.colormaps import lut
from hpcrun.node.viewer.kernel import (
    FIX,
    TERMINATE_ALPHA,
    BrickRenderer,
    Partial,
    _cell_distance,
    _exit_k,
    step_lut,
    warm,
)


def shell_volume(n: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A noisy spherical shell, off centre, with empty space around it: what the
    supernova looks like, at test size."""
    rng = np.random.default_rng(seed)
    noise = rng.random((n, n, n))
    for axis in range(3):  # a little smoothing, so trilinear has structure to follow
        noise = (noise + np.roll(noise, 1, axis) + np.roll(noise, -1, axis)) / 3.0
    z, y, x = np.mgrid[0:n, 0:n, 0:n] + 0.5
    r = np.sqrt((x - 0.55 * n) ** 2 + (y - 0.5 * n) ** 2 + (z - 0.45 * n) ** 2) / (0.5 * n)
    shell = np.clip(1.0 - np.abs(r - 0.65) * 5.0, 0.0, 1.0)
    return np.asarray(np.clip(shell * (0.4 + 1.2 * noise), 0, 1) * 255, dtype=np.uint8)


def whole(volume: npt.NDArray[np.generic]) -> Brick:
    nz, ny, nx = volume.shape
    return Brick(0, (0, 0, 0), (nz, ny, nx))


def full_image(p: Partial, view: View) -> npt.NDArray[np.float32]:
    shape = (view.height, view.width, 4) if p.kind == "rgba" else (view.height, view.width)
    out = np.zeros(shape, np.float32) if p.kind == "rgba" else np.full(shape, -1.0, np.float32)
    out[p.y0:p.y0 + p.height, p.x0:p.x0 + p.width] = p.data
    return out


def reference(volume: npt.NDArray[np.uint8], view: View, table: npt.NDArray[np.float32],
              ) -> npt.NDArray[np.float32]:
    """The rendering rule written out plainly: samples at t = k*step inside [0,n)^3,
    trilinear with voxel centres at i+0.5 (clamped at the edges), nearest LUT entry."""
    nz, ny, nx = volume.shape
    eye, d00, du, dv = (np.array(v) for v in view.ray_basis())
    corrected = step_lut(table, view.step)
    mip = view.mode == "mip"
    out = np.full((view.height, view.width), -1.0) if mip else np.zeros(
        (view.height, view.width, 4))
    hi = np.array([nx, ny, nz], float)
    for py in range(view.height):
        for px in range(view.width):
            d = d00 + px * du + py * dv
            d /= np.linalg.norm(d)
            with np.errstate(divide="ignore", invalid="ignore"):
                ta, tb = (0.0 - eye) / d, (hi - eye) / d
            t0 = max(0.0, *np.minimum(ta, tb))
            t1 = min(np.maximum(ta, tb))
            acc = np.zeros(4)
            best = -1.0
            k = math.ceil(t0 / view.step)
            while t0 < t1 and k * view.step < t1:
                g = eye + k * view.step * d - 0.5
                i0 = np.floor(g).astype(int)
                f = g - i0
                value = 0.0
                for corner in range(8):
                    o = np.array([(corner >> a) & 1 for a in range(3)])
                    xi, yi, zi = np.clip(i0 + o, 0, [nx - 1, ny - 1, nz - 1])
                    weight = np.prod(np.where(o == 1, f, 1.0 - f))
                    value += weight * float(volume[zi, yi, xi])
                k += 1
                if mip:
                    best = max(best, value / 255.0)
                    continue
                entry = corrected[min(max(int(value + 0.5), 0), 255)]
                acc += (1.0 - acc[3]) * entry
                if acc[3] >= TERMINATE_ALPHA:
                    break
            out[py, px] = best if mip else acc
    return out.astype(np.float32)


CAMERAS = {
    "oblique": Camera.default_for((14, 14, 14)),
    "behind-below": Camera.default_for((14, 14, 14)).orbit(180.0, -50.0),
    "inside": Camera((9.3, 4.1, 6.2), (3.0, 8.0, 7.0), (0.0, 0.0, 1.0), 70.0),
    "axis": Camera((7.0, 7.0, -30.0), (7.0, 7.0, 7.0), (0.0, 1.0, 0.0), 40.0),
}


@pytest.mark.parametrize("mode", ["composite", "mip"])
@pytest.mark.parametrize("name", list(CAMERAS))
def test_kernel_matches_the_numpy_reference(name: str, mode: str) -> None:
    volume = shell_volume(14, seed=5)
    view = View(CAMERAS[name], 20, 16, "fire", mode)  # type: ignore[arg-type]
    table = lut("fire")
    table[:, 3] = np.minimum(table[:, 3] * 4.0, 1.0)  # opaque enough to terminate rays
    got = full_image(BrickRenderer(volume, whole(volume), (0, 255)).render(view, table), view)
    want = reference(volume, view, table)
    close = np.isclose(got, want, atol=2e-4)
    # A sample right on a LUT entry boundary may round either way in float32.
    assert close.mean() > 0.99, float(np.abs(got - want).max())
    assert np.abs(got - want).max() < 0.05


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_voxel_types_render_alike(dtype: type[np.generic]) -> None:
    volume = shell_volume(24)
    top = 65535.0 if dtype == np.uint16 else 1.0
    scaled = (volume.astype(np.float64) / 255.0 * top).astype(dtype)
    view = View(Camera.default_for((24, 24, 24)), 32, 32, "fire")
    table = lut("fire")
    base = BrickRenderer(volume, whole(volume), (0, 255)).render(view, table)
    other = BrickRenderer(scaled, whole(volume), (0.0, top)).render(view, table)
    assert np.abs(base.data - other.data).max() < 2e-3


def test_value_range_maps_values_into_the_colormap() -> None:
    volume = np.full((8, 8, 8), 100, dtype=np.uint8)
    view = View(Camera.default_for((8, 8, 8)), 8, 8, "gray", "mip")
    p = BrickRenderer(volume, whole(volume), (50, 150)).render(view, lut("gray"))
    hit = p.data[p.data >= 0]
    assert hit.size > 0 and np.allclose(hit, 0.5)


def test_step_changes_sampling_but_not_the_look() -> None:
    volume = shell_volume(32)
    view = View(Camera.default_for((32, 32, 32)), 40, 40, "fire")
    renderer = BrickRenderer(volume, whole(volume), (0, 255))
    fine = full_image(renderer.render(view.with_(step=0.5), lut("fire")), view)
    coarse = full_image(renderer.render(view, lut("fire")), view)
    assert np.abs(fine - coarse).mean() < 0.01
    assert np.abs(fine[..., 3] - coarse[..., 3]).max() < 0.15


def test_empty_volume_gives_transparent_and_zero_maxima() -> None:
    volume = np.zeros((16, 16, 16), dtype=np.uint8)
    view = View(Camera.default_for((16, 16, 16)), 24, 24, "fire")
    renderer = BrickRenderer(volume, whole(volume), (0, 255))
    assert not renderer.render(view, lut("fire")).data.any()
    mip = full_image(renderer.render(view.with_(mode="mip"), lut("fire")), view)
    assert set(np.unique(mip)) == {-1.0, 0.0}
    assert mip[12, 12] == 0.0 and mip[0, 0] == -1.0


def test_roi_outside_the_brick_renders_nothing() -> None:
    volume = shell_volume(16)
    brick = Brick(1, (0, 0, 8), (16, 16, 16))
    view = View(Camera.default_for((16, 16, 16)), 24, 24, "fire", roi=(0, 0, 0, 8, 16, 16))
    p = BrickRenderer(volume, brick, (0, 255)).render(view, lut("fire"))
    assert p.brick_id == 1 and p.data.shape == (0, 0, 4)


def test_partial_covers_only_the_bricks_screen_rectangle() -> None:
    volume = shell_volume(32)
    view = View(Camera.default_for((32, 32, 32)), 64, 64, "fire")
    p = BrickRenderer(volume, Brick(7, (0, 0, 0), (16, 16, 16)), (0, 255)).render(
        view, lut("fire"))
    assert 0 < p.width < 64 and 0 < p.height < 64
    assert p.seconds > 0


def test_partial_round_trip() -> None:
    rng = np.random.default_rng(0)
    rgba = Partial(3, 5, 7, "rgba", rng.random((6, 9, 4), dtype=np.float32), 0.25)
    back = Partial.from_bytes(rgba.to_bytes())
    assert (back.brick_id, back.x0, back.y0, back.kind, back.seconds) == (3, 5, 7, "rgba", 0.25)
    assert back.data.dtype == np.float32 and back.data.shape == (6, 9, 4)
    assert np.abs(back.data - rgba.data).max() < 1e-3
    assert np.array_equal(Partial.from_bytes(rgba.to_bytes(compact=False)).data, rgba.data)
    maxima = Partial(0, 0, 0, "max", np.where(rgba.data[..., 0] > 0.5, rgba.data[..., 1], -1.0)
                     .astype(np.float32), 0.0)
    assert np.array_equal(Partial.from_bytes(maxima.to_bytes()).data, maxima.data)
    empty = Partial(2, 0, 0, "rgba", np.zeros((0, 0, 4), np.float32), 0.0)
    assert Partial.from_bytes(empty.to_bytes()).data.shape == (0, 0, 4)
    assert len(rgba.to_bytes()) < len(rgba.to_bytes(compact=False))


@pytest.mark.parametrize("blob", [b"", b"XXXX" + bytes(40), "truncate"])
def test_partial_rejects_bad_bytes(blob: bytes | str) -> None:
    if blob == "truncate":
        blob = Partial(0, 0, 0, "max", np.zeros((4, 4), np.float32), 0.0).to_bytes()[:-1]
    with pytest.raises(ValueError):
        Partial.from_bytes(blob)  # type: ignore[arg-type]


def test_renderer_rejects_bricks_outside_the_volume() -> None:
    with pytest.raises(ValueError):
        BrickRenderer(np.zeros((8, 8, 8), np.uint8), Brick(0, (0, 0, 0), (9, 8, 8)), (0, 255))


def test_warm_compiles_every_kernel() -> None:
    assert warm() >= 0.0


@pytest.mark.parametrize("cell", [4, 8, 16])
def test_empty_space_skipping_changes_nothing(cell: int, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    volume = shell_volume(40, seed=3)
    view = View(Camera.default_for((40, 40, 40)).orbit(20.0, 10.0).zoom(1.5), 48, 40, "fire")
    table = lut("fire")
    renderer = BrickRenderer(volume, Brick(4, (3, 5, 0), (40, 33, 27)), (0, 255), cell)
    assert renderer._empty_cells(step_lut(table, 1.0)).mean() > 0.1  # it does skip
    skipped = full_image(renderer.render(view, table), view)
    skipped_mip = full_image(renderer.render(view.with_(mode="mip"), table), view)
    monkeypatch.setattr(renderer, "_empty_cells",
                        lambda t: np.zeros_like(renderer.cell_min, dtype=np.uint8))
    renderer._cell_max_norm[:] = 2.0  # MIP: no cell can be skipped or left early
    assert np.array_equal(full_image(renderer.render(view, table), view), skipped)
    assert np.array_equal(full_image(renderer.render(view.with_(mode="mip"), table), view),
                          skipped_mip)


def test_cell_distance_is_the_chebyshev_distance_to_the_nearest_full_cell() -> None:
    rng = np.random.default_rng(2)
    for shape, full in (((5, 7, 6), 0.05), ((9, 4, 11), 0.01), ((3, 3, 3), 0.0)):
        empty = (rng.random(shape) >= full).astype(np.uint8)
        empty[tuple(rng.integers(0, n) for n in shape)] = 0  # at least one full cell
        got = _cell_distance(empty).reshape(shape)
        cells = np.argwhere(empty == 0)
        for index in np.ndindex(*shape):
            want = int(np.abs(cells - np.array(index)).max(axis=1).min())
            assert got[index] == want, (shape, index)
    assert _cell_distance(np.ones((2, 3, 4), np.uint8)).min() == 255  # nothing to find


def test_exit_k_is_the_first_sample_leaving_the_empty_cube() -> None:
    rng = np.random.default_rng(4)
    cell, cells = 8, 12
    for _ in range(2000):
        dp = int(rng.integers(-(1 << (FIX + 1)), 1 << (FIX + 1)))
        c = int(rng.integers(0, cells))
        dist = int(rng.integers(1, 5))
        k = int(rng.integers(0, 50))
        # Sample k lies in cell c (as the renderer calls it).
        at = int(rng.integers(c * cell << FIX, (c + 1) * cell << FIX))
        p0 = at - k * dp
        got = _exit_k(p0, dp, 1.0 / dp if dp else 0.0, c, dist, cells, cell, k)
        low, high = (c - dist + 1) * cell, (c + dist) * cell  # voxel indices of the cube
        want = None
        for kk in range(k + 1, k + 4000):
            voxel = (p0 + kk * dp) >> FIX
            if (voxel < low and c - dist + 1 > 0) or (voxel >= high and c + dist < cells):
                want = kk
                break
        assert got == want if want is not None else got > k + 4000, (p0, dp, c, dist, k)


def test_voxels_only_empty_cells_read_are_never_read() -> None:
    """Skipping really skips: voxels that only empty cells' samples interpolate from are
    poisoned after the cell ranges were taken; the image does not change."""
    volume = shell_volume(40, seed=6)
    view = View(Camera.default_for((40, 40, 40)).orbit(30.0, 20.0), 48, 48, "fire")
    table = lut("fire")
    renderer = BrickRenderer(volume, whole(volume), (0, 255))
    before = full_image(renderer.render(view, table), view)
    empty = renderer._empty_cells(step_lut(table, 1.0))
    assert empty.mean() > 0.2
    # Padded voxel p is read by samples of cells p // cell and (p - 1) // cell.
    cell = renderer.cell
    p = np.arange(renderer.data.shape[0])
    near = [np.unique(np.clip([i // cell, max(i - 1, 0) // cell], 0, empty.shape[0] - 1))
            for i in p]
    poisoned = 0
    for z, y, x in np.ndindex(*renderer.data.shape):
        if all(empty[cz, cy, cx] for cz in near[z] for cy in near[y] for cx in near[x]):
            renderer.data[z, y, x] = 255
            poisoned += 1
    assert poisoned > 1000
    assert np.array_equal(full_image(renderer.render(view, table), view), before)
