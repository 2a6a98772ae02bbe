"""IRSA on the Kubernetes side against the real control plane: one ServiceAccount per
IAM role that EksLifecycle recorded, annotated with the role, owned by hpcrun, applied
again without change."""

from __future__ import annotations

import json

import pytest

from hpcrun.k8s.apply import connect
from hpcrun.k8s.service_accounts import ROLE_ANNOTATION, apply_service_accounts
from tests.k8s.conftest import ControlPlane

pytestmark = [pytest.mark.k8s, pytest.mark.slow]


def test_each_recorded_role_becomes_an_annotated_service_account(
    control_plane: ControlPlane,
) -> None:
    roles = {"default/nvindex-access": "arn:aws:iam::123456789012:role/vis-nvindex-access"}
    client = connect(str(control_plane.kubeconfig))
    apply_service_accounts(client, roles)
    apply_service_accounts(client, roles)  # again: server-side apply changes nothing
    done = control_plane.kubectl("get", "serviceaccount", "nvindex-access", "-o", "json")
    assert done.returncode == 0, done.stderr
    meta = json.loads(done.stdout)["metadata"]
    assert meta["annotations"][ROLE_ANNOTATION] == roles["default/nvindex-access"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "hpcrun"
    control_plane.kubectl("delete", "serviceaccount", "nvindex-access")
