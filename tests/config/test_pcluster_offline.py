"""What `config validate` does not pay twice: ParallelCluster's schema runs offline
without importing boto3 or botocore.config (`_boto3_on_use`), with the same findings as
with boto3 imported first, and ParallelCluster's modules reach the real ones afterwards;
the pcluster templates' compiled code is kept between processes (`_bytecode_cache`) and
renders the same. Each case runs in a fresh interpreter, as `hpcrun config validate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECK = """
import json, sys
{before}
import yaml
from hpcrun.config.pcluster import validate_data
from hpcrun.config.presets import preset_text

data = yaml.safe_load(preset_text("index-g4dn"))
data["custom_ami"] = "ami-1a2b3c4d5e6f7a8b9"
{change}
report = validate_data(data)
found = {{
    "problems": [[p.path, p.message, p.pcluster_path] for p in report.problems],
    "placeholders": report.placeholders,
    "boto3_imported": "boto3" in sys.modules,
    "botocore_session_imported": "botocore.session" in sys.modules,
    "botocore_config_imported": "botocore.config" in sys.modules,
}}
import boto3
import botocore.config
from pcluster.aws import common
found["reaches_boto3"] = (
    common.boto3.session.Session is boto3.session.Session
    and type(common.Config(retries={{"max_attempts": 1}})) is botocore.config.Config
)
print(json.dumps(found))
"""

CHANGES = {
    "valid": "",
    # ParallelCluster's own schema refuses these (hpcrun's checks let them through).
    "schema_errors": 'data["parallelcluster"] = {"HeadNode": {"Imds": {"Secured": "x"}}}',
}


def check(before: str, change: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHECK.format(before=before, change=change)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout))


@pytest.mark.parametrize("case", list(CHANGES))
def test_the_schema_finds_the_same_without_importing_boto3(case: str) -> None:
    offline = check("", CHANGES[case])
    with_boto3 = check("import boto3", CHANGES[case])
    assert offline["boto3_imported"] is False and offline["botocore_session_imported"] is False
    assert offline["botocore_config_imported"] is False
    assert with_boto3["boto3_imported"] is True
    for key in ("problems", "placeholders"):
        assert offline[key] == with_boto3[key], key
    if case == "schema_errors":
        assert offline["problems"], offline
    assert offline["reaches_boto3"] is True and with_boto3["reaches_boto3"] is True


RENDER = """
from hpcrun.config.pcluster import render_v3, validate_parallelcluster_config
from hpcrun.config.pcluster.render import _environment
import yaml
from hpcrun.config.presets import preset_text

config = validate_parallelcluster_config(yaml.safe_load(preset_text("index-g4dn")))
print(type(_environment().bytecode_cache).__name__)
print(render_v3(config, source="x.yaml", subnet_id="subnet-0abc1234"), end="")
"""


def test_the_templates_compiled_code_is_kept_and_renders_the_same(tmp_path: Path) -> None:
    def rendered(tmp: Path) -> tuple[str, str]:
        env = {**os.environ, "TMPDIR": str(tmp)}  # where jinja2 keeps its cache
        done = subprocess.run(
            [sys.executable, "-c", RENDER], capture_output=True, text=True, check=True, env=env
        )
        cache, _, text = done.stdout.partition("\n")
        return cache, text

    cache, first = rendered(tmp_path)
    assert cache == "QuietCache"
    cached = list(tmp_path.glob("_jinja2-cache-*/hpcrun-pcluster-*.cache"))
    assert len(cached) == 1, cached
    assert rendered(tmp_path) == (cache, first)
    cached[0].write_bytes(b"not jinja2 bytecode")  # a broken cache is compiled again
    assert rendered(tmp_path) == (cache, first)
    # No private directory to be had (a file holds its name): no cache, the same text.
    unsafe = tmp_path / "unsafe"
    unsafe.mkdir()
    (unsafe / f"_jinja2-cache-{os.getuid()}").write_text("")
    assert rendered(unsafe) == ("NoneType", first)


def test_boto3_asked_for_while_the_stand_in_is_installed_gives_way_to_the_real_one() -> None:
    """A ParallelCluster that used boto3 at import time would have reached the stand-in
    while it is in sys.modules; importing "boto3" then found the stand-in again, forever."""
    code = (
        "import sys\n"
        "from hpcrun.config.pcluster.schema import _boto3_on_use\n"
        "with _boto3_on_use():\n"
        "    import boto3\n"
        "    session = boto3.session\n"
        "import boto3 as real\n"
        "print(type(real).__name__, session is real.session)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["module", "True"]
