"""`hpcrun status` of a cluster whose Slurm controller cannot answer: no "0 jobs", but
that the jobs are unknown, and what hpcrun itself recorded of its work there.

The cluster is a local one whose daemons are not running (nothing was ever started in
this `$HPCRUN_HOME`), so every Slurm question would go unanswered: the real CLI runs
in-process against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpcrun.config.models import LocalClusterConfig
from hpcrun.errors import UnknownJob
from hpcrun.services.jobs import JobsService
from hpcrun.state import ClusterState, StateStore
from tests.cli.test_refusals import run


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StateStore:
    monkeypatch.setenv("HPCRUN_HOME", str(tmp_path))
    monkeypatch.delenv("HPCRUN_CLUSTER", raising=False)
    store = StateStore(tmp_path)
    config = LocalClusterConfig().model_dump()
    store.put_cluster(config["name"], "local", config, ClusterState.UP)
    store.set_current_cluster(config["name"])
    for job_id in ("11", "12", "13"):
        row = store.record_submit_intent(config["name"], "j", {}, str(tmp_path), "o", None)
        store.record_submitted(row, job_id)
    failed = store.record_submit_intent(config["name"], "j", {}, str(tmp_path), "o", None)
    store.record_submit_failed(failed, "sbatch: error: ...")
    return store



def test_status_says_jobs_are_unknown_and_shows_the_records(
    store: StateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert "0 active" not in out and "recently ended" not in out
    assert "Jobs: unknown" in out and "slurmctld is not running" in out
    assert "jobs 4 (3 submitted, 1 failed)" in out

    code, out, _ = run(capsys, "status", "--json")
    shown = json.loads(out)
    assert shown["jobs_error"] == "slurmctld is not running"
    assert shown["recorded"]["jobs"] == {"submitted": 3, "failed": 1}


def test_unknown_job_lists_the_newest_recent_jobs_first(store: StateStore) -> None:
    record = store.clusters()[0]
    service = JobsService(store, record.name, None)  # type: ignore[arg-type]  # store only
    assert service.recent_job_ids() == ["13", "12", "11"]
    error = UnknownJob("99", record.name, [str(i) for i in range(30, 0, -1)])
    assert "(recent jobs, newest first: 30, 29, 28, 27, 26, 25, 24, 23, 22, 21)" in error.message
