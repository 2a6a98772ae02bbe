"""metrics.k8s.io on the real control plane (tests/k8s/conftest.py): metrics-server scrapes
the kwok controller, which reports each pod's CPU from its `kwok.x-k8s.io/usage-cpu`
annotation, so an autoscaling/v2 HorizontalPodAutoscaler really scales a Deployment up
when its pods report high CPU and back down when it drops. No timing is asserted: the
waits are generous and the seconds each step took are printed (see ENVIRONMENT.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.conftest import ControlPlane

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

NAME = "hpa-cpu-load"
USAGE = "kwok.x-k8s.io/usage-cpu"
REQUEST_M = 100  # millicores each pod asks for; the HPA's target is 50 % of it
LOW_M, HIGH_M = 20, 300


def manifests(usage_m: int) -> list[dict[str, Any]]:
    labels = {"app": NAME}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {USAGE: f"{usage_m}m"}},
                "spec": {
                    "containers": [
                        {
                            "name": "load",
                            "image": "example.invalid/cpu-load:1",
                            "resources": {"requests": {"cpu": f"{REQUEST_M}m"}},
                        }
                    ]
                },
            },
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": NAME, "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ],
            # the default 300 s window would hold the scale-down for five minutes
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
        },
    }
    return [deployment, hpa]


@pytest.fixture
def plane(control_plane: ControlPlane, tmp_path: Path) -> Iterator[ControlPlane]:
    path = tmp_path / "hpa.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests(HIGH_M)}))
    done = control_plane.kubectl("apply", "-f", str(path))
    assert done.returncode == 0, done.stderr
    yield control_plane
    control_plane.kubectl("delete", "-f", str(path), "--wait=false")


def hpa_status(plane: ControlPlane) -> dict[str, Any]:
    done = plane.kubectl("get", "hpa", NAME, "-o", "json")
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = json.loads(done.stdout).get("status", {})
    return status


def utilization(status: dict[str, Any]) -> int | None:
    for metric in status.get("currentMetrics") or []:
        value = metric.get("resource", {}).get("current", {}).get("averageUtilization")
        if value is not None:
            return int(value)
    return None


def wait_for_replicas(
    plane: ControlPlane, what: str, done: Callable[[int], bool], timeout_s: float
) -> tuple[float, dict[str, Any]]:
    """Seconds until the HPA's desiredReplicas satisfied done(), and its status then."""
    start = time.monotonic()
    while True:
        status = hpa_status(plane)
        if done(int(status.get("desiredReplicas", 0))):
            return time.monotonic() - start, status
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s; HPA status {status}")
        time.sleep(0.5)


def test_an_hpa_scales_a_deployment_up_on_high_cpu_and_down_when_it_drops(
    plane: ControlPlane,
) -> None:
    # The pods start at 300 % of their request: the HPA's first CPU figure scales them up
    # (starting low first would only add the ~20 s a pod's first figure takes).
    up_s, status = wait_for_replicas(plane, "scale up", lambda n: n >= 2, 180)
    high = utilization(status)
    assert high is not None and high > 50, status
    rollout = plane.kubectl("rollout", "status", f"deployment/{NAME}", "--timeout=60s")
    assert rollout.returncode == 0, rollout.stderr

    # Every pod, the new ones too, drops to 20 %. The HPA counts a pod with no figure yet as
    # 100 % when scaling down, so this waits for the new pods' first figures as well.
    done = plane.kubectl(
        "annotate", "pods", "-l", f"app={NAME}", f"{USAGE}={LOW_M}m", "--overwrite"
    )
    assert done.returncode == 0, done.stderr
    down_s, status = wait_for_replicas(plane, "scale down", lambda n: n == 1, 240)
    low = utilization(status)
    assert low is not None and low < 50, status
    replicas = plane.kubectl("get", "deployment", NAME, "-o", "jsonpath={.spec.replicas}")
    assert replicas.stdout == "1", replicas.stdout
    print(
        f"\nHPA: scale-up {up_s:.0f} s after apply (first CPU figure {high} %),"
        f" scale-down {down_s:.0f} s after the drop ({low} %)"
    )
