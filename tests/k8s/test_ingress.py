"""ingress-nginx set up as NVIDIA's EKS script does it, against the real control plane:
the controller installed by helm, its load balancer's host waited for, a self-signed
certificate for that host as `ingress-nginx/ingress-tls-secret`, made the controller's
default. The chart is a local stand-in (tests/k8s/ingress-chart: nothing can be fetched
here, and no container runs); the test gives the Service its load balancer, as AWS
would."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

import pytest

from hpcrun.k8s.apply import connect
from hpcrun.k8s.helm import Helm
from hpcrun.k8s.ingress import IngressChart, acm_settings, set_up_ingress
from tests.k8s.conftest import ControlPlane

pytestmark = [pytest.mark.k8s, pytest.mark.slow]

CHART = Path(__file__).with_name("ingress-chart")
HOST = "a1b2c3.elb.us-east-1.amazonaws.com"


def test_the_controller_gets_a_certificate_for_its_load_balancers_host(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cryptography import x509

    monkeypatch.setenv("PATH", f"{control_plane.bin}:{os.environ['PATH']}")
    client = connect(str(control_plane.kubeconfig))
    helm = Helm(str(control_plane.kubeconfig), None, "ingress-nginx")
    said: list[str] = []
    found: dict[str, str] = {}

    def set_up() -> None:
        found["host"] = set_up_ingress(
            client, helm, chart=IngressChart(str(CHART), None), timeout_s=60, poll_s=0.1,
            say=said.append,
        )

    worker = threading.Thread(target=set_up)
    worker.start()
    deadline = time.monotonic() + 60
    while not any("waiting for the load balancer" in s for s in said):
        assert worker.is_alive() and time.monotonic() < deadline, said
        time.sleep(0.1)
    patched = control_plane.kubectl(
        "-n", "ingress-nginx", "patch", "service", "ingress-nginx-controller",
        "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"loadBalancer": {"ingress": [{"hostname": HOST}]}}}),
    )
    assert patched.returncode == 0, patched.stderr
    worker.join(60)
    assert found["host"] == HOST

    secret = json.loads(
        control_plane.kubectl(
            "-n", "ingress-nginx", "get", "secret", "ingress-tls-secret", "-o", "json"
        ).stdout
    )
    assert secret["type"] == "kubernetes.io/tls"
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [HOST]

    args = control_plane.kubectl(
        "-n", "ingress-nginx", "get", "deployment", "ingress-nginx-controller",
        "-o", "jsonpath={.spec.template.spec.containers[0].args}",
    ).stdout
    assert "--default-ssl-certificate=ingress-nginx/ingress-tls-secret" in args
    helm._run(["uninstall", "ingress-nginx", "--wait"])
    control_plane.kubectl("delete", "namespace", "ingress-nginx", "--wait=false")


def test_an_acm_certificate_goes_to_the_load_balancer_not_to_a_secret() -> None:
    arn = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d"
    settings = acm_settings(arn)
    key = r"controller.service.annotations.service\.beta\.kubernetes\.io/"
    assert settings[key + "aws-load-balancer-ssl-cert"] == arn
    assert settings[key + "aws-load-balancer-ssl-ports"] == "https"
