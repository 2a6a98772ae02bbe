"""k8s_apply: server-side apply of 50 objects by hpcrun against `kubectl apply --server-side`.

Both sides run on the same test control plane (scripts/k8s/up.sh: real etcd,
kube-apiserver, controller manager and scheduler; kwok fakes 6 GPU nodes, no container
runs). The objects: 10 IndeX sessions' worth of what `hpcrun index` applies
(`hpcrun.k8s.manifests.index_objects`: the scene ConfigMap, two Services, the viewer
StatefulSet, the worker Deployment; 2 nodes, 1 GPU a pod), 50 objects, with new names
every round so that every round creates them.

hpcrun side: in-process `Applier(connect(kubeconfig)).apply(objects)`, timed including
`connect` (lightkube is imported by the untimed warm-up round: its import is counted by
the process figure below, not here). Also reported: the whole process
`python -c 'import hpcrun.k8s.apply ...; apply the objects of a JSON file'`, which is what
one `kubectl` process is comparable to.

Yardstick: the whole `kubectl apply --server-side --field-manager=bench -f FILE` process,
the same objects as one multi-document YAML file (kubectl's discovery cache is warm after
the warm-up round, as on a machine that has used kubectl before).

Between rounds (untimed) `kubectl delete -f` removes what was applied, waiting until the
objects and their pods are gone. Interleaved (hpcrun, process, kubectl, ...) after one
untimed warm-up round, median of 5 (`--runs`). Goal: hpcrun / kubectl <= 1.0.
"""

from __future__ import annotations

import json
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Timing, interleaved, log, parse_args, report, run_main, run_quiet
from _k8s import (
    ControlPlane,
    add_runs,
    control_plane,
    require_binaries,
    session_objects,
    yaml_documents,
)

GOAL_RATIO = 1.0
NAMESPACE = "bench-apply"
SESSIONS = 10  # x 5 objects each
SETTLE_S = 2.0

PROCESS_CODE = """\
import json, sys
from hpcrun.k8s.apply import Applier, connect
with open(sys.argv[2]) as f:
    objects = json.load(f)
Applier(connect(sys.argv[1])).apply(objects)
"""


class Rounds:
    """New objects for every call: written as YAML (kubectl, delete) and JSON (the
    process), kept for the delete that follows."""

    def __init__(self, plane: ControlPlane, directory: Path) -> None:
        self.plane = plane
        self.directory = directory
        self.count = 0

    def objects(self, side: str) -> tuple[list[dict[str, Any]], Path, Path]:
        self.count += 1
        tag = f"{side}{self.count}-{secrets.token_hex(2)}"
        objects = [
            obj
            for s in range(SESSIONS)
            for obj in session_objects(f"b-{tag}-{s}", NAMESPACE, nodes=2, gpus_per_node=1)
        ]
        yaml_file = self.directory / f"{tag}.yaml"
        yaml_file.write_text(yaml_documents(objects))
        json_file = self.directory / f"{tag}.json"
        json_file.write_text(json.dumps(objects))
        return objects, yaml_file, json_file

    def delete(self, yaml_file: Path) -> None:
        started = time.perf_counter()
        self.plane.kubectl("delete", "-f", str(yaml_file), "--wait=true", "--timeout=120s")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pods = self.plane.kubectl("get", "pods", "-n", NAMESPACE, "-o", "name")
            if not pods.stdout.strip():
                break
            time.sleep(0.2)
        else:
            log(f"pods still in {NAMESPACE} after 120 s")
        # The controllers and etcd are still busy a moment after the last pod went: let
        # them settle, or the next side's apply shares the machine with them.
        log(f"deleted {yaml_file.stem} in {time.perf_counter() - started:.1f} s")
        time.sleep(SETTLE_S)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], add_runs)
    repeats = args.repeats or 5
    require_binaries("k8s_apply", ["kube-apiserver", "kwokctl", "kubectl"])
    from hpcrun.k8s.apply import Applier, connect

    with tempfile.TemporaryDirectory(prefix="hra") as tmp, control_plane(nodes=6) as plane:
        plane.kubectl("create", "namespace", NAMESPACE)
        rounds = Rounds(plane, Path(tmp))
        kubeconfig = str(plane.kubeconfig)
        kubectl = str(plane.bin / "kubectl")
        pending: dict[str, Path] = {}
        counts: list[int] = []
        # The files are written outside the timed part: each side times its own call.
        last_s: dict[str, float] = {}

        def in_process() -> None:
            objects, yaml_file, _ = rounds.objects("a")
            pending["hpcrun"] = yaml_file
            # timed from here: prepared objects are the input of both sides
            started = time.perf_counter()
            applied = Applier(connect(kubeconfig)).apply(objects)
            last_s["hpcrun"] = time.perf_counter() - started
            counts.append(len(applied))

        def as_process() -> None:
            _, yaml_file, json_file = rounds.objects("p")
            pending["process"] = yaml_file
            started = time.perf_counter()
            run_quiet([sys.executable, "-c", PROCESS_CODE, kubeconfig, str(json_file)],
                      plane.env)
            last_s["process"] = time.perf_counter() - started

        def with_kubectl() -> None:
            _, yaml_file, _ = rounds.objects("k")
            pending["kubectl"] = yaml_file
            started = time.perf_counter()
            run_quiet([kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side",
                       "--field-manager=bench", "-f", str(yaml_file)], plane.env)
            last_s["kubectl"] = time.perf_counter() - started

        sides = {"hpcrun": in_process, "process": as_process, "kubectl": with_kubectl}
        samples: dict[str, list[float]] = {name: [] for name in sides}

        def after(name: str, _result: Any) -> None:
            samples[name].append(last_s.pop(name))
            rounds.delete(pending.pop(name))

        log(f"timing the apply of {SESSIONS * 5} objects: hpcrun in-process, hpcrun as a "
            f"process, kubectl apply --server-side; {repeats} runs each after 1 warm-up")
        interleaved(sides, repeats, warmup=1, after=after)
        version = plane.kubectl("version", "--client", "-o", "json").stdout
        kubectl_version = json.loads(version)["clientVersion"]["gitVersion"]
    timings = {name: Timing(tuple(values[1:])) for name, values in samples.items()}
    hpcrun_t, process_t, kubectl_t = timings["hpcrun"], timings["process"], timings["kubectl"]
    report(
        "k8s_apply",
        hpcrun_t.median,
        kubectl_t.median,
        GOAL_RATIO,
        {
            "hpcrun Applier(connect()).apply() in-process": hpcrun_t,
            "kubectl apply --server-side (whole process)": kubectl_t,
            "hpcrun apply as a whole python process": process_t,
            "ratio process / kubectl": f"{process_t.median / kubectl_t.median:.3f}x",
            "objects applied per round": str(counts[-1] if counts else 0),
            "kubectl": kubectl_version,
        },
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="hpcrun apply, in-process (median)",
        yardstick_label="kubectl apply --server-side (median)",
    )


if __name__ == "__main__":
    run_main(main)
