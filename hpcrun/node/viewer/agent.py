"""A render agent: one per node, rendering the bricks the viewer assigns to it.

The agent finds its viewer through the rendezvous file, says hello with the viewer's
token, and then does what it is told, one message at a time: `assign` (keep a
`BrickRenderer` per brick it owns; bricks it loses are dropped, new ones loaded from the
shared data file), `render` (ray-cast its bricks for the view and send the partial images
back). It is deliberately a plain blocking loop: rendering is CPU-bound numba code that
uses every core it is given, and there is nothing else to do meanwhile. It exits when the
viewer says bye or goes away (connection closed, or TCP keepalive gives up on a vanished
node), and on SIGTERM (scancel, or `scontrol update NumNodes=` shrinking the job).

numba and the kernels (most of an agent's start-up) load in a background thread
(`jit.KernelLoader`) while the agent finds its viewer and joins it: the viewer counts the
agent and hands it bricks at once, and its first frame waits for the kernels (that first
frame has the long first-frame timeout for this). An agent that shares its cores with a
viewer still starting (rank 0's own agent; with --one-machine, every agent) starts
loading only once that viewer is up: the viewer's readiness line is what the user waits
for, and before it there is nothing to render. Elsewhere the kernels load while the
viewer starts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

from hpcrun.errors import HpcrunError
from hpcrun.node.viewer import protocol, rendezvous
from hpcrun.node.viewer.jit import KernelLoader
from hpcrun.node.viewer.options import LaunchOptions, TaskIdentity

if TYPE_CHECKING:  # numpy and the kernels load in the background (see the docstring)
    import numpy.typing as npt

    from hpcrun.node.viewer.kernel import BrickRenderer
    from hpcrun.node.viewer.partial import Partial

log = logging.getLogger("hpcrun.node.viewer.agent")


def planned_threads(cpus: int, env: dict[str, str] | os._Environ[str] | None = None) -> int:
    """The render threads this agent will use, known before numba loads: the node's CPUs
    as Slurm grants them (SLURM_CPUS_ON_NODE), never more than the machine (or this
    process's CPU affinity) has, nor more than $NUMBA_NUM_THREADS allows, as numba does:
    oversubscribed numba threads only fight each other."""
    env = os.environ if env is None else env
    most = os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        most = min(most, len(os.sched_getaffinity(0)) or most)
    with contextlib.suppress(ValueError):
        if int(env.get("NUMBA_NUM_THREADS", "0")) > 0:
            most = min(most, int(env["NUMBA_NUM_THREADS"]))
    return max(1, min(cpus, most))


def cap_threads(threads: int) -> int:
    """Have numba render with at most `threads` threads (in the calling thread, the one
    that renders: numba's setting is per thread); the number it will use."""
    import numba

    most = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
    threads = max(1, min(threads, most))
    numba.set_num_threads(threads)
    return threads


class BrickWorker:
    """The bricks this agent owns, ready to render (data copied out of the memmap once).

    The kernels come from `loader` (a background load started by `run_agent`), or are
    loaded on first use without one."""

    def __init__(self, loader: KernelLoader | None = None) -> None:
        self._source: tuple[str, str, tuple[float, float]] | None = None
        self._volume: npt.NDArray[Any] | None = None
        self.renderers: dict[int, BrickRenderer] = {}
        self.threads: int | None = None  # set by run_agent: the most this agent may use
        self._loader = loader
        self._kernel_module: ModuleType | None = None

    def kernels(self) -> ModuleType:
        """The kernel module, waiting for the background load the first time; numba's
        thread count is then set here, in the thread that renders."""
        if self._kernel_module is None:
            loader = self._loader or KernelLoader()
            module = loader.get()
            if self.threads is not None:
                self.threads = cap_threads(self.threads)
            log.info("render kernels loaded in %.2f s", loader.seconds or 0.0)
            self._kernel_module = module
        return self._kernel_module

    def assign(self, message: protocol.Assign) -> None:
        from hpcrun.scenes import load_scene, load_volume

        source = (message.scene, message.volume, message.value_range)
        if source != self._source or self._volume is None:
            started = time.perf_counter()
            scene = load_scene(message.scene)
            self._volume = load_volume(scene.volume(message.volume))
            self._source = source
            self.renderers = {}
            log.info("opened %s (volume %s, %s) in %.2f s", message.scene, message.volume,
                     "x".join(str(n) for n in reversed(self._volume.shape)),
                     time.perf_counter() - started)
        kernel = self.kernels()
        if message.threads is not None and self.threads is not None:
            import numba

            numba.set_num_threads(max(1, min(message.threads, self.threads)))
        from hpcrun.node.viewer.bricks import Brick

        wanted = {spec.id: spec for spec in message.bricks}
        for brick_id in list(self.renderers):
            spec = wanted.get(brick_id)
            brick = self.renderers[brick_id].brick
            if spec is None or (spec.lo, spec.hi) != (brick.lo, brick.hi):
                del self.renderers[brick_id]
        started = time.perf_counter()
        added = 0
        for brick_id, spec in wanted.items():
            if brick_id not in self.renderers:
                brick = Brick(spec.id, spec.lo, spec.hi)
                self.renderers[brick_id] = kernel.BrickRenderer(self._volume, brick,
                                                                message.value_range)
                added += 1
        log.debug("assigned %d bricks (%d new, loaded in %.3f s)", len(self.renderers), added,
                  time.perf_counter() - started)

    def render(self, request: protocol.Render,
               superseded: Callable[[], bool] = lambda: False) -> list[Partial] | None:
        """The partials of the request's bricks; None when `superseded` (asked between
        bricks) says a newer request is waiting, which makes this one pointless."""
        import numpy as np

        from hpcrun.node.viewer.camera import View

        view = View.from_json(request.view)
        lut = np.frombuffer(request.lut, dtype=np.float32).reshape(-1, 4)
        ids = sorted(self.renderers) if request.bricks is None else request.bricks
        partials: list[Partial] = []
        for brick_id in ids:
            if brick_id in self.renderers:
                if partials and superseded():
                    return None
                partials.append(self.renderers[brick_id].render(view, lut))
        return partials


class Terminated(Exception):
    """SIGTERM arrived (scancel, or the job shrank away from this node)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def serve(sock: socket.socket, worker: BrickWorker) -> str:
    """Answer the viewer until it says bye or goes away; returns why it ended.

    Between bricks a render looks whether more messages have arrived (the viewer drops a
    full-resolution frame once the camera moves again and asks for a preview at once):
    they are read ahead, and a newer render request among them ends the current one
    unanswered (one for the same frame, the bricks of a lost agent, does not). Everything
    read ahead is then handled in order, so an assignment is never
    applied in the middle of a frame."""
    ahead: deque[protocol.Message] = deque()
    current = 0

    def superseded() -> bool:
        # Only a request for a later frame ends this one: one for the same frame asks for
        # the bricks of a lost agent besides (the viewer still wants this answer too).
        while select.select([sock], [], [], 0.0)[0]:
            ahead.append(protocol.recv_message(sock))
        return any(m.type == "bye" or (m.type == "render" and isinstance(
            m.header.get("frame"), int) and m.header["frame"] > current) for m in ahead)

    while True:
        try:
            message = ahead.popleft() if ahead else protocol.recv_message(sock)
        except protocol.ConnectionClosed:
            return "the viewer went away"
        if message.type == "assign":
            worker.assign(protocol.Assign.from_message(message))
        elif message.type == "render":
            request = protocol.Render.from_message(message)
            current = request.frame
            started = time.perf_counter()
            try:
                partials = worker.render(request, superseded)
            except protocol.ConnectionClosed:
                return "the viewer went away"
            if partials is None:
                log.debug("frame %d superseded after %.1f ms", request.frame,
                          (time.perf_counter() - started) * 1000.0)
                continue
            answer = protocol.Partials(request.frame, tuple(p.to_bytes() for p in partials))
            protocol.send_message(sock, answer.to_header(), answer.payload())
            log.debug("frame %d: %d bricks in %.1f ms", request.frame, len(partials),
                      (time.perf_counter() - started) * 1000.0)
        elif message.type == "bye":
            return f"the viewer said bye ({message.header.get('reason', '')})"
        else:
            log.debug("ignored a %r message", message.type)


def run_agent(options: LaunchOptions, identity: TaskIdentity) -> int:
    """Join the viewer of this job (or of -a<jobid>) and render until it is gone."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    job_id = options.attach_job or identity.job_id
    directory = rendezvous.rendezvous_dir(options.rendezvous)
    timeout_s = float(os.environ.get("NVINDEX_OPEN_RENDEZVOUS_TIMEOUT",
                                     rendezvous.DEFAULT_WAIT_S))
    loader = KernelLoader()
    shares_cores = options.internal_agent or options.one_machine
    if not shares_cores or rendezvous.read(directory, job_id) is not None:
        loader.start()  # else once the viewer is up (see the module docstring)
    threads = planned_threads(identity.cpus)
    try:
        info, sock = rendezvous.connect(directory, job_id, timeout_s)
        loader.start()
    except Terminated:
        log.info("exiting: terminated (SIGTERM) before joining a viewer")
        return 0
    hello = protocol.Hello(info.token, identity.node, identity.rank, identity.job_id,
                           os.getpid(), socket.gethostname(), threads)
    try:
        protocol.send_message(sock, hello.to_header())
        log.info("joined the viewer of job %s at %s:%d (%d threads)", job_id, info.host,
                 info.agent_port, threads)
        worker = BrickWorker(loader)
        worker.threads = threads
        reason = serve(sock, worker)
    except protocol.ConnectionClosed:
        reason = "the viewer went away"
    except Terminated:
        reason = "terminated (SIGTERM)"
    except Exception as exc:  # anything else: tell the viewer why, so its log says it
        text = exc.message if isinstance(exc, HpcrunError) else f"{type(exc).__name__}: {exc}"
        log.error("cannot render: %s", text, exc_info=not isinstance(exc, HpcrunError))
        with contextlib.suppress(protocol.ConnectionClosed):
            protocol.send_message(sock, protocol.error(text))
        return 1
    finally:
        sock.close()
    log.info("exiting: %s", reason)
    return 0
