"""index_ready: seconds from `hpcrun index --nodes 4 --scene supernova` to the readiness line.

hpcrun side: the whole `hpcrun index` process on a fresh 6-node local cluster, timed from
its start to the moment the viewer's line "[viewer] Application layer viewer server is
running at http://..." appears in the step's output (polled every 5 ms), and to the
command's exit, when all 4 render agents have registered. The scene data (256^3
supernova) is generated before the first timed run, as `make demo` would have done;
numba kernels come from the cache `make setup` fills. Median of 3, each session stopped
before the next.

Yardstick: none (the seed workflow is manual; IndeX on AWS takes minutes).
Goal (issue 19): < 1.0 s (was 10 s).
"""

from __future__ import annotations

import statistics

from _common import Goal, bench_cluster, log, parse_args, report, run_main
from _index import start_session, stop_session

GOAL_S = 1.0


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 3
    from hpcrun.scenes import ensure_data, load_scene
    from hpcrun.scenes.catalog import resolve_scene

    ensure_data(load_scene(resolve_scene("supernova")))
    ready, done = [], []
    with bench_cluster(nodes=6) as cluster:
        for run in range(repeats):
            ready_s, done_s, started = start_session(cluster, 4)
            log(f"run {run + 1}: ready {ready_s:.2f} s, {started['agents']} agents {done_s:.2f} s")
            ready.append(ready_s)
            done.append(done_s)
            stop_session(cluster)
    median_ready = statistics.median(ready)
    report(
        "index_ready",
        median_ready,
        None,
        GOAL_S,
        {
            "hpcrun index -> readiness line (median)": median_ready,
            "hpcrun index -> 4 agents registered (median)": statistics.median(done),
            "runs (ready s)": ", ".join(f"{r:.2f}" for r in ready),
        },
        as_json=args.json,
        strict=args.strict,
        goal=Goal(GOAL_S, "<", "s"),
    )


if __name__ == "__main__":
    run_main(main)
