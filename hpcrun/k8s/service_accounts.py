"""IAM roles for service accounts (IRSA) on the Kubernetes side: a ServiceAccount per role,
annotated with the role's ARN, which EKS's pod identity webhook turns into credentials in
the pods that run as it. What `eksctl create iamserviceaccount` makes in the cluster;
the IAM side (OIDC provider, role with its trust policy) is `EksLifecycle`'s."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hpcrun.k8s.apply import Applier
from hpcrun.k8s.manifests import MANAGED_BY

if TYPE_CHECKING:
    from lightkube import Client

ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"


def service_account(namespace: str, name: str, role_arn: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
            "annotations": {ROLE_ANNOTATION: role_arn},
        },
    }


def apply_service_accounts(client: Client, roles: Mapping[str, str]) -> None:
    """`roles`: "namespace/name" -> IAM role ARN, as `EksLifecycle` records them."""
    objects = []
    for key, arn in sorted(roles.items()):
        namespace, _, name = key.partition("/")
        objects.append(service_account(namespace, name, arn))
    Applier(client).apply(objects)
