"""k8s_index_ready: `hpcrun index --nodes 4` on Kubernetes to all pods Ready, against helm.

Both sides run on the same test control plane (scripts/k8s/up.sh: real etcd,
kube-apiserver, controller manager and scheduler; kwok fakes 6 GPU nodes with 2
nvidia.com/gpu each and marks pods Ready, no container runs), attached as a `backend:
kubernetes` cluster in a fresh HPCRUN_HOME.

hpcrun side: wall time of the whole `hpcrun index --nodes 4 --scene supernova --json`
process, start to exit (it returns once every pod of the session is Ready); then `hpcrun
index stop` (untimed). After the timed runs, one more, untimed, without --json: its
progress lines on stderr are printed time-stamped from its start (where the time goes).
helm v3's `--wait` checks readiness every 2 s, so helm's figure is about 2 s whatever
the cluster does.

Yardstick: `helm install NAME CHART --wait` of an equivalent chart the script writes: the
very objects hpcrun applies (`hpcrun.k8s.manifests.index_objects`, 4 nodes, 2 GPUs a pod,
the same image and the supernova scene files), templated in their names only
(`{{ .Release.Name }}`); then `helm uninstall --wait` (untimed). After each side, untimed,
the script waits until the namespace has no pod left.

Runs are interleaved (hpcrun, helm, hpcrun, helm, ...) after one untimed warm-up round;
median of 5 (`--runs`). Goal: hpcrun / helm <= 1.0.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import Timing, fmt_s, hpcrun_exe, interleaved, log, parse_args, report, run_main
from _k8s import (
    Attached,
    ControlPlane,
    add_runs,
    attach,
    control_plane,
    require_binaries,
    session_objects,
    yaml_documents,
)

GOAL_RATIO = 1.0
NAMESPACE = "bench-index"
NODES = 4
PLACEHOLDER = "relname0placeholder"


def write_chart(directory: Path) -> Path:
    """A chart whose templates are hpcrun's objects, every name `{{ .Release.Name }}-...`."""
    chart = directory / "nvindex-bench"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: nvindex-bench\nversion: 0.1.0\n"
        "description: the objects of `hpcrun index --nodes 4 --scene supernova`\n"
    )
    text = yaml_documents(session_objects(PLACEHOLDER, NAMESPACE, nodes=NODES))
    if "{{" in text:
        raise RuntimeError("the objects hold `{{`: they cannot be a helm template as they are")
    (chart / "templates" / "objects.yaml").write_text(
        text.replace(PLACEHOLDER, "{{ .Release.Name }}")
    )
    return chart


class HpcrunIndex:
    """`hpcrun index` as a process, its stderr lines time-stamped from its start."""

    def __init__(self, attached: Attached) -> None:
        self.attached = attached
        self.timelines: list[tuple[float, list[tuple[float, str]], dict[str, Any]]] = []

    def __call__(self, *, json_out: bool = True) -> None:
        argv = [hpcrun_exe(), "index", "--nodes", str(NODES), "--scene", "supernova",
                "--cluster", "kube", *(["--json"] if json_out else [])]
        lines: list[tuple[float, str]] = []
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=self.attached.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append((time.perf_counter() - started, line.rstrip()))

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        out = proc.stdout.read() if proc.stdout is not None else ""
        proc.wait()
        elapsed = time.perf_counter() - started
        reader.join(timeout=5)
        if proc.returncode != 0:
            said = "\n".join(text for _, text in lines)
            raise RuntimeError(f"hpcrun index exited {proc.returncode}:\n{said}")
        result = json.loads(out) if json_out else {"text": out.strip()}
        self.timelines.append((elapsed, lines, result))

    def stop(self) -> None:
        done = self.attached.hpcrun("index", "stop", check=False)
        if done.returncode != 0:
            log(f"hpcrun index stop exited {done.returncode}: {done.stderr.strip()}")


class HelmInstall:
    def __init__(self, plane: ControlPlane, chart: Path) -> None:
        self.plane = plane
        self.chart = chart
        self.last: str | None = None

    def __call__(self) -> None:
        name = f"index-h-{secrets.token_hex(2)}"
        self.plane.tool("helm", "install", name, str(self.chart), "--wait", "--timeout", "5m",
                        "--namespace", NAMESPACE)
        self.last = name

    def uninstall(self) -> None:
        if self.last is not None:
            self.plane.tool("helm", "uninstall", self.last, "--wait", "--namespace", NAMESPACE)
            self.last = None


def wait_no_pods(plane: ControlPlane, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = plane.kubectl("get", "pods", "-n", NAMESPACE, "-o", "name")
        if not done.stdout.strip():
            return
        time.sleep(0.2)
    log(f"pods still in {NAMESPACE} after {timeout_s:g} s")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], add_runs)
    repeats = args.repeats or 5
    require_binaries("k8s_index_ready", ["kube-apiserver", "kwokctl", "kubectl", "helm"])
    with tempfile.TemporaryDirectory(prefix="hrc") as tmp, control_plane(nodes=6) as plane, \
            attach(plane, NAMESPACE) as attached:
        chart = write_chart(Path(tmp))
        hpcrun_side = HpcrunIndex(attached)
        helm_side = HelmInstall(plane, chart)
        helm_version = plane.tool("helm", "version", "--short").stdout.strip()

        def after(name: str, _result: Any) -> None:
            if name.startswith("hpcrun"):
                hpcrun_side.stop()
            else:
                helm_side.uninstall()
            wait_no_pods(plane)
            log(f"{name} done")

        log(f"timing hpcrun index and helm install --wait ({helm_version}): "
            f"{repeats} runs each after 1 warm-up, interleaved")
        timings = interleaved({"hpcrun": hpcrun_side, "helm": helm_side}, repeats,
                              warmup=1, after=after)
        # One more, untimed, without --json: its progress lines show where the time goes.
        hpcrun_side(json_out=False)
        after("hpcrun (with progress)", None)
    hpcrun_t: Timing = timings["hpcrun"]
    helm_t: Timing = timings["helm"]
    results = [r for _, _, r in hpcrun_side.timelines[1:-1]]  # past the warm-up
    elapsed, lines, _ = hpcrun_side.timelines[-1]
    timeline = [f"+{fmt_s(at)}  {text}" for at, text in lines] + [f"+{fmt_s(elapsed)}  (exit)"]
    if not args.json:
        print("hpcrun index without --json (untimed, after the timed runs): its stderr lines,"
              " time from its start")
        for line in timeline:
            print("  " + line)
        print()
    report(
        "k8s_index_ready",
        hpcrun_t.median,
        helm_t.median,
        GOAL_RATIO,
        {
            "hpcrun index --nodes 4 (whole process)": hpcrun_t,
            "helm install --wait": helm_t,
            "hpcrun over helm": hpcrun_t.median - helm_t.median,
            "pods ready (timed runs)": ", ".join(str(r.get("pods_ready")) for r in results),
            "the progress run took": elapsed,
            "helm": helm_version,
            "progress run's stderr": timeline if args.json else "listed above",
        },
        as_json=args.json,
        strict=args.strict,
        hpcrun_label="hpcrun index (median)",
        yardstick_label="helm install --wait (median)",
    )


if __name__ == "__main__":
    run_main(main)
