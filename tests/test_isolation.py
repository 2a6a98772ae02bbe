"""The test suite's own isolation: a user's HPCRUN_* and Slurm settings never reach the
hpcrun processes tests start (else a test would act on the user's clusters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.aws import MotoServer
from tests.conftest import clean_environ, cli_env, run_cli

USER_SETTINGS = {
    "HPCRUN_HOME": "/nonexistent/users-hpcrun-home",
    "HPCRUN_CLUSTER": "users-cluster",
    "HPCRUN_SCENES": "/nonexistent/users-scenes",
    "SLURM_CONF": "/nonexistent/users-slurm.conf",
    "SLURM_JOB_ID": "424242",
    "SBATCH_PARTITION": "users-partition",
}


@pytest.fixture
def user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in USER_SETTINGS.items():
        monkeypatch.setenv(key, value)


def _leaked(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if v in USER_SETTINGS.values()}


@pytest.mark.usefixtures("user_settings")
def test_child_environments_carry_none_of_the_users_settings(tmp_path: Path) -> None:
    assert _leaked(clean_environ()) == {}
    assert _leaked(cli_env(tmp_path)) == {}
    assert cli_env(tmp_path)["HPCRUN_HOME"] == str(tmp_path)
    moto = MotoServer("http://127.0.0.1:9", pid=0).env()
    assert _leaked(moto) == {}
    assert not any(k.startswith(("HPCRUN_", "SLURM_", "SBATCH_")) for k in moto)
    assert moto["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert clean_environ(SLURM_CONF="/mine/slurm.conf")["SLURM_CONF"] == "/mine/slurm.conf"


@pytest.mark.usefixtures("user_settings")
def test_run_cli_acts_on_its_own_home_not_the_users(tmp_path: Path) -> None:
    done = run_cli("status", home=tmp_path, check=False)
    assert done.returncode == 1
    assert "no current cluster" in done.stderr  # not "no cluster named 'users-cluster'"
    assert (tmp_path / "state.db").exists()
    assert not Path(USER_SETTINGS["HPCRUN_HOME"]).exists()
