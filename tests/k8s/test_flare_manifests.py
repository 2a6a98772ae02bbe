"""The objects of a FLARE system on Kubernetes (golden), and what the issue names: the
kits only in Secrets whose keys give back the files' bytes, the Service `server` on the
FL and admin ports, GPU limits on the sites only, one namespace's labels on all."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpcrun.errors import HpcrunError
from hpcrun.k8s.flare import flare_objects
from hpcrun.k8s.manifests import GPU_RESOURCE, MANAGED_BY, SESSION_LABEL
from hpcrun.workloads.flare import Participants
from tests.golden_util import assert_golden

PEOPLE = Participants(
    project="hpcrun",
    server="server",
    org="nvidia",
    sites=("site-1", "site-2"),
    admin="admin@nvidia.com",
)
NAMESPACE = "hpcrun-flare-7"
IMAGE = "nvflare/nvflare:2.9.0"
KEY_TEXT = b"-----BEGIN RSA PRIVATE KEY-----\nfake\n"


def fake_kits(root: Path) -> Path:
    """A provisioner's prod folder in small: one kit per participant, each file's bytes
    naming its kit and path (so a mix-up shows)."""
    files = {
        "server": ["startup/fed_server.json", "startup/server.key", "startup/start.sh"],
        "site-1": ["startup/fed_client.json", "startup/client.key", "startup/start.sh"],
        "site-2": ["startup/fed_client.json", "startup/client.key", "startup/start.sh"],
        "admin@nvidia.com": ["startup/fed_admin.json", "startup/client.key", "startup/fl_admin.sh"],
    }
    for kit, paths in files.items():
        for relative in [*paths, "startup/rootCA.pem", "local/resources.json.default"]:
            path = root / kit / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if relative.endswith(".key"):
                path.write_bytes(KEY_TEXT)
            else:
                path.write_text(f'{{"kit": "{kit}", "file": "{relative}"}}\n')
        (root / kit / "transfer").mkdir()
        (root / kit / "readme.txt").write_text("not in the kit's Secret\n")
    return root


def objects(kits: Path, **changes: Any) -> list[dict[str, Any]]:
    options: dict[str, Any] = {"gpus_per_site": 1, "admin_pod": True, **changes}
    return flare_objects(7, PEOPLE, kits, namespace=NAMESPACE, image=IMAGE, **options)


def named(found: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in found if o["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def test_the_system_is_golden(tmp_path: Path) -> None:
    text = yaml.safe_dump_all(objects(fake_kits(tmp_path)), sort_keys=False)
    assert_golden("k8s/flare_system.yaml", text)


def test_each_kit_is_one_secret_whose_keys_give_back_the_files(tmp_path: Path) -> None:
    kits = fake_kits(tmp_path)
    found = objects(kits)
    secrets = named(found, "Secret")
    owners = {
        "flare-7-kit-server": "server",
        "flare-7-kit-site-1": "site-1",
        "flare-7-kit-site-2": "site-2",
        "flare-7-kit-admin-nvidia-com": "admin@nvidia.com",
    }
    assert set(secrets) == set(owners)
    for name, kit in owners.items():
        data = secrets[name]["data"]
        expected = {
            p.relative_to(kits / kit).as_posix(): p.read_bytes()
            for part in ("startup", "local")
            for p in (kits / kit / part).rglob("*")
        }
        assert {k.replace(".", "/", 1): base64.b64decode(v) for k, v in data.items()} == expected
        assert all(k.startswith(("startup.", "local.")) for k in data)  # no readme, transfer
    assert base64.b64decode(secrets["flare-7-kit-server"]["data"]["startup.server.key"]) == (
        KEY_TEXT
    )
    # Mounted back where the kit had them, scripts executable.
    deployments = named(found, "Deployment")
    volumes = deployments["flare-7-server"]["spec"]["template"]["spec"]["volumes"]
    (kit_volume,) = [v for v in volumes if "secret" in v]
    items = {i["key"]: i for i in kit_volume["secret"]["items"]}
    assert items["startup.fed_server.json"]["path"] == "startup/fed_server.json"
    assert items["local.resources.json.default"]["path"] == "local/resources.json.default"
    assert items["startup.start.sh"]["mode"] == 0o555
    mounts = {m["mountPath"]: m for m in container(deployments["flare-7-server"])["volumeMounts"]}
    assert mounts["/kit"].get("readOnly") is True and "/workspace" in mounts


def test_no_configmap_holds_kit_material(tmp_path: Path) -> None:
    found = objects(fake_kits(tmp_path))
    assert not [o for o in found if o["kind"] == "ConfigMap"]
    for obj in found:
        if obj["kind"] != "Secret":
            assert "PRIVATE KEY" not in yaml.safe_dump(obj)


def test_the_service_server_serves_fl_and_admin_ports_of_the_server_pod(tmp_path: Path) -> None:
    found = objects(fake_kits(tmp_path))
    (service,) = named(found, "Service").values()
    assert service["metadata"]["name"] == "server"
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"fl": (8002, 8002), "admin": (8003, 8003)}
    server = named(found, "Deployment")["flare-7-server"]
    pod_labels = server["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [p["containerPort"] for p in container(server)["ports"]] == [8002, 8003]


def test_the_server_runs_on_its_claim_and_the_sites_reach_it_by_name(tmp_path: Path) -> None:
    found = objects(fake_kits(tmp_path))
    (claim,) = named(found, "PersistentVolumeClaim").values()
    assert claim["metadata"]["name"] == "flare-7-server-workspace"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
    }  # no storageClassName: the cluster's default (gp2 on EKS)
    deployments = named(found, "Deployment")
    assert set(deployments) == {
        "flare-7-server",
        "flare-7-site-1",
        "flare-7-site-2",
        "flare-7-admin",
    }
    assert all(d["spec"]["replicas"] == 1 for d in deployments.values())
    server = deployments["flare-7-server"]
    volumes = server["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "workspace",
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
    } in volumes
    script = container(server)["command"]
    assert script[:2] == ["sh", "-c"]
    assert "cp -rL /kit/local /kit/startup /workspace/nvfl/server/" in script[2]
    assert script[2].endswith(
        "exec python3 -u -m nvflare.private.fed.app.server.server_train -m "
        "/workspace/nvfl/server -s fed_server.json --set secure_train=true "
        "config_folder=config org=nvidia"
    )
    site = container(deployments["flare-7-site-2"])["command"][2]
    assert site.endswith(
        "exec python3 -u -m nvflare.private.fed.app.client.client_train -m "
        "/workspace/nvfl/site-2 -s fed_client.json --set secure_train=true uid=site-2 "
        "config_folder=config org=nvidia"
    )
    admin = container(deployments["flare-7-admin"])["command"][2]
    assert "cp -rL /kit/local /kit/startup /workspace/admin/" in admin


def test_gpu_limits_only_on_the_sites(tmp_path: Path) -> None:
    kits = fake_kits(tmp_path)
    deployments = named(objects(kits), "Deployment")
    for name, deployment in deployments.items():
        limits = container(deployment).get("resources", {}).get("limits", {})
        if name.startswith("flare-7-site-"):
            assert limits == {GPU_RESOURCE: "1"}
        else:
            assert GPU_RESOURCE not in limits
    none = named(objects(kits, gpus_per_site=None), "Deployment")
    assert all("resources" not in container(d) for d in none.values())


def test_every_object_is_the_systems_in_its_namespace(tmp_path: Path) -> None:
    for obj in objects(fake_kits(tmp_path)):
        meta = obj["metadata"]
        assert meta["namespace"] == NAMESPACE
        assert meta["labels"]["app.kubernetes.io/managed-by"] == MANAGED_BY
        assert meta["labels"][SESSION_LABEL] == "flare-7"


def test_without_the_admin_pod_the_admin_kit_stays_home(tmp_path: Path) -> None:
    kits = fake_kits(tmp_path)
    found = objects(kits, admin_pod=False)
    assert "flare-7-admin" not in named(found, "Deployment")
    assert not [n for n in named(found, "Secret") if "admin" in n]
    (kits / "admin@nvidia.com" / "startup" / "fed_admin.json").unlink()  # not read at all
    objects(kits, admin_pod=False)


def test_a_missing_kit_or_a_site_named_like_the_server_is_refused(tmp_path: Path) -> None:
    kits = fake_kits(tmp_path)
    with pytest.raises(HpcrunError, match="no startup/ folder"):
        flare_objects(
            7,
            Participants("p", "server", "o", ("site-1", "site-9"), "admin@nvidia.com"),
            kits,
            namespace=NAMESPACE,
            image=IMAGE,
            gpus_per_site=None,
            admin_pod=False,
        )
    with pytest.raises(HpcrunError, match="share the Kubernetes name flare-7-server"):
        flare_objects(
            7,
            Participants("p", "server", "o", ("site-1", "Server"), "admin@nvidia.com"),
            kits,
            namespace=NAMESPACE,
            image=IMAGE,
            gpus_per_site=None,
            admin_pod=False,
        )


def pod(phase: str, *, ready: bool = False, waiting: str | None = None, exit_code: int = 1) -> Any:
    from lightkube.models.core_v1 import (
        ContainerState,
        ContainerStateTerminated,
        ContainerStateWaiting,
        ContainerStatus,
        PodCondition,
        PodSpec,
        PodStatus,
    )
    from lightkube.models.meta_v1 import ObjectMeta
    from lightkube.resources.core_v1 import Pod

    statuses = []
    if waiting is not None:
        statuses.append(
            ContainerStatus(
                name="site",
                image=IMAGE,
                imageID="",
                ready=False,
                restartCount=4,
                state=ContainerState(waiting=ContainerStateWaiting(reason=waiting)),
                lastState=ContainerState(terminated=ContainerStateTerminated(exitCode=exit_code)),
            )
        )
    return Pod(
        metadata=ObjectMeta(name="flare-7-site-1-abc"),
        spec=PodSpec(containers=[], nodeName="n1"),
        status=PodStatus(
            phase=phase,
            reason="Evicted" if phase == "Failed" else None,
            conditions=[PodCondition(type="Ready", status="True" if ready else "False")],
            containerStatuses=statuses,
        ),
    )


def test_a_participants_pods_say_running_pending_or_failed() -> None:
    from hpcrun.k8s.flare import participant_task
    from hpcrun.scheduler import TaskState

    ready = participant_task("flare-7-site-1", 1, [pod("Running", ready=True)])
    assert (ready.state, ready.native, ready.node, ready.name) == (
        TaskState.RUNNING,
        "Ready",
        "n1",
        "flare-7-site-1[1]",
    )
    crashing = participant_task("flare-7-site-1", 1, [pod("Running", waiting="CrashLoopBackOff")])
    assert crashing.state is TaskState.FAILED and crashing.exit_code == 1
    assert crashing.native == "CrashLoopBackOff: restarted 4 times (exit code 1)"
    evicted = participant_task("flare-7-server", None, [pod("Failed")])
    assert (evicted.state, evicted.native) == (TaskState.FAILED, "Failed: Evicted")
    pulling = participant_task("flare-7-site-1", 1, [pod("Pending", waiting="ImagePullBackOff")])
    assert (pulling.state, pulling.native) == (TaskState.PENDING, "ImagePullBackOff")
    # A restart's new pod Ready beside the old one failing: the system runs.
    both = participant_task(
        "flare-7-site-1",
        1,
        [pod("Running", waiting="CrashLoopBackOff"), pod("Running", ready=True)],
    )
    assert both.state is TaskState.RUNNING
    none = participant_task("flare-7-site-1", 1, [])
    assert (none.state, none.native) == (TaskState.PENDING, "Pending: no pod yet")
