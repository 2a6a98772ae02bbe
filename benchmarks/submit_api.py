"""submit_api: `SlurmClient.submit()` of a 1000-task array, in-process, against raw sbatch.

hpcrun side: `client.submit(JobSpec(command=("true",), array="0-999", output="/dev/null"))`
in this process (the JobSpec is built inside the timed call). Yardstick: the call a
script would make without hpcrun, `subprocess.run(["sbatch", "--parsable",
"--array=0-999", "-o", "/dev/null", "--wrap", "true"])`. Median of 7 each after one
warm-up, taken in turn; every array is cancelled (untimed) before the next submission so
the queue stays empty.

Goal: hpcrun / sbatch <= 1.2.
"""

from __future__ import annotations

import subprocess

from _common import bench_cluster, cap_repeats, interleaved, log, parse_args, report, run_main

GOAL_RATIO = 1.2
ARRAY = "0-999"


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 7
    from hpcrun.slurm.spec import JobSpec

    with bench_cluster() as cluster:
        client = cluster.client()
        repeats = cap_repeats(repeats, 2, 1, cluster.array_capacity(1000), "arrays of 1000")

        def hpcrun_submit() -> str:
            spec = JobSpec(command=("true",), array=ARRAY, output="/dev/null")
            return str(client.submit(spec))

        def raw_sbatch() -> str:
            done = subprocess.run(
                ["sbatch", "--parsable", f"--array={ARRAY}", "-o", "/dev/null", "--wrap", "true"],
                env=cluster.env, capture_output=True, text=True, check=True,
            )
            return done.stdout.strip().split(";", 1)[0]

        submitted: list[str] = []

        def cancel(_name: str, job_id: str) -> None:
            submitted.append(job_id)
            cluster.cancel(job_id)

        log(f"submitting {repeats + 1} arrays of {ARRAY} each way (first is a warm-up)")
        timings = interleaved(
            {"hpcrun": hpcrun_submit, "sbatch": raw_sbatch}, repeats, warmup=1, after=cancel
        )
        ok = all(job_id.isdigit() for job_id in submitted)

    hpcrun_t, raw_t = timings["hpcrun"], timings["sbatch"]
    report(
        "submit_api",
        hpcrun_t.median,
        raw_t.median,
        GOAL_RATIO,
        {
            "SlurmClient.submit()": hpcrun_t,
            "subprocess.run(sbatch)": raw_t,
            "hpcrun overhead (median)": hpcrun_t.median - raw_t.median,
            "job ids returned": "all numeric" if ok else f"unexpected: {submitted}",
            "cluster create (once)": cluster.create_s,
        },
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="SlurmClient.submit() 1000-task array",
        yardstick_label="subprocess.run(sbatch --array=0-999)",
    )


if __name__ == "__main__":
    run_main(main)
