"""JSON-RPC 2.0 for the viewer: one method per thing a page or a script can do.

The page is just one client of this API (as IndeX's own viewer is of its JSON-RPC
interface): it orbits, zooms, picks colormaps, moves the region of interest and asks for
images with the same calls a script makes over `/ws` or `POST /api/rpc`. Parameters are
named; every mistake in them is answered with -32602 and a message that says which
parameter is wrong and what it must be, so a script author never has to guess.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NoReturn

from hpcrun.errors import HpcrunError
from hpcrun.node.viewer import colormaps
from hpcrun.node.viewer.camera import MODES, Camera
from hpcrun.node.viewer.frames import JPEG_QUALITY, Viewer, encode_image

log = logging.getLogger("hpcrun.node.viewer.rpc")

MAX_SIZE = 4096


PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000
_MISSING: Any = object()


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Params:
    """Typed access to a request's named parameters; every mistake is a -32602."""

    def __init__(self, method: str, raw: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
        self.method = method
        self.raw = raw
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            known = ", ".join(allowed) or "none"
            self.fail(f"unknown parameter(s) {', '.join(unknown)} (parameters: {known})")

    def fail(self, message: str) -> NoReturn:
        raise RpcError(INVALID_PARAMS, f"{self.method}: {message}")

    def get(self, name: str, default: Any = _MISSING) -> Any:
        if name not in self.raw:
            if default is _MISSING:
                self.fail(f"missing parameter {name!r}")
            return default
        return self.raw[name]

    def number(self, name: str, default: Any = _MISSING, low: float = -math.inf,
               high: float = math.inf) -> float:
        value = self.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or not low <= value <= high:
            self.fail(f"{name} must be a number within {low:g}..{high:g}, got {value!r}")
        return float(value)

    def integer(self, name: str, low: int, high: int) -> int:
        value = self.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(f"{name} must be an integer within {low}..{high}, got {value!r}")
        return int(value)

    def choice(self, name: str, choices: Iterable[str], default: Any = _MISSING) -> str:
        value = self.get(name, default)
        options = list(choices)
        if value not in options:
            self.fail(f"{name} must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    def boolean(self, name: str) -> bool:
        value = self.get(name)
        if not isinstance(value, bool):
            self.fail(f"{name} must be true or false, got {value!r}")
        return bool(value)

    def vector(self, name: str, size: int, default: Any = _MISSING) -> tuple[float, ...]:
        value = self.get(name, default)
        if not isinstance(value, list | tuple) or len(value) != size or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        ):
            self.fail(f"{name} must be a list of {size} numbers, got {value!r}")
        return tuple(float(v) for v in value)


Handler = Callable[[Viewer, Params], Awaitable[Any]]
METHODS: dict[str, tuple[tuple[str, ...], Handler]] = {}


def rpc(*params: str) -> Callable[[Handler], Handler]:
    """Register a JSON-RPC method named after the function, with its parameter names."""

    def register(function: Handler) -> Handler:
        METHODS[function.__name__.removeprefix("rpc_")] = (params, function)
        return function

    return register


def _apply(viewer: Viewer, params: Params, **changes: Any) -> int:
    try:
        return viewer.change(**changes)
    except ValueError as exc:
        params.fail(str(exc))


def _interactive(params: Params) -> bool:
    """The optional `interactive` flag of camera moves: true while a person drags (the
    page sets it), so frames come as previews until the camera stops."""
    value = params.get("interactive", False)
    if not isinstance(value, bool):
        params.fail(f"interactive must be true or false, got {value!r}")
    return value


def _move(viewer: Viewer, params: Params, camera: Camera) -> int:
    try:
        return viewer.change(interactive=_interactive(params), camera=camera)
    except ValueError as exc:
        params.fail(str(exc))


@rpc()
async def rpc_get_status(viewer: Viewer, params: Params) -> Any:
    return viewer.status()


@rpc()
async def rpc_get_scene(viewer: Viewer, params: Params) -> Any:
    return viewer.scene.to_json()


@rpc()
async def rpc_get_view(viewer: Viewer, params: Params) -> Any:
    return viewer.view_json()


@rpc()
async def rpc_get_camera(viewer: Viewer, params: Params) -> Any:
    return viewer.state.camera.to_json()


@rpc("eye", "target", "up", "fov_y_deg", "interactive")
async def rpc_set_camera(viewer: Viewer, params: Params) -> Any:
    current = viewer.state.camera.to_json()
    data = {
        "eye": params.vector("eye", 3, current["eye"]),
        "target": params.vector("target", 3, current["target"]),
        "up": params.vector("up", 3, current["up"]),
        "fov_y_deg": params.number("fov_y_deg", current["fov_y_deg"], 1.0, 170.0),
    }
    try:
        camera = Camera.from_json(data)
    except ValueError as exc:
        params.fail(str(exc))
    _move(viewer, params, camera)
    return viewer.state.camera.to_json()


@rpc()
async def rpc_reset_camera(viewer: Viewer, params: Params) -> Any:
    _apply(viewer, params, camera=viewer.home_camera())
    return viewer.state.camera.to_json()


@rpc("azimuth", "elevation", "interactive")
async def rpc_orbit(viewer: Viewer, params: Params) -> Any:
    azimuth = params.number("azimuth", 0.0, -3600.0, 3600.0)
    elevation = params.number("elevation", 0.0, -180.0, 180.0)
    _move(viewer, params, viewer.state.camera.orbit(azimuth, elevation))
    return viewer.state.camera.to_json()


@rpc("factor", "interactive")
async def rpc_zoom(viewer: Viewer, params: Params) -> Any:
    factor = params.number("factor", _MISSING, 0.01, 100.0)
    if factor <= 0.0:
        params.fail("factor must be positive")
    _move(viewer, params, viewer.state.camera.zoom(factor))
    return viewer.state.camera.to_json()


@rpc()
async def rpc_list_colormaps(viewer: Viewer, params: Params) -> Any:
    return {"colormaps": colormaps.names(), "current": viewer.state.colormap}


@rpc("name")
async def rpc_set_colormap(viewer: Viewer, params: Params) -> Any:
    name = params.choice("name", colormaps.names())
    _apply(viewer, params, colormap=name)
    return {"colormap": name}


@rpc("roi")
async def rpc_set_roi(viewer: Viewer, params: Params) -> Any:
    roi = params.vector("roi", 6)
    if not all(roi[i] < roi[i + 3] for i in range(3)):
        params.fail(f"roi must be (x0, y0, z0, x1, y1, z1) with x0 < x1, y0 < y1, z0 < z1, "
                    f"got {list(roi)}")
    _apply(viewer, params, roi=roi)
    return {"roi": list(viewer.state.roi)}


@rpc("points")
async def rpc_set_opacity_ramp(viewer: Viewer, params: Params) -> Any:
    """The transfer function's opacity ramp: [[value, gain], ...] (values 0..1 in order,
    gains 0..16) multiplying the colormap's opacity; [] restores the colormap's own."""
    points = params.get("points")
    if not isinstance(points, list) or not all(
        isinstance(p, list | tuple) and len(p) == 2 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in p)
        for p in points
    ):
        params.fail(f"points must be a list of [value, gain] pairs, got {points!r}")
    _apply(viewer, params, opacity=tuple((float(p[0]), float(p[1])) for p in points))
    return {"points": [list(p) for p in viewer.state.opacity]}


@rpc("mode")
async def rpc_set_mode(viewer: Viewer, params: Params) -> Any:
    mode = params.choice("mode", MODES)
    _apply(viewer, params, mode=mode)
    return {"mode": mode}


@rpc("step")
async def rpc_set_step(viewer: Viewer, params: Params) -> Any:
    step = params.number("step", _MISSING, 0.05, 16.0)
    _apply(viewer, params, step=step)
    return {"step": step}


@rpc("enabled")
async def rpc_set_show_bricks(viewer: Viewer, params: Params) -> Any:
    _apply(viewer, params, show_bricks=params.boolean("enabled"))
    return {"show_bricks": viewer.show_bricks}


@rpc("width", "height")
async def rpc_set_resolution(viewer: Viewer, params: Params) -> Any:
    width = params.integer("width", 16, MAX_SIZE)
    height = params.integer("height", 16, MAX_SIZE)
    _apply(viewer, params, width=width, height=height)
    return {"width": width, "height": height}


@rpc("format", "quality")
async def rpc_get_image(viewer: Viewer, params: Params) -> Any:
    image_format = params.choice("format", ("png", "jpeg"), "png")
    quality = int(params.number("quality", JPEG_QUALITY, 1, 100))
    try:
        frame = await viewer.current_frame()
    except HpcrunError as exc:
        raise RpcError(SERVER_ERROR, exc.message) from None
    if image_format == "jpeg" and quality == JPEG_QUALITY:
        data = frame.jpeg
    else:
        data = await asyncio.get_running_loop().run_in_executor(
            None, encode_image, frame.rgb, image_format, quality)
    return {"format": image_format, "width": frame.width, "height": frame.height,
            "frame": frame.number, "data": base64.b64encode(data).decode()}


@rpc()
async def rpc_get_performance_values(viewer: Viewer, params: Params) -> Any:
    return viewer.performance()


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


async def call(viewer: Viewer, request: Any) -> dict[str, Any] | None:
    """Answer one JSON-RPC request object (None for a notification)."""
    if not isinstance(request, dict):
        return _error(None, INVALID_REQUEST, "a request is a JSON object")
    request_id = request.get("id")
    if request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str) or (
        request_id is not None and not isinstance(request_id, str | int | float)
    ):
        return _error(request_id, INVALID_REQUEST,
                      'a request needs "jsonrpc": "2.0", a string "method" and an id')
    method = request["method"]
    raw = request.get("params", {})
    entry = METHODS.get(method)
    try:
        if entry is None:
            raise RpcError(METHOD_NOT_FOUND,
                           f"method not found: {method} (methods: {', '.join(sorted(METHODS))})")
        if isinstance(raw, list) and not raw:
            raw = {}
        if not isinstance(raw, dict):
            raise RpcError(INVALID_PARAMS, f"{method}: params must be an object of named values")
        names, handler = entry
        result = await handler(viewer, Params(method, raw, names))
    except RpcError as exc:
        response = _error(request_id, exc.code, exc.message)
    except Exception as exc:
        log.exception("JSON-RPC %s failed", method)
        response = _error(request_id, INTERNAL_ERROR, f"{method}: internal error: {exc}")
    else:
        response = {"jsonrpc": "2.0", "id": request_id, "result": result}
    return None if "id" not in request else response


async def call_text(viewer: Viewer, text: str) -> str | None:
    """Answer a JSON-RPC message (single or batch) given as text."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return json.dumps(_error(None, PARSE_ERROR, f"parse error: {exc}"))
    if isinstance(data, list):
        if not data:
            return json.dumps(_error(None, INVALID_REQUEST, "empty batch"))
        answers = [a for a in [await call(viewer, item) for item in data] if a is not None]
        return json.dumps(answers) if answers else None
    answer = await call(viewer, data)
    return None if answer is None else json.dumps(answer)
