"""The score task's zipapp: the same bytes from the same sources, only the node package
inside, and `python score_task.pyz inspect` working without importing hpcrun.

The venv has hpcrun installed (editable), so "hpcrun is not importable" cannot be shown
here; instead the subprocess runs with `-X importtime`, which lists every module it
imported, and no `hpcrun` or `hpcrun.*` may be among them.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hpcrun.node.zipapp import SCORE_NAME, build_zipapp, package_sources, score_task

SCORE_DIR = Path(__file__).resolve().parents[2] / "hpcrun" / "node" / "score"


def test_same_sources_give_the_same_bytes() -> None:
    assert score_task() == score_task()


def test_timestamps_do_not_matter_and_code_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "zipapp_probe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text("def main() -> int:\n    return 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = build_zipapp("zipapp_probe", name="probe")
    os.utime(package / "cli.py", (1_000_000_000, 1_000_000_000))
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"stale")
    assert build_zipapp("zipapp_probe", name="probe") == first
    (package / "cli.py").write_text("def main() -> int:\n    return 4\n")
    assert build_zipapp("zipapp_probe", name="probe") != first
    pyz = tmp_path / "probe.pyz"
    pyz.write_bytes(first)
    assert subprocess.run([sys.executable, str(pyz)], check=False).returncode == 3


def test_the_zip_holds_the_score_package_alone_with_relative_imports(tmp_path: Path) -> None:
    pyz = tmp_path / "score_task.pyz"
    pyz.write_bytes(score_task())
    with zipfile.ZipFile(pyz) as archive:
        names = archive.namelist()
        sources = {name: archive.read(name) for name in names}
    modules = sorted(p.name for p in SCORE_DIR.glob("*.py"))
    assert names == ["__main__.py", *(f"{SCORE_NAME}/{m}" for m in modules)]
    assert {f"{SCORE_NAME}/{k}": v for k, v in package_sources("hpcrun.node.score").items()} == {
        k: v for k, v in sources.items() if k != "__main__.py"
    }
    for name, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names if a.name.split(".")[0] == "hpcrun"]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found = [node.module or ""] if (node.module or "").split(".")[0] == "hpcrun" else []
            else:
                continue
            assert not found, f"{name}:{node.lineno} imports {found} (not in the zipapp)"


def test_inspect_runs_from_the_zipapp_without_importing_hpcrun(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(1)
    x = rng.random((200, 3), dtype=np.float32)
    model = tmp_path / "model.json"
    xgb.train({"max_depth": 2}, xgb.DMatrix(x, label=x[:, 0] > 0.5), 2).save_model(model)
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({f"f{i}": x[:, i] for i in range(3)}), table, row_group_size=64)
    pyz = tmp_path / "bin" / "score_task.pyz"
    pyz.parent.mkdir()
    pyz.write_bytes(score_task())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(pyz), "inspect", "--input", str(table),
         "--model", str(model), "--model-format", "xgboost_json", "--server", "none"],
        capture_output=True, text=True, cwd=elsewhere, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["rows"] == 200 and [u["rows"] for u in report["units"]] == [64, 64, 64, 8]
    assert report["model"]["features"] == 3
    imported = [
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]
    assert f"{SCORE_NAME}.table" in imported  # the list is real: the task's modules are in it
    assert [m for m in imported if m == "hpcrun" or m.startswith("hpcrun.")] == []
