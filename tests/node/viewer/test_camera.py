"""Camera and View: framing, orbit/zoom, JSON round trips, the per-pixel ray basis."""

from __future__ import annotations

import math

import pytest

from hpcrun.node.viewer.camera import Camera, View


def _dist(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return math.dist(a, b)


def test_default_camera_frames_every_corner() -> None:
    size = (64, 48, 32)
    view = View(Camera.default_for(size), 200, 100, "fire")
    assert view.camera.target == (32.0, 24.0, 16.0)
    for x in (0, 64):
        for y in (0, 48):
            for z in (0, 32):
                px, py, depth = view.project((x, y, z))
                assert depth > 0
                assert 0 <= px <= 200 and 0 <= py <= 100


def test_orbit_keeps_distance_and_full_turn_returns() -> None:
    cam = Camera.default_for((64, 64, 64))
    distance = _dist(cam.eye, cam.target)
    turned = cam.orbit(90.0, 0.0)
    assert _dist(turned.eye, turned.target) == pytest.approx(distance)
    assert turned.eye != pytest.approx(cam.eye)
    back = cam.orbit(120.0, 0.0).orbit(120.0, 0.0).orbit(120.0, 0.0)
    assert back.eye == pytest.approx(cam.eye, abs=1e-6)


def test_orbit_elevation_moves_up_and_stops_short_of_the_pole() -> None:
    cam = Camera((100.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    up = cam.orbit(0.0, 30.0)
    assert math.degrees(math.atan2(up.eye[2], math.hypot(up.eye[0], up.eye[1]))) == (
        pytest.approx(30.0))
    top = cam.orbit(0.0, 200.0)
    elevation = math.degrees(math.asin(top.eye[2] / 100.0))
    assert elevation == pytest.approx(89.0)
    assert top.basis()[1] == pytest.approx(cam.basis()[1], abs=1e-6)


def test_zoom_scales_the_distance() -> None:
    cam = Camera((10.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    assert cam.zoom(2.0).eye == pytest.approx((5.0, 0.0, 0.0))
    assert cam.zoom(0.5).eye == pytest.approx((20.0, 0.0, 0.0))
    with pytest.raises(ValueError):
        cam.zoom(0.0)


def test_json_round_trips() -> None:
    cam = Camera.default_for((30, 40, 50)).orbit(12.0, -7.0)
    assert Camera.from_json(cam.to_json()) == cam
    view = View(cam, 320, 200, "viridis", "mip", (1, 2, 3, 20, 30, 40), 0.5)
    assert View.from_json(view.to_json()) == view


@pytest.mark.parametrize("bad", [
    {"width": 0}, {"mode": "xray"}, {"step": 0.0}, {"roi": (0, 0, 0, 1, 1)},
])
def test_view_rejects_nonsense(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"camera": Camera((5.0, 5.0, 5.0), (0.0, 0.0, 0.0)),
                               "width": 8, "height": 8, "colormap": "fire", **bad}
    with pytest.raises(ValueError):
        View(**args)  # type: ignore[arg-type]


def test_centre_pixel_ray_points_at_the_target() -> None:
    cam = Camera((40.0, -30.0, 25.0), (8.0, 9.0, 10.0), (0.0, 0.0, 1.0), 40.0)
    view = View(cam, 101, 51, "fire")
    eye, d00, du, dv = view.ray_basis()
    d = [d00[i] + 50 * du[i] + 25 * dv[i] for i in range(3)]
    forward = cam.basis()[0]
    norm = math.sqrt(sum(v * v for v in d))
    assert [v / norm for v in d] == pytest.approx(list(forward))
    # A point on pixel (10, 40)'s ray projects back onto that pixel.
    d = [d00[i] + 10 * du[i] + 40 * dv[i] for i in range(3)]
    px, py, _ = view.project(tuple(eye[i] + 7.0 * d[i] for i in range(3)))  # type: ignore[arg-type]
    assert (px, py) == pytest.approx((10.5, 40.5))


def test_up_parallel_to_view_direction_still_gives_a_basis() -> None:
    cam = Camera((0.0, 0.0, 50.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0))
    forward, right, up = cam.basis()
    assert abs(sum(f * r for f, r in zip(forward, right, strict=True))) < 1e-9
    assert abs(sum(f * u for f, u in zip(forward, up, strict=True))) < 1e-9
