"""The agent<->viewer wire protocol and the rendezvous file, in process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from hpcrun.node.viewer import protocol, rendezvous
from hpcrun.node.viewer.protocol import (
    Assign,
    BrickSpec,
    ConnectionClosed,
    Hello,
    Message,
    Partials,
    ProtocolError,
    Render,
)

# -- framing ---------------------------------------------------------------------------


def test_encode_frames_length_header_and_payload() -> None:
    data = protocol.encode({"type": "x", "n": 1}, b"\x00\x01")
    (length,) = struct.unpack(">I", data[:4])
    header = json.loads(data[4 : 4 + length])
    assert header == {"type": "x", "n": 1, "payload": 2}
    assert data[4 + length :] == b"\x00\x01"
    assert "payload" not in json.loads(protocol.encode({"type": "y"})[4:])


def test_blocking_round_trip_over_a_socketpair() -> None:
    left, right = socket.socketpair()
    with left, right:
        payload = os.urandom(3 << 20)  # bigger than one recv
        sender = threading.Thread(
            target=protocol.send_message, args=(left, {"type": "big"}, payload))
        sender.start()
        message = protocol.recv_message(right)
        sender.join()
        assert message.type == "big"
        assert message.payload == payload
        protocol.send_message(left, {"type": "small"})
        assert protocol.recv_message(right) == Message({"type": "small"})
        left.close()
        with pytest.raises(ConnectionClosed):
            protocol.recv_message(right)


def test_asyncio_round_trip_and_eof_inside_a_message() -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(protocol.encode({"type": "a"}, b"xyz"))
        whole = protocol.encode({"type": "b"}, b"12345")
        reader.feed_data(whole[:-2])
        reader.feed_eof()
        first = await protocol.read_message(reader)
        assert (first.type, first.payload) == ("a", b"xyz")
        with pytest.raises(ConnectionClosed):
            await protocol.read_message(reader)

    asyncio.run(main())


def _framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack(">I", 0),
        struct.pack(">I", protocol.MAX_HEADER_BYTES + 1),
        _framed(b"nope!"),
        _framed(b"[]"),
        _framed(b'{"type": 1}'),
        _framed(b'{"type": "x", "payload": -1}'),
        _framed(b'{"type": "x", "payload": true}'),
    ],
)
def test_garbage_is_a_protocol_error(raw: bytes) -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(raw)
        left.shutdown(socket.SHUT_WR)  # a short body must not hang the test
        with pytest.raises(ProtocolError):
            protocol.recv_message(right)


# -- messages --------------------------------------------------------------------------


def _through_wire(header: dict[str, object], payload: bytes = b"") -> Message:
    data = protocol.encode(header, payload)
    (length,) = struct.unpack(">I", data[:4])
    return Message(json.loads(data[4 : 4 + length]), data[4 + length :])


def test_messages_round_trip() -> None:
    hello = Hello("tok", "n3", 2, "77", 1234, "host-a", 8)
    assert Hello.from_message(_through_wire(hello.to_header())) == hello
    assign = Assign("/s/scene.prj", "vol", (BrickSpec(3, (0, 0, 0), (8, 8, 8)),), (0.0, 255.0))
    assert Assign.from_message(_through_wire(assign.to_header())) == assign
    render = Render(5, {"width": 4}, b"\x00" * 16, (1, 2))
    assert Render.from_message(_through_wire(render.to_header(), render.lut)) == render
    everything = Render(6, {}, b"\x01" * 8)
    assert Render.from_message(_through_wire(everything.to_header(), everything.lut)).bricks \
        is None
    partials = Partials(5, (b"abc", b"", b"defg"))
    back = Partials.from_message(_through_wire(partials.to_header(), partials.payload()))
    assert back == partials


def test_message_validation() -> None:
    with pytest.raises(ProtocolError, match="expected hello"):
        Hello.from_message(Message({"type": "render"}))
    with pytest.raises(ProtocolError, match="token"):
        Hello.from_message(Message({"type": "hello", "token": 5}))
    with pytest.raises(ProtocolError, match="do not add up"):
        Partials.from_message(Message({"type": "partials", "frame": 1, "items": [4]}, b"abc"))
    with pytest.raises(ProtocolError, match="bad brick"):
        BrickSpec.from_json({"id": 1, "lo": [0, 0], "hi": [1, 1, 1]})
    assert protocol.bye("done") == {"type": "bye", "reason": "done"}
    assert protocol.error("boom", 3)["frame"] == 3


# -- rendezvous ------------------------------------------------------------------------


def _info(job: str = "42", port: int = 1, token: str = "t0k") -> rendezvous.Rendezvous:
    return rendezvous.Rendezvous(job, "127.0.0.1", port, 8080, os.getpid(), token)


def test_write_read_remove(tmp_path: Path) -> None:
    directory = tmp_path / "deep" / "dir"
    path = rendezvous.write(directory, _info())
    assert path == directory / "42.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert rendezvous.read(directory, "42") == _info()
    assert [p.name for p in directory.iterdir()] == ["42.json"]  # no temp file left
    # A newer viewer's file is not removed by an older one going away.
    rendezvous.write(directory, _info(token="newer"))
    rendezvous.remove(directory, _info(token="older"))
    assert path.exists()
    rendezvous.remove(directory, _info(token="newer"))
    assert not path.exists()
    assert rendezvous.read(directory, "42") is None


def test_directory_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(rendezvous.ENV_DIR, str(tmp_path / "env"))
    assert rendezvous.rendezvous_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    assert rendezvous.rendezvous_dir(None) == tmp_path / "env"
    monkeypatch.delenv(rendezvous.ENV_DIR)
    assert rendezvous.rendezvous_dir(None) == Path.home() / ".hpcrun" / "index-rendezvous"


def test_connect_times_out_with_what_it_saw(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(rendezvous.RendezvousTimeout, match="file does not exist"):
        rendezvous.connect(tmp_path, "9", timeout_s=0.3)
    assert time.monotonic() - started < 3
    # A stale file (viewer killed with SIGKILL) names a port nobody listens on.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    rendezvous.write(tmp_path, _info("9", dead_port))
    with pytest.raises(rendezvous.RendezvousTimeout, match="does not answer"):
        rendezvous.connect(tmp_path, "9", timeout_s=0.3)


def test_connect_waits_for_the_viewer(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def publish_later() -> None:
        time.sleep(0.3)
        rendezvous.write(tmp_path, _info("5", listener.getsockname()[1], "abc"))

    threading.Thread(target=publish_later).start()
    with listener:
        info, sock = rendezvous.connect(tmp_path, "5", timeout_s=10)
        with sock:
            assert info.token == "abc"
            peer, _ = listener.accept()
            peer.close()
