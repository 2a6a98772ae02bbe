"""flare_job: submit to FINISHED of a 1-round job through `hpcrun flare submit --wait` vs
FLARE's own `nvflare job submit` + `nvflare job wait`, on the same running system.

One system (`hpcrun flare up --sites 2` on a 4-node local cluster) serves both; the job is
hpcrun's shipped example (`hpcrun flare example`: numpy scatter and gather, 1 round, 2
sites). hpcrun side: the whole `flare submit JOB --wait --json` command. Yardstick: the two
`nvflare --format json` commands with the same admin kit, timed together. Interleaved,
median of `--repeats` (default 3). Goal (BENCHMARKS.md): <= 1.1x.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import bench_cluster, log, parse_args, report, run_main
from _flare import NVFLARE


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 3
    ours: list[float] = []
    theirs: list[float] = []
    with bench_cluster() as cluster, tempfile.TemporaryDirectory(prefix="hrfj") as tmp:
        job = Path(tmp) / "hello-numpy"
        cluster.hpcrun("flare", "example", str(job))
        up = json.loads(cluster.hpcrun("flare", "up", "--sites", "2", "--json").stdout)
        kit = up["admin_kit"]
        try:
            for i in range(repeats):
                log(f"run {i + 1}/{repeats}: hpcrun flare submit --wait")
                started = time.perf_counter()
                done = json.loads(
                    cluster.hpcrun("flare", "submit", str(job), "--wait", "--json").stdout
                )
                ours.append(time.perf_counter() - started)
                assert done["status"] == "FINISHED:COMPLETED", done
                log(f"run {i + 1}/{repeats}: nvflare job submit + job wait")
                started = time.perf_counter()
                submitted = subprocess.run(
                    [NVFLARE, "--format", "json", "job", "submit", "-j", str(job),
                     "--startup-kit", kit], capture_output=True, text=True, check=True)
                job_id = json.loads(submitted.stdout.strip().splitlines()[-1])["data"]["job_id"]
                waited = subprocess.run(
                    [NVFLARE, "--format", "json", "job", "wait", job_id, "--startup-kit", kit],
                    capture_output=True, text=True, check=True)
                theirs.append(time.perf_counter() - started)
                status = json.loads(waited.stdout.strip().splitlines()[-1])["data"]["status"]
                assert status == "FINISHED:COMPLETED", waited.stdout
        finally:
            cluster.hpcrun("flare", "down", check=False)
    report("flare_job", statistics.median(ours), statistics.median(theirs), 1.1,
           {"hpcrun runs": ", ".join(f"{s:.2f}" for s in ours),
            "nvflare runs": ", ".join(f"{s:.2f}" for s in theirs)},
           as_json=args.json, strict=args.strict,
           hpcrun_label="hpcrun flare submit --wait (median)",
           yardstick_label="nvflare job submit + job wait (median)")


if __name__ == "__main__":
    run_main(main)
