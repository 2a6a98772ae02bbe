"""render_chunking: frames/s of `hpcrun render` with chunk 1 vs chunk 4 vs chunk 8.

The same 16 frames of the seed farm's rolling ball (scripts/blender/make_rolling_ball.py),
Cycles at 4 samples and 160x90, so Blender's start-up (~1.3 CPU-s per process, see
ENVIRONMENT.md) dominates as it does for a farm of small frames, rendered on a 4-node
local cluster by the whole `hpcrun render ... --encode none` command (submit, array,
wait), each into a fresh directory. Contenders are taken in turn, median of `--repeats`
(default 1: each run renders for real).

The ratio is wall(chunk 4) / wall(chunk 1): the goal "chunked >= 1.5x the frames/s of
chunk 1" is a ratio <= 0.667. Chunk 8 is reported beside it.

Goal: wall(chunk 4) / wall(chunk 1) <= 0.667.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable
from itertools import count
from pathlib import Path

from _common import bench_cluster, hpcrun_exe, interleaved, log, parse_args, report, run_main
from _render import rolling_ball

FRAMES = 16
GOAL_RATIO = 1 / 1.5
CHUNKS = (1, 4, 8)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 1
    failures: list[str] = []
    with bench_cluster() as cluster, tempfile.TemporaryDirectory(prefix="hrbr") as tmp:
        work = Path(tmp)
        blend = rolling_ball(work / "rolling_ball.blend", FRAMES)
        runs = count()

        def contender(chunk: int) -> Callable[[], None]:
            def run() -> None:
                out = work / f"out-{chunk}-{next(runs)}"
                done = subprocess.run(
                    [hpcrun_exe(), "render", str(blend), "--frames", f"1-{FRAMES}",
                     "--chunk", str(chunk), "--engine", "CYCLES", "--samples", "4",
                     "--resolution", "160x90", "--encode", "none", "--output", str(out),
                     "--json"],
                    env=cluster.env, capture_output=True, text=True, cwd=work,
                )
                status = json.loads(done.stdout).get("status") if done.stdout else None
                if done.returncode != 0 or status != "done":
                    failures.append(f"chunk {chunk}: exit {done.returncode} {done.stderr[-300:]}")
            return run

        log(f"rendering {FRAMES} frames with chunk {', '.join(map(str, CHUNKS))}: "
            f"{repeats} run(s) each")
        timings = interleaved(
            {f"chunk {c}": contender(c) for c in CHUNKS}, repeats, warmup=0
        )
    one, four, eight = (timings[f"chunk {c}"] for c in CHUNKS)
    extra: dict[str, object] = {
        **{f"chunk {c} wall": timings[f"chunk {c}"] for c in CHUNKS},
        **{f"chunk {c} frames/s": f"{FRAMES / timings[f'chunk {c}'].median:.2f}" for c in CHUNKS},
        "chunk 8 / chunk 1": f"{eight.median / one.median:.3f}x wall",
        "frames": f"{FRAMES} at 160x90, Cycles 4 samples, 4 local nodes",
        "failed runs": "; ".join(failures) if failures else "none",
    }
    report(
        "render_chunking",
        four.median,
        one.median,
        GOAL_RATIO,
        extra,
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="hpcrun render --chunk 4 (median wall)",
        yardstick_label="hpcrun render --chunk 1 (median wall)",
    )


if __name__ == "__main__":
    run_main(main)
