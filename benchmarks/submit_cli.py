"""submit_cli: wall of `hpcrun submit --array 0-999 -o /dev/null -- true` against submitit.

hpcrun side: the whole `hpcrun submit` process (Python start-up, imports, state store,
sbatch), as a user at a shell sees it. Yardstick: submitit's `executor.map_array` of
1000 trivial calls, timed in-process inside a long-lived Python of
benchmarks/.peers-venv (see _submitit_peer.py), with a scratch folder of its own.
Median of 7 each after one warm-up, taken in turn; every array is cancelled (untimed)
before the next submission.

If submitit cannot be installed or cannot submit, hpcrun's time is reported alone and
the reason is printed.

Goal: hpcrun / submitit <= 1.0.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from _common import (
    BENCH_DIR,
    Timing,
    bench_cluster,
    cap_repeats,
    end_peer,
    hpcrun_exe,
    interleaved,
    log,
    measure,
    parse_args,
    peers_python,
    report,
    run_main,
    run_quiet,
)

GOAL_RATIO = 1.0
COUNT = 1000


class SubmititPeer:
    """A Python in the peers venv that times one map_array per request."""

    def __init__(self, python: str, folder: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [python, str(BENCH_DIR / "_submitit_peer.py"), folder, str(COUNT)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, cwd=folder,
        )

    def map_array(self) -> dict[str, object]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=10)
            error = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"submitit peer exited {self.proc.returncode}: {error[-1500:]}")
        return dict(json.loads(line))

    def close(self) -> None:
        end_peer(self.proc)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 7
    peer_python, why_not = peers_python(["submitit"], "import submitit")

    with bench_cluster() as cluster, tempfile.TemporaryDirectory(prefix="hrb-cli") as scratch:
        hpcrun = hpcrun_exe()
        # Two contenders, one warm-up round, plus the peer's untimed probe submission.
        capacity = cluster.array_capacity(COUNT) - (1 if peer_python else 0)
        repeats = cap_repeats(repeats, 2 if peer_python else 1, 1, capacity, "arrays of 1000")
        workdir = Path(scratch) / "hpcrun"
        workdir.mkdir()

        def hpcrun_submit() -> str:
            argv = [hpcrun, "submit", "--array", f"0-{COUNT - 1}", "-o", "/dev/null", "--", "true"]
            return run_quiet(argv, cluster.env, cwd=workdir).stdout.strip()

        peer: SubmititPeer | None = None
        submitit_samples: list[float] = []
        if peer_python is not None:
            folder = Path(scratch) / "submitit"
            folder.mkdir()
            peer = SubmititPeer(peer_python, str(folder), cluster.env)
        try:
            if peer is not None:
                try:
                    peer.map_array()  # fail early, before the timed rounds, if it cannot
                except RuntimeError as exc:
                    why_not = str(exc)
                    peer.close()
                    peer = None
            if peer is not None:
                running = peer

                def submitit_map_array() -> float:
                    # The time is the peer's own, in-process: its Python start-up is not in it.
                    return float(running.map_array()["s"])  # type: ignore[arg-type]

                def after(name: str, result: object) -> None:
                    if name == "submitit":
                        submitit_samples.append(float(result))  # type: ignore[arg-type]
                    else:
                        cluster.cancel(str(result))

                log(f"hpcrun submit vs submitit map_array: {repeats} runs each after 1 warm-up")
                # interleaved() also times the round trip to the peer (and its untimed
                # cancel); only the peer's own figure, collected in `after`, is used.
                timings = interleaved(
                    {"hpcrun": hpcrun_submit, "submitit": submitit_map_array},
                    repeats, warmup=1, after=after,
                )
                hpcrun_t = timings["hpcrun"]
                submitit_samples = submitit_samples[1:]  # drop the warm-up round
            else:
                log(f"submitit unavailable ({why_not}); timing hpcrun alone")
                hpcrun_t = measure(hpcrun_submit, repeats, warmup=1, after=cluster.cancel)
        finally:
            if peer is not None:
                peer.close()

    submitit_t = Timing(tuple(submitit_samples)) if submitit_samples else None
    report(
        "submit_cli",
        hpcrun_t.median,
        submitit_t.median if submitit_t is not None else None,
        GOAL_RATIO,
        {
            "hpcrun submit --array 0-999 (process)": hpcrun_t,
            "submitit map_array x1000 (in-process)": submitit_t if submitit_t else "not run",
        },
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="hpcrun submit --array 0-999 (median)",
        yardstick_label="submitit map_array of 1000 (median)",
        notes=[] if submitit_t else [f"no submitit yardstick: {why_not}"],
    )


if __name__ == "__main__":
    run_main(main)
