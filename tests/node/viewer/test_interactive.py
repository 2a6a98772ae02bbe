"""What makes the viewer interactive: the default camera's framing, the opacity ramp (in the
view, applied by kernel and compositor alike), reduced-resolution previews, the level the
viewer picks for its frame budget, and agents dropping superseded render requests."""

from __future__ import annotations

import math
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from hpcrun.node.viewer import colormaps, protocol
from hpcrun.node.viewer.bricks import Brick, split
from hpcrun.node.viewer.camera import FILL, Camera, View
from hpcrun.node.viewer.compositor import composite
from hpcrun.node.viewer.frames import LEVELS, LoadedScene, Viewer
from hpcrun.node.viewer.kernel import BrickRenderer
from hpcrun.node.viewer.server import visible_points
from tests.node.viewer.test_kernel import shell_volume

# -- the default camera ------------------------------------------------------------------


def _span(view: View, box: tuple[float, ...]) -> tuple[float, float]:
    """The fraction of the image width and height the projected box covers."""
    xs, ys = [], []
    for x in (box[0], box[3]):
        for y in (box[1], box[4]):
            for z in (box[2], box[5]):
                px, py, depth = view.project((x, y, z))
                assert depth > 0
                xs.append(px)
                ys.append(py)
    return (max(xs) - min(xs)) / view.width, (max(ys) - min(ys)) / view.height


@pytest.mark.parametrize(
    ("size", "least"), [((256, 256, 256), 0.94), ((64, 48, 32), 0.94), ((10, 200, 30), 0.78)]
)
def test_default_camera_fills_most_of_the_image(size: tuple[int, int, int], least: float) -> None:
    view = View(Camera.default_for(size), 512, 512, "fire")
    box = (0.0, 0.0, 0.0, *map(float, size))
    wide, high = _span(view, box)
    # FILL from the centre out; perspective shrinks the far side of a long box
    assert least * FILL <= max(wide, high) <= FILL + 0.001


def test_default_camera_frames_the_given_points() -> None:
    box = (64.0, 60.0, 70.0, 190.0, 200.0, 180.0)
    corners = [
        (x, y, z) for x in (box[0], box[3]) for y in (box[1], box[4]) for z in (box[2], box[5])
    ]
    camera = Camera.default_for((256, 256, 256), points=corners, aspect=2.0)
    view = View(camera, 800, 400, "fire")
    assert camera.target == (127.0, 130.0, 125.0)
    wide, high = _span(view, box)
    assert 0.88 * FILL <= max(wide, high) <= FILL + 0.001 and wide <= FILL + 0.001


def test_visible_points_outline_what_the_colormap_shows() -> None:
    volume = np.zeros((64, 80, 96), dtype=np.uint8)
    volume[10:30, 20:60, 40:50] = 200
    volume[0:4, 0:4, 0:4] = 40  # a faint haze does not count
    table = colormaps.lut("fire")
    points = visible_points(volume, (0.0, 255.0), table, samples=32)
    assert 2 <= len(points) <= 26
    xs, ys, zs = zip(*points, strict=True)
    assert min(xs) >= 38 and max(xs) <= 52 and min(ys) >= 18 and max(ys) <= 62
    assert min(zs) >= 8 and max(zs) <= 32
    assert visible_points(np.zeros((8, 8, 8), np.uint8), (0.0, 255.0), table) == ()


# -- the opacity ramp --------------------------------------------------------------------


def test_ramp_round_trips_and_rejects_nonsense() -> None:
    view = View(Camera.default_for((8, 8, 8)), 8, 8, "fire", opacity=((0.2, 0.0), (0.6, 2.0)))
    assert View.from_json(view.to_json()) == view
    assert view.to_json()["opacity"] == [[0.2, 0.0], [0.6, 2.0]]
    assert View.from_json({**view.to_json(), "opacity": []}).opacity == ()
    for bad in (
        [(0.5, 1.0)],
        [(0.6, 1.0), (0.2, 1.0)],
        [(0.0, -1.0), (1.0, 1.0)],
        [(0.0, 1.0), (1.5, 1.0)],
        [(0.0, 1.0), (1.0, 99.0)],
    ):
        with pytest.raises(ValueError):
            view.with_(opacity=bad)


def test_apply_ramp_multiplies_opacity_only() -> None:
    table = colormaps.lut("fire")
    ramped = colormaps.apply_ramp(table, ((0.5, 0.0), (0.75, 2.0)))
    assert np.array_equal(ramped[:, :3], table[:, :3])
    assert ramped[:128, 3].max() == 0.0
    assert ramped[255, 3] == pytest.approx(min(1.0, 2.0 * table[255, 3]))
    middle = 160  # value 0.627: halfway up the ramp, gain ~1
    assert ramped[middle, 3] == pytest.approx(table[middle, 3] * (0.627 - 0.5) / 0.25 * 2, rel=0.02)
    assert colormaps.apply_ramp(table, ()) is table


def test_kernel_applies_the_views_ramp() -> None:
    volume = shell_volume(32, seed=2)
    ramp = ((0.45, 0.0), (0.7, 3.0))
    view = View(Camera.default_for((32, 32, 32)), 40, 40, "fire")
    renderer = BrickRenderer(volume, Brick(0, (0, 0, 0), (32, 32, 32)), (0, 255))
    table = colormaps.lut("fire")
    ramped = renderer.render(view.with_(opacity=ramp), table)
    by_hand = renderer.render(view, colormaps.apply_ramp(table, ramp))
    plain = renderer.render(view, table)
    assert np.array_equal(ramped.data, by_hand.data)
    assert (ramped.x0, ramped.y0) == (by_hand.x0, by_hand.y0)
    assert ramped.data.shape != plain.data.shape or np.abs(ramped.data - plain.data).mean() > 1e-3


def test_mip_palette_follows_the_ramp() -> None:
    volume = shell_volume(24)
    bricks = split(volume.shape, 4)
    view = View(Camera.default_for((24, 24, 24)), 32, 32, "fire", "mip")
    table = colormaps.lut("fire")
    partials = [BrickRenderer(volume, b, (0, 255)).render(view, table) for b in bricks]
    by_id = {b.id: b for b in bricks}
    shown = composite(partials, by_id, view, table)
    hidden = composite(partials, by_id, view.with_(opacity=((0.0, 0.0), (1.0, 0.0))), table)
    assert shown.sum() > 0 and hidden.sum() == 0


# -- previews ----------------------------------------------------------------------------


def test_a_preview_is_the_same_picture_smaller() -> None:
    volume = shell_volume(40, seed=4)
    bricks = split(volume.shape, 8)
    by_id = {b.id: b for b in bricks}
    renderers = [BrickRenderer(volume, b, (0, 255)) for b in bricks]
    table = colormaps.lut("fire")
    full_view = View(Camera.default_for((40, 40, 40)), 96, 96, "fire")
    half_view = full_view.with_(width=48, height=48)
    full = composite([r.render(full_view, table) for r in renderers], by_id, full_view, table)
    half = composite([r.render(half_view, table) for r in renderers], by_id, half_view, table)
    assert half.shape == (48, 48, 3)
    down = full.astype(np.float64).reshape(48, 2, 48, 2, 3).mean(axis=(1, 3))
    assert np.abs(down - half).mean() < 4.0  # 0..255: the same picture, fewer rays
    assert half.sum() > 0.1 * 255 * half.size / 3


def _viewer() -> Viewer:
    scene = LoadedScene(
        "t",
        "",
        Path("t.prj"),
        "v",
        (64, 64, 64),
        "uint8",
        (0.0, 255.0),
        (0.0, 0.0, 0.0, 64.0, 64.0, 64.0),
        tuple(split((64, 64, 64), 8)),
        "fire",
        frame_points=((16.0, 16.0, 16.0), (48.0, 48.0, 48.0)),
    )
    return Viewer(scene, "1")


def test_viewer_frames_the_scenes_visible_box() -> None:
    viewer = _viewer()
    assert viewer.state.camera.target == (32.0, 32.0, 32.0)
    assert viewer.state.camera == viewer.home_camera()
    assert math.dist(viewer.state.camera.eye, (32, 32, 32)) < math.dist(
        Camera.default_for((64, 64, 64)).eye, (32, 32, 32)
    )


def test_viewer_picks_the_finest_level_within_budget() -> None:
    viewer = _viewer()
    viewer.budget_ms = 70.0
    assert not viewer.moving()
    viewer.change(interactive=True, camera=viewer.state.camera.orbit(5.0, 0.0))
    assert viewer.moving()
    assert viewer.pick_level() == 1.5  # nothing measured yet: the finest preview

    def measured(frame: int, **levels: float) -> None:
        viewer._frame_number = frame
        viewer.level_ms, viewer.level_frame = {}, {}
        for key, ms in levels.items():
            level = float(key.removeprefix("l").replace("_", "."))
            viewer.level_ms[level], viewer.level_frame[level] = ms, frame

    measured(10, l1=250.0)
    assert viewer.pick_level() == 2.0  # 250 / 4 = 62.5 ms fits, 1.5 (111 ms) does not
    measured(10, l1=250.0, l2=95.0)
    assert viewer.pick_level() == 3.0  # measured: 2 is too slow after all
    viewer.level_frame[1.0] = 35  # a full frame since (after the drag)
    viewer._frame_number = 40  # 2 was measured 30 frames ago: predicted from 1 again
    assert viewer.pick_level() == 2.0
    measured(10, l1=60.0)
    assert viewer.pick_level() == 1.5  # a preview even when full frames would fit
    measured(10, l1=5000.0, l4=400.0)
    assert viewer.pick_level() == LEVELS[-1]  # nothing fits: the coarsest
    viewer._record_level(4.0, 200.0)
    assert viewer.level_ms[4.0] == 300.0
    viewer._frame_number = 100
    viewer._record_level(4.0, 50.0)  # an old figure is replaced, not averaged
    assert viewer.level_ms[4.0] == 50.0
    viewer.change(camera=viewer.state.camera.orbit(5.0, 0.0))  # a script's move
    assert not viewer.moving()


# -- agents drop superseded requests -----------------------------------------------------


@pytest.mark.parametrize("second", [2, 1])
def test_agent_drops_a_render_that_a_newer_one_superseded(tmp_path: Path, second: int) -> None:
    """A request for a later frame ends the current one unanswered; one for the same
    frame (the bricks of a lost agent) is answered after it."""
    from hpcrun.node.viewer.agent import BrickWorker, serve
    from hpcrun.node.viewer.partial import Partial
    from tests.node.viewer._launch import small_frame

    prj, bricks, view, lut = small_frame(tmp_path)
    viewer, agent = socket.socketpair()
    worker = BrickWorker()
    rendered: list[int] = []
    original = worker.render

    def slow_render(request: protocol.Render, superseded: object) -> object:
        rendered.append(request.frame)
        if len(rendered) == 1:  # the next request is on the wire before brick 2 starts
            protocol.send_message(viewer, request2.to_header(), request2.lut)
        return original(request, superseded)  # type: ignore[arg-type]

    worker.render = slow_render  # type: ignore[method-assign,assignment]
    if second == 2:
        request2 = protocol.Render(2, view.with_(width=32, height=32).to_json(), lut)
    else:
        request2 = protocol.Render(1, view.to_json(), lut, (3, 5))
    thread = threading.Thread(target=lambda: serve(agent, worker))
    thread.start()
    with viewer, agent:
        message = protocol.Assign(
            str(prj), "test_volume", protocol.brick_specs(bricks), (0.0, 255.0)
        )
        protocol.send_message(viewer, message.to_header())
        request1 = protocol.Render(1, view.to_json(), lut)
        protocol.send_message(viewer, request1.to_header(), request1.lut)
        answer = protocol.Partials.from_message(protocol.recv_message(viewer))
        if second == 2:
            assert answer.frame == 2  # frame 1 was dropped unanswered
            assert len(answer.blobs) == 8
            right = max(
                Partial.from_bytes(b).x0 + Partial.from_bytes(b).width for b in answer.blobs
            )
            assert right <= 32  # the preview's size
        else:
            assert (answer.frame, len(answer.blobs)) == (1, 8)  # answered in full first
            extra = protocol.Partials.from_message(protocol.recv_message(viewer))
            assert [Partial.from_bytes(b).brick_id for b in extra.blobs] == [3, 5]
        protocol.send_message(viewer, protocol.bye("test over"))
        thread.join(10)
    assert rendered == [1, second]


def test_agents_on_one_host_share_its_threads() -> None:
    import asyncio

    viewer = _viewer()

    class Writer:
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes) -> None:
            self.sent.append(data)

    from hpcrun.node.viewer.frames import AgentLink

    async def main() -> None:
        for n, host in enumerate(("a", "a", "a", "b"), start=1):
            hello = protocol.Hello(viewer.token, f"n{n}", n, "1", n, host, 4)
            viewer.agents[n] = AgentLink(n, hello, Writer(), "#fff")  # type: ignore[arg-type]
        viewer._balance(force=True)

    asyncio.run(main())
    assert [viewer.thread_share(viewer.agents[n]) for n in (1, 2, 3, 4)] == [1, 1, 1, 4]
    assert all(
        viewer.agents[n].threads_sent == viewer.thread_share(viewer.agents[n]) for n in (1, 2, 3, 4)
    )
    message = protocol.Assign("s", "v", (), (0.0, 1.0), threads=3)
    assert protocol.Assign.from_message(protocol.Message(message.to_header())).threads == 3
    assert "threads" not in protocol.Assign("s", "v", (), (0.0, 1.0)).to_header()
