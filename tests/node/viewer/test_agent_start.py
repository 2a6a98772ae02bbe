"""How a render agent starts: it joins its viewer before numba and the kernels have
loaded, and one that shares its cores with a starting viewer loads them only once that
viewer is up (hpcrun's local cluster passes --one-machine)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hpcrun.node.viewer import agent, protocol, rendezvous
from hpcrun.node.viewer.launcher import parse_args
from hpcrun.node.viewer.options import LaunchOptions, TaskIdentity


def test_the_agent_module_loads_neither_numba_numpy_nor_asyncio() -> None:
    code = (
        "import sys, json, hpcrun.node.viewer.agent\n"
        "print(json.dumps([m for m in ('numba', 'numpy', 'asyncio') if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == []


def test_one_machine_is_parsed() -> None:
    assert parse_args(["-a7", "--one-machine"]).one_machine
    assert not parse_args(["-a7"]).one_machine


def test_planned_threads_follow_slurm_and_numba_limits() -> None:
    assert agent.planned_threads(1, {}) == 1
    assert agent.planned_threads(10_000, {"NUMBA_NUM_THREADS": "1"}) == 1
    assert agent.planned_threads(10_000, {"NUMBA_NUM_THREADS": "junk"}) >= 1


@dataclass
class GatedLoader:
    """Stands in for `jit.KernelLoader`: records when it is started, and never loads
    before the test releases it."""

    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    seconds: float = 0.0

    def start(self) -> GatedLoader:
        self.started.set()
        return self

    def get(self) -> ModuleType:
        self.release.wait()
        raise ImportError("the test never loads kernels")


@dataclass
class Start:
    loader: GatedLoader
    connecting: threading.Event
    directory: Path
    result: list[int] = field(default_factory=list)


@pytest.fixture
def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run `run_agent` in a thread with a gated loader; yields a function that starts it
    with the given options and returns what the test needs to watch it."""
    loader = GatedLoader()
    connecting = threading.Event()
    real_connect = rendezvous.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        connecting.set()
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(agent, "KernelLoader", lambda *a, **k: loader)
    monkeypatch.setattr(rendezvous, "connect", connect)
    monkeypatch.setattr(agent.signal, "signal", lambda *a: None)  # not the main thread
    threads: list[threading.Thread] = []

    def run(**options: Any) -> Start:
        state = Start(loader, connecting, tmp_path / "rdv")
        opts = LaunchOptions(rendezvous=str(state.directory), **options)
        identity = TaskIdentity(rank=1, job_id="42", node="n2", cpus=1)
        thread = threading.Thread(
            target=lambda: state.result.append(agent.run_agent(opts, identity)), daemon=True
        )
        thread.start()
        threads.append(thread)
        return state

    yield run
    loader.release.set()
    for thread in threads:
        thread.join(timeout=60)


def _viewer_up(directory: Path) -> tuple[socket.socket, str]:
    server = socket.create_server(("127.0.0.1", 0))
    token = "t0ken"
    rendezvous.write(
        directory, rendezvous.Rendezvous("42", "127.0.0.1", server.getsockname()[1], 0, 0, token)
    )
    return server, token


def _hello_then_bye(server: socket.socket) -> protocol.Hello:
    conn, _ = server.accept()
    with conn:
        hello = protocol.Hello.from_message(protocol.recv_message(conn))
        protocol.send_message(conn, protocol.bye("test over"))
    return hello


def test_an_agent_joins_before_its_kernels_have_loaded(start: Any) -> None:
    state = start()
    server, token = _viewer_up(state.directory)
    with server:
        hello = _hello_then_bye(server)
    assert hello.token == token and hello.threads == 1
    assert state.loader.started.is_set() and not state.loader.release.is_set()
    state.loader.release.set()


def test_an_agent_on_its_own_node_loads_while_the_viewer_starts(start: Any) -> None:
    state = start()
    assert state.connecting.wait(timeout=60)
    assert state.loader.started.is_set()  # started before looking for the viewer
    server, _ = _viewer_up(state.directory)
    with server:
        _hello_then_bye(server)


def test_an_agent_sharing_the_viewers_cores_loads_once_the_viewer_is_up(start: Any) -> None:
    state = start(one_machine=True)
    assert state.connecting.wait(timeout=60)
    assert not state.loader.started.is_set()  # the viewer is not up: nothing loads yet
    server, _ = _viewer_up(state.directory)
    with server:
        _hello_then_bye(server)
    assert state.loader.started.is_set()


def test_hpcrun_tells_the_agents_of_its_local_cluster_they_share_one_machine(
    tmp_path: Path,
) -> None:
    from hpcrun.backends.base import ClusterSite
    from hpcrun.services.index import IndexSessions
    from hpcrun.state import StateStore
    from hpcrun.transport.runner import LocalRunner
    from hpcrun.transport.workspace import RunnerWorkspace

    def options(on_this_host: bool) -> LaunchOptions:
        sessions = IndexSessions(StateStore(tmp_path / "home"), "c", backend=None)  # type: ignore[arg-type]
        sessions._site = ClusterSite(  # type: ignore[misc]
            workspace=str(tmp_path / "ws"),
            launcher="hpcrun-nvindex-slurm",
            scenes_dir=None,
            shares_local_files=on_this_host,
        )
        sessions._workspace = RunnerWorkspace(LocalRunner(), str(tmp_path / "ws"))
        return parse_args(["-a1", *sessions._open_options(str(tmp_path / "ws"), None, True)])

    assert options(on_this_host=True).one_machine
    assert not options(on_this_host=False).one_machine
