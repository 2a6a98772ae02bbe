"""The viewer's engine: the shared view, the connected render agents, and the frames.

A frame is rendered when the view changes, when agents come or go, and every couple of
seconds while a page is connected: the render loop sends one `render` request per agent,
collects the partial image of every brick, and hands them to the compositor and the JPEG
encoder in a worker thread, so the asyncio loop keeps serving pages meanwhile. Losing an
agent (connection dropped, node removed by `scontrol update NumNodes=`, no answer within
the frame timeout) reassigns its bricks to the others within the same frame: the viewer
keeps serving as long as one agent is left. Bricks move by measured cost (the seconds
each brick took in recent frames), so a new agent takes load off the busiest ones and
empty bricks count for little. HTTP and JSON-RPC live elsewhere (`server.py`, `rpc.py`);
this module knows only agents, view state and images.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import logging
import math
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image

from hpcrun.errors import HpcrunError
from hpcrun.node.viewer import bricks as brick_grid
from hpcrun.node.viewer import colormaps, protocol
from hpcrun.node.viewer.camera import Camera, View
from hpcrun.node.viewer.partial import Partial

log = logging.getLogger("hpcrun.node.viewer.frames")

HELLO_TIMEOUT_S = 10.0
HEARTBEAT_S = 2.0
"""A page that is connected gets a fresh frame at least this often."""
FPS_WINDOW_S = 5.0
DEFAULT_SIZE = (512, 512)
JPEG_QUALITY = 85
IMAGE_WAIT_S = 60.0
SETTLE_S = 0.15
"""A camera that has not moved for this long is still: its frame is rendered in full."""
FRAME_BUDGET_MS = 70.0
"""While the camera moves, frames are rendered at the finest level predicted to take no
longer than this (render + composite + encode): with the page's round trip it holds a
drag under ~100 ms a frame on a loaded 2-core machine ($NVINDEX_OPEN_FRAME_BUDGET_MS)."""
LEVELS = (1.0, 1.5, 2.0, 3.0, 4.0)
"""Levels of detail: the image size divided by this (1: full resolution)."""
STALE_FRAMES = 30
"""A level's measured frame time older than this many frames is predicted afresh."""
BACKGROUND = (0.0, 0.0, 0.0)
PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4",
    "#f032e6", "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324",
    "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075",
)
"""Agent colours for the "show bricks" view: distinct, and none of them black."""


def _env_seconds(name: str, default: float) -> float:
    try:
        return max(0.1, float(os.environ.get(name, default)))
    except ValueError:
        return default


# ---------------------------------------------------------------------------------------
# The scene as the viewer holds it


@dataclass(frozen=True)
class LoadedScene:
    """What the viewer needs of a scene: its volume's geometry and value range, the
    bricks it is cut into, and the colormap to start with."""

    name: str
    description: str
    prj: Path
    volume: str
    size_xyz: tuple[int, int, int]
    voxel_format: str
    value_range: tuple[float, float]
    roi: tuple[float, float, float, float, float, float]
    bricks: tuple[brick_grid.Brick, ...]
    colormap: str
    skipped: tuple[str, ...] = ()
    frame_points: tuple[tuple[float, float, float], ...] = ()
    """Points outlining what the default camera frames (the voxels the colormap shows);
    (): the whole volume."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "path": str(self.prj),
            "volume": self.volume,
            "size": list(self.size_xyz),
            "voxel_format": self.voxel_format,
            "value_range": list(self.value_range),
            "region_of_interest": list(self.roi),
            "bricks": len(self.bricks),
            "skipped": list(self.skipped),
        }


# ---------------------------------------------------------------------------------------
# Agents and frames


@dataclass
class AgentLink:
    """One connected render agent, as the viewer sees it."""

    id: int
    hello: protocol.Hello
    writer: asyncio.StreamWriter
    color: str
    bricks: frozenset[int] = frozenset()
    joined: float = field(default_factory=time.monotonic)
    last_ms: float | None = None
    frames: int = 0
    last_frame: int = 0
    closed: bool = False
    threads_sent: int | None = None

    def describe(self) -> str:
        return f"{self.hello.node} (job {self.hello.job_id}, rank {self.hello.rank})"

    def send(self, header: dict[str, Any], payload: bytes = b"") -> bool:
        """Queue a message without waiting (requests are small; a stuck agent is caught
        by the frame timeout, not by a blocked write). False if the link is gone."""
        if self.closed or self.writer.is_closing():
            return False
        try:
            self.writer.write(protocol.encode(header, payload))
        except (ConnectionError, RuntimeError):
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.hello.node,
            "rank": self.hello.rank,
            "job_id": self.hello.job_id,
            "bricks": len(self.bricks),
            "last_ms": None if self.last_ms is None else round(self.last_ms, 1),
            "pid": self.hello.pid,
            "host": self.hello.host,
            "threads": self.hello.threads,
            "color": self.color,
            "frames": self.frames,
            "last_frame": self.last_frame,
            "joined_s_ago": round(time.monotonic() - self.joined, 1),
        }


@dataclass
class FrameJob:
    """A frame being rendered: who owes which brick, and what has come back."""

    frame: int
    view: View
    lut: npt.NDArray[np.float32]
    owners: dict[int, int]
    received: dict[int, Partial] = field(default_factory=dict)
    deadline: dict[int, float] = field(default_factory=dict)
    sent_at: dict[int, float] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    level: float = 1.0
    version: int = 0

    def missing(self) -> list[int]:
        return [b for b in self.owners if b not in self.received]


@dataclass(frozen=True)
class Frame:
    """A finished frame, as served to pages and scripts."""

    number: int
    version: int
    rgb: npt.NDArray[np.uint8]
    jpeg: bytes
    finished: float
    render_ms: float
    composite_ms: float
    encode_ms: float
    agents: int
    nodes: int
    level: float = 1.0
    """The level of detail: the view's size divided by this (1.0: full resolution)."""

    @property
    def full(self) -> bool:
        return self.level == 1.0

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def encode_image(rgb: npt.NDArray[np.uint8], image_format: str, quality: int = JPEG_QUALITY
                 ) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(rgb, mode="RGB")
    if image_format == "png":
        image.save(buffer, format="PNG", compress_level=3)
    else:
        image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class FrameSink(Protocol):
    """Where finished frames go (a page's websocket); `offer` must not block."""

    def offer(self, frame: Frame) -> None: ...


class Viewer:
    """The shared view state, the connected agents and the render loop.

    There is one view for everyone (as in IndeX): every page and script sees and steers
    the same camera. `version` counts view changes; a frame remembers the version it
    shows, so `get_image` can wait for the first frame that includes a change.
    """

    def __init__(self, scene: LoadedScene, job_id: str) -> None:
        self.scene = scene
        self.job_id = job_id
        self.token = secrets.token_urlsafe(32)
        self.url = ""
        self.bricks = {b.id: b for b in scene.bricks}
        self.state = View(self.home_camera(DEFAULT_SIZE[0] / DEFAULT_SIZE[1]), *DEFAULT_SIZE,
                          scene.colormap, "composite", scene.roi)
        self.show_bricks = False
        self.version = 0
        self.agents: dict[int, AgentLink] = {}
        self.owners: dict[int, int] = {}
        self.costs: dict[int, float] = {}
        self.latest: Frame | None = None
        self.clients: set[FrameSink] = set()
        self.frame_timeout_s = _env_seconds("NVINDEX_OPEN_FRAME_TIMEOUT", 10.0)
        self.first_frame_timeout_s = _env_seconds("NVINDEX_OPEN_FIRST_FRAME_TIMEOUT", 90.0)
        self.stopping = False
        self.started = time.monotonic()
        self._next_agent = 1
        self._frame_number = 0
        self._job: FrameJob | None = None
        self._agents_changed = False
        self._frames_since_balance = 0
        self._frame_times: deque[float] = deque(maxlen=64)
        self._dirty = asyncio.Event()
        self._published = asyncio.Condition()
        self.budget_ms = _env_seconds("NVINDEX_OPEN_FRAME_BUDGET_MS", FRAME_BUDGET_MS)
        self.moved_at = -math.inf
        self.level_ms: dict[float, float] = {}
        self.level_frame: dict[float, int] = {}
        self.superseded = 0

    def home_camera(self, aspect: float | None = None) -> Camera:
        """The default camera: the scene's visible part spanning most of the image."""
        if aspect is None:
            aspect = self.state.width / self.state.height
        return Camera.default_for(self.scene.size_xyz, points=self.scene.frame_points,
                                  aspect=aspect)

    # -- view state ------------------------------------------------------------------------

    def change(self, interactive: bool = False, **changes: Any) -> int:
        """Apply view changes (validated by View itself: ValueError if one is invalid);
        returns the new version. Any call makes a new version, even with equal values, so
        a script can always ask for a fresh frame.

        `interactive` (a page dragging the camera): frames are previews at the level the
        frame budget allows until the camera has been still for SETTLE_S or a change
        that is not interactive arrives (the page sends one when the button is released),
        and a full-resolution frame still being rendered for an older camera is
        abandoned."""
        show_bricks = bool(changes.pop("show_bricks", self.show_bricks))
        self.state = self.state.with_(**changes)
        self.show_bricks = show_bricks
        self.version += 1
        if interactive:
            self.moved_at = time.monotonic()
            if self._job is not None and self._job.level == 1.0:
                self._job.changed.set()
        else:  # a deliberate change (a script, the page's button release): render in full
            self.moved_at = -math.inf
            if self._job is not None and self._job.level != 1.0:
                self._job.changed.set()  # no use finishing a preview now
        self._dirty.set()
        return self.version

    def moving(self, now: float | None = None) -> bool:
        """Whether an interactive camera change came within the last SETTLE_S."""
        return (time.monotonic() if now is None else now) - self.moved_at < SETTLE_S

    def pick_level(self) -> float:
        """The finest level whose predicted frame time fits the budget (the coarsest if
        none does). A level measured within the last STALE_FRAMES frames predicts itself;
        any other is predicted from the level measured last, by pixel count (fixed costs
        do not scale, so one frame at the new level corrects the guess). Old figures are
        not trusted: the machine may have been busier then."""
        def predicted(level: float) -> float:
            if not self.level_ms:
                return math.inf if level == 1.0 else 0.0
            if self._frame_number - self.level_frame.get(level, -STALE_FRAMES) < STALE_FRAMES:
                return self.level_ms[level]
            last = max(self.level_frame, key=lambda known: self.level_frame[known])
            return self.level_ms[last] * (last / level) ** 2
        for level in LEVELS[1:]:
            if predicted(level) <= self.budget_ms:
                return level
        return LEVELS[-1]

    def _record_level(self, level: float, ms: float) -> None:
        old = self.level_ms.get(level)
        fresh = self._frame_number - self.level_frame.get(level, -STALE_FRAMES) < STALE_FRAMES
        self.level_ms[level] = 0.5 * old + 0.5 * ms if old is not None and fresh else ms
        self.level_frame[level] = self._frame_number

    def request_frame(self) -> None:
        self._dirty.set()

    # -- agents ----------------------------------------------------------------------------

    async def handle_agent(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        """One agent connection from hello to goodbye (an asyncio server callback)."""
        peer = writer.get_extra_info("peername")
        try:
            message = await asyncio.wait_for(protocol.read_message(reader), HELLO_TIMEOUT_S)
            hello = protocol.Hello.from_message(message)
        except (TimeoutError, protocol.ProtocolError, protocol.ConnectionClosed) as exc:
            log.warning("refused an agent connection from %s: %s", peer, exc or "no hello")
            writer.close()
            return
        refusal = None
        if not hmac.compare_digest(hello.token.encode(), self.token.encode()):
            refusal = "wrong token (is it an agent of another viewer?)"
        elif hello.version != protocol.PROTOCOL_VERSION:
            refusal = f"protocol version {hello.version}, the viewer speaks " \
                      f"{protocol.PROTOCOL_VERSION}"
        elif self.stopping:
            refusal = "the viewer is stopping"
        if refusal:
            log.warning("refused agent %s from %s: %s", hello.node, peer, refusal)
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(protocol.encode(protocol.bye(refusal)))
            writer.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = AgentLink(self._next_agent, hello, writer,
                         PALETTE[(self._next_agent - 1) % len(PALETTE)])
        self._next_agent += 1
        self.agents[link.id] = link
        self._agents_changed = True
        log.info("agent joined: %s, %d agents", link.describe(), len(self.agents))
        self._dirty.set()
        reason = "connection closed"
        try:
            while True:
                message = await protocol.read_message(reader)
                if message.type == "partials":
                    self._accept(link, protocol.Partials.from_message(message))
                elif message.type == "error":
                    reason = f"agent error: {message.header.get('message')}"
                    break
                elif message.type == "bye":
                    reason = f"agent said bye: {message.header.get('reason')}"
                    break
                else:
                    log.debug("ignored %r message from %s", message.type, link.describe())
        except protocol.ConnectionClosed:
            pass
        except (protocol.ProtocolError, ValueError) as exc:
            reason = f"protocol error: {exc}"
        finally:
            self.drop(link, reason)

    def drop(self, link: AgentLink, reason: str) -> None:
        """Forget an agent (idempotent); its bricks go to the others in the next step."""
        if link.closed:
            return
        link.closed = True
        self.agents.pop(link.id, None)
        with contextlib.suppress(ConnectionError, RuntimeError):
            link.writer.close()
        if self.stopping:
            return
        self._agents_changed = True
        log.info("agent left: %s: %s, %d agents", link.describe(), reason, len(self.agents))
        if self._job is not None:
            self._job.changed.set()
        self._dirty.set()

    def thread_share(self, link: AgentLink) -> int:
        """The render threads an agent should use: its own, split evenly among the agents
        on its host (the local cluster's 4 agents would otherwise run 2 threads each on
        a 2-core machine, and oversubscribed numba threads only fight each other)."""
        same = sum(1 for a in self.agents.values() if a.hello.host == link.hello.host)
        return max(1, link.hello.threads // max(1, same))

    def _send_assignment(self, link: AgentLink, bricks: frozenset[int]) -> None:
        link.bricks = bricks
        link.threads_sent = self.thread_share(link)
        message = protocol.Assign(
            scene=str(self.scene.prj),
            volume=self.scene.volume,
            bricks=protocol.brick_specs([self.bricks[b] for b in sorted(bricks)]),
            value_range=self.scene.value_range,
            threads=link.threads_sent,
        )
        if not link.send(message.to_header()):
            self.drop(link, "connection lost while assigning bricks")

    def _balance(self, force: bool) -> None:
        """(Re)assign bricks to the agents by measured cost, moving as few as it can.

        Forced when agents came or went; otherwise adopted only if it lowers the busiest
        agent's load clearly (costs drift with the view: chasing every change would move
        bricks, and each move costs the new owner a brick load)."""
        if not self.agents:
            return
        alive = sorted(self.agents)
        previous = {b: a for b, a in self.owners.items() if a in self.agents}
        proposal = brick_grid.assign(sorted(self.bricks), alive, self.costs, previous)
        if not force and self._peak_load(proposal) > 0.85 * self._peak_load(previous):
            return
        moved = sum(1 for b, a in proposal.items() if previous.get(b) != a)
        self.owners = proposal
        for agent_id in alive:
            mine = frozenset(b for b, a in proposal.items() if a == agent_id)
            link = self.agents[agent_id]
            if mine != link.bricks or link.threads_sent != self.thread_share(link):
                self._send_assignment(link, mine)
        if not previous:
            log.info("%d bricks assigned to %d agent(s)", len(self.bricks), len(alive))
        elif moved:
            log.info("bricks rebalanced over %d agents: %d of %d moved", len(alive), moved,
                     len(self.bricks))
        self._agents_changed = False
        self._frames_since_balance = 0

    def _peak_load(self, owners: Mapping[int, int]) -> float:
        fallback = (sum(self.costs.values()) / len(self.costs)) if self.costs else 1.0
        loads: dict[int, float] = {}
        for brick, agent in owners.items():
            loads[agent] = loads.get(agent, 0.0) + self.costs.get(brick, fallback)
        return max(loads.values(), default=math.inf)

    def _accept(self, link: AgentLink, partials: protocol.Partials) -> None:
        job = self._job
        if job is None or partials.frame != job.frame:
            return  # a late answer to a frame that was finished without it
        for blob in partials.blobs:
            partial = Partial.from_bytes(blob)
            brick = partial.brick_id
            if job.owners.get(brick) == link.id and brick not in job.received:
                job.received[brick] = partial
                old = self.costs.get(brick)
                seconds = max(partial.seconds, 1e-5)
                self.costs[brick] = seconds if old is None else 0.5 * old + 0.5 * seconds
        now = time.monotonic()
        link.last_ms = (now - job.sent_at.get(link.id, now)) * 1000.0
        link.frames += 1
        link.last_frame = job.frame
        job.changed.set()

    def _request(self, job: FrameJob, link: AgentLink, only: list[int] | None) -> None:
        request = protocol.Render(job.frame, job.view.to_json(), job.lut.tobytes(),
                                  None if only is None else tuple(only))
        now = time.monotonic()
        if link.frames and link.last_ms is not None:
            # A loaded node may be slow without being lost: allow 4x its last answer.
            timeout = max(self.frame_timeout_s, 4.0 * link.last_ms / 1000.0)
        else:
            timeout = self.first_frame_timeout_s  # loads bricks, maybe compiles kernels
        job.sent_at[link.id] = now
        job.deadline[link.id] = now + timeout
        if not link.send(request.to_header(), request.lut):
            self.drop(link, "connection lost while requesting a frame")

    # -- the render loop -------------------------------------------------------------------

    async def render_loop(self) -> None:
        """Render whenever something changed; changes made meanwhile coalesce into the
        next frame, so a page dragging the camera never builds a backlog."""
        while True:
            wait_s = None
            latest = self.latest
            if latest is not None and not latest.full and self.agents:
                wait_s = max(0.0, self.moved_at + SETTLE_S - time.monotonic())
            if wait_s is None:
                await self._dirty.wait()
            else:  # a preview is showing: refine once the camera stays still
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._dirty.wait(), wait_s + 0.001)
            self._dirty.clear()
            if not self.agents:
                continue
            try:
                await self._render_frame()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("frame %d failed", self._frame_number)
                await asyncio.sleep(0.5)
                self._dirty.set()

    async def heartbeat(self) -> None:
        """Keep connected pages updating: a fresh frame every HEARTBEAT_S at least."""
        while True:
            await asyncio.sleep(HEARTBEAT_S / 4)
            last = self.latest.finished if self.latest else 0.0
            if self.clients and self._job is None and time.monotonic() - last >= HEARTBEAT_S:
                self._dirty.set()

    async def _render_frame(self) -> None:
        self._frames_since_balance += 1
        self._balance(force=self._agents_changed or not self.owners)
        if self._frames_since_balance >= 5:
            self._balance(force=False)
        if not self.agents:
            return
        version, view = self.version, self.state
        level = self.pick_level() if self.moving() else 1.0
        if level != 1.0:
            view = view.with_(width=max(1, round(view.width / level)),
                              height=max(1, round(view.height / level)))
        lut = colormaps.lut(view.colormap)
        self._frame_number += 1
        job = FrameJob(self._frame_number, view, lut, dict(self.owners), level=level,
                       version=version)
        self._job = job
        started = time.perf_counter()
        try:
            for agent_id in sorted(set(job.owners.values())):
                if agent_id in self.agents:
                    self._request(job, self.agents[agent_id], None)
            if not await self._collect(job):
                return
        finally:
            self._job = None
        render_ms = (time.perf_counter() - started) * 1000.0
        contributors = {job.owners[b] for b in job.received}
        tint = None
        if self.show_bricks:
            tint = {b: _rgb(self._color_of(a)) for b, a in job.owners.items()}
        nodes = len({self.agents[a].hello.node for a in contributors if a in self.agents})
        frame = await asyncio.get_running_loop().run_in_executor(
            None, self._compose, job, version, tint, render_ms, len(contributors), nodes
        )
        self._record_level(level, (time.perf_counter() - started) * 1000.0)
        await self._publish(frame)

    def _color_of(self, agent_id: int) -> str:
        link = self.agents.get(agent_id)
        return link.color if link else PALETTE[(agent_id - 1) % len(PALETTE)]

    async def _collect(self, job: FrameJob) -> bool:
        """Wait until every brick's partial is in, reassigning the bricks of agents that
        are lost or too slow. False when no agent is left to finish the frame."""
        while True:
            job.changed.clear()
            missing = job.missing()
            if not missing:
                return True
            if self.version != job.version and (job.level == 1.0) == self.moving():
                # The camera moved on while this full frame renders, or stopped while this
                # preview renders: drop it, so the frame that is wanted starts now (agents
                # drop it too when that request reaches them).
                self.superseded += 1
                log.debug("frame %d (level %g) superseded", job.frame, job.level)
                return False
            if not self.agents:
                log.warning("frame %d abandoned: no agents left", job.frame)
                return False
            now = time.monotonic()
            waiting_on = {job.owners[b] for b in missing}
            for agent_id in waiting_on:
                link = self.agents.get(agent_id)
                if link is not None and now > job.deadline.get(agent_id, now):
                    timeout = job.deadline[agent_id] - job.sent_at[agent_id]
                    self.drop(link, f"no answer to frame {job.frame} within {timeout:.0f} s")
            orphans = [b for b in missing if job.owners[b] not in self.agents]
            if orphans:
                self._reassign(job, orphans)
                continue
            pending = [job.deadline[a] for a in waiting_on if a in job.deadline]
            wait_s = max(0.01, min(pending, default=now + 1.0) - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.changed.wait(), wait_s)

    def _reassign(self, job: FrameJob, orphans: list[int]) -> None:
        """Give the bricks of lost agents to the others and ask for just those bricks."""
        if not self.agents:
            return
        self._balance(force=True)
        wanted: dict[int, list[int]] = {}
        for brick in job.missing():
            owner = self.owners[brick]
            if job.owners[brick] != owner or brick in orphans:
                job.owners[brick] = owner
                wanted.setdefault(owner, []).append(brick)
        for agent_id, bricks in sorted(wanted.items()):
            link = self.agents.get(agent_id)
            if link is not None:
                self._request(job, link, sorted(bricks))

    def _compose(self, job: FrameJob, version: int,
                 tint: dict[int, tuple[float, float, float]] | None,
                 render_ms: float, agents: int, nodes: int) -> Frame:
        """Composite and encode (in a worker thread: numpy and Pillow release the GIL)."""
        started = time.perf_counter()
        from hpcrun.node.viewer import jit  # numba: loaded off the way to ready, lean

        composite = jit.load("hpcrun.node.viewer.compositor").composite
        rgb = composite(job.received.values(), self.bricks, job.view, job.lut,
                        BACKGROUND, tint)
        composed = time.perf_counter()
        jpeg = encode_image(rgb, "jpeg")
        encoded = time.perf_counter()
        return Frame(job.frame, version, rgb, jpeg, time.monotonic(), render_ms,
                     (composed - started) * 1000.0, (encoded - composed) * 1000.0,
                     agents, nodes, job.level)

    async def _publish(self, frame: Frame) -> None:
        self.latest = frame
        self._frame_times.append(frame.finished)
        for stream in list(self.clients):
            stream.offer(frame)
        async with self._published:
            self._published.notify_all()

    async def current_frame(self, timeout_s: float = IMAGE_WAIT_S) -> Frame:
        """The first frame showing every view change made so far (waits for it)."""
        wanted = self.version

        def ready() -> bool:
            return self.latest is not None and self.latest.version >= wanted \
                and self.latest.full

        if not ready():
            if not self.agents:
                if self.latest is None:
                    raise HpcrunError("no frame yet: no render agent has joined")
                return self.latest  # nobody can render the change; the last image it is
            self._dirty.set()
            async with self._published:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._published.wait_for(ready), timeout_s)
        if self.latest is None:
            raise HpcrunError(f"no frame within {timeout_s:.0f} s")
        return self.latest

    # -- reporting -------------------------------------------------------------------------

    def fps(self) -> float:
        now = time.monotonic()
        recent = [t for t in self._frame_times if now - t <= FPS_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def status(self) -> dict[str, Any]:
        """What `hpcrun index status` reads (keys fixed by the shared contract)."""
        links = sorted(self.agents.values(), key=lambda a: a.id)
        latest = self.latest
        return {
            "job_id": self.job_id,
            "scene": self.scene.name,
            "agents": len(links),
            "nodes": sorted({a.hello.node for a in links}),
            "agent_list": [a.to_json() for a in links],
            "frame": latest.number if latest else 0,
            "fps": round(self.fps(), 2),
            "frame_agents": latest.agents if latest else 0,
            "url": self.url,
            "bricks": len(self.bricks),
            "clients": len(self.clients),
            "uptime_s": round(time.monotonic() - self.started, 1),
        }

    def frame_info(self, frame: Frame) -> dict[str, Any]:
        return {
            "frame": frame.number,
            "version": frame.version,
            "width": frame.width,
            "height": frame.height,
            "agents": len(self.agents),
            "nodes": len({a.hello.node for a in self.agents.values()}),
            "frame_agents": frame.agents,
            "fps": round(self.fps(), 2),
            "render_ms": round(frame.render_ms, 1),
            "level": frame.level,
            "full": frame.full,
            "view_width": self.state.width,
            "view_height": self.state.height,
        }

    def performance(self) -> dict[str, Any]:
        latest = self.latest
        costs = sorted(self.costs.items())
        return {
            "frame": latest.number if latest else 0,
            "frames_per_second": round(self.fps(), 2),
            "time_rendering_ms": round(latest.render_ms, 2) if latest else None,
            "time_compositing_ms": round(latest.composite_ms, 2) if latest else None,
            "time_encoding_ms": round(latest.encode_ms, 2) if latest else None,
            "resolution": [self.state.width, self.state.height],
            "level": latest.level if latest else None,
            "frame_budget_ms": self.budget_ms,
            "level_ms": {f"{k:g}": round(v, 1) for k, v in sorted(self.level_ms.items())},
            "frames_superseded": self.superseded,
            "agents": len(self.agents),
            "frame_agents": latest.agents if latest else 0,
            "agent_list": [a.to_json() for a in sorted(self.agents.values(),
                                                       key=lambda a: a.id)],
            "brick_ms": {str(b): round(s * 1000.0, 3) for b, s in costs},
            "brick_owner": {str(b): self._agent_label(a) for b, a in sorted(self.owners.items())},
        }

    def _agent_label(self, agent_id: int) -> str:
        link = self.agents.get(agent_id)
        return link.describe() if link else f"agent {agent_id} (gone)"

    def view_json(self) -> dict[str, Any]:
        return {**self.state.to_json(), "show_bricks": self.show_bricks,
                "version": self.version}


def _rgb(color: str) -> tuple[float, float, float]:
    value = int(color.lstrip("#"), 16)
    return ((value >> 16 & 255) / 255.0, (value >> 8 & 255) / 255.0, (value & 255) / 255.0)
