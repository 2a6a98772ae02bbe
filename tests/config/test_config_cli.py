"""`hpcrun config ...`: exit codes, stdout vs -o, every problem by key path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hpcrun.cli.config import app
from hpcrun.config.presets import preset_text
from hpcrun.errors import HpcrunError
from tests.config.test_pcluster import NVIDIA_STYLE_V2

REPO = Path(__file__).resolve().parents[2]


def invoke(*args: str) -> tuple[int, str, str]:
    """Run a `config` subcommand; HpcrunErrors become the exit code `hpcrun` gives them."""
    result = CliRunner().invoke(app, list(args))
    if isinstance(result.exception, HpcrunError):
        exc = result.exception
        return exc.exit_code, result.stdout, f"{exc.message}\n{exc.hint or ''}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("preset", ["index-aws", "index-g4dn", "index-eks", "kubernetes", "local"])
def test_init_prints_the_preset(preset: str) -> None:
    code, out, _ = invoke("init", "--preset", preset)
    assert code == 0 and out == preset_text(preset)


def test_init_writes_a_file_and_refuses_to_overwrite_it(tmp_path: Path) -> None:
    target = tmp_path / "cluster.yaml"
    assert invoke("init", "--preset", "index-g4dn", "-o", str(target))[0] == 0
    code, _, message = invoke("init", "--preset", "local", "-o", str(target))
    assert code == 2 and "already exists" in message
    assert invoke("init", "--preset", "local", "-o", str(target), "--force")[0] == 0
    assert target.read_text() == preset_text("local")
    code, _, message = invoke("init", "--preset", "nope")
    assert code == 2 and "index-aws" in message


@pytest.mark.parametrize("name", ["index-aws", "index-g4dn", "index-eks", "kubernetes", "local"])
def test_validate_presets_ok(name: str) -> None:
    code, out, _ = invoke("validate", str(REPO / "configs" / f"{name}.yaml"))
    assert code == 0
    assert out.startswith("OK ") and out.count("\n") == 1


def test_validate_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    data = yaml.safe_load(preset_text("index-aws"))
    data.update(min_count=3, max_count=1, colour="blue")
    data["dcv"]["port"] = 80
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    code, _, err = invoke("validate", str(path))
    assert code == 1
    for key in ("dcv.port:", "colour: unknown key"):
        assert f"  {key}" in err
    code, out, _ = invoke("validate", "--json", str(path))
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert {p["key"] for p in report["problems"]} == {"dcv.port", "colour"}


def test_validate_local_file_problems(tmp_path: Path) -> None:
    path = tmp_path / "local.yaml"
    path.write_text("nodes: 99\n")
    code, _, err = invoke("validate", str(path))
    assert code == 1 and "nodes:" in err


@pytest.mark.parametrize(
    ("fmt", "marker"), [("pcluster-v3", "CustomAmi:"), ("pcluster-v2", "[dcv default]")]
)
def test_render_prints_the_pcluster_config(fmt: str, marker: str) -> None:
    code, out, _ = invoke("render", str(REPO / "configs" / "index-aws.yaml"), "--format", fmt)
    assert code == 0 and marker in out


def test_render_refuses_bad_format_and_local_files() -> None:
    assert invoke("render", str(REPO / "configs" / "index-aws.yaml"), "-f", "v9")[0] == 2
    assert invoke("render", str(REPO / "configs" / "local.yaml"))[0] == 2


def test_import_writes_an_hpcrun_file_that_validates(tmp_path: Path) -> None:
    source = tmp_path / "nvindex.config"
    source.write_text(NVIDIA_STYLE_V2)
    target = tmp_path / "cluster.yaml"
    code, _, _ = invoke("import", str(source), "-o", str(target))
    assert code == 0
    assert yaml.safe_load(target.read_text())["name"] == "nvindex"
    assert "DisableSimultaneousMultithreading" in target.read_text()  # listed, not lost
    code, out, _ = invoke("validate", str(target))
    assert code == 0, out
    assert invoke("import", str(source), "-o", str(target))[0] == 2  # no silent overwrite
