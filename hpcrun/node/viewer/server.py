"""The viewer process (rank 0): scene, agent port, web page and API, until SIGTERM.

It loads the scene (generating missing data), opens the TCP port agents join on and the
HTTP port people use (aiohttp: the page, `/api/status`, images, the JSON-RPC websocket
`/ws`), publishes both in the rendezvous file, prints IndeX's readiness line, and starts
the node's own render agent as a child. Frames are the business of `frames.Viewer`, the
API that of `rpc.py`; this module wires them to the network and to the process's life:
SIGTERM (scancel, the job shrinking away) tells every agent to exit, removes the
rendezvous file and ends the own agent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import WSCloseCode, WSMsgType, web

from hpcrun.errors import HpcrunError
from hpcrun.node.viewer import bricks as brick_grid
from hpcrun.node.viewer import colormaps, pod, protocol, rendezvous
from hpcrun.node.viewer.frames import Frame, LoadedScene, Viewer, encode_image
from hpcrun.node.viewer.jit import KernelLoader
from hpcrun.node.viewer.options import (
    INTERNAL_AGENT_FLAG,
    LaunchOptions,
    TaskIdentity,
    http_bind_address,
    is_loopback,
    log_unused_options,
    read_auth,
)
from hpcrun.node.viewer.rpc import call_text

log = logging.getLogger("hpcrun.node.viewer.server")

STATIC_DIR = Path(__file__).with_name("static")


# ---------------------------------------------------------------------------------------
# Opening the scene


def default_brick_count(shape_zyx: tuple[int, int, int]) -> int:
    """32 bricks for real volumes (enough to balance a dozen agents, few enough that
    compositing stays cheap), fewer for toy volumes whose bricks would be slivers."""
    voxels = shape_zyx[0] * shape_zyx[1] * shape_zyx[2]
    if voxels >= 32 * 48**3:
        return 32
    if voxels >= 8 * 16**3:
        return 8
    return 1


def scene_lut(table: Iterable[tuple[float, float, float, float]],
              domain: tuple[float, float]) -> npt.NDArray[np.float32]:
    """A scene colormap as a 256-entry LUT over [0, 1]: its entries spread over `domain`,
    clamped to the end entries outside it (IndeX's clamp_to_edge)."""
    entries = np.asarray(list(table), dtype=np.float64)
    low, high = domain
    values = np.linspace(0.0, 1.0, colormaps.LUT_SIZE)
    position = np.clip((values - low) / (high - low), 0.0, 1.0) * (len(entries) - 1)
    out = np.empty((colormaps.LUT_SIZE, 4), dtype=np.float32)
    for channel in range(4):
        out[:, channel] = np.interp(position, np.arange(len(entries)), entries[:, channel])
    return out


def open_scene(names: tuple[str, ...], brick_count: int | None) -> LoadedScene:
    """Load the first scene with a volume (generating missing data), cut it into bricks
    and register its colormaps. Without --add the supernova sample scene is shown."""
    from hpcrun.scenes import SceneError, ensure_data, load_scene, load_volume, resolve_scene

    candidates = names or ("supernova",)
    if not names:
        log.info("no --add scene given; showing the supernova sample scene")
    errors: list[str] = []
    for name in candidates:
        prj = resolve_scene(name).resolve()
        scene = load_scene(prj)
        if not scene.volumes:
            errors.append(f"{prj}: no volume the open renderer can show")
            continue
        ensure_data(scene, progress=lambda text: log.info("%s", text))
        volume = scene.volume()
        array = load_volume(volume)
        value_range = _value_range(array, volume.voxel_format)
        for cmap in scene.colormaps:
            colormaps.register(cmap.name, scene_lut(cmap.table, cmap.domain))
        colormap = volume.colormap if volume.colormap in colormaps.names() else (
            scene.colormaps[0].name if scene.colormaps else colormaps.DEFAULT)
        shape = (int(array.shape[0]), int(array.shape[1]), int(array.shape[2]))
        count = brick_count or default_brick_count(shape)
        try:
            bricks = tuple(brick_grid.split(shape, count))
        except ValueError as exc:
            raise HpcrunError(f"--bricks {count}: {exc}", "pick a smaller count") from None
        frame_points = visible_points(array, value_range, colormaps.lut(colormap))
        skipped = tuple(f"{s.name} ({s.type}): {s.reason}" for s in scene.skipped)
        skipped += tuple(f"{v.name}: only the first volume is shown"
                         for v in scene.volumes[1:])
        for line in skipped:
            log.info("not shown: %s", line)
        return LoadedScene(
            name=scene.name,
            description=scene.description,
            prj=prj,
            volume=volume.name,
            size_xyz=volume.size,
            voxel_format=volume.voxel_format,
            value_range=value_range,
            roi=scene.region_of_interest,
            bricks=bricks,
            colormap=colormap,
            skipped=skipped,
            frame_points=frame_points,
        )
    raise SceneError("; ".join(errors), "add a scene with a raw sparse_volume")


DIRECTIONS = tuple((x, y, z) for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)
                   if (x, y, z) > (0, 0, 0))
"""13 directions (axes, face and body diagonals): the extremes of a point cloud along them
(26 points) outline its convex hull well enough to frame it."""


def visible_points(array: npt.NDArray[Any], value_range: tuple[float, float],
                   table: npt.NDArray[np.float32], samples: int = 96, faint: float = 0.05
                   ) -> tuple[tuple[float, float, float], ...]:
    """Up to 26 points (x, y, z, world = voxel space) outlining the voxels the colormap
    `table` shows: opacity at least `faint` of its peak (a fainter haze does not count
    for framing). It looks at every k-th voxel (at most `samples` per axis: a few ms for
    any volume), so this frames the data; nothing relies on it as a bound. () when the
    colormap shows nothing."""
    stride = max(1, math.ceil(max(array.shape) / samples))
    coarse = np.asarray(array[::stride, ::stride, ::stride], dtype=np.float32)
    low, high = value_range
    index = np.clip((coarse - low) / ((high - low) or 1.0) * 255.0 + 0.5, 0, 255)
    alpha = table[:, 3]
    peak = float(alpha.max(initial=0.0))
    if peak <= 0.0:
        return ()
    z, y, x = np.nonzero(alpha[index.astype(np.intp)] >= faint * peak)
    if x.size == 0:
        return ()
    cloud = (np.stack([x, y, z], axis=1).astype(np.float64) + 0.5) * stride
    cloud = np.minimum(cloud, np.array(array.shape[::-1], dtype=np.float64))
    points: list[tuple[float, float, float]] = []
    for direction in DIRECTIONS:
        along = cloud @ np.asarray(direction, dtype=np.float64)
        for pick in (int(np.argmin(along)), int(np.argmax(along))):
            point = (float(cloud[pick, 0]), float(cloud[pick, 1]), float(cloud[pick, 2]))
            if point not in points:
                points.append(point)
    return tuple(points)


def _value_range(array: npt.NDArray[Any], voxel_format: str) -> tuple[float, float]:
    """uint8 maps 0..255 to [0, 1] (IndeX's convention); wider types use the data's range."""
    if voxel_format == "uint8":
        return (0.0, 255.0)
    low, high = float(np.nanmin(array)), float(np.nanmax(array))
    return (low, high) if high > low else (low, low + 1.0)


# ---------------------------------------------------------------------------------------
# HTTP


VIEWER_KEY = web.AppKey("viewer", Viewer)
SOCKETS_KEY = web.AppKey("websockets", set[web.WebSocketResponse])


def basic_auth(user: str, password: str) -> Any:
    """Middleware: HTTP basic auth on every route (the websocket handshake included)."""
    expected = f"{user}:{password}".encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                given = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                given = b""
            if hmac.compare_digest(given, expected):
                response: web.StreamResponse = await handler(request)
                return response
        raise web.HTTPUnauthorized(
            text="authentication required\n",
            headers={"WWW-Authenticate": 'Basic realm="hpcrun IndeX viewer", charset="UTF-8"'},
        )

    return middleware


class FrameStream:
    """Pushes frames to one websocket client, newest only: a slow client skips frames
    instead of queueing them (and never slows the render loop)."""

    def __init__(self, ws: web.WebSocketResponse, send_lock: asyncio.Lock) -> None:
        self.ws = ws
        self.lock = send_lock
        self.pending: Frame | None = None
        self.wakeup = asyncio.Event()

    def offer(self, frame: Frame) -> None:
        self.pending = frame
        self.wakeup.set()

    async def run(self, viewer: Viewer) -> None:
        while not self.ws.closed:
            await self.wakeup.wait()
            self.wakeup.clear()
            frame, self.pending = self.pending, None
            if frame is None:
                continue
            note = {"jsonrpc": "2.0", "method": "frame", "params": viewer.frame_info(frame)}
            try:
                async with self.lock:
                    await self.ws.send_str(json.dumps(note))
                    await self.ws.send_bytes(frame.jpeg)
            except (ConnectionError, RuntimeError):
                return


async def _page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def _api_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[VIEWER_KEY].status())


async def _api_rpc(request: web.Request) -> web.Response:
    """JSON-RPC over plain HTTP POST, for curl and scripts without a websocket client."""
    answer = await call_text(request.app[VIEWER_KEY], await request.text())
    if answer is None:
        return web.Response(status=204)
    return web.Response(text=answer, content_type="application/json")


async def _api_image(request: web.Request) -> web.Response:
    viewer = request.app[VIEWER_KEY]
    image_format = "png" if request.path.endswith(".png") else "jpeg"
    try:
        frame = await viewer.current_frame()
    except HpcrunError as exc:
        raise web.HTTPServiceUnavailable(text=exc.message + "\n") from None
    if image_format == "jpeg":
        data = frame.jpeg
    else:
        data = await asyncio.get_running_loop().run_in_executor(
            None, encode_image, frame.rgb, "png")
    return web.Response(body=data, content_type=f"image/{image_format}",
                        headers={"Cache-Control": "no-store", "X-Frame": str(frame.number)})


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    viewer = request.app[VIEWER_KEY]
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=1 << 20)
    await ws.prepare(request)
    lock = asyncio.Lock()
    stream = FrameStream(ws, lock)
    viewer.clients.add(stream)
    request.app[SOCKETS_KEY].add(ws)
    pusher = asyncio.create_task(stream.run(viewer))
    if viewer.latest is not None:
        stream.offer(viewer.latest)
    viewer.request_frame()
    try:
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            answer = await call_text(viewer, message.data)
            if answer is not None:
                async with lock:
                    await ws.send_str(answer)
    finally:
        viewer.clients.discard(stream)
        request.app[SOCKETS_KEY].discard(ws)
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pusher
    return ws


def build_app(viewer: Viewer, credentials: tuple[str, str] | None) -> web.Application:
    middlewares = [basic_auth(*credentials)] if credentials else []
    app = web.Application(middlewares=middlewares)
    app[VIEWER_KEY] = viewer
    app[SOCKETS_KEY] = set()
    app.router.add_get("/", _page)
    app.router.add_get("/index.html", _page)
    app.router.add_static("/static/", STATIC_DIR, show_index=False)
    app.router.add_get("/ws", _websocket)
    app.router.add_get("/api/status", _api_status)
    app.router.add_post("/api/rpc", _api_rpc)
    app.router.add_get("/api/image.png", _api_image)
    app.router.add_get("/api/image.jpg", _api_image)
    app.on_shutdown.append(_close_websockets)
    return app


async def _close_websockets(app: web.Application) -> None:
    """Pages learn at once that the viewer is gone (and shutdown does not wait on them)."""
    sockets: set[web.WebSocketResponse] = app[SOCKETS_KEY]
    for ws in list(sockets):
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"viewer stopping")


# ---------------------------------------------------------------------------------------
# The process


def advertised_host() -> str:
    """The address agents and people should use for this node.

    $NVINDEX_OPEN_HOST wins; otherwise the address of the interface that routes off
    this host (no packet is sent: connecting a UDP socket only picks the route), then the
    host name's address, then loopback. The agent port listens on every interface (agents
    prove themselves with the rendezvous token); the HTTP port where `http_bind_address`
    says.
    """
    override = os.environ.get("NVINDEX_OPEN_HOST")
    if override:
        return override
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("10.255.255.255", 1))
        address = str(probe.getsockname()[0])
        if address and not address.startswith(("127.", "0.")):
            return address
    with contextlib.suppress(OSError):
        address = socket.gethostbyname(socket.gethostname())
        if not address.startswith("127."):
            return address
    return "127.0.0.1"


def _spawn_own_agent(options: LaunchOptions, identity: TaskIdentity, directory: Path
                     ) -> subprocess.Popen[bytes]:
    """Rank 0's own render agent, so the viewer's node renders too (as in IndeX)."""
    argv = [sys.executable, "-m", "hpcrun.node.viewer.launcher", INTERNAL_AGENT_FLAG,
            "--rendezvous", str(directory)]
    argv += ["-v"] * options.verbose
    if options.log_timestamp:
        argv += ["-dice::log_timestamp", "yes"]
    env = {**os.environ, "SLURM_JOB_ID": identity.job_id, "SLURM_PROCID": str(identity.rank),
           "SLURMD_NODENAME": identity.node}
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)


async def _serve(options: LaunchOptions, identity: TaskIdentity, scene: LoadedScene,
                 credentials: tuple[str, str] | None, directory: Path, http_host: str) -> int:
    viewer = Viewer(scene, identity.job_id)
    viewer.token = pod.token() or viewer.token  # a pod's agents know the release's token
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    agent_server = await asyncio.start_server(
        viewer.handle_agent, host="0.0.0.0", port=pod.agent_port()
    )
    agent_port = int(agent_server.sockets[0].getsockname()[1])
    runner = web.AppRunner(build_app(viewer, credentials), handle_signals=False,
                           access_log=logging.getLogger("aiohttp.access"),
                           shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host=http_host, port=options.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        agent_server.close()
        await runner.cleanup()
        raise HpcrunError(
            f"the viewer cannot listen on port {options.port}: {exc.strerror}",
            "another viewer may run on this node; pick another one with --port N",
        ) from None
    http_port = options.port or int(runner.addresses[0][1])
    host = advertised_host()
    # A viewer bound to one address is reached there (loopback: this host only).
    url_host = host if http_host in ("0.0.0.0", "::") else http_host
    viewer.url = f"http://{url_host}:{http_port}"
    if is_loopback(http_host) and credentials is None:
        log.info("the page listens on %s only (no --auth); pass --auth USER:PASSWORD_FILE "
                 "to serve other hosts", http_host)
    info = rendezvous.Rendezvous(identity.job_id, host, agent_port, http_port, os.getpid(),
                                 viewer.token)
    tasks = [asyncio.create_task(viewer.render_loop()), asyncio.create_task(viewer.heartbeat())]
    try:
        rendezvous.write(directory, info)
        log.info("Application layer viewer server is running at %s", viewer.url)
        log.info("scene %s: %s %dx%dx%d %s in %d bricks; job %s, node %s",
                 scene.name, scene.volume, *scene.size_xyz, scene.voxel_format,
                 len(scene.bricks), identity.job_id, identity.node)
        _warm_compositor()
        await stop.wait()
        log.info("stopping: %d agents told to exit", len(viewer.agents))
    finally:
        viewer.stopping = True
        rendezvous.remove(directory, info)
        for link in list(viewer.agents.values()):
            link.send(protocol.bye("the viewer is stopping"))
            viewer.drop(link, "viewer stopping")
        agent_server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.shutdown()
        await runner.cleanup()
    return 0


def _end_child(child: subprocess.Popen[bytes]) -> None:
    """The own agent exits on the viewer's bye; SIGTERM/SIGKILL only if it does not."""
    for action in (None, child.terminate, child.kill):
        if action is not None:
            with contextlib.suppress(ProcessLookupError):
                action()
        try:
            child.wait(timeout=3.0)
            return
        except subprocess.TimeoutExpired:
            continue


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _warm_compositor() -> KernelLoader:
    """Load the compositor (numba, lean: `jit`) in a thread once the viewer is ready, so
    neither the readiness line nor, usually, the first frame waits for it."""
    return KernelLoader("hpcrun.node.viewer.compositor").start()


def run_viewer(options: LaunchOptions, identity: TaskIdentity) -> int:
    """Rank 0 without -a: load the scene, serve until SIGTERM/SIGINT; the exit status.

    The node's own agent starts first, so its interpreter and numba load while the scene
    does; it waits for the rendezvous file like any other agent."""
    if options.verbose:
        log_unused_options(options, log)
    http_host = http_bind_address(options)  # a refused exposure fails before anything starts
    credentials = read_auth(options.auth) if options.auth else None
    directory = rendezvous.rendezvous_dir(options.rendezvous)
    signal.signal(signal.SIGTERM, _exit_on_signal)  # until the loop takes over: end the child
    child = _spawn_own_agent(options, identity, directory)
    try:
        scene = open_scene(options.scenes, options.bricks)
        return asyncio.run(_serve(options, identity, scene, credentials, directory, http_host))
    finally:
        _end_child(child)
