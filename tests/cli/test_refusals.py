"""Commands refuse, before any work, on a cluster whose backend lacks what they need.

Each case runs the real CLI entry point in-process against a cluster record in a fresh
`$HPCRUN_HOME`, and checks the one-line refusal (what is missing, on which cluster and
backend), its hint, the exit code, and that nothing was submitted or changed. The `bare`
backend lacks every feature and fails any use past the refusal; it is registered for the
test only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import hpcrun.backends
from hpcrun.backends import BackendEntry, Lack
from hpcrun.backends.base import Feature
from hpcrun.cli import main
from hpcrun.config.models import LocalClusterConfig
from hpcrun.config.presets import preset_text
from hpcrun.state import ClusterRecord, ClusterState, StateStore


class BareBackend:
    """A backend with no features: anything past the refusal fails the test."""

    name = "bare"

    def __init__(self) -> None:
        self.unsupported = frozenset(Feature)

    @classmethod
    def from_record(cls, record: ClusterRecord, store: StateStore) -> BareBackend:
        return cls()

    def __getattr__(self, attribute: str) -> Any:
        raise AssertionError(f"the command went past its refusal: backend.{attribute}")


BARE = BackendEntry(
    name="bare",
    backend_class=f"{__name__}:BareBackend",
    config_model="hpcrun.config.models:LocalClusterConfig",
    description="a test backend with no features",
    example="configs/local.yaml",
    lacks={f: Lack("is a test backend without any feature", "use a real cluster") for f in Feature},
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateStore:
    monkeypatch.setenv("HPCRUN_HOME", str(tmp_path))
    monkeypatch.delenv("HPCRUN_CLUSTER", raising=False)
    monkeypatch.setattr(hpcrun.backends, "REGISTRY", {**hpcrun.backends.REGISTRY, "bare": BARE})
    store = StateStore(tmp_path)
    store.put_cluster("b1", "bare", {"name": "b1"}, ClusterState.UP)
    store.put_cluster("dev", "local", LocalClusterConfig().model_dump(), ClusterState.DOWN)
    pcluster: dict[str, Any] = yaml.safe_load(preset_text("index-g4dn"))
    pcluster.update(name="pc", job_expansion=False, dcv={"enabled": False}, host="192.0.2.1")
    store.put_cluster("pc", "parallelcluster", pcluster, ClusterState.UP)
    return store


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


SLURM = "cluster 'b1' (bare) has no Slurm scheduler, which hpcrun"
BARE_LACKS = "needs: it is a test backend without any feature"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "--cluster", "b1", "--", "true"], f"{SLURM} submit {BARE_LACKS}"),
        (["jobs", "--cluster", "b1"], f"{SLURM} jobs {BARE_LACKS}"),
        (["logs", "--cluster", "b1", "12"], f"{SLURM} logs {BARE_LACKS}"),
        (["cancel", "--cluster", "b1", "12"], f"{SLURM} cancel {BARE_LACKS}"),
        (
            ["scale", "--cluster", "b1", "--merge", "+1"],
            "cluster 'b1' (bare) has no Slurm job expansion (SchedulerParameters="
            f"permit_job_expansion), which hpcrun scale --merge {BARE_LACKS}",
        ),
        (
            ["dcv", "--cluster", "b1"],
            f"cluster 'b1' (bare) has no remote desktop (NICE DCV), which hpcrun dcv {BARE_LACKS}",
        ),
        (
            ["ssh", "--cluster", "b1"],
            f"cluster 'b1' (bare) has no login shell on a head node, which hpcrun ssh {BARE_LACKS}",
        ),
        (
            ["dcv", "--cluster", "dev"],
            "cluster 'dev' (local) has no remote desktop (NICE DCV), which hpcrun dcv needs: "
            "it runs on this machine: there is no head node to run a remote desktop on",
        ),
        (
            ["ssh", "--cluster", "dev", "--", "hostname"],
            "cluster 'dev' (local) has no login shell on a head node, which hpcrun ssh needs: "
            "it runs on this machine: there is no head node to log in to",
        ),
        (
            ["scale", "--cluster", "pc", "--merge", "+2"],
            "cluster 'pc' (parallelcluster) has no Slurm job expansion (SchedulerParameters="
            "permit_job_expansion), which hpcrun scale --merge needs: it was made without job "
            "expansion (job_expansion: false)",
        ),
        (
            ["dcv", "--cluster", "pc", "--print-url"],
            "cluster 'pc' (parallelcluster) has no remote desktop (NICE DCV), which hpcrun dcv "
            "needs: it was made with its remote desktop turned off (dcv.enabled: false)",
        ),
    ],
    ids=[
        "submit",
        "jobs",
        "logs",
        "cancel",
        "scale-merge",
        "dcv",
        "ssh",
        "dcv-local",
        "ssh-local",
        "scale-merge-pc",
        "dcv-pc",
    ],
)
def test_a_command_is_refused_before_any_work(
    home: StateStore, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = [(c.name, c.status, c.config) for c in home.clusters()]
    code, out, err = run(capsys, *args)
    assert code == 1
    assert out == ""
    error, hint = err.splitlines()  # one line saying what is wrong, one what to do
    assert error.startswith(f"error: {message}"), error
    assert hint.startswith("hint: ") and len(hint) > len("hint: ")
    cluster = args[args.index("--cluster") + 1]
    assert home.jobs(cluster) == []  # nothing submitted
    assert home.index_sessions(cluster) == []
    assert [(c.name, c.status, c.config) for c in home.clusters()] == before


def test_the_local_shell_refusal_says_which_slurm_conf_to_use(
    home: StateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, err = run(capsys, "ssh", "--cluster", "dev")
    conf = home.home / "clusters" / "dev"
    assert f"hint: use this shell after `export SLURM_CONF={conf}" in err
