"""Where the viewer looks from, and everything else a frame depends on.

`Camera` is a pinhole camera in world space (= voxel space: the volume is the box
[0,nx] x [0,ny] x [0,nz]). `View` bundles the camera with the image size, colormap, mode,
region of interest and sampling step: it is the one value the viewer sends to every render
agent for a frame, so both are frozen and round-trip through JSON. The ray of a pixel is
defined here (`ray_basis`), once, so the whole-volume render, every brick render and the
compositor's screen rectangles agree to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

Vec3 = tuple[float, float, float]
Roi = tuple[float, float, float, float, float, float]
Mode = Literal["composite", "mip"]
MODES: tuple[Mode, ...] = ("composite", "mip")
Ramp = tuple[tuple[float, float], ...]
FILL = 0.8
"""The default camera spans this much of the image with what it frames. The supernova
then covers about half the frame's pixels (a tenth with the old bounding-sphere framing)
and a full frame costs ~5x the CPU; at 0.9 (60 % of the pixels) the full frame after a
drag took 450-610 ms on a loaded 2-core machine, against a 500 ms goal..."""
EDGE = 0.98
"""... and keeps every corner of it within this much of the way to the image's edge."""
MAX_RAMP_GAIN = 16.0
MAX_RAMP_POINTS = 32


def _sub(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _add(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _scale(a: Vec3, s: float) -> Vec3:
    return (a[0] * s, a[1] * s, a[2] * s)


def _dot(a: Vec3, b: Vec3) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _cross(a: Vec3, b: Vec3) -> Vec3:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _norm(a: Vec3) -> float:
    return math.sqrt(_dot(a, a))


def _unit(a: Vec3) -> Vec3:
    length = _norm(a)
    if length == 0.0:
        raise ValueError("zero-length vector")
    return _scale(a, 1.0 / length)


def _vec3(value: Any, what: str) -> Vec3:
    items = [float(v) for v in value]
    if len(items) != 3 or not all(math.isfinite(v) for v in items):
        raise ValueError(f"{what} must be 3 finite numbers, got {value!r}")
    return (items[0], items[1], items[2])


def _rotate(v: Vec3, axis: Vec3, angle_rad: float) -> Vec3:
    """Rodrigues' rotation of `v` about the unit vector `axis`."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    cross = _cross(axis, v)
    along = _scale(axis, _dot(axis, v) * (1.0 - c))
    return _add(_add(_scale(v, c), _scale(cross, s)), along)


@dataclass(frozen=True)
class Camera:
    """A perspective camera: eye and target points in world space, an up hint, and the
    vertical field of view (as VTK's ViewAngle and IndeX's perspective camera)."""

    eye: Vec3
    target: Vec3
    up: Vec3 = (0.0, 0.0, 1.0)
    fov_y_deg: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "eye", _vec3(self.eye, "eye"))
        object.__setattr__(self, "target", _vec3(self.target, "target"))
        object.__setattr__(self, "up", _vec3(self.up, "up"))
        if not 1.0 <= self.fov_y_deg <= 170.0:
            raise ValueError(f"fov_y_deg must be within 1..170, got {self.fov_y_deg}")
        if _norm(_sub(self.target, self.eye)) == 0.0:
            raise ValueError("eye and target coincide")

    @staticmethod
    def default_for(size_xyz: tuple[int, int, int] | tuple[float, float, float],
                    fov_y_deg: float = 30.0,
                    points: Sequence[Vec3] = (), aspect: float = 1.0,
                    fill: float = FILL) -> Camera:
        """An oblique three-quarter view (azimuth 35 deg, elevation 25 deg, z up) of
        `points` (default: the corners of the whole volume), aimed at the centre of their
        box, from just far enough that they span `fill` of an image of `aspect`
        (width / height) across or down, whichever is tighter, none cut off. The viewer
        passes points outlining the voxels its colormap shows: fitting the volume's
        bounding sphere left the supernova a third of the frame."""
        nx, ny, nz = (float(v) for v in size_xyz)
        if not points:
            points = [(x, y, z) for x in (0.0, nx) for y in (0.0, ny) for z in (0.0, nz)]
        lo = [min(p[axis] for p in points) for axis in range(3)]
        hi = [max(p[axis] for p in points) for axis in range(3)]
        center = ((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0, (lo[2] + hi[2]) / 2.0)
        az, el = math.radians(-55.0), math.radians(25.0)
        offset = (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))
        probe = Camera(_add(center, offset), center, (0.0, 0.0, 1.0), fov_y_deg)
        forward, right, up = probe.basis()
        tan_h = math.tan(math.radians(fov_y_deg) / 2.0)
        tan_w = tan_h * max(aspect, 1e-3)
        corners = [_sub(_vec3(p, "point"), center) for p in points]
        nearest = max(-_dot(rel, forward) for rel in corners)  # the one nearest the eye

        def fits(distance: float) -> bool:
            """Whether the points span at most `fill` of the image and none is cut."""
            xs = [_dot(rel, right) / (distance + _dot(rel, forward)) / tan_w for rel in corners]
            ys = [_dot(rel, up) / (distance + _dot(rel, forward)) / tan_h for rel in corners]
            span = max(max(xs) - min(xs), max(ys) - min(ys)) / 2.0
            edge = max(max(map(abs, xs)), max(map(abs, ys)))
            return span <= fill and edge <= EDGE

        # Perspective makes the near side look larger than the far one, so the span is
        # found by bisection (monotonic in the distance), not in closed form.
        near, far = nearest + 1e-6, nearest + 1.0
        while not fits(far):
            far = nearest + 2.0 * (far - nearest)
        for _ in range(48):
            middle = 0.5 * (near + far)
            near, far = (near, middle) if fits(middle) else (middle, far)
        distance = far
        return Camera(_add(center, _scale(offset, distance)), center, (0.0, 0.0, 1.0),
                      fov_y_deg)

    def basis(self) -> tuple[Vec3, Vec3, Vec3]:
        """(forward, right, up) unit vectors; `up` is re-orthogonalised against forward
        (and replaced when the hint is parallel to the view direction)."""
        forward = _unit(_sub(self.target, self.eye))
        hint = self.up
        if _norm(_cross(forward, hint)) < 1e-6 * max(_norm(hint), 1e-30):
            hint = (0.0, 1.0, 0.0) if abs(forward[1]) < 0.9 else (1.0, 0.0, 0.0)
        right = _unit(_cross(forward, hint))
        return forward, right, _cross(right, forward)

    def orbit(self, d_azimuth_deg: float, d_elevation_deg: float) -> Camera:
        """Turn the eye around the target: azimuth about the up vector, elevation about the
        right vector (clamped short of the poles so the view never flips)."""
        forward, right, _ = self.basis()
        up = _unit(self.up) if _norm(self.up) > 0 else (0.0, 0.0, 1.0)
        offset = _sub(self.eye, self.target)
        offset = _rotate(offset, up, math.radians(d_azimuth_deg))
        elevation = math.degrees(math.asin(max(-1.0, min(1.0, -_dot(forward, up)))))
        wanted = max(-89.0, min(89.0, elevation + d_elevation_deg))
        right = _rotate(right, up, math.radians(d_azimuth_deg))
        offset = _rotate(offset, right, -math.radians(wanted - elevation))
        return replace(self, eye=_add(self.target, offset))

    def zoom(self, factor: float) -> Camera:
        """Move the eye towards the target: `factor` 2 halves the distance (things look
        twice as large), 0.5 doubles it."""
        if not factor > 0.0:
            raise ValueError(f"zoom factor must be positive, got {factor}")
        offset = _sub(self.eye, self.target)
        return replace(self, eye=_add(self.target, _scale(offset, 1.0 / factor)))

    def to_json(self) -> dict[str, Any]:
        return {"eye": list(self.eye), "target": list(self.target), "up": list(self.up),
                "fov_y_deg": self.fov_y_deg}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Camera:
        return Camera(
            eye=_vec3(data["eye"], "eye"),
            target=_vec3(data["target"], "target"),
            up=_vec3(data.get("up", (0.0, 0.0, 1.0)), "up"),
            fov_y_deg=float(data.get("fov_y_deg", 30.0)),
        )


def _roi(value: Any) -> Roi:
    items = [float(v) for v in value]
    if len(items) != 6 or not all(math.isfinite(v) for v in items):
        raise ValueError(f"roi must be 6 finite numbers (x0,y0,z0,x1,y1,z1), got {value!r}")
    x0, y0, z0, x1, y1, z1 = items
    return (x0, y0, z0, x1, y1, z1)


def _ramp(value: Any) -> Ramp:
    """An opacity ramp: () or 2..MAX_RAMP_POINTS (value, gain) points, values within 0..1
    and not decreasing, gains within 0..MAX_RAMP_GAIN."""
    points = [tuple(float(v) for v in point) for point in value]
    if not points:
        return ()
    if not 2 <= len(points) <= MAX_RAMP_POINTS or any(len(p) != 2 for p in points):
        raise ValueError(f"an opacity ramp is 2..{MAX_RAMP_POINTS} [value, gain] points, "
                         f"got {value!r}")
    for (v, gain), previous in zip(points, [(-1.0, 0.0), *points], strict=False):
        if not (math.isfinite(v) and math.isfinite(gain)) or not 0.0 <= v <= 1.0 \
                or not 0.0 <= gain <= MAX_RAMP_GAIN or v < previous[0]:
            raise ValueError(f"opacity ramp points need values 0..1 in order and gains "
                             f"0..{MAX_RAMP_GAIN:g}, got {value!r}")
    return tuple((p[0], p[1]) for p in points)


@dataclass(frozen=True)
class View:
    """Everything one frame depends on. `roi` is (x0,y0,z0,x1,y1,z1) in world space,
    `step` the sampling distance in voxels (opacity is corrected for it). `opacity` is
    the opacity ramp: (value, gain) points, piecewise linear over the normalised value,
    that multiply the colormap's opacity (clamped to 1); () leaves the colormap as it is.
    The ramp travels in the view, so every agent and the compositor apply the same one."""

    camera: Camera
    width: int
    height: int
    colormap: str
    mode: Mode = "composite"
    roi: Roi = (-1e9, -1e9, -1e9, 1e9, 1e9, 1e9)
    step: float = 1.0
    opacity: Ramp = ()

    def __post_init__(self) -> None:
        if not (1 <= int(self.width) <= 16384 and 1 <= int(self.height) <= 16384):
            raise ValueError(f"image size must be 1..16384, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        object.__setattr__(self, "roi", _roi(self.roi))
        if not 0.05 <= float(self.step) <= 16.0:
            raise ValueError(f"step must be within 0.05..16 voxels, got {self.step}")
        object.__setattr__(self, "step", float(self.step))
        object.__setattr__(self, "opacity", _ramp(self.opacity))

    def ray_basis(self) -> tuple[Vec3, Vec3, Vec3, Vec3]:
        """(eye, dir00, du, dv): the (unnormalised) direction through the centre of pixel
        (px, py) is dir00 + px*du + py*dv, with py = 0 the top row."""
        forward, right, up = self.camera.basis()
        half_h = math.tan(math.radians(self.camera.fov_y_deg) / 2.0)
        half_w = half_h * self.width / self.height
        du = _scale(right, 2.0 * half_w / self.width)
        dv = _scale(up, -2.0 * half_h / self.height)
        corner = _add(forward, _add(_scale(right, -half_w), _scale(up, half_h)))
        dir00 = _add(corner, _add(_scale(du, 0.5), _scale(dv, 0.5)))
        return self.camera.eye, dir00, du, dv

    def project(self, point: Vec3) -> tuple[float, float, float]:
        """(px, py, depth) of a world point: pixel coordinates (pixel centres at +0.5) and
        the distance along the view direction (<= 0: behind the eye)."""
        forward, right, up = self.camera.basis()
        rel = _sub(point, self.camera.eye)
        depth = _dot(rel, forward)
        if depth <= 0.0:
            return (math.nan, math.nan, depth)
        half_h = math.tan(math.radians(self.camera.fov_y_deg) / 2.0)
        half_w = half_h * self.width / self.height
        x = _dot(rel, right) / depth
        y = _dot(rel, up) / depth
        return ((x + half_w) / (2.0 * half_w) * self.width,
                (half_h - y) / (2.0 * half_h) * self.height, depth)

    def with_(self, **changes: Any) -> View:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {"camera": self.camera.to_json(), "width": self.width, "height": self.height,
                "colormap": self.colormap, "mode": self.mode, "roi": list(self.roi),
                "step": self.step, "opacity": [list(p) for p in self.opacity]}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> View:
        return View(
            camera=Camera.from_json(data["camera"]),
            width=int(data["width"]),
            height=int(data["height"]),
            colormap=str(data["colormap"]),
            mode=cast(Mode, str(data.get("mode", "composite"))),
            roi=_roi(data.get("roi", (-1e9, -1e9, -1e9, 1e9, 1e9, 1e9))),
            step=float(data.get("step", 1.0)),
            opacity=_ramp(data.get("opacity", ())),
        )
