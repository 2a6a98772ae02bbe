"""Sort-last compositing: N bricks composited equal one whole-volume render."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from hpcrun.node.viewer.bricks import Brick, split
from hpcrun.node.viewer.camera import Camera, View
from hpcrun.node.viewer.colormaps import lut
from hpcrun.node.viewer.compositor import composite
from hpcrun.node.viewer.kernel import BrickRenderer
from hpcrun.node.viewer.partial import Partial
from tests.node.viewer.test_kernel import shell_volume, whole

N = 48
VOLUME = shell_volume(N, seed=1)
DEFAULT = Camera.default_for((N, N, N))
CAMERAS = {
    "oblique": DEFAULT,
    "behind": DEFAULT.orbit(180.0, 0.0),
    "below": DEFAULT.orbit(-70.0, -75.0),
    "close-oblique": DEFAULT.orbit(33.0, 10.0).zoom(3.0),
    # Eye inside the volume, on a brick boundary plane (x = 24), looking across bricks.
    "inside": Camera((24.0, 13.0, 30.0), (40.0, 40.0, 10.0), (0.0, 0.0, 1.0), 80.0),
    "axis-aligned": Camera((24.0, 24.0, 130.0), (24.0, 24.0, 24.0), (0.0, 1.0, 0.0), 30.0),
}


def render(volume: npt.NDArray[np.generic], bricks: list[Brick], view: View,
           table: npt.NDArray[np.float32], **kwargs: object) -> npt.NDArray[np.uint8]:
    partials = [BrickRenderer(volume, b, (0, 255)).render(view, table) for b in bricks]
    return composite(partials, {b.id: b for b in bricks}, view, table, **kwargs)  # type: ignore[arg-type]


def diff(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.parametrize("count", [2, 8, 12])
@pytest.mark.parametrize("camera", list(CAMERAS))
def test_sort_last_equals_a_whole_volume_render(camera: str, count: int) -> None:
    view = View(CAMERAS[camera], 64, 48, "fire")
    table = lut("fire")
    one = render(VOLUME, [whole(VOLUME)], view, table)
    assert one.max() > 60  # there is something to see
    many = render(VOLUME, split(VOLUME.shape, count), view, table)
    # Only early ray termination (at 0.99, per brick) differs: within 3/255.
    assert diff(one, many) <= 3
    mip = view.with_(mode="mip")
    assert np.array_equal(render(VOLUME, [whole(VOLUME)], mip, table),
                          render(VOLUME, split(VOLUME.shape, count), mip, table))


@pytest.mark.parametrize("camera", ["oblique", "inside"])
def test_without_early_termination_sort_last_is_exact(camera: str) -> None:
    table = lut("fire")
    table[:, 3] *= 0.05  # rays never reach 0.99 opacity
    view = View(CAMERAS[camera], 64, 48, "fire")
    assert diff(render(VOLUME, [whole(VOLUME)], view, table),
                render(VOLUME, split(VOLUME.shape, 27), view, table)) <= 1


def test_visibility_order_matters() -> None:
    """Compositing in the wrong order visibly differs: the test above is not vacuous."""
    view = View(CAMERAS["oblique"], 64, 48, "fire")
    table = lut("fire")
    table[:, 3] = np.minimum(table[:, 3] * 3.0, 1.0)
    bricks = split(VOLUME.shape, 8)
    partials = [BrickRenderer(VOLUME, b, (0, 255)).render(view, table) for b in bricks]
    right = composite(partials, {b.id: b for b in bricks}, view, table)
    # Swap the geometry the compositor orders by: nearest brick composited last.
    flipped = {b.id: bricks[7 - b.id] for b in bricks}
    wrong = composite(partials, flipped, view, table)
    assert diff(right, wrong) > 20


def test_roi_clips_the_volume() -> None:
    view = View(CAMERAS["oblique"], 64, 48, "fire")
    table = lut("fire")
    roi = (0.0, 0.0, 0.0, 24.0, 48.0, 48.0)  # the x < 24 half
    clipped = view.with_(roi=roi)
    bricks = split(VOLUME.shape, 8)
    assert diff(render(VOLUME, bricks, view, table), render(VOLUME, bricks, clipped, table)) > 30
    # The ROI render equals rendering only the voxels inside it as one brick.
    half = Brick(0, (0, 0, 0), (48, 48, 24))
    assert diff(render(VOLUME, bricks, clipped, table),
                render(VOLUME, [half], view, table)) <= 3
    # Pixels whose rays miss the ROI box show the background.
    far = view.with_(roi=(40.0, 40.0, 40.0, 48.0, 48.0, 48.0))
    image = render(VOLUME, bricks, far, table, background=(0.0, 0.0, 1.0))
    x, y, _ = view.project((6.0, 6.0, 6.0))
    assert tuple(image[int(y), int(x)]) == (0, 0, 255)
    mip = render(VOLUME, bricks, far.with_(mode="mip"), table, background=(0.0, 0.0, 1.0))
    assert tuple(mip[int(y), int(x)]) == (0, 0, 255)


@pytest.mark.parametrize("mode", ["composite", "mip"])
def test_empty_volume_renders_the_background(mode: str) -> None:
    empty = np.zeros((32, 32, 32), dtype=np.uint8)
    view = View(Camera.default_for((32, 32, 32)), 40, 30, "fire", mode)  # type: ignore[arg-type]
    image = render(empty, split(empty.shape, 4), view, lut("fire"), background=(10, 20, 30))
    assert (image == np.array([10, 20, 30], dtype=np.uint8)).all()
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8


def test_tint_colours_each_agents_bricks() -> None:
    view = View(CAMERAS["oblique"], 64, 48, "fire")
    table = lut("fire")
    bricks = split(VOLUME.shape, 2)
    plain = render(VOLUME, bricks, view, table)
    tints = {0: (0.0, 1.0, 0.0), 1: (0, 0, 255)}
    tinted = render(VOLUME, bricks, view, table, tint=tints)
    lit = plain.sum(axis=2) > 60
    assert diff(plain, tinted) > 30
    def coolness(image: npt.NDArray[np.uint8]) -> float:  # fire is red; tints are not
        rgb = image[lit].astype(np.float64)
        return float((rgb[:, 1] + rgb[:, 2] - rgb[:, 0]).mean())

    assert coolness(tinted) > coolness(plain) + 20
    assert np.array_equal(tinted[:3, :3], plain[:3, :3])  # no brick there: untouched
    mip = view.with_(mode="mip")
    assert diff(render(VOLUME, bricks, mip, table),
                render(VOLUME, bricks, mip, table, tint=tints)) > 30


def test_missing_and_round_tripped_partials_still_composite() -> None:
    view = View(CAMERAS["oblique"], 64, 48, "fire")
    table = lut("fire")
    bricks = split(VOLUME.shape, 4)
    partials = [BrickRenderer(VOLUME, b, (0, 255)).render(view, table) for b in bricks]
    by_id = {b.id: b for b in bricks}
    exact = composite(partials, by_id, view, table)
    wire = [Partial.from_bytes(p.to_bytes()) for p in partials]
    assert diff(exact, composite(wire, by_id, view, table)) <= 1
    # An agent dropped out: its brick is a hole, the frame still comes.
    partial_frame = composite(partials[1:], by_id, view, table)
    assert partial_frame.shape == exact.shape
    # A partial for a brick the compositor does not know goes last instead of nowhere.
    assert composite(partials, {b.id: b for b in bricks[:3]}, view, table).shape == exact.shape
