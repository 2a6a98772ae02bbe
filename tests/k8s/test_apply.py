"""The apply layer against the real control plane (tests/k8s/conftest.py): server-side
apply of an IndeX session's objects, readiness of what was applied, scale in place, prune,
a refusal named by field, a GPU request no node can hold, and delete leaving nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from hpcrun.errors import HpcrunError
from hpcrun.k8s.apply import (
    Applier,
    Rejected,
    connect,
    pending_reason,
    ref_of,
    session_labels,
)
from hpcrun.k8s.manifests import IndexRelease, index_objects
from tests.k8s.conftest import ControlPlane

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

NAMESPACE = "default"


def release(session: str, nodes: int, gpus: int = 1, **changes: Any) -> IndexRelease:
    base = IndexRelease(
        name=f"idx-{session}",
        namespace=NAMESPACE,
        session=session,
        nodes=nodes,
        gpus_per_node=gpus,
        image="nvcr.io/nvidia/nvindex:test",
        scene_files={"scene.prj": "#! index_app_project 0\n"},
        htpasswd="nvindex:$2b$10$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXY",
        ingress_host="index.example.test",
    )
    return replace(base, **changes)


@pytest.fixture
def applier(control_plane: ControlPlane) -> Iterator[Applier]:
    steps: list[str] = []
    found = Applier(connect(str(control_plane.kubeconfig)), progress=steps.append)
    yield found


def pod_nodes(plane: ControlPlane, session: str) -> dict[str, str]:
    done = plane.kubectl(
        "get",
        "pods",
        "-l",
        f"hpcrun.io/session={session}",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.nodeName}{'\\n'}{end}",
    )
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.split() if line)


def test_a_session_applies_becomes_ready_scales_in_place_and_leaves_nothing(
    applier: Applier, control_plane: ControlPlane
) -> None:
    refs = applier.apply(index_objects(release("s1", nodes=3)))
    assert {r.kind for r in refs} == {
        "ConfigMap",
        "Secret",
        "Service",
        "StatefulSet",
        "Deployment",
        "Ingress",
    }
    applier.wait_ready(refs, timeout_s=90)
    nodes = pod_nodes(control_plane, "s1")
    assert len(nodes) == 3 and len(set(nodes.values())) == 3, nodes  # one pod a node

    # Applying the same objects again changes nothing; a scale is one field.
    worker = next(r for r in refs if r.kind == "Deployment")
    grown = applier.apply(index_objects(release("s1", nodes=4)))
    applier.wait_ready(grown, timeout_s=90)
    assert applier.ready(worker) == (3, 3)
    shrunk = applier.apply(index_objects(release("s1", nodes=3)))
    applier.wait_ready(shrunk, timeout_s=90)
    assert applier.ready(worker) == (2, 2)

    # Prune: the Ingress is no longer wanted once the session has none.
    plain = applier.apply(index_objects(release("s1", nodes=3, ingress_host=None)))
    gone = applier.prune(NAMESPACE, "s1", plain)
    assert [str(r) for r in gone] == ["Ingress idx-s1"]

    assert applier.delete_session(NAMESPACE, "s1") == len(plain)
    assert applier.owned(NAMESPACE, "s1") == []
    assert pod_nodes(control_plane, "s1") == {}


def test_more_gpus_than_a_node_has_is_one_line_with_the_schedulers_reason(
    applier: Applier,
) -> None:
    refs = applier.apply(index_objects(release("s2", nodes=2, gpus=3)))
    try:
        with pytest.raises(HpcrunError) as failed:
            applier.wait_ready(
                refs,
                timeout_s=5,
                why_not=lambda: pending_reason(applier.client, NAMESPACE, session_labels("s2")),
            )
        line = failed.value.message
        assert "StatefulSet idx-s2-viewer 0 of 1 ready" in line
        assert "Unschedulable" in line and "nvidia.com/gpu" in line, line
    finally:
        applier.delete_session(NAMESPACE, "s2")
    assert applier.owned(NAMESPACE, "s2") == []


def test_an_object_the_api_server_refuses_names_itself_and_the_field(applier: Applier) -> None:
    bad = next(o for o in index_objects(release("s3", nodes=2)) if o["kind"] == "Deployment")
    bad["spec"]["replicas"] = -1
    with pytest.raises(Rejected) as refused:
        applier.apply([bad])
    assert refused.value.message.startswith("Deployment idx-s3-worker: spec.replicas:"), (
        refused.value.message
    )
    assert "\n" not in refused.value.message
    assert applier.owned(NAMESPACE, "s3") == []
    assert ref_of(bad).name == "idx-s3-worker"


def test_status_code_reads_an_api_errors_http_status_and_nothing_else() -> None:
    from types import SimpleNamespace

    from hpcrun.k8s.apply import status_code

    class Gone(Exception):
        status = SimpleNamespace(code=404)

    assert status_code(Gone()) == 404
    assert status_code(RuntimeError("no status")) is None
