"""status_scale: `hpcrun jobs --json` with 10 000 array tasks queued, against `squeue -r`.

Setup: one held array of 10 000 tasks (`sbatch -H --array=0-9999 -o /dev/null --wrap
true`), so the queue stays put while we measure. hpcrun side: the whole `hpcrun jobs
--json` process, median of 5 after one warm-up. Yardstick: `squeue -h -r -t all -o FMT`
with the very format hpcrun asks for. The script also checks that the JSON lists all
10 000 tasks, and counts the Slurm commands `hpcrun jobs` runs by tracing its execve
calls under strace (installed with apt-get when missing). The array is cancelled after.

Goal (issue 19): hpcrun jobs --json < 0.25 s, with exactly one Slurm call.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from _common import (
    Goal,
    Timing,
    bench_cluster,
    hpcrun_exe,
    interleaved,
    log,
    measure,
    parse_args,
    report,
    run_main,
)

TASKS = 10_000
GOAL_S = 0.25
SLURM_COMMANDS = {"squeue", "sacct", "sinfo", "scontrol", "sbatch", "scancel", "srun",
                  "salloc", "sacctmgr", "sstat", "sprio", "sshare"}


def ensure_strace() -> str | None:
    found = shutil.which("strace")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing strace (apt-get)")
        subprocess.run(["apt-get", "install", "-y", "-q", "strace"], capture_output=True)
        found = shutil.which("strace")
    return found


def count_slurm_calls(
    strace: str, argv: list[str], env: dict[str, str]
) -> tuple[Counter[str], int]:
    """Slurm commands `argv` runs (successful execve of a known Slurm client, any depth),
    and how many programs it ran in all."""
    with tempfile.TemporaryDirectory(prefix="hrb-strace") as scratch:
        trace = Path(scratch) / "trace"
        # -z: successful calls only, so PATH probing (ENOENT) is not counted.
        subprocess.run([strace, "-f", "-z", "-qq", "-e", "trace=execve", "-o", str(trace), *argv],
                       env=env, capture_output=True, check=True)
        calls: Counter[str] = Counter()
        programs = 0
        for line in trace.read_text().splitlines():
            if 'execve("' not in line:
                continue
            programs += 1
            path = line.split('execve("', 1)[1].split('"', 1)[0]
            name = os.path.basename(path)
            if name in SLURM_COMMANDS:
                calls[name] += 1
        return calls, programs - 1  # the first execve is hpcrun itself


def cpu_time(argv: list[str], env: dict[str, str], cwd: str | None = None) -> float:
    """CPU seconds (user + system, with the Slurm commands it ran) of one run of `argv`:
    unlike its wall time, barely moved by what else the 2 cores are running."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = 0  # reaped by wait4
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 5
    from hpcrun.slurm.parse import SQUEUE_FORMAT

    strace = ensure_strace()
    with bench_cluster() as cluster:
        done = cluster.slurm("sbatch", "--parsable", "-H", f"--array=0-{TASKS - 1}",
                             "-o", "/dev/null", "--wrap", "true")
        array_id = done.stdout.strip().split(";", 1)[0]
        log(f"held array {array_id} of {TASKS} tasks submitted")
        try:
            hpcrun = hpcrun_exe()
            squeue_argv = ["squeue", "-h", "-r", "-t", "all", "-o", SQUEUE_FORMAT]

            def hpcrun_jobs() -> str:
                return cluster.hpcrun("jobs", "--json").stdout

            def squeue() -> str:
                return cluster.slurm(*squeue_argv).stdout

            log(f"timing hpcrun jobs --json and squeue -r: {repeats} runs each after 1 warm-up")
            timings = interleaved({"hpcrun": hpcrun_jobs, "squeue": squeue}, repeats, warmup=1)

            listed = json.loads(hpcrun_jobs())
            squeue_lines = len(squeue().splitlines())
            tasks_in_array = sum(1 for j in listed if j.get("array_job_id") == array_id)

            client = cluster.client()
            in_process = measure(client.jobs, repeats, warmup=1)
            cpu = Timing(tuple(cpu_time([hpcrun, "jobs", "--json"], cluster.env)
                               for _ in range(repeats)))

            if strace is not None:
                calls, programs = count_slurm_calls(strace, [hpcrun, "jobs", "--json"], cluster.env)
                slurm_calls: int | None = sum(calls.values())
                calls_text = (", ".join(f"{n} x{c}" for n, c in sorted(calls.items())) or "none")
                calls_text += f" ({programs} programs run in all)"
            else:
                slurm_calls, calls_text = None, "not counted: strace unavailable"
        finally:
            cluster.cancel(array_id)

    hpcrun_t, squeue_t = timings["hpcrun"], timings["squeue"]
    checks = {
        f"JSON lists {TASKS} tasks of the array": tasks_in_array == TASKS,
        "exactly one Slurm call": slurm_calls == 1,
    }
    report(
        "status_scale",
        hpcrun_t.median,
        squeue_t.median,
        None,
        {
            "hpcrun jobs --json": hpcrun_t,
            "squeue -h -r -t all -o FMT": squeue_t,
            "SlurmClient.jobs() in-process": in_process,
            "hpcrun jobs --json CPU (user+sys, with squeue)": cpu,
            "entries in hpcrun JSON": f"{len(listed)} ({tasks_in_array} of array {array_id})",
            "lines from squeue -r": str(squeue_lines),
            "Slurm calls by hpcrun jobs": calls_text,
        },
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="hpcrun jobs --json (median)",
        yardstick_label="squeue -r (median)",
        goal=Goal(GOAL_S, op="<", unit="s", checks=checks),
        notes=["the RATIO value is hpcrun's seconds (goal: under 0.25 s), not hpcrun/squeue"],
    )


if __name__ == "__main__":
    run_main(main)
