"""The objects of a served Triton (golden) and what the recipe gets wrong that hpcrun must
not: no credentials anywhere (no Secret, no key in the environment), the autoscaler owns
the replica count, GPU limits only when asked, Triton's own health endpoints as probes."""

from __future__ import annotations

import json

import pytest
import yaml

from hpcrun.errors import UsageError
from hpcrun.k8s.manifests import GPU_RESOURCE, MANAGED_BY, SESSION_LABEL
from hpcrun.k8s.serve import serve_objects
from hpcrun.scheduler.serving import Scaling
from hpcrun.workloads.triton import TritonServe, serve_spec
from tests.golden_util import assert_golden

PLAN = TritonServe(
    repository="s3://models/fraud/model_repository",
    name="fraud",
    scaling=Scaling(1, 4, 50),
    gpus_per_replica=1,
    cpu="2",
    memory="8Gi",
    service_account="nvindex-access",
    region="us-east-1",
)


def test_the_objects_of_a_served_model() -> None:
    objects = serve_objects(serve_spec(PLAN), "default")
    assert_golden("k8s/serve_triton.yaml", yaml.safe_dump_all(objects, sort_keys=False))
    assert [o["kind"] for o in objects] == ["Service", "Deployment", "HorizontalPodAutoscaler"]
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == MANAGED_BY
        assert labels[SESSION_LABEL] == "serve-fraud"


def test_the_autoscaler_owns_the_replicas_and_scales_the_deployment() -> None:
    service, deployment, hpa = serve_objects(serve_spec(PLAN), "default")
    assert "replicas" not in deployment["spec"]  # a re-apply never undoes a scale
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "fraud",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["requests"]["cpu"] == "2"  # what utilization is a share of
    selector = service["spec"]["selector"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_probes_and_ports_are_tritons_own() -> None:
    _, deployment, _ = serve_objects(serve_spec(PLAN), "default")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert {p["containerPort"] for p in container["ports"]} == {8000, 8001, 8002}
    assert "--model-repository=s3://models/fraud/model_repository" in container["args"]


def test_no_credentials_in_any_object() -> None:
    objects = serve_objects(serve_spec(PLAN), "default")
    assert not [o for o in objects if o["kind"] == "Secret"]
    text = json.dumps(objects)
    for word in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "secret"):
        assert word not in text
    pod = objects[1]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "nvindex-access"  # S3 through its IAM role


def test_cpu_serving_asks_for_no_gpu_and_a_pods_metric_can_drive_the_scale() -> None:
    plan = TritonServe(
        repository="s3://m/r",
        gpus_per_replica=0,
        scaling=Scaling(2, 6, None, "nv_inference_queue_duration_us", "100"),
    )
    _, deployment, hpa = serve_objects(serve_spec(plan), "serving")
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert GPU_RESOURCE not in limits
    assert "serviceAccountName" not in deployment["spec"]["template"]["spec"]
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "nv_inference_queue_duration_us"},
                "target": {"type": "AverageValue", "averageValue": "100"},
            },
        }
    ]


@pytest.mark.parametrize(
    ("scaling", "said"),
    [
        (lambda: Scaling(3, 2, 50), "--min 3 is above --max 2"),
        (lambda: Scaling(0, 2, 50), "--min 0"),
        (lambda: Scaling(1, 2, 0), "--target-cpu 0"),
        (lambda: Scaling(1, 2, None), "one of the two"),
    ],
)
def test_bad_scaling_is_refused(scaling: object, said: str) -> None:
    with pytest.raises(UsageError, match=said):
        scaling()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"name": "Fraud"}, "--name 'Fraud'"),
        ({"repository": "/local/repo"}, "an s3:// prefix"),
        ({"gpus_per_replica": -1}, "--gpus-per-replica -1"),
        ({"cpu": "two"}, "--cpu 'two' is not a Kubernetes quantity"),
    ],
)
def test_bad_plans_are_refused(changes: dict[str, object], said: str) -> None:
    values = {"repository": "s3://m/r", **changes}
    with pytest.raises(UsageError, match=said):
        serve_spec(TritonServe(**values))  # type: ignore[arg-type]


def test_the_scale_down_window_is_the_autoscalers_behavior() -> None:
    plan = TritonServe(repository="s3://m/r", scaling=Scaling(1, 3, 50, scale_down_window_s=30))
    hpa = serve_objects(serve_spec(plan), "default")[2]
    assert hpa["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 30}}
    assert "behavior" not in serve_objects(serve_spec(PLAN), "default")[2]["spec"]
    with pytest.raises(UsageError, match="--scale-down-after 4000"):
        Scaling(1, 3, 50, scale_down_window_s=4000)
