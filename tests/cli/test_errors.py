"""What a person sees when something is wrong: one message, a hint, the right exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import clean_environ, run_cli


def test_unknown_cluster_lists_known_ones(tmp_path: Path) -> None:
    done = run_cli("status", "--cluster", "nope", home=tmp_path, check=False)
    assert done.returncode == 1
    assert "no cluster named 'nope' (known clusters: none yet)" in done.stderr
    assert "Traceback" not in done.stderr


def test_no_current_cluster_says_how_to_make_one(tmp_path: Path) -> None:
    done = run_cli("jobs", home=tmp_path, check=False)
    assert done.returncode == 1
    assert "no current cluster" in done.stderr
    assert "hpcrun create" in done.stderr


def test_bad_array_is_a_usage_error_naming_the_flag(tmp_path: Path) -> None:
    done = run_cli(
        "submit", "--array", "0-", "--cluster", "x", "--", "true", home=tmp_path, check=False
    )
    assert done.returncode == 2
    assert "--array '0-' is not a Slurm array range" in done.stderr


def test_bad_node_count_lists_every_problem(tmp_path: Path) -> None:
    done = run_cli("create", "--nodes", "17", "--name", "Bad_Name", home=tmp_path, check=False)
    assert done.returncode == 2
    assert "nodes:" in done.stderr and "name:" in done.stderr
    assert "Traceback" not in done.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    done = run_cli("--debug", "status", "--cluster", "nope", home=tmp_path, check=False)
    assert done.returncode != 0
    assert "Traceback" in done.stderr


def test_missing_slurm_says_how_to_install_it(tmp_path: Path) -> None:
    env = clean_environ(HPCRUN_HOME=str(tmp_path), PATH=str(Path(sys.executable).parent))
    done = subprocess.run(
        [sys.executable, "-m", "hpcrun", "create"],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 1
    assert "Slurm is not installed here" in done.stderr
    assert "make setup" in done.stderr


def test_down_without_yes_and_without_a_terminal_refuses(tmp_path: Path) -> None:
    from hpcrun.state import StateStore

    StateStore(tmp_path).put_cluster("dev", "local", {"name": "dev", "nodes": 1}, "down")
    done = run_cli("down", "--cluster", "dev", home=tmp_path, check=False)
    assert done.returncode == 2
    assert "pass --yes" in done.stderr


def test_help_imports_nothing_heavy() -> None:
    """`hpcrun --help` must stay fast: heavy packages are imported inside commands only."""
    probe = (
        "import sys\n"
        "from hpcrun.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'pydantic', 'jinja2', 'yaml', 'boto3', 'pcluster', 'kubernetes',\n"
        "         'numpy', 'paramiko'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def _pcluster_file(tmp_path: Path, **overrides: object) -> Path:
    import yaml

    from hpcrun.config.presets import preset_text

    data = yaml.safe_load(preset_text("index-g4dn"))
    data.update(
        custom_ami="ami-0123456789abcdef0",
        subnet_id="subnet-0123456789abcdef0",
        key_name="mine",
        **overrides,
    )
    path = tmp_path / "aws.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_create_refuses_local_flags_on_a_cluster_file_of_another_backend(tmp_path: Path) -> None:
    path = _pcluster_file(tmp_path)
    done = run_cli("create", "--config", str(path), "--nodes", "8", home=tmp_path, check=False)
    assert done.returncode == 2
    assert "--nodes applies to local clusters only" in done.stderr
    assert f"set the cluster's shape in {path}" in done.stderr


def test_create_of_a_v2_cluster_says_to_use_parallelcluster_2(tmp_path: Path) -> None:
    # Refused before any AWS call: nothing here can reach AWS, and nothing is recorded.
    path = _pcluster_file(
        tmp_path,
        format="pcluster-v2",
        vpc_id="vpc-0123456789abcdef0",
        post_install_url="s3://bucket/post-install.sh",
    )
    done = run_cli("create", "--config", str(path), "--yes", home=tmp_path, check=False)
    assert done.returncode == 2
    assert "format: pcluster-v2 clusters are made by ParallelCluster 2.x" in done.stderr
    assert "--format pcluster-v2" in done.stderr
    assert "no clusters yet" in run_cli("clusters", home=tmp_path).stdout.lower()


def test_remote_backend_without_a_file_asks_for_one(tmp_path: Path) -> None:
    done = run_cli("create", "--backend", "ssh", home=tmp_path, check=False)
    assert done.returncode == 2
    assert "--backend ssh: describe the cluster in a file" in done.stderr


def test_ssh_into_a_local_cluster_explains_there_is_no_head_node(tmp_path: Path) -> None:
    from hpcrun.state import StateStore

    StateStore(tmp_path).put_cluster("dev", "local", {"name": "dev", "nodes": 2}, "down")
    done = run_cli("ssh", "--cluster", "dev", home=tmp_path, check=False)
    assert done.returncode == 1
    assert "runs on this machine: there is no head node to log in to" in done.stderr
    assert "export SLURM_CONF=" in done.stderr
