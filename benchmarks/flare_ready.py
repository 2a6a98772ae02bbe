"""flare_ready: `hpcrun flare up --sites 2` until both sites registered vs the same FLARE
system started by hand in the same run (provision + server + 2 clients as processes).

hpcrun side: the whole command on a 4-node local cluster (provisioning, the server job
and the site array through Slurm, the sites' registration), then `flare down` (not
timed). Yardstick: `_flare.ByHand` (the same project, provisioned by FLARE's own
provisioner, processes started at once, timed until the server logs `Total clients: 2`).
Interleaved, median of `--repeats` (default 3). Goal (BENCHMARKS.md): <= 1.5x.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from _common import bench_cluster, log, parse_args, report, run_main
from _flare import ByHand


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 3
    ours: list[float] = []
    theirs: list[float] = []
    with bench_cluster() as cluster, tempfile.TemporaryDirectory(prefix="hrfl") as tmp:
        for i in range(repeats):
            log(f"run {i + 1}/{repeats}: hpcrun flare up --sites 2")
            started = time.perf_counter()
            up = json.loads(cluster.hpcrun("flare", "up", "--sites", "2", "--json").stdout)
            ours.append(time.perf_counter() - started)
            assert up["status"] == "running", up
            cluster.hpcrun("flare", "down", "--system", str(up["system"]))
            log(f"run {i + 1}/{repeats}: by hand")
            by_hand = ByHand(Path(tmp) / str(i), 2)
            try:
                theirs.append(by_hand.start())
            finally:
                by_hand.stop()
    report("flare_ready", statistics.median(ours), statistics.median(theirs), 1.5,
           {"hpcrun runs": ", ".join(f"{s:.2f}" for s in ours),
            "by-hand runs": ", ".join(f"{s:.2f}" for s in theirs)},
           as_json=args.json, strict=args.strict,
           hpcrun_label="hpcrun flare up --sites 2 to registered (median)",
           yardstick_label="provision + server + 2 clients by hand (median)")


if __name__ == "__main__":
    run_main(main)
