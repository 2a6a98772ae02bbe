"""submit_to_done: wall of `hpcrun submit --wait -- true` against raw sbatch + 20 ms polling.

hpcrun side: the whole `hpcrun submit --wait -- true` process, from start to exit.
Yardstick: what a careful script does without hpcrun: `sbatch --parsable --wrap true`,
then `squeue -h -j ID -t all -o %T` every 20 ms until the job is COMPLETED. Median of
5 each after one warm-up, taken in turn, both in the same scratch directory (their
default output files land there). A third contender, `SlurmClient.submit()` + `wait()`
in this process, shows how much of hpcrun's overhead is its wait loop rather than
process start-up.

Completion latency on Slurm is mostly the scheduler's timers, so the slurm.conf
scheduler settings of the local cluster are printed with the result.

Goal: hpcrun / raw <= 1.1 (BENCHMARKS.md also asks < 1 s absolute on the local cluster;
that is shown, and does not decide PASS).
"""

from __future__ import annotations

import subprocess
import tempfile
import time

from _common import bench_cluster, hpcrun_exe, interleaved, log, parse_args, report, run_main

GOAL_RATIO = 1.1
ABSOLUTE_GOAL_S = 1.0
POLL_S = 0.02
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE"}
TIMEOUT_S = 60.0


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 5
    from hpcrun.slurm.spec import JobSpec
    failures: list[str] = []

    with bench_cluster() as cluster, tempfile.TemporaryDirectory(prefix="hrb-out") as scratch:
        hpcrun = hpcrun_exe()

        def hpcrun_wait() -> str:
            done = subprocess.run([hpcrun, "submit", "--wait", "--", "true"], env=cluster.env,
                                  capture_output=True, text=True, cwd=scratch, timeout=TIMEOUT_S)
            if done.returncode != 0:
                failures.append(f"hpcrun exit {done.returncode}: {done.stderr.strip()}")
            return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""

        def raw_poll() -> str:
            done = subprocess.run(["sbatch", "--parsable", "--wrap", "true"], env=cluster.env,
                                  capture_output=True, text=True, cwd=scratch, check=True)
            job_id = done.stdout.strip().split(";", 1)[0]
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline:
                state = subprocess.run(
                    ["squeue", "-h", "-j", job_id, "-t", "all", "-o", "%T"],
                    env=cluster.env, capture_output=True, text=True,
                ).stdout.strip()
                if state in TERMINAL:
                    if state != "COMPLETED":
                        failures.append(f"raw job {job_id} ended {state}")
                    return job_id
                time.sleep(POLL_S)
            failures.append(f"raw job {job_id} not done in {TIMEOUT_S:g} s")
            return job_id

        client = cluster.client()

        def in_process() -> str:
            # hpcrun's own wait loop without the process around it: tells polling
            # cadence apart from start-up and state-store costs.
            job_id = str(client.submit(JobSpec(command=("true",), workdir=scratch)))
            ended = client.wait(job_id, timeout_s=TIMEOUT_S)
            if any(str(j.state) != "COMPLETED" for j in ended):
                failures.append(f"in-process job {job_id} ended {[str(j.state) for j in ended]}")
            return job_id

        log(f"submit-to-done: {repeats} runs each way after 1 warm-up")
        timings = interleaved(
            {"hpcrun": hpcrun_wait, "raw": raw_poll, "in_process": in_process},
            repeats, warmup=1,
        )
        config = cluster.config()
        sched = {k: config.get(k, "?") for k in ("SchedulerType", "SchedulerParameters")}

    hpcrun_t, raw_t = timings["hpcrun"], timings["raw"]
    extra: dict[str, object] = {
        "hpcrun submit --wait -- true": hpcrun_t,
        "sbatch + squeue every 20 ms": raw_t,
        "SlurmClient.submit() + wait() in-process": timings["in_process"],
        "hpcrun overhead (median)": hpcrun_t.median - raw_t.median,
        f"hpcrun < {ABSOLUTE_GOAL_S:g} s absolute (local goal)":
            "met" if hpcrun_t.median < ABSOLUTE_GOAL_S else f"not met ({hpcrun_t.median:.2f} s)",
        **{f"slurm.conf {k}": v for k, v in sched.items()},
        "failed runs": "; ".join(failures) if failures else "none",
    }
    report(
        "submit_to_done",
        hpcrun_t.median,
        raw_t.median,
        GOAL_RATIO,
        extra,
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="hpcrun submit --wait (median)",
        yardstick_label="sbatch + 20 ms squeue polling (median)",
    )


if __name__ == "__main__":
    run_main(main)
