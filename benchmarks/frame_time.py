"""frame_time: wall time of a 512x512 supernova frame with 1 render agent vs 4, one run.

Setup: a fresh 6-node local cluster, the 256^3 supernova, an open-renderer session started
on 1 node. Each timed frame is one JSON-RPC round trip over the viewer's websocket:
`orbit` by 7 degrees (so nothing can come from a cache) then `get_image` (JPEG), which
returns once the frame for that camera is composited. Median of 9 frames after 2 warm-up
frames; then `hpcrun scale =4` and the same again. The viewer's own split (rendering,
compositing, encoding) from `get_performance_values` is shown too.

Yardstick: the same session with 1 agent. Figure: 4-agent frame time / 1-agent frame
time (lower is better). The local cluster's 4 nodes share this machine's cores
(`nproc` is printed), so on 2 cores expect little speed-up: the figure shows the
overhead of distribution (bricks, compositing, transfers) more than its gain.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from _common import Goal, bench_cluster, log, parse_args, report, run_main
from _index import start_session, stop_session

FRAMES = 9
WARMUP = 2


async def _frames(url: str, count: int) -> tuple[list[float], dict[str, Any]]:
    import aiohttp

    ws_url = url.replace("http://", "ws://").rstrip("/") + "/ws"
    times = []
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url) as ws:
        next_id = 0

        async def call(method: str, **params: Any) -> Any:
            nonlocal next_id
            next_id += 1
            await ws.send_json({"jsonrpc": "2.0", "id": next_id, "method": method,
                                "params": params})
            while True:
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue  # pushed JPEG frames
                data = message.json()
                if data.get("id") == next_id:
                    if "error" in data:
                        raise RuntimeError(f"{method}: {data['error']}")
                    return data["result"]

        await call("set_resolution", width=512, height=512)
        for index in range(WARMUP + count):
            started = time.perf_counter()
            await call("orbit", azimuth=7.0, elevation=0.0)
            await call("get_image", format="jpeg")
            if index >= WARMUP:
                times.append(time.perf_counter() - started)
        performance = await call("get_performance_values")
    return times, performance


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    count = args.repeats or FRAMES
    with bench_cluster(nodes=6) as cluster:
        _, _, session = start_session(cluster, 1)
        try:
            one, perf_one = asyncio.run(_frames(session["url"], count))
            log(f"1 agent: median {statistics.median(one) * 1e3:.0f} ms")
            cluster.hpcrun("scale", "=4")
            four, perf_four = asyncio.run(_frames(session["url"], count))
            log(f"4 agents: median {statistics.median(four) * 1e3:.0f} ms")
        finally:
            stop_session(cluster)

    def split(perf: dict[str, Any]) -> str:
        return (f"render {perf['time_rendering_ms']} ms, composite {perf['time_compositing_ms']}"
                f" ms, encode {perf['time_encoding_ms']} ms, {perf['frame_agents']} agents")

    report(
        "frame_time",
        statistics.median(four),
        statistics.median(one),
        None,
        {
            "4 agents, 512x512 frame (median)": statistics.median(four),
            "1 agent, 512x512 frame (median)": statistics.median(one),
            "viewer split, 1 agent": split(perf_one),
            "viewer split, 4 agents": split(perf_four),
            "cores on this machine": str(os.cpu_count()),
        },
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="4 agents",
        yardstick_label="1 agent",
        goal=Goal(float("nan"), "none"),
        notes=["reported, no goal: the 4 local nodes share this machine's cores"],
    )


if __name__ == "__main__":
    run_main(main)
