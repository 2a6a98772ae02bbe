"""ingress-nginx in front of IndeX sessions, set up as NVIDIA's EKS provisioning does it:
install the controller with helm (a LoadBalancer Service), wait for the load balancer's
host name, make a self-signed certificate for that name as the Secret
`ingress-tls-secret`, and make it the controller's default certificate
(`controller.extraArgs.default-ssl-certificate`). Sessions are then published at
`https://HOST/<release>`.

The certificate's private key exists only in that Secret (made through the API, never
written to a file here); an ACM certificate instead terminates TLS at the load balancer
and needs no Secret. cryptography is paramiko's own dependency, so always installed.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpcrun.errors import HpcrunError
from hpcrun.k8s.apply import Applier
from hpcrun.k8s.manifests import MANAGED_BY

if TYPE_CHECKING:
    from lightkube import Client

    from hpcrun.k8s.helm import Helm

NAMESPACE = "ingress-nginx"
RELEASE = "ingress-nginx"
CONTROLLER_SERVICE = "ingress-nginx-controller"  # the chart's Service for release ingress-nginx
TLS_SECRET = "ingress-tls-secret"
UPSTREAM_REPOSITORY = "https://kubernetes.github.io/ingress-nginx"


@dataclass(frozen=True)
class IngressChart:
    """Where the controller's chart comes from: the upstream repository, or a local chart
    (an air-gapped cluster's mirror)."""

    chart: str = "ingress-nginx"
    repository: str | None = UPSTREAM_REPOSITORY


def self_signed(host: str, *, days: int = 365) -> tuple[str, str]:
    """(certificate, private key), PEM, for `host`: what NVIDIA's script makes with openssl."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host[:64])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return cert_pem, key_pem


def tls_secret(namespace: str, name: str, certificate: str, key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
        },
        "stringData": {"tls.crt": certificate, "tls.key": key},
    }


def load_balancer_host(
    client: Client,
    *,
    namespace: str = NAMESPACE,
    service: str = CONTROLLER_SERVICE,
    timeout_s: float = 600.0,
    poll_s: float = 2.0,
    say: Callable[[str], None] = lambda _message: None,
) -> str:
    """The controller Service's load balancer address, once the cloud gave it one."""
    from lightkube import ApiError
    from lightkube.resources.core_v1 import Service

    deadline = time.monotonic() + timeout_s
    said = False
    while True:
        try:
            found = client.get(Service, service, namespace=namespace)
        except ApiError:
            found = None
        balancer = found.status.loadBalancer if found is not None and found.status else None
        for entry in (balancer.ingress if balancer else None) or []:
            if entry.hostname or entry.ip:
                return str(entry.hostname or entry.ip)
        if not said:
            say(f"waiting for the load balancer of {namespace}/{service} (AWS: 1-3 minutes)")
            said = True
        if time.monotonic() > deadline:
            raise HpcrunError(
                f"{namespace}/{service} got no load balancer address within {timeout_s:g} s",
                "check `kubectl -n ingress-nginx describe service ingress-nginx-controller` "
                "(the AWS load balancer controller or the cloud provider makes it)",
            )
        time.sleep(poll_s)


def acm_settings(certificate_arn: str) -> dict[str, str]:
    """The controller's Service annotations that make AWS's load balancer end TLS with an
    ACM certificate and pass plain HTTP on (ingress-nginx's documented AWS setup)."""
    annotation = r"controller.service.annotations.service\.beta\.kubernetes\.io/"
    return {
        annotation + "aws-load-balancer-ssl-cert": certificate_arn,
        annotation + "aws-load-balancer-ssl-ports": "https",
        "controller.service.targetPorts.https": "http",
    }


def set_up_ingress(
    client: Client,
    helm: Helm,
    *,
    chart: IngressChart = IngressChart(),
    self_signed_tls: bool = True,
    acm_certificate: str | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 2.0,
    say: Callable[[str], None] = lambda _message: None,
) -> str:
    """Install ingress-nginx, wait for its load balancer; with `self_signed_tls`, make its
    default certificate for that host; with `acm_certificate`, the load balancer ends TLS
    with it. Returns the host sessions are published on."""
    say(f"installing ingress-nginx ({chart.repository or chart.chart}) with helm")
    helm.install_chart(
        RELEASE,
        chart.chart,
        repository=chart.repository,
        create_namespace=True,
        settings=acm_settings(acm_certificate) if acm_certificate else None,
    )
    host = load_balancer_host(client, timeout_s=timeout_s, poll_s=poll_s, say=say)
    say(f"load balancer: {host}")
    if self_signed_tls:
        certificate, key = self_signed(host)
        Applier(client).apply([tls_secret(NAMESPACE, TLS_SECRET, certificate, key)])
        say(f"self-signed certificate for {host} as {NAMESPACE}/{TLS_SECRET}, the default")
        helm.upgrade_set(
            RELEASE,
            chart.chart,
            repository=chart.repository,
            settings={"controller.extraArgs.default-ssl-certificate": f"{NAMESPACE}/{TLS_SECRET}"},
        )
    return host
