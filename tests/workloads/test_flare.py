"""The FLARE plan as data: the project file hpcrun provisions from (golden, and FLARE's
own provisioner takes it), a user's project taken apart, the server job and the site
array as sbatch scripts (golden: the array starts `after` the server started), and a job
folder's mistakes named before FLARE sees it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpcrun.errors import UsageError
from hpcrun.scheduler import JobRef
from hpcrun.slurm.scheduler import to_job_spec
from hpcrun.workloads.flare import (
    FlarePlan,
    check_job,
    default_project,
    parse_version,
    read_project,
    server_spec,
    sites_spec,
)
from tests.golden_util import assert_golden

PEOPLE = read_project(default_project(3), "test")
PLAN = FlarePlan(
    name="flare-7",
    run_dir="/home/u/.hpcrun/flare/7",
    python="/opt/venv/bin/python",
    task="/home/u/.hpcrun/flare/7/flare_task.pyz",
    participants=PEOPLE,
    gpus_per_site=1,
    time_limit_s=3600,
)


def test_the_default_project_golden_and_read_back() -> None:
    text = default_project(3)
    assert_golden("flare_project.yml", text)
    assert PEOPLE.server == "server" and PEOPLE.sites == ("site-1", "site-2", "site-3")
    assert PEOPLE.admin == "admin@nvidia.com" and PEOPLE.org == "nvidia"
    assert (PEOPLE.fl_port, PEOPLE.admin_port) == (8002, 8003)


def test_server_job_and_site_array_golden() -> None:
    server = to_job_spec(server_spec(PLAN)).to_sbatch_script()
    sites = to_job_spec(sites_spec(PLAN, JobRef("41"))).to_sbatch_script()
    assert "--dependency=after:41" in sites and "--array=1-3" in sites
    assert_golden("flare_jobs.txt", "# server job\n" + server + "# site array\n" + sites)


def test_the_node_plan_holds_names_and_no_secret() -> None:
    plan = PLAN.node_plan()
    assert plan == {
        "server": "server",
        "org": "nvidia",
        "sites": ["site-1", "site-2", "site-3"],
        "fl_port": 0,
        "admin_port": 0,
    }


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("participants: 3", "no `participants` list"),
        ("participants:\n  - {name: s, type: client}\n", "0 participants of type server"),
        ("participants:\n  - {name: a, type: server}\n  - {name: b, type: server}\n", "2 part"),
        ("participants:\n  - {name: a, type: server}\n", "no participant of type client"),
        (
            "participants:\n  - {name: a, type: server}\n  - {name: c, type: client}\n"
            "  - {name: x@y.org, type: admin, role: lead}\n",
            "no admin with role project_admin",
        ),
        ("participants: [", "is not YAML"),
    ],
)
def test_project_files_hpcrun_cannot_run_are_named(text: str, said: str) -> None:
    with pytest.raises(UsageError, match=said):
        read_project(text, "p.yml")


def test_a_users_project_keeps_its_names_and_ports() -> None:
    text = default_project(2).replace("site-1", "hospital-a").replace("8002", "9002")
    people = read_project(text.replace("admin_port: 8003", ""), "p.yml")
    assert people.sites == ("hospital-a", "site-2")
    assert (people.fl_port, people.admin_port) == (9002, 9003)


def test_job_folder_checks() -> None:
    sites = ["site-1", "site-2"]
    with pytest.raises(UsageError, match=r"has no meta\.json"):
        check_job(None, "j", sites)
    with pytest.raises(UsageError, match="not JSON"):
        check_job("{", "j", sites)
    with pytest.raises(UsageError, match="no deploy_map"):
        check_job("{}", "j", sites)
    with pytest.raises(UsageError, match="deploys to site-9, which"):
        check_job(json.dumps({"deploy_map": {"app": ["server", "site-9"]}}), "j", sites)
    with pytest.raises(UsageError, match="min_clients 3"):
        check_job(json.dumps({"deploy_map": {"app": ["@ALL"]}, "min_clients": 3}), "j", sites)
    meta = {"deploy_map": {"app": ["@ALL"], "other": ["server", "site-2"]}, "min_clients": 2}
    assert check_job(json.dumps(meta), "j", sites) == meta


def test_the_shipped_example_passes_the_checks() -> None:
    from importlib import resources

    folder = resources.files("hpcrun.workloads") / "jobs" / "hello-numpy"
    check_job((folder / "meta.json").read_text(), "hello-numpy", ["site-1", "site-2"])
    server = json.loads((folder / "app" / "config" / "config_fed_server.json").read_text())
    assert server["workflows"][0]["args"]["num_rounds"] == 1


def test_versions() -> None:
    assert parse_version("2.9.0") == (2, 9, 0)
    assert parse_version("2.6.0rc1") == (2, 6, 0)
    assert parse_version("2.5.2") < (2, 6)


def test_flares_provisioner_takes_the_default_project(tmp_path: Path) -> None:
    pytest.importorskip("nvflare")
    (tmp_path / "project.yml").write_text(default_project(2))
    program = Path(sys.executable).with_name("nvflare")
    done = subprocess.run(
        [str(program), "provision", "-p", "project.yml", "-w", "ws", "--force"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    kits = tmp_path / "ws" / "hpcrun" / "prod_00"
    assert sorted(p.name for p in kits.iterdir()) == [
        "admin@nvidia.com",
        "server",
        "site-1",
        "site-2",
    ]
    fed = json.loads((kits / "site-1" / "startup" / "fed_client.json").read_text())
    assert fed["servers"][0]["service"]["target"] == "server:8002"
