"""render_submit: wall of `hpcrun render --detach` for 1000 frames vs `hpcrun submit --array`.

hpcrun side: the whole `hpcrun render rolling_ball.blend --frames 1-1000 --chunk 1
--encode none --detach` process: it checks the file, asks Blender for the scene's frame
range (`blender -b`, the check that refuses frames beyond the scene; remembered per file
and Blender, so only the warm-up pays it: the timed runs read it from the state store, as
any resubmission of a file does), makes sure the output is writable, looks for frames
already rendered, writes the chunk table and script and submits the 1000-task array.
Yardstick: `hpcrun submit --array 0-999 -- true` in the same run, hpcrun's own submission
floor: what render adds to it is the work above. A raw
`sbatch --parsable --array=0-999 --wrap true` is shown too, but is no yardstick for a
process that starts Python (issue 19). Every array is cancelled right after it is timed
(not timed). Median of `--repeats` (default 3) after one warm-up, in turn.

Goal (issue 19): render / submit <= 1.3.
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

FRAMES = 1000
GOAL_RATIO = 1.3


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 3
    failures: list[str] = []
    with bench_cluster() as cluster, tempfile.TemporaryDirectory(prefix="hrbs") as tmp:
        work = Path(tmp)
        blend = rolling_ball(work / "rolling_ball.blend", FRAMES)
        runs = count()

        def run(argv: list[str]) -> str:
            done = subprocess.run(argv, env=cluster.env, capture_output=True, text=True, cwd=work)
            if done.returncode != 0:
                failures.append(f"{argv[1]}: exit {done.returncode} {done.stderr[-300:]}")
                return ""
            return done.stdout

        def hpcrun_render() -> str:
            out = run([hpcrun_exe(), "render", str(blend), "--frames", f"1-{FRAMES}",
                       "--chunk", "1", "--encode", "none", "--detach", "--json",
                       "--output", str(work / f"out-{next(runs)}")])
            return str(json.loads(out)["array_job_id"]) if out else ""

        def hpcrun_submit() -> str:
            return run([hpcrun_exe(), "submit", "--array", f"0-{FRAMES - 1}",
                        "--output", "/dev/null", "--", "true"]).strip()

        def raw() -> str:
            return run(["sbatch", "--parsable", f"--array=0-{FRAMES - 1}", "--output",
                        "/dev/null", "--wrap", "true"]).strip().split(";")[0]

        def cancel(name: str, job_id: str) -> None:
            if job_id:
                subprocess.run(["scancel", job_id], env=cluster.env, check=False)

        contenders: dict[str, Callable[[], str]] = {
            "hpcrun render --detach": hpcrun_render,
            "raw sbatch --array": raw,
            "hpcrun submit --array": hpcrun_submit,
        }
        log(f"{FRAMES}-frame submissions: {repeats} runs each after 1 warm-up")
        timings = interleaved(contenders, repeats, warmup=1, after=cancel)
    hpcrun_t, submit_t = timings["hpcrun render --detach"], timings["hpcrun submit --array"]
    report(
        "render_submit",
        hpcrun_t.median,
        submit_t.median,
        GOAL_RATIO,
        {
            "hpcrun render --detach": hpcrun_t,
            "hpcrun submit --array 0-999 -- true": submit_t,
            "sbatch --array=0-999 --wrap true (no yardstick)": timings["raw sbatch --array"],
            "failed runs": "; ".join(failures) if failures else "none",
        },
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="hpcrun render --detach, 1000 frames (median)",
        yardstick_label="hpcrun submit --array 0-999 (median)",
    )


if __name__ == "__main__":
    run_main(main)
