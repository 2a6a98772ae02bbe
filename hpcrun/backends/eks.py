"""An Amazon EKS cluster hpcrun makes and removes: `backend: eks`.

Its AWS side (IAM roles, a VPC, the cluster, managed node groups, OIDC and IRSA roles)
is `EksLifecycle` over the EKS API (boto3, so no eksctl is needed: `hpcrun config render
--format eksctl` writes the ClusterConfig for those who prefer it). Every resource is
recorded in the cluster's state the moment it exists, so a failed or interrupted create
is named by `hpcrun status` and `hpcrun down` removes what was made; `create` again
continues where it stopped. Once the cluster is ACTIVE a kubeconfig is written under
HPCRUN_HOME whose user runs `python -m hpcrun.k8s.token` (the `aws eks get-token`
mechanism), so no long-lived secret is on disk. From there it is a Kubernetes cluster
like any other (`KubernetesBackend`): IndeX sessions, status of its nodes and GPUs.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from hpcrun.backends import previous_record
from hpcrun.backends.base import ClusterStatus, Progress
from hpcrun.backends.kubernetes import KubernetesBackend
from hpcrun.errors import HpcrunError
from hpcrun.k8s.index import Publishing
from hpcrun.state import ClusterRecord, ClusterState, StateStore

# NVIDIA's provisioning script: the self-signed certificate's secret, default for nginx.
TLS_SECRET = "ingress-tls-secret"


class EksBackend(KubernetesBackend):
    name = "eks"

    def __init__(self, config: dict[str, Any], store: StateStore) -> None:
        super().__init__(config, store)
        directory = store.home / "kubernetes" / self.cluster_name
        self.config.setdefault("kubeconfig", str(directory / "kubeconfig"))
        self.config.setdefault("namespace", "default")

    @classmethod
    def from_record(cls, record: ClusterRecord, store: StateStore) -> EksBackend:
        return cls(record.config, store)

    @property
    def resources(self) -> dict[str, Any]:
        """What exists in AWS, as recorded (cluster_arn, vpc_id, nodegroups, ...)."""
        return dict(self.config.get("aws") or {})

    def publishing(self) -> Publishing:
        ingress = self.config.get("ingress") or {}
        host = self.config.get("ingress_host")
        if not ingress.get("enabled", True) or not host:
            return Publishing()
        return Publishing(
            host=str(host),
            tls_secret=TLS_SECRET if ingress.get("tls") == "self-signed" else None,
            basic_auth=bool(ingress.get("basic_auth", True)),
        )

    def lifecycle(self, progress: Progress | None = None) -> Any:
        from hpcrun.backends.eks_api import EksLifecycle
        from hpcrun.config.eks import EksClusterConfig

        model = EksClusterConfig.model_validate(_model_keys(self.config))
        say = progress.step if progress is not None else (lambda _message: None)
        return EksLifecycle(model, progress=say, record=self._record, existing=self.resources)

    def _record(self, resources: dict[str, Any]) -> None:
        self.config["aws"] = resources
        self.store.put_cluster(self.cluster_name, self.name, self.config, ClusterState.CREATING)

    # create / status / down ----------------------------------------------------------

    def create(self, progress: Progress) -> bool:
        previous = previous_record(self.store, self.cluster_name, self.name)
        if previous is not None:
            # What an earlier create made (all of it, or up to its failure) is reused.
            carried = {k: previous.config[k] for k in ("ingress_host",) if k in previous.config}
            self.config = {**self.config, **carried, "aws": previous.config.get("aws") or {}}
            if previous.status == "up":
                progress.step(f"EKS cluster {self.cluster_name} exists: checking it")
        unchanged = previous is not None and previous.status == "up"
        region = self.config["region"]
        self.store.put_cluster(self.cluster_name, self.name, self.config, ClusterState.CREATING)
        try:
            if not unchanged:
                progress.step(
                    f"creating EKS cluster {self.cluster_name} in {region}: the cluster "
                    "takes 10-15 minutes, each node group a few more"
                )
            lifecycle = self.lifecycle(progress)
            resources = lifecycle.create()
            self.config["aws"] = resources
            self._write_kubeconfig(lifecycle.kubeconfig(resources))
            progress.step(f"kubeconfig for {self.cluster_name}: {self.kubeconfig}")
            self._set_up_inside(progress)
        except BaseException as exc:
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            self.store.put_cluster(self.cluster_name, self.name, self.config, ClusterState.FAILED)
            self.store.set_cluster_status(
                self.cluster_name, ClusterState.FAILED, reason.splitlines()[0]
            )
            raise
        self.store.put_cluster(self.cluster_name, self.name, self.config, ClusterState.UP)
        return not unchanged

    def _write_kubeconfig(self, data: dict[str, Any]) -> None:
        from hpcrun.backends.eks_api import write_kubeconfig

        path = Path(self.kubeconfig)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_kubeconfig(path, data)
        self.config["context"] = data["current-context"]

    def _set_up_inside(self, progress: Progress) -> None:
        """What the cluster needs inside: the IRSA service accounts, bound to their IAM
        roles, and ingress-nginx as NVIDIA's script sets it up. Nothing is asked of the
        API server when there is nothing to set up."""
        roles = self.resources.get("service_account_roles") or {}
        if roles:
            from hpcrun.k8s.service_accounts import apply_service_accounts

            progress.step(f"service accounts {', '.join(sorted(roles))} bound to their IAM roles")
            apply_service_accounts(self.client, roles)
        ingress = self.config.get("ingress") or {}
        if ingress.get("enabled", True) and not self.config.get("ingress_host"):
            from hpcrun.k8s.helm import Helm
            from hpcrun.k8s.ingress import NAMESPACE, IngressChart, set_up_ingress

            tls = str(ingress.get("tls") or "self-signed")
            self.config["ingress_host"] = set_up_ingress(
                self.client,
                Helm(self.kubeconfig, self.context, NAMESPACE),
                chart=IngressChart(
                    chart=str(ingress.get("chart") or "ingress-nginx"),
                    repository=ingress.get("repository"),
                ),
                self_signed_tls=tls == "self-signed",
                acm_certificate=None if tls == "self-signed" else tls,
                say=progress.step,
            )

    def status(self) -> ClusterStatus:
        record = self.store.cluster(self.cluster_name)
        state = record.status if record else "down"
        detail = (record.detail if record else "") or ""
        groups: list[dict[str, Any]] = []
        if record is not None and self.resources:
            try:
                described = self.lifecycle().describe()
            except HpcrunError as exc:
                state, detail = "unreachable", exc.message
            else:
                groups = described["nodegroups"]
                aws_status = str(described["status"])
                if aws_status == "gone" and state == "up":
                    state = "gone"
                detail = detail or (
                    f"EKS {described.get('version') or ''} in {self.config['region']}: {aws_status}"
                )
        return self.with_nodes(state, detail, groups, api_decides=False)

    def destroy(self, progress: Progress, *, purge: bool = False) -> None:
        """Remove what create made, newest first, and wait until AWS says it is gone:
        ingress-nginx first, so that its load balancer does not hold the VPC."""
        with contextlib.suppress(HpcrunError):
            self.remove_own_objects(progress)  # the API may be gone with a failed create
        if self.config.get("ingress_host"):
            from hpcrun.k8s.helm import Helm
            from hpcrun.k8s.ingress import NAMESPACE, RELEASE

            progress.step("removing ingress-nginx and its load balancer (helm uninstall)")
            with contextlib.suppress(HpcrunError):
                Helm(self.kubeconfig, self.context, NAMESPACE).uninstall(RELEASE, timeout_s=600)
        self.store.end_index_sessions(self.cluster_name, "the EKS cluster was deleted")
        self.lifecycle(progress).delete(self.resources)
        with contextlib.suppress(FileNotFoundError):
            Path(self.kubeconfig).unlink()
        if purge:
            self.store.delete_cluster(self.cluster_name)
        else:
            self.config["aws"] = {}
            self.store.put_cluster(self.cluster_name, self.name, self.config, ClusterState.DOWN)


def _model_keys(config: dict[str, Any]) -> dict[str, Any]:
    """The cluster file's own keys of a record (which adds kubeconfig, aws, ...)."""
    from hpcrun.config.eks import EksClusterConfig

    return {k: v for k, v in config.items() if k in EksClusterConfig.model_fields}
