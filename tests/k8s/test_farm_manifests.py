"""The render farm's workers on Kubernetes (golden): a Deployment that answers on no port
(no Service, no HTTP probes), told its queue, bucket and prefix, with the grace period a
worker needs to hand its message back, scaled by an autoscaler at 50 % CPU from 1 to 10;
no credential anywhere."""

from __future__ import annotations

import json

import pytest
import yaml

from hpcrun.errors import UsageError
from hpcrun.k8s.manifests import GPU_RESOURCE
from hpcrun.k8s.serve import serve_objects
from hpcrun.workloads.farm_workers import FarmPlan, worker_spec
from tests.golden_util import assert_golden

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/hpcrun-eks-render-farm"
PLAN = FarmPlan(
    queue_url=QUEUE,
    bucket="my-renders",
    prefix="farm",
    region="us-east-1",
    service_account="renderers",
    gpus_per_worker=1,
)


def test_the_objects_of_the_farm() -> None:
    objects = serve_objects(worker_spec(PLAN), "default")
    assert_golden("k8s/render_farm.yaml", yaml.safe_dump_all(objects, sort_keys=False))
    assert [o["kind"] for o in objects] == ["Deployment", "HorizontalPodAutoscaler"]
    deployment, hpa = objects
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert "ports" not in container and "readinessProbe" not in container
    assert QUEUE in container["args"] and container["resources"]["limits"][GPU_RESOURCE] == 1
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["serviceAccountName"] == "renderers"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 10)
    assert "AWS_SECRET_ACCESS_KEY" not in json.dumps(objects)


def test_bad_farm_flags_are_refused() -> None:
    with pytest.raises(UsageError, match="--visibility 30"):
        worker_spec(FarmPlan(queue_url=QUEUE, bucket="b", prefix="", visibility_s=30))
    with pytest.raises(UsageError, match="--gpus-per-worker -1"):
        worker_spec(FarmPlan(queue_url=QUEUE, bucket="b", prefix="", gpus_per_worker=-1))


def test_blenders_threads_follow_the_workers_cpu_request() -> None:
    """Without HPCRUN_CPUS the chunk script lets Blender start a thread per core of the
    node, whatever the pod asked for."""
    for cpu, threads in (("2", "2"), ("1.5", "2"), ("500m", "1"), ("4000m", "4")):
        plan = FarmPlan(queue_url=QUEUE, bucket="b", prefix="", cpu=cpu)
        assert worker_spec(plan).env["HPCRUN_CPUS"] == threads
    for bad in ("two", "0", "-1", "nan"):
        with pytest.raises(UsageError, match="--cpu"):
            worker_spec(FarmPlan(queue_url=QUEUE, bucket="b", prefix="", cpu=bad))
