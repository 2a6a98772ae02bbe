"""serve_scale: seconds from a served model's pods reporting high CPU to the autoscaler's
second replica Ready, on the test Kubernetes control plane.

What `hpcrun serve triton` creates (the Deployment and autoscaling/v2 HPA of
hpcrun.k8s.serve, at 50 % of 500m CPU, 1 to 3 replicas, no scale-down window), applied by
its own driver (kwok runs no container, so there is no model to export: the objects are
what is measured). Load "rises" when every pod's `kwok.x-k8s.io/usage-cpu` annotation goes
to 900m (180 %); the clock stops when `KubernetesServeDriver.state` reports 2 replicas
ready. Between runs the load drops to 10m and the replicas return to 1. Yardstick: what
the cluster's own timers allow at best, the HPA controller's sync period plus one
metrics-server resolution (scripts/k8s/up.sh sets 2 s and 10 s; EKS defaults are 15 s and
60 s). Median of `--repeats` (default 3). A figure to report, not a goal.
"""

from __future__ import annotations

import statistics
import time

from _common import Goal, log, parse_args, report, run_main
from _k8s import control_plane, require_binaries

HPA_SYNC_S = 2.0  # kube-controller-manager --horizontal-pod-autoscaler-sync-period (up.sh)
METRIC_RESOLUTION_S = 10.0  # metrics-server --metric-resolution (up.sh)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    repeats = args.repeats or 3
    require_binaries("serve_scale", ["kube-apiserver", "kwokctl", "metrics-server"])
    from hpcrun.k8s.apply import connect
    from hpcrun.k8s.serve import KubernetesServeDriver
    from hpcrun.scheduler.serving import Scaling
    from hpcrun.workloads.triton import TritonServe, serve_spec

    samples = []
    with control_plane() as plane:
        driver = KubernetesServeDriver(connect(str(plane.kubeconfig)), "default")
        spec = serve_spec(TritonServe(
            repository="s3://bench/model_repository", name="bench", gpus_per_replica=0,
            cpu="500m", scaling=Scaling(1, 3, 50, scale_down_window_s=0),
        ))
        driver.start(spec, timeout_s=120)

        def load(millicores: int) -> None:
            done = plane.kubectl("annotate", "pods", "-n", "default", "-l",
                                 "app.kubernetes.io/instance=bench", "--overwrite",
                                 f"kwok.x-k8s.io/usage-cpu={millicores}m")
            if done.returncode != 0:
                raise RuntimeError(done.stderr)

        def until(what: str, check: object, timeout_s: float = 300) -> float:
            started = time.monotonic()
            while not check():  # type: ignore[operator]
                if time.monotonic() - started > timeout_s:
                    raise RuntimeError(f"not within {timeout_s:.0f} s: {what}")
                time.sleep(0.25)
            return time.monotonic() - started

        log("waiting for the first metrics of the first replica")
        until("a first CPU figure", lambda: "%" in driver.state("bench").metric.split("(")[0])
        for i in range(repeats):
            load(900)
            seconds = until(
                "2 replicas ready", lambda: (load(900), driver.state("bench"))[1].ready >= 2
            )
            samples.append(seconds)
            log(f"run {i + 1}/{repeats}: second replica ready {seconds:.1f} s after the load rose")
            load(10)
            until("back to 1 replica", lambda: (load(10), driver.state("bench"))[1].desired == 1)
            until("a figure again", lambda: "%" in driver.state("bench").metric.split("(")[0])
        driver.stop("bench")
    yardstick = HPA_SYNC_S + METRIC_RESOLUTION_S
    report("serve_scale", statistics.median(samples), yardstick, None,
           {"runs (s)": ", ".join(f"{s:.1f}" for s in samples)},
           as_json=args.json, strict=False, goal=Goal(float("nan"), op="none"),
           hpcrun_label="load rising -> 2nd replica Ready (median)",
           yardstick_label="HPA sync period + metric resolution")


if __name__ == "__main__":
    run_main(main)
