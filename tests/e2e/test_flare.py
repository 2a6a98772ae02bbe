"""`hpcrun flare` end to end on the real local Slurm cluster with real nvflare: `up --sites
2` until both sites registered, the shipped numpy job (scatter and gather) to
FINISHED:COMPLETED with its model in the job store and downloadable, a SIGKILLed site
task reported by `status` before FLARE notices, `down` leaving no process, port or /tmp
file of the system, key material only in the run directory's kits, and each bad input
refused in one line with nothing submitted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, processes_mentioning

pytest.importorskip("nvflare")

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def flare(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return cluster.cli("flare", *args, "--cluster", cluster.name, check=check, timeout=300)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(done.stdout)


def slurm_job_count(cluster: Cluster) -> int:
    done = subprocess.run(
        ["sacct", "-n", "-X", "-o", "JobID", "-S", "now-1days"],
        env=cluster.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return len(done.stdout.split())
    return len(cluster.client.jobs())


@pytest.fixture(scope="module")
def system(local_cluster: Cluster) -> Iterator[dict[str, Any]]:
    tmp_before = set(os.listdir("/tmp"))
    up = as_json(flare(local_cluster, "up", "--sites", "2", "--json"))
    try:
        yield {"up": up, "tmp_before": tmp_before}
    finally:
        flare(local_cluster, "down", "--system", str(up["system"]), check=False)


def test_up_runs_a_server_job_and_a_site_array_until_both_sites_registered(
    local_cluster: Cluster, system: dict[str, Any]
) -> None:
    up = system["up"]
    assert up["status"] == "running", up
    assert up["server"]["state"] == "running" and up["server"]["address"]["fl_port"] > 0
    assert [s["name"] for s in up["sites"]] == ["site-1", "site-2"]
    assert all(s["registered"] and s["state"] == "running" for s in up["sites"]), up["sites"]
    # One array of two tasks, started after the server job (its dependency, satisfied
    # and so cleared by now; the sbatch script is golden-tested in tests/workloads).
    assert {s["task"].split("_")[0] for s in up["sites"]} == {up["sites"][0]["task"][:-2]}
    server = local_cluster.client.job_details(up["server"]["job_id"])
    for site in up["sites"]:
        details = local_cluster.client.job_details(site["task"])
        assert details["StartTime"] >= server["StartTime"], (server, details)


def test_the_shipped_numpy_job_completes_and_its_model_is_found(
    local_cluster: Cluster, system: dict[str, Any], tmp_path: Path
) -> None:
    job = tmp_path / "hello-numpy"
    local_cluster.cli("flare", "example", str(job))
    assert json.loads((job / "meta.json").read_text())["deploy_map"] == {"app": ["@ALL"]}
    done = flare(local_cluster, "submit", str(job), "--wait", "--json")
    result = as_json(done)
    assert result["status"] == "FINISHED:COMPLETED", done.stderr
    with zipfile.ZipFile(Path(result["results"]) / "workspace") as workspace:
        assert "models/server.npy" in workspace.namelist()
    listed = as_json(flare(local_cluster, "status", "--json"))
    assert {"job_id": result["job_id"], "status": "FINISHED:COMPLETED"}.items() <= next(
        j for j in listed["jobs"] if j["job_id"] == result["job_id"]
    ).items()
    fetched = as_json(
        flare(local_cluster, "download", result["job_id"], "-o", str(tmp_path / "out"), "--json")
    )
    assert list(Path(fetched["output"]).rglob("server.npy")), fetched


def test_key_material_lives_only_in_the_run_directory_kits_0600(
    local_cluster: Cluster, system: dict[str, Any]
) -> None:
    run_dir = Path(system["up"]["run_dir"])
    allowed = (run_dir / "kits", run_dir / "provision")
    holders = []
    for path in local_cluster.home.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if b"PRIVATE KEY-----" in data:
                holders.append(path)
    assert holders, "the kits hold keys"
    strays = [p for p in holders if not any(p.is_relative_to(a) for a in allowed)]
    assert not strays, f"key material outside the run directory's kits: {strays}"
    loose = [p for p in holders if p.stat().st_mode & 0o077]
    assert not loose, f"keys readable by others: {loose}"
    assert not (Path.home() / ".nvflare").exists()


def test_a_site_task_killed_shows_in_status_before_flare_notices(
    local_cluster: Cluster, system: dict[str, Any]
) -> None:
    run_dir = system["up"]["run_dir"]
    victims = [
        pid
        for pid in _task_pids(run_dir, "site")
        if "HPCRUN_TASK_INDEX=2"
        in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    ]
    assert len(victims) == 1, victims
    os.kill(victims[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        status = as_json(flare(local_cluster, "status", "--json"))
        site = status["sites"][1]
        if site["state"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert site["state"] == "failed", status
    assert any(p.startswith("site-2: its Slurm task ended") for p in status["problems"]), status
    # FLARE still counts it: the report came from Slurm, not from FLARE's heartbeat.
    assert site["registered"] is True, status


def test_down_shuts_flare_down_and_leaves_no_process_port_or_tmp_file(
    local_cluster: Cluster, system: dict[str, Any]
) -> None:
    up = system["up"]
    address = up["server"]["address"]
    down = as_json(flare(local_cluster, "down", "--system", str(up["system"]), "--json"))
    assert down["status"] == "stopped"
    assert processes_mentioning(up["run_dir"]) == []
    for port in (address["fl_port"], address["admin_port"]):
        with socket.socket() as probe:
            # Nothing listens any more (connections in TIME_WAIT may remain: the kernel's).
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("", port))
            probe.listen()
    new_in_tmp = set(os.listdir("/tmp")) - system["tmp_before"]
    assert not [n for n in new_in_tmp if "nvflare" in n or "flare" in n], new_in_tmp
    assert not Path("/tmp/nvflare").exists() or "nvflare" in system["tmp_before"]
    status = as_json(flare(local_cluster, "status", "--system", str(up["system"]), "--json"))
    assert status["status"] == "stopped"
    again = as_json(flare(local_cluster, "down", "--system", str(up["system"]), "--json"))
    assert again["status"] == "stopped"  # a second down finds nothing to do, and says so
    assert Path(up["run_dir"], "kits").is_dir()  # the kits and results stay


def _task_pids(run_dir: str, role: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"{run_dir}/flare_task.pyz".encode() in args and role.encode() in args:
            found.append(int(entry))
    return found


# bad input: one line each, nothing submitted ------------------------------------------


def _refused(cluster: Cluster, *args: str) -> str:
    before = slurm_job_count(cluster)
    done = flare(cluster, *args, check=False)
    assert done.returncode in (1, 2), (done.stdout, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert slurm_job_count(cluster) == before, "a refused command submitted a job"
    return done.stderr


def test_no_sites_or_more_than_the_cluster_runs_are_refused(local_cluster: Cluster) -> None:
    assert "at least 1 site" in _refused(local_cluster, "up", "--sites", "0")
    said = _refused(local_cluster, "up", "--sites", "500")
    assert "the cluster runs at most" in said and "hint: use --sites" in said
    assert "hold 0 such site(s)" in _refused(
        local_cluster, "up", "--sites", "2", "--gpus-per-site", "64"
    )


def test_a_project_file_the_provisioner_rejects_is_named_with_its_message(
    local_cluster: Cluster, tmp_path: Path
) -> None:
    from hpcrun.workloads.flare import default_project

    project = tmp_path / "project.yml"
    project.write_text(default_project(2).replace("admin@nvidia.com", "not-an-email"))
    said = _refused(local_cluster, "up", "--project", str(project))
    assert f"FLARE's provisioner rejected {project}" in said and "ill-formatted" in said
    project.write_text("participants:\n  - name: site-1\n    type: client\n")
    assert "0 participants of type server" in _refused(
        local_cluster, "up", "--project", str(project)
    )


def test_nvflare_missing_on_the_nodes_says_how_to_install(local_cluster: Cluster) -> None:
    said = _refused(local_cluster, "up", "--sites", "1", "--python", "/usr/bin/python3")
    assert "nvflare is not installed in /usr/bin/python3" in said
    assert "-m pip install 'nvflare==" in said and "--install-nvflare" in said
    said = _refused(local_cluster, "up", "--sites", "1", "--python", "/no/such/python")
    assert "/no/such/python is not there on the cluster's nodes" in said


def test_install_nvflare_makes_a_venv_of_the_nodes_python_once(local_cluster: Cluster) -> None:
    """The nodes' Python has no nvflare: a venv of it gets nvflare (from the package
    index; pip's cache makes it quick after the first time), and the system runs on it."""
    up = as_json(
        flare(
            local_cluster,
            "up",
            "--sites",
            "1",
            "--python",
            "/usr/bin/python3",
            "--install-nvflare",
            "--json",
        )
    )
    try:
        assert up["status"] == "running" and up["sites"][0]["registered"], up
        import nvflare

        venv = Path(up["run_dir"]).parent / "venv" / f"nvflare-{nvflare.__version__}"
        argv = Path(f"/proc/{up['server']['address']['pid']}/cmdline").read_bytes()
        assert argv.startswith(f"{venv}/bin/python".encode()), argv
    finally:
        flare(local_cluster, "down", "--system", str(up["system"]))


def test_a_fixed_port_in_use_is_refused(local_cluster: Cluster) -> None:
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        said = _refused(local_cluster, "up", "--sites", "1", "--port", str(port))
    assert f"port {port} is in use" in said


def test_job_folders_without_meta_or_with_unknown_sites_are_refused(
    local_cluster: Cluster, system: dict[str, Any], tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "has no meta.json" in _refused(local_cluster, "submit", str(empty))
    job = tmp_path / "job"
    local_cluster.cli("flare", "example", str(job))
    meta = json.loads((job / "meta.json").read_text())
    meta["deploy_map"] = {"app": ["site-1", "site-9"]}
    (job / "meta.json").write_text(json.dumps(meta))
    said = _refused(local_cluster, "submit", str(job))
    assert "deploys to site-9, which this system does not have" in said


def test_ctrl_c_during_up_leaves_a_system_status_explains_and_down_cleans(
    local_cluster: Cluster,
) -> None:
    from tests.conftest import HPCRUN, cli_env

    proc = subprocess.Popen(
        [*HPCRUN, "flare", "up", "--sites", "2", "--cluster", local_cluster.name],
        env=cli_env(local_cluster.home),
        cwd=local_cluster.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    said = []
    for line in proc.stderr:
        said.append(line)
        if "site array" in line:
            break
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(said) + rest
    status = as_json(flare(local_cluster, "status", "--json"))
    assert status["status"] == "starting" and "interrupted" in status["detail"], status
    assert status["server"]["job_id"] and all(s["task"] for s in status["sites"]), status
    down = as_json(flare(local_cluster, "down", "--system", str(status["system"]), "--json"))
    assert down["status"] == "stopped"
    assert processes_mentioning(status["run_dir"]) == []
