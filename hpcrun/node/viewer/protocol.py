"""The wire protocol between the viewer and its render agents, and nothing else.

Agents and the viewer talk over one TCP connection each. A message is a 4-byte
big-endian length, then that many bytes of a JSON object (the header), then, when the
header says `"payload": N`, exactly N raw bytes. JSON keeps the control messages readable
in a packet dump and trivially versioned; the raw payload keeps image data (partial
images, colour tables) out of JSON, where base64 would cost a third more bytes and a copy.

The conversation::

    agent  -> viewer   hello{token, node, rank, job_id, pid, host, threads}
    viewer -> agent    assign{scene, volume, bricks, value_range, threads?}
                       (again on every rebalance; threads: the agent's share of its
                       host's cores when several agents run on one host)
    viewer -> agent    render{frame, view, bricks?} + colour table bytes
                       (view: camera, image size -- smaller for a preview while the camera
                       moves --, colormap, mode, roi, step and the opacity ramp, which
                       the agent applies to the colour table)
    agent  -> viewer   partials{frame, items} + the partial images back to back
    either -> other    bye{reason}   (then the connection closes)
    agent  -> viewer   error{frame, message}   (the viewer drops the agent)

A render request supersedes the one before it: an agent that finds a newer request
waiting between two bricks drops the current frame unanswered (the viewer has given up
on it). Both ends exist in two flavours: asyncio streams (the viewer) and blocking sockets (the
agent, whose only other job is CPU-bound rendering), so both sets of helpers live here.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the agent, which never uses asyncio, need not import it (~0.05 s)
    import asyncio

PROTOCOL_VERSION = 2
"""2: views carry an opacity ramp, and newer render requests supersede older ones."""
MAX_HEADER_BYTES = 1 << 20
"""A header is a few hundred bytes; a larger length prefix means a stranger or a bug."""
MAX_PAYLOAD_BYTES = 1 << 30
"""A 4096x4096 float32 RGBA partial is 256 MiB; nothing legitimate comes close to 1 GiB."""

_LENGTH = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a message of this protocol."""


class ConnectionClosed(Exception):
    """The peer closed the connection (cleanly or not) between or inside a message."""


@dataclass(frozen=True)
class Message:
    """One decoded frame: its JSON header and the raw payload announced by the header."""

    header: dict[str, Any]
    payload: bytes = b""

    @property
    def type(self) -> str:
        return str(self.header.get("type", ""))


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """Frame `header` (+ `payload`) as bytes ready for the socket."""
    header = {**header, "payload": len(payload)} if payload else dict(header)
    body = json.dumps(header, separators=(",", ":")).encode()
    if len(body) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(body)} bytes exceeds {MAX_HEADER_BYTES}")
    return _LENGTH.pack(len(body)) + body + payload


def _decode_header(body: bytes) -> tuple[dict[str, Any], int]:
    try:
        header = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("type"), str):
        raise ProtocolError("header is not a JSON object with a string 'type'")
    size = header.get("payload", 0)
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"bad payload length {size!r}")
    return header, size


def _check_length(length: int) -> None:
    if length == 0 or length > MAX_HEADER_BYTES:
        raise ProtocolError(f"bad header length {length}")


async def read_message(reader: asyncio.StreamReader) -> Message:
    """Read one message; `ConnectionClosed` when the stream ends, even mid-message."""
    import asyncio

    try:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        _check_length(length)
        header, size = _decode_header(await reader.readexactly(length))
        payload = await reader.readexactly(size) if size else b""
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise ConnectionClosed(str(exc) or "connection closed") from None
    return Message(header, payload)


async def write_message(
    writer: asyncio.StreamWriter, header: dict[str, Any], payload: bytes = b""
) -> None:
    """Send one message and wait until the transport has taken it (back-pressure)."""
    try:
        writer.write(encode(header, payload))
        await writer.drain()
    except ConnectionError as exc:
        raise ConnectionClosed(str(exc) or "connection closed") from None


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        try:
            chunk = sock.recv(min(size - len(chunks), 1 << 22))
        except ConnectionError as exc:
            raise ConnectionClosed(str(exc) or "connection closed") from None
        if not chunk:
            raise ConnectionClosed("connection closed")
        chunks += chunk
    return bytes(chunks)


def recv_message(sock: socket.socket) -> Message:
    """Blocking `read_message` for the agent side."""
    (length,) = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))
    _check_length(length)
    header, size = _decode_header(_recv_exactly(sock, length))
    return Message(header, _recv_exactly(sock, size) if size else b"")


def send_message(sock: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    """Blocking `write_message` for the agent side."""
    try:
        sock.sendall(encode(header, payload))
    except (ConnectionError, BrokenPipeError) as exc:
        raise ConnectionClosed(str(exc) or "connection closed") from None


# ---------------------------------------------------------------------------------------
# The messages. Each knows its header; `from_message` validates what came off the wire so
# the rest of the code handles typed values only.


def _field(header: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = header.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(f"{header.get('type')}: field {name!r} missing or not {kind}")
    return value


@dataclass(frozen=True)
class Hello:
    """First message of an agent: who it is, and the viewer's token as proof it may join."""

    token: str
    node: str
    rank: int
    job_id: str
    pid: int
    host: str = ""
    threads: int = 1
    version: int = PROTOCOL_VERSION

    def to_header(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "token": self.token,
            "node": self.node,
            "rank": self.rank,
            "job_id": self.job_id,
            "pid": self.pid,
            "host": self.host,
            "threads": self.threads,
            "version": self.version,
        }

    @classmethod
    def from_message(cls, message: Message) -> Hello:
        h = message.header
        if message.type != "hello":
            raise ProtocolError(f"expected hello, got {message.type!r}")
        return cls(
            token=_field(h, "token", str),
            node=_field(h, "node", str),
            rank=_field(h, "rank", int),
            job_id=_field(h, "job_id", str),
            pid=_field(h, "pid", int),
            host=str(h.get("host", "")),
            threads=int(h.get("threads", 1)),
            version=int(h.get("version", 0)),
        )


@dataclass(frozen=True)
class BrickSpec:
    """A brick as sent to an agent: id and voxel bounds (z, y, x), hi exclusive."""

    id: int
    lo: tuple[int, int, int]
    hi: tuple[int, int, int]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "lo": list(self.lo), "hi": list(self.hi)}

    @classmethod
    def from_json(cls, data: Any) -> BrickSpec:
        try:
            lo = tuple(int(v) for v in data["lo"])
            hi = tuple(int(v) for v in data["hi"])
            if len(lo) != 3 or len(hi) != 3:
                raise ValueError("need 3 values")
            return cls(int(data["id"]), (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"bad brick {data!r}: {exc}") from None


@dataclass(frozen=True)
class Assign:
    """Which bricks of which volume an agent owns from now on (replaces the previous set)."""

    scene: str
    volume: str
    bricks: tuple[BrickSpec, ...]
    value_range: tuple[float, float]
    threads: int | None = None
    """Render threads to use from now on (None: as many as the agent has)."""

    def to_header(self) -> dict[str, Any]:
        header: dict[str, Any] = {
            "type": "assign",
            "scene": self.scene,
            "volume": self.volume,
            "bricks": [b.to_json() for b in self.bricks],
            "value_range": list(self.value_range),
        }
        if self.threads is not None:
            header["threads"] = self.threads
        return header

    @classmethod
    def from_message(cls, message: Message) -> Assign:
        h = message.header
        value_range = _field(h, "value_range", list)
        if len(value_range) != 2:
            raise ProtocolError("assign: value_range needs two numbers")
        return cls(
            scene=_field(h, "scene", str),
            volume=_field(h, "volume", str),
            bricks=tuple(BrickSpec.from_json(b) for b in _field(h, "bricks", list)),
            value_range=(float(value_range[0]), float(value_range[1])),
            threads=None if h.get("threads") is None else max(1, int(h["threads"])),
        )


@dataclass(frozen=True)
class Render:
    """Render `view` (a `View.to_json()` dict) for `frame` with colour table `lut`.

    `bricks` narrows the request to some of the agent's bricks (after another agent was
    lost mid-frame only its bricks need rendering again); None means all of them. The
    colour table travels with every request (4 KiB) so agents need no colormap registry.
    """

    frame: int
    view: dict[str, Any]
    lut: bytes
    bricks: tuple[int, ...] | None = None

    def to_header(self) -> dict[str, Any]:
        header: dict[str, Any] = {"type": "render", "frame": self.frame, "view": self.view}
        if self.bricks is not None:
            header["bricks"] = list(self.bricks)
        return header

    @classmethod
    def from_message(cls, message: Message) -> Render:
        h = message.header
        bricks = h.get("bricks")
        return cls(
            frame=_field(h, "frame", int),
            view=_field(h, "view", dict),
            lut=message.payload,
            bricks=None if bricks is None else tuple(int(b) for b in bricks),
        )


@dataclass(frozen=True)
class Partials:
    """An agent's answer for one frame: one serialised `Partial` per brick, back to back."""

    frame: int
    blobs: tuple[bytes, ...] = field(default=())

    def to_header(self) -> dict[str, Any]:
        return {"type": "partials", "frame": self.frame, "items": [len(b) for b in self.blobs]}

    def payload(self) -> bytes:
        return b"".join(self.blobs)

    @classmethod
    def from_message(cls, message: Message) -> Partials:
        h = message.header
        sizes = _field(h, "items", list)
        if not all(isinstance(s, int) and s >= 0 for s in sizes):
            raise ProtocolError("partials: items must be byte counts")
        if sum(sizes) != len(message.payload):
            raise ProtocolError("partials: item sizes do not add up to the payload")
        blobs, offset = [], 0
        for size in sizes:
            blobs.append(message.payload[offset : offset + size])
            offset += size
        return cls(frame=_field(h, "frame", int), blobs=tuple(blobs))


def bye(reason: str) -> dict[str, Any]:
    """Header of the last message before a deliberate close."""
    return {"type": "bye", "reason": reason}


def error(message: str, frame: int | None = None) -> dict[str, Any]:
    """Header an agent sends when it cannot do what was asked (the viewer drops it)."""
    return {"type": "error", "message": message, "frame": frame}


def brick_specs(bricks: Sequence[Any]) -> tuple[BrickSpec, ...]:
    """`BrickSpec`s from anything with `id`, `lo`, `hi` (the renderer's `Brick`)."""
    return tuple(
        BrickSpec(
            int(b.id), (int(b.lo[0]), int(b.lo[1]), int(b.lo[2])),
            (int(b.hi[0]), int(b.hi[1]), int(b.hi[2])),
        )
        for b in bricks
    )
