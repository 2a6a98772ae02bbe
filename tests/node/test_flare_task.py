"""The FLARE participant task's own parts: what it stops when its task ends (every process
naming its kit, not another site's whose name starts the same), how it points a kit's
storage into the run directory, and that it ships as a zipapp importing nothing of
hpcrun's user side."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

from hpcrun.node.flare import cli
from hpcrun.node.zipapp import FLARE_NAME, flare_task


def _sleeper(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", *args])


def test_leftovers_of_one_kit_end_and_a_similar_kit_is_left_alone(tmp_path: Path) -> None:
    kits = tmp_path / "kits"
    mine = _sleeper("-m", str(kits / "site-1"))
    worker = _sleeper(f"{kits / 'site-1'}/job-42/app")
    other = _sleeper("-m", str(kits / "site-10"))
    try:
        cli.end_leftovers(kits / "site-1")
        assert mine.wait(timeout=15) is not None
        assert worker.wait(timeout=15) is not None
        assert other.poll() is None
    finally:
        for proc in (mine, worker, other):
            proc.kill()
            proc.wait()


def test_storage_moves_from_the_shared_tmp_into_the_run_directory(tmp_path: Path) -> None:
    kit = tmp_path / "kits" / "server"
    (kit / "local").mkdir(parents=True)
    default = {"components": [{"args": {"uri_root": "/tmp/nvflare/jobs-storage"}}]}
    (kit / "local" / "resources.json.default").write_text(json.dumps(default))
    cli._point_storage(kit, tmp_path / "store" / "server")
    written = json.loads((kit / "local" / "resources.json").read_text())
    assert written["components"][0]["args"]["uri_root"] == f"{tmp_path}/store/server/jobs-storage"
    assert (tmp_path / "store" / "server").is_dir()


def test_rewriting_a_private_file_keeps_it_private(tmp_path: Path) -> None:
    path = tmp_path / "fed_client.json"
    path.write_text("{}")
    path.chmod(0o600)
    cli._write(path, '{"a": 1}')
    assert path.stat().st_mode & 0o777 == 0o600 and json.loads(path.read_text()) == {"a": 1}


def test_the_task_ships_as_a_deterministic_zipapp_of_the_package_alone() -> None:
    data = flare_task()
    assert data == flare_task()
    names = zipfile.ZipFile(BytesIO(data)).namelist()
    assert f"{FLARE_NAME}/cli.py" in names and "__main__.py" in names
    assert not [n for n in names if n.startswith("hpcrun/")]


def test_the_zipapp_prints_its_usage_without_hpcrun_installed(tmp_path: Path) -> None:
    task = tmp_path / "flare_task.pyz"
    task.write_bytes(flare_task())
    done = subprocess.run(
        [sys.executable, "-I", str(task)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "usage: flare_task.pyz" in done.stderr
