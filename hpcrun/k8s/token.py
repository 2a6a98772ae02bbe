"""An EKS bearer token, as `aws eks get-token` makes it, for kubeconfig's exec entry.

EKS authenticates a Kubernetes client by a presigned STS GetCallerIdentity URL: the API
server (aws-iam-authenticator inside EKS) calls it and learns who signed it. The URL is
signed for 60 s with the `x-k8s-aws-id: CLUSTER` header among the signed headers, so a
token for one cluster cannot be replayed against another; the token is `k8s-aws-v1.` and
the URL in unpadded base64url. Kubernetes clients are told it expires in 14 minutes (EKS
accepts it for 15), and ask again after that. `python -m hpcrun.k8s.token --cluster C
--region R` prints the ExecCredential a kubeconfig's exec user expects; nothing is
written anywhere, so no long-lived secret is ever on disk.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

TOKEN_PREFIX = "k8s-aws-v1."
CLUSTER_ID_HEADER = "x-k8s-aws-id"
URL_EXPIRES_S = 60
TOKEN_LIFETIME = timedelta(minutes=14)
EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"


class TokenError(Exception):
    """No token could be made (no credentials, no boto3); the message is one line."""


def _sts_client(region: str) -> Any:
    try:
        import boto3  # type: ignore[import-untyped]
    except ImportError:
        raise TokenError("boto3 is not installed (pip install 'hpcrun[aws]')") from None
    client = boto3.session.Session(region_name=region).client("sts", region_name=region)

    # GetCallerIdentity takes no parameters: the cluster name rides in the request
    # context from the parameters to the signer, which adds it as a header before
    # signing (aws-cli's get_token does the same with these two events).
    def keep_cluster(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if CLUSTER_ID_HEADER in params:
            context[CLUSTER_ID_HEADER] = params.pop(CLUSTER_ID_HEADER)

    def add_header(request: Any, **_: Any) -> None:
        if CLUSTER_ID_HEADER in request.context:
            request.headers[CLUSTER_ID_HEADER] = request.context[CLUSTER_ID_HEADER]

    events = client.meta.events
    events.register("provide-client-params.sts.GetCallerIdentity", keep_cluster)
    events.register("before-sign.sts.GetCallerIdentity", add_header)
    return client


def presigned_url(cluster: str, region: str) -> str:
    """The presigned STS GetCallerIdentity URL with `x-k8s-aws-id: CLUSTER` signed in."""
    from botocore.exceptions import (  # type: ignore[import-untyped]
        BotoCoreError,
        NoCredentialsError,
    )

    client = _sts_client(region)
    try:
        url = client.generate_presigned_url(
            "get_caller_identity",
            Params={CLUSTER_ID_HEADER: cluster},
            ExpiresIn=URL_EXPIRES_S,
            HttpMethod="GET",
        )
    except NoCredentialsError:
        raise TokenError(
            "no AWS credentials found (set AWS_PROFILE or run `aws configure` / `aws sso login`)"
        ) from None
    except BotoCoreError as exc:
        raise TokenError(f"cannot sign an EKS token: {exc}") from None
    return str(url)


def token(cluster: str, region: str) -> tuple[str, str]:
    """(token, expiration as RFC 3339 UTC) for EKS cluster `cluster` in `region`."""
    url = presigned_url(cluster, region)
    encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    expires = datetime.now(UTC) + TOKEN_LIFETIME
    return TOKEN_PREFIX + encoded, expires.strftime("%Y-%m-%dT%H:%M:%SZ")


def exec_credential(token_value: str, expiration: str) -> dict[str, Any]:
    return {
        "kind": "ExecCredential",
        "apiVersion": EXEC_API_VERSION,
        "spec": {},
        "status": {"expirationTimestamp": expiration, "token": token_value},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hpcrun.k8s.token",
        description="Print an EKS ExecCredential (a kubeconfig exec plugin).",
    )
    parser.add_argument("--cluster", required=True, help="EKS cluster name")
    parser.add_argument("--region", required=True, help="its AWS region")
    args = parser.parse_args(argv)
    try:
        value, expiration = token(args.cluster, args.region)
    except TokenError as exc:
        sys.stderr.write(f"hpcrun.k8s.token: {exc}\n")
        return 1
    except Exception as exc:  # an exec plugin answers in one line, always
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        sys.stderr.write(f"hpcrun.k8s.token: {first}\n")
        return 1
    sys.stdout.write(json.dumps(exec_credential(value, expiration)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
