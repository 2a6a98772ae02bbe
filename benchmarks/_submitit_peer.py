"""The submitit side of submit_cli; runs in benchmarks/.peers-venv, never imports hpcrun.

Usage: python _submitit_peer.py FOLDER COUNT. Builds one submitit Slurm executor (untimed),
then for each line read on stdin times one `executor.map_array(noop, range(COUNT))` in
this process, cancels the array (untimed, and waits until Slurm has let it go), and
prints one JSON line: {"s": seconds, "job_id": array id}. SLURM_CONF comes from the
environment. An empty stdin ends it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import submitit


def noop(index: int) -> int:
    return index


def cancel(job_id: str) -> None:
    subprocess.run(["scancel", job_id], capture_output=True)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        done = subprocess.run(["squeue", "-h", "-j", job_id, "-t", "PD,R,CG,CF,S", "-o", "%i"],
                              capture_output=True, text=True)
        if done.returncode != 0 or not done.stdout.strip():
            return
        time.sleep(0.05)


def main() -> None:
    folder, count = sys.argv[1], int(sys.argv[2])
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(timeout_min=5)
    for _ in sys.stdin:
        started = time.perf_counter()
        jobs = executor.map_array(noop, range(count))
        elapsed = time.perf_counter() - started
        job_id = str(jobs[0].job_id).split("_", 1)[0]
        cancel(job_id)
        print(json.dumps({"s": elapsed, "job_id": job_id, "tasks": len(jobs)}), flush=True)


if __name__ == "__main__":
    main()
