"""The viewer's HTTP side against a real viewer process: basic auth, /api/status, images,
static files, and every JSON-RPC method over the websocket (results and error codes)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image

from hpcrun.node.viewer import rpc, server
from tests.node.viewer._launch import RpcFailure, Session, http_get, non_background, start_session

AUTH = ("admin", "correct horse")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    from hpcrun.node.viewer.kernel import warm

    warm()
    started = start_session(tmp_path_factory.mktemp("srv"), job_id="880", agents=1, auth=AUTH)
    try:
        started.wait_status(lambda s: s["agents"] == 2 and s["frame"] > 0)
        yield started
    finally:
        started.stop()


def ws_session(session: Session, script: Any) -> Any:
    """Run `await script(ws)` against the viewer's /ws (with credentials)."""

    async def main() -> Any:
        token = base64.b64encode(f"{AUTH[0]}:{AUTH[1]}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
        async with aiohttp.ClientSession(headers=headers) as client, \
                client.ws_connect(session.url + "/ws", max_msg_size=0) as ws:
            return await script(ws)

    return asyncio.run(asyncio.wait_for(main(), 60))


async def call(ws: aiohttp.ClientWebSocketResponse, method: str, params: Any = None,
               request_id: Any = 1) -> dict[str, Any]:
    """Send one request; skip pushed frames until the answer with our id arrives."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    await ws.send_str(json.dumps(message))
    return await answer(ws, request_id)


async def answer(ws: aiohttp.ClientWebSocketResponse, request_id: Any) -> Any:
    while True:
        msg = await ws.receive()
        if msg.type == aiohttp.WSMsgType.TEXT:
            data = json.loads(msg.data)
            if isinstance(data, list) or ("method" not in data and data["id"] == request_id):
                return data
        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            raise AssertionError(f"websocket closed: {msg}")


# -- auth, status, files ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api/status", "/api/image.png", "/static/app.js",
                                  "/ws"])
def test_every_route_needs_basic_auth(session: Session, path: str) -> None:
    status, body = http_get(session.url + path)
    assert status == 401, body
    status, _ = http_get(session.url + path, ("admin", "wrong"))
    assert status == 401
    status, _ = http_get(session.url + path, ("other", AUTH[1]))
    assert status == 401


def test_page_and_static_files_with_auth(session: Session) -> None:
    status, page = http_get(session.url + "/", AUTH)
    assert status == 200
    text = page.decode()
    for element in ('id="frame"', 'id="agents"', 'id="nodes"', 'id="fps"',
                    'id="frame-number"', 'id="colormap"', 'id="mode"', 'id="show-bricks"',
                    'id="roi-x0"', 'id="roi-z1"'):
        assert element in text
    assert "http" not in text.replace("http-equiv", ""), "the page must not load from a CDN"
    for name in ("app.js", "style.css"):
        status, body = http_get(session.url + f"/static/{name}", AUTH)
        assert status == 200 and body
        assert b"//cdn" not in body and b"https://" not in body
    status, _ = http_get(session.url + "/static/../server.py", AUTH)
    assert status in (403, 404)


def test_api_status_keys(session: Session) -> None:
    status = session.status()
    assert {"job_id", "scene", "agents", "nodes", "agent_list", "frame", "fps"} <= set(status)
    assert status["job_id"] == "880"
    assert status["agents"] == 2
    assert status["nodes"] == ["n1", "n2"]
    for agent in status["agent_list"]:
        assert {"node", "rank", "job_id", "bricks", "last_ms", "pid", "host"} <= set(agent)
    assert isinstance(status["fps"], float)


def test_api_image_png_and_jpeg(session: Session) -> None:
    for path, kind in (("/api/image.png", "PNG"), ("/api/image.jpg", "JPEG")):
        status, body = http_get(session.url + path, AUTH)
        assert status == 200
        image = Image.open(io.BytesIO(body))
        assert image.format == kind
        assert non_background(np.asarray(image.convert("RGB"))) > 2000


# -- JSON-RPC over the websocket -------------------------------------------------------


def test_state_methods_round_trip(session: Session) -> None:
    async def script(ws: aiohttp.ClientWebSocketResponse) -> None:
        camera = (await call(ws, "get_camera"))["result"]
        assert set(camera) == {"eye", "target", "up", "fov_y_deg"}
        moved = (await call(ws, "orbit", {"azimuth": 30, "elevation": 10}))["result"]
        assert moved["eye"] != camera["eye"] and moved["target"] == camera["target"]
        zoomed = (await call(ws, "zoom", {"factor": 2.0}))["result"]
        distance = np.linalg.norm(np.subtract(zoomed["eye"], zoomed["target"]))
        before = np.linalg.norm(np.subtract(moved["eye"], moved["target"]))
        assert distance == pytest.approx(before / 2)
        set_back = (await call(ws, "set_camera", camera))["result"]
        assert set_back == camera
        maps = (await call(ws, "list_colormaps"))["result"]
        assert "test_colormap" in maps["colormaps"] and "fire" in maps["colormaps"]
        assert maps["current"] == "test_colormap"
        assert (await call(ws, "set_colormap", {"name": "viridis"}))["result"] == \
            {"colormap": "viridis"}
        assert (await call(ws, "set_mode", {"mode": "mip"}))["result"] == {"mode": "mip"}
        roi = [0, 0, 0, 24, 48, 48]
        assert (await call(ws, "set_roi", {"roi": roi}))["result"] == {"roi": roi}
        view = (await call(ws, "get_view"))["result"]
        assert (view["colormap"], view["mode"], view["roi"]) == ("viridis", "mip", roi)
        scene = (await call(ws, "get_scene"))["result"]
        assert scene["size"] == [48, 48, 48] and scene["bricks"] == 8
        status = (await call(ws, "get_status"))["result"]
        assert status["agents"] == 2
        perf = (await call(ws, "get_performance_values"))["result"]
        assert {"frames_per_second", "time_rendering_ms", "time_compositing_ms",
                "agent_list", "brick_ms"} <= set(perf)
        # restore the default state for the other tests
        await call(ws, "reset_camera")
        await call(ws, "set_colormap", {"name": "test_colormap"})
        await call(ws, "set_mode", {"mode": "composite"})
        await call(ws, "set_roi", {"roi": [0, 0, 0, 48, 48, 48]})

    ws_session(session, script)


def decode(result: dict[str, Any]) -> Any:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(result["data"]))).convert("RGB"))


def test_get_image_follows_resolution_show_bricks_and_roi(session: Session) -> None:
    async def script(ws: aiohttp.ClientWebSocketResponse) -> None:
        plain = (await call(ws, "get_image", {"format": "png"}))["result"]
        assert (plain["format"], plain["width"], plain["height"]) == ("png", 512, 512)
        base = decode(plain)
        assert non_background(base) > 2000
        await call(ws, "set_resolution", {"width": 320, "height": 200})
        small = (await call(ws, "get_image", {"format": "jpeg", "quality": 70}))["result"]
        assert decode(small).shape == (200, 320, 3)
        await call(ws, "set_resolution", {"width": 512, "height": 512})
        await call(ws, "set_show_bricks", {"enabled": True})
        tinted = decode((await call(ws, "get_image"))["result"])
        assert np.abs(tinted.astype(int) - base.astype(int)).mean() > 1.0
        await call(ws, "set_show_bricks", {"enabled": False})
        again = decode((await call(ws, "get_image"))["result"])
        assert np.abs(again.astype(int) - base.astype(int)).mean() < 0.5
        await call(ws, "set_roi", {"roi": [0, 0, 0, 48, 48, 8]})
        cut = decode((await call(ws, "get_image"))["result"])
        assert non_background(cut) < non_background(base)
        await call(ws, "set_roi", {"roi": [0, 0, 0, 48, 48, 48]})

    ws_session(session, script)


def test_interactive_moves_preview_then_refine_in_full(session: Session) -> None:
    """Camera moves marked interactive (the page's drag) come back as smaller previews,
    then, once the camera stays still, as a full-resolution frame; get_image waits for
    that one."""
    async def script(ws: aiohttp.ClientWebSocketResponse) -> None:
        notes: list[dict[str, Any]] = []
        for _ in range(4):
            await call(ws, "orbit", {"azimuth": 4, "interactive": True})
        while not (notes and notes[-1]["full"] and any(not n["full"] for n in notes)):
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if data.get("method") == "frame":
                    notes.append(data["params"])
            elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                raise AssertionError(f"websocket closed: {msg}")
        preview = next(n for n in notes if not n["full"])
        assert preview["level"] > 1 and preview["width"] < 512
        assert (preview["view_width"], preview["view_height"]) == (512, 512)
        assert (notes[-1]["level"], notes[-1]["width"]) == (1.0, 512)
        await call(ws, "orbit", {"azimuth": 4, "interactive": True})
        image = (await call(ws, "get_image"))["result"]
        assert (image["width"], image["height"]) == (512, 512)
        perf = (await call(ws, "get_performance_values"))["result"]
        assert perf["level_ms"] and perf["frame_budget_ms"] > 0
        await call(ws, "reset_camera")

    ws_session(session, script)


def test_opacity_ramp_reaches_every_agent(session: Session) -> None:
    async def script(ws: aiohttp.ClientWebSocketResponse) -> None:
        base = decode((await call(ws, "get_image"))["result"])
        result = (await call(ws, "set_opacity_ramp", {"points": [[0, 0], [1, 0]]}))["result"]
        assert result == {"points": [[0.0, 0.0], [1.0, 0.0]]}
        assert (await call(ws, "get_view"))["result"]["opacity"] == [[0.0, 0.0], [1.0, 0.0]]
        hidden = decode((await call(ws, "get_image"))["result"])
        assert non_background(hidden) == 0  # both agents' bricks went transparent
        await call(ws, "set_opacity_ramp", {"points": [[0.3, 0], [0.6, 2]]})
        ramped = decode((await call(ws, "get_image"))["result"])
        assert non_background(ramped) > 0
        assert np.abs(ramped.astype(int) - base.astype(int)).mean() > 0.5
        await call(ws, "set_opacity_ramp", {"points": []})
        again = decode((await call(ws, "get_image"))["result"])
        assert np.abs(again.astype(int) - base.astype(int)).mean() < 0.5

    ws_session(session, script)


def test_frames_are_pushed_with_a_jpeg(session: Session) -> None:
    async def script(ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "method": "orbit",
                                      "params": {"azimuth": 5}}))  # notification: no answer
        note = None
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                assert "id" not in data, "a notification must not be answered"
                if data.get("method") == "frame":
                    note = data["params"]
            elif msg.type == aiohttp.WSMsgType.BINARY:
                assert note is not None, "a frame notification precedes its JPEG"
                image = Image.open(io.BytesIO(msg.data))
                assert image.format == "JPEG"
                assert image.size == (note["width"], note["height"])
                assert note["agents"] == 2 and note["frame"] > 0
                return
            else:
                raise AssertionError(f"websocket closed: {msg}")

    ws_session(session, script)


@pytest.mark.parametrize(
    ("method", "params", "code"),
    [
        ("no_such_method", {}, rpc.METHOD_NOT_FOUND),
        ("zoom", {}, rpc.INVALID_PARAMS),
        ("zoom", {"factor": -1}, rpc.INVALID_PARAMS),
        ("zoom", {"factor": "big"}, rpc.INVALID_PARAMS),
        ("orbit", {"azimuth": 10, "spin": 1}, rpc.INVALID_PARAMS),
        ("set_colormap", {"name": "no-such-map"}, rpc.INVALID_PARAMS),
        ("set_mode", {"mode": "xray"}, rpc.INVALID_PARAMS),
        ("set_roi", {"roi": [0, 0, 0, 1, 1]}, rpc.INVALID_PARAMS),
        ("set_roi", {"roi": [5, 0, 0, 1, 1, 1]}, rpc.INVALID_PARAMS),
        ("set_resolution", {"width": 5, "height": 100}, rpc.INVALID_PARAMS),
        ("set_resolution", {"width": 100.5, "height": 100}, rpc.INVALID_PARAMS),
        ("set_show_bricks", {"enabled": "yes"}, rpc.INVALID_PARAMS),
        ("set_camera", {"eye": [1, 2]}, rpc.INVALID_PARAMS),
        ("set_camera", {"eye": [24, 24, 24], "target": [24, 24, 24]}, rpc.INVALID_PARAMS),
        ("get_image", {"format": "gif"}, rpc.INVALID_PARAMS),
        ("get_status", [1, 2], rpc.INVALID_PARAMS),
        ("orbit", {"azimuth": 1, "interactive": "yes"}, rpc.INVALID_PARAMS),
        ("set_opacity_ramp", {"points": [[0.5, 1]]}, rpc.INVALID_PARAMS),
        ("set_opacity_ramp", {"points": [[0.6, 1], [0.2, 1]]}, rpc.INVALID_PARAMS),
        ("set_opacity_ramp", {"points": "steep"}, rpc.INVALID_PARAMS),
    ],
)
def test_rpc_errors(session: Session, method: str, params: Any, code: int) -> None:
    with pytest.raises(RpcFailure) as failure:
        session.rpc(method, params)
    assert failure.value.code == code
    assert failure.value.message.startswith(method) or code == rpc.METHOD_NOT_FOUND


def test_rpc_protocol_errors_and_batches(session: Session) -> None:
    async def script(ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.send_str("{not json")
        parse = await answer(ws, None)
        assert parse["error"]["code"] == rpc.PARSE_ERROR
        await ws.send_str(json.dumps({"id": 7, "method": "get_status"}))
        invalid = await answer(ws, 7)
        assert invalid["error"]["code"] == rpc.INVALID_REQUEST
        await ws.send_str(json.dumps([
            {"jsonrpc": "2.0", "id": "a", "method": "get_camera"},
            {"jsonrpc": "2.0", "method": "get_status"},
            {"jsonrpc": "2.0", "id": "b", "method": "nope"},
        ]))
        batch = await answer(ws, None)
        assert [item["id"] for item in batch] == ["a", "b"]
        assert "eye" in batch[0]["result"]
        assert batch[1]["error"]["code"] == rpc.METHOD_NOT_FOUND
        await ws.send_str("[]")
        empty = await answer(ws, None)
        assert empty["error"]["code"] == rpc.INVALID_REQUEST

    ws_session(session, script)


def test_scene_lut_spreads_over_the_domain() -> None:
    table = [(0, 0, 0, 0), (1, 1, 1, 1)]
    lut = server.scene_lut(table, (0.5, 1.0))
    assert lut.shape == (256, 4)
    assert lut[:128].max() == 0.0
    assert lut[255].tolist() == [1.0, 1.0, 1.0, 1.0]
    assert 0.4 < lut[192, 3] < 0.6


def test_default_brick_count() -> None:
    assert server.default_brick_count((256, 256, 256)) == 32
    assert server.default_brick_count((48, 48, 48)) == 8
    assert server.default_brick_count((8, 8, 8)) == 1


def test_unknown_agent_token_is_refused(session: Session, tmp_path: Path) -> None:
    import socket

    from hpcrun.node.viewer import protocol, rendezvous

    info = rendezvous.read(session.rendezvous, "880")
    assert info is not None
    with socket.create_connection((info.host, info.agent_port), timeout=10) as sock:
        hello = protocol.Hello("forged", "evil", 0, "1", 1)
        protocol.send_message(sock, hello.to_header())
        reply = protocol.recv_message(sock)
        assert reply.type == "bye" and "token" in reply.header["reason"]
    session.viewer.wait_for("refused agent evil")
    assert session.status()["agents"] == 2
