"""IndeX sessions as releases of a helm chart that follows NVIDIA's values contract
(NVIDIA/nvindex-cloud, charts/nvindex): `nodeCount`, `gpuCount`, `scene` (a directory
inside the chart), `ingress.enabled/host/tls`, `auth.enabled/username/password`,
`dataLocation`.

`chart_values` is pure (golden-tested); `Helm` runs the `helm` binary: `upgrade --install`
to start, `upgrade --reuse-values --set nodeCount=N` to scale, `uninstall --wait` to stop.
Values go to helm on stdin (`--values -`), so the session's password is in no argv (`ps`)
and no file; helm itself keeps the release's values in a Secret of the cluster, as it
does for every release. hpcrun waits for readiness itself (not `helm --wait`) so that a
pod the scheduler cannot place is reported with its reason at once.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpcrun.errors import HpcrunError
from hpcrun.k8s import tool


def chart_values(
    *,
    nodes: int,
    gpus_per_node: int,
    scene: str,
    ingress_host: str | None,
    tls_secret: str | None,
    login: tuple[str, str] | None,
    data_location: str | None,
) -> dict[str, Any]:
    """What `helm install NAME charts/nvindex --set ...` is told, as one values tree."""
    values: dict[str, Any] = {
        "nodeCount": nodes,
        "gpuCount": gpus_per_node,
        "scene": scene,
        "ingress": {"enabled": ingress_host is not None},
        "auth": {"enabled": login is not None},
    }
    if ingress_host is not None:
        values["ingress"]["host"] = ingress_host
        if tls_secret is not None:
            values["ingress"]["tls"] = {"secretName": tls_secret}
    if login is not None:
        values["auth"] |= {"username": login[0], "password": login[1]}
    if data_location is not None:
        values["dataLocation"] = data_location
    return values


def scene_in_chart(chart: str, prj: str) -> str:
    """The chart's own directory for the scene of `prj` (`scenes/00-supernova_ncsa_small`:
    hpcrun's catalogue and NVIDIA's chart name their scenes alike); refused when the
    chart does not hold it, since the chart reads the scene from its own files."""
    path = Path(prj)
    directory = path.parent.parent if path.parent.name == "scene" else path.parent
    inside = f"scenes/{directory.name}"
    if not (Path(chart) / inside).is_dir():
        raise HpcrunError(
            f"the chart {chart} has no {inside}: a chart of NVIDIA's values contract reads "
            "its scene from a directory inside it",
            f"copy the scene's directory to {Path(chart) / inside}, or pick a scene the chart "
            "holds",
        )
    return inside


def helm_binary() -> str:
    return tool(
        "helm",
        needed_for="--chart installs a helm chart with it",
        hint="install helm (https://helm.sh/docs/intro/install/), or leave --chart out: "
        "hpcrun then applies the chart's objects itself",
    )


class Helm:
    """`helm` for one namespace of one kubeconfig context."""

    def __init__(self, kubeconfig: str, context: str | None, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.namespace = namespace

    def _run(
        self, args: Sequence[str], *, values: dict[str, Any] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [helm_binary(), "--kubeconfig", self.kubeconfig, "--namespace", self.namespace]
        if self.context:
            argv += ["--kube-context", self.context]
        argv += list(args)
        feed: dict[str, Any] = (
            {"input": json.dumps(values)} if values is not None else {"stdin": subprocess.DEVNULL}
        )
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **feed)
        if check and done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise HpcrunError(
                f"helm {args[0]} {args[1] if len(args) > 1 else ''}: "
                + (said[-1] if said else f"exited {done.returncode}"),
                "check the chart with `helm lint`, and `helm list` for the release",
            )
        return done

    def install(self, release: str, chart: str, values: dict[str, Any]) -> None:
        """`helm upgrade --install RELEASE CHART --values -` (the values on stdin)."""
        self._run(["upgrade", "--install", release, chart, "--values", "-"], values=values)

    def set_nodes(self, release: str, chart: str, nodes: int) -> None:
        self._run(["upgrade", release, chart, "--reuse-values", "--set", f"nodeCount={nodes}"])

    def install_chart(
        self,
        release: str,
        chart: str,
        *,
        repository: str | None,
        create_namespace: bool,
        settings: dict[str, str] | None = None,
    ) -> None:
        """`helm upgrade --install` of a chart by name from `repository` (or a path)."""
        args = ["upgrade", "--install", release, chart]
        if repository:
            args += ["--repo", repository]
        if create_namespace:
            args.append("--create-namespace")
        for key, value in (settings or {}).items():
            args += ["--set", f"{key}={value}"]
        self._run(args)

    def upgrade_set(
        self, release: str, chart: str, *, repository: str | None, settings: dict[str, str]
    ) -> None:
        """`helm upgrade --reuse-values --set K=V...` (values with no secret in them)."""
        args = ["upgrade", release, chart, "--reuse-values"]
        if repository:
            args += ["--repo", repository]
        for key, value in settings.items():
            args += ["--set", f"{key}={value}"]
        self._run(args)

    def exists(self, release: str) -> bool:
        return self._run(["status", release], check=False).returncode == 0

    def uninstall(self, release: str, *, timeout_s: float) -> None:
        self._run(["uninstall", release, "--wait", "--timeout", f"{int(timeout_s)}s"])
