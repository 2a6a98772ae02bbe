"""config_validate: wall time of `hpcrun config validate FILE` vs `pcluster create-cluster --dryrun`

Both check the same ParallelCluster cluster: the configs/index-g4dn.yaml preset with its
AMI, subnet and key pair replaced by ones that exist in a moto server (the AWS stand-in)
started on loopback for this run. hpcrun's side is `hpcrun config validate FILE`: its own
checks plus ParallelCluster's schema run in-process, offline. The yardstick is what a
user of ParallelCluster alone runs: `pcluster create-cluster --dryrun true` on the file
`hpcrun config render FILE --format pcluster-v3` wrote, against moto, with the
validators moto cannot satisfy suppressed (hpcrun.backends.pcluster_api.SUPPRESS_FOR_MOTO).
Both run as whole processes (the venv's `hpcrun` and `pcluster`), taken in turn, median
of 5 after one warm-up. `pcluster version` is printed as pcluster's start-up floor, and
`hpcrun config validate --no-pcluster` as hpcrun's cost without ParallelCluster's schema.

The dry run checks more (that the AMI, subnet and instance types exist in the account):
the figure says what the offline check costs next to the online one, which hpcrun runs
only at `create`.

Goal (issue 19): hpcrun / pcluster <= 0.3 (was 1.0; 0.505x reached 2026-12-02).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from _common import ROOT, Timing, hpcrun_exe, interleaved, log, parse_args, report, run_main

from hpcrun.backends.pcluster_api import DRY_RUN_OK, SUPPRESS_FOR_MOTO, pcluster_executable
from hpcrun.errors import HpcrunError

sys.path.insert(0, str(ROOT))  # moto is started and seeded exactly as the tests do it
from tests.aws import REGION, moto_server, pcluster_cluster_data, seed_network

GOAL_RATIO = 0.3
CLUSTER_NAME = "bench-validate"


# the contenders ---------------------------------------------------------------------------


def run_checked(argv: list[str], env: dict[str, str], ok: Any) -> None:
    """Run a command; `ok(completed)` must hold, else fail loudly with its output."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
    if not ok(done):
        raise RuntimeError(
            f"{' '.join(argv[:4])} ... exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )


def dry_run_passed(done: subprocess.CompletedProcess[str]) -> bool:
    # pcluster exits 1 even when the dry run passes; its message tells.
    try:
        return bool(json.loads(done.stdout).get("message") == DRY_RUN_OK)
    except json.JSONDecodeError:
        return False


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 5
    hpcrun = hpcrun_exe()
    try:
        pcluster = pcluster_executable()
    except HpcrunError as exc:
        log(f"{exc.message}: reporting hpcrun alone")
        pcluster = None

    with tempfile.TemporaryDirectory(prefix="hrbv") as tmp, moto_server(Path(tmp)) as server:
        work = Path(tmp)
        (work / "home").mkdir()
        env = {**server.env(), "HOME": str(work / "home")}  # pcluster logs under $HOME
        log(f"moto server at {server.url}; seeding VPC, subnet, key pair, AMI")
        data = pcluster_cluster_data(seed_network(server), CLUSTER_NAME)
        hpcrun_file = work / "cluster.yaml"
        hpcrun_file.write_text(yaml.safe_dump(data, sort_keys=False))
        rendered = subprocess.run(
            [hpcrun, "config", "render", str(hpcrun_file), "--format", "pcluster-v3"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        pcluster_file = work / "pcluster.yaml"
        pcluster_file.write_text(rendered)

        def passed(done: subprocess.CompletedProcess[str]) -> bool:
            return done.returncode == 0

        contenders = {
            "hpcrun config validate": lambda: run_checked(
                [hpcrun, "config", "validate", str(hpcrun_file)], env, passed
            ),
            "hpcrun config validate --no-pcluster": lambda: run_checked(
                [hpcrun, "config", "validate", "--no-pcluster", str(hpcrun_file)], env, passed
            ),
        }
        if pcluster is not None:
            dry_run = [
                pcluster,
                "create-cluster",
                "--cluster-name",
                CLUSTER_NAME,
                "--cluster-configuration",
                str(pcluster_file),
                "--dryrun",
                "true",
                "--suppress-validators",
                *SUPPRESS_FOR_MOTO,
                "--region",
                REGION,
            ]
            contenders["pcluster create-cluster --dryrun"] = lambda: run_checked(
                dry_run, env, dry_run_passed
            )
            contenders["pcluster version"] = lambda: run_checked([pcluster, "version"], env, passed)
        log(f"timing {', '.join(contenders)}: {repeats} runs each after 1 warm-up")
        timings = interleaved(contenders, repeats, warmup=1)

    hpcrun_t = timings["hpcrun config validate"]
    peer_t: Timing | None = timings.get("pcluster create-cluster --dryrun")
    floor_t = timings.get("pcluster version")
    extra: dict[str, Any] = {
        "hpcrun config validate": hpcrun_t,
        "hpcrun config validate --no-pcluster": timings["hpcrun config validate --no-pcluster"],
        "pcluster create-cluster --dryrun": peer_t if peer_t is not None else "not available",
        "pcluster version (start-up floor)": floor_t if floor_t is not None else "-",
    }
    if peer_t is not None and floor_t is not None:
        extra["dry run over pcluster's start-up"] = peer_t.median - floor_t.median
    extra["cores (nproc)"] = str(os.cpu_count())
    report(
        "config_validate",
        hpcrun_t.median,
        peer_t.median if peer_t is not None else None,
        GOAL_RATIO,
        extra,
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="hpcrun config validate (median)",
        yardstick_label="pcluster create-cluster --dryrun vs moto (median)",
        notes=[]
        if peer_t is not None
        else ["pcluster is not installed: pip install 'hpcrun[aws]'"],
    )


if __name__ == "__main__":
    run_main(main)
