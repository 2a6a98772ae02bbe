"""cli_startup: wall time of `hpcrun --help` against `pcluster --help` (aws-parallelcluster).

Both run as whole processes, median of 10 after one warm-up, taken in turn so load on
the machine hits both alike. `python -c pass` is printed as the floor no Python CLI can
beat. Then `python -X importtime -c 'import hpcrun.cli'` lists the 10 imports with the
largest cumulative time: start-up is mostly imports, so that is where to look.

Goal: hpcrun / pcluster <= 0.125.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _common import (
    PEERS_VENV,
    ROOT,
    Timing,
    fmt_s,
    hpcrun_exe,
    interleaved,
    log,
    measure,
    parse_args,
    peers_python,
    report,
    run_main,
)

GOAL_RATIO = 0.125


def run_silent(argv: list[str]) -> None:
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace")[-500:]
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {error}")


def import_times(python: str, module: str) -> list[tuple[int, int, str]]:
    """(cumulative us, self us, module) of every import, largest cumulative first."""
    done = subprocess.run([python, "-X", "importtime", "-c", f"import {module}"],
                          capture_output=True, text=True, cwd=ROOT)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|", 2)
        rows.append((int(cumulative_us), int(self_us), name.rstrip()))
    return sorted(rows, reverse=True)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 10
    hpcrun = hpcrun_exe()
    contenders = {
        "hpcrun --help": lambda: run_silent([hpcrun, "--help"]),
        "python -c pass": lambda: run_silent([sys.executable, "-c", "pass"]),
    }
    peer_python, why_not = peers_python(["aws-parallelcluster"], "import pcluster")
    pcluster = str(Path(peer_python).parent / "pcluster") if peer_python else None
    if pcluster is not None:
        contenders["pcluster --help"] = lambda: run_silent([pcluster, "--help"])
    else:
        log(f"pcluster unavailable, reporting absolute times only: {why_not}")

    log(f"timing {', '.join(contenders)}: {repeats} runs each after 1 warm-up")
    timings = interleaved(contenders, repeats, warmup=1)
    hpcrun_t = timings["hpcrun --help"]
    peer_t: Timing | None = timings.get("pcluster --help")

    # The import alone, as a process: what `--help` costs beyond it is Typer/rich rendering.
    import_t = measure(lambda: run_silent([sys.executable, "-c", "import hpcrun.cli"]), 5, warmup=1)

    rows = import_times(sys.executable, "hpcrun.cli")
    top = rows[:10]
    width = max(len(name.strip()) for _, _, name in top) if top else 10
    lines = [f"{'module'.ljust(width)}  {'cumulative':>10}  {'self':>8}  depth"]
    lines += [
        f"{name.strip().ljust(width)}  {fmt_s(c / 1e6):>10}  {fmt_s(s / 1e6):>8}  "
        f"{(len(name) - len(name.lstrip()) - 1) // 2}"
        for c, s, name in top
    ]

    if not args.json:
        print("python -X importtime -c 'import hpcrun.cli': top 10 by cumulative time")
        for line in lines:
            print("  " + line)
        print()
    notes = [] if peer_t is not None else [f"no pcluster yardstick: {why_not}"]
    report(
        "cli_startup",
        hpcrun_t.median,
        peer_t.median if peer_t is not None else None,
        GOAL_RATIO,
        {
            "hpcrun --help": hpcrun_t,
            "pcluster --help": peer_t if peer_t is not None else "not available",
            "python -c pass (floor)": timings["python -c pass"],
            "python -c 'import hpcrun.cli'": import_t,
            "hpcrun --help over the floor": hpcrun_t.median - timings["python -c pass"].median,
            "pcluster from": str(PEERS_VENV.relative_to(ROOT)) if peer_t is not None else "-",
            "importtime top 10": [
                {"module": name.strip(), "cumulative_us": c, "self_us": s} for c, s, name in top
            ] if args.json else f"{len(rows)} modules imported, listed above",
        },
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="hpcrun --help (median)",
        yardstick_label="pcluster --help (median)",
        notes=notes,
    )


if __name__ == "__main__":
    run_main(main)
