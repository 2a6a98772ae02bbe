"""The score task's threads: the CPUs the scheduler gave it (HPCRUN_CPUS), capped by the CPUs
the process may run on, and set on the model it predicts with (issue 19)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hpcrun.node.score.model import load_model
from hpcrun.node.score.scoring import CPUS_ENV, task_threads
from hpcrun.scheduler import CPUS_ENV as NEUTRAL_CPUS_ENV

np = pytest.importorskip("numpy")
xgb = pytest.importorskip("xgboost")

USABLE = len(os.sched_getaffinity(0))


def test_the_task_reads_the_neutral_variable_the_scheduler_sets() -> None:
    assert CPUS_ENV == NEUTRAL_CPUS_ENV  # node/ cannot import hpcrun.scheduler: same name


@pytest.mark.parametrize(
    ("given", "threads"),
    [
        ("1", 1),
        (str(USABLE), USABLE),
        ("4096", USABLE),  # a node that declares more CPUs than the host has (local cluster)
        ("", None),  # the scheduler said nothing: the model's own default
        ("0", None),
        ("many", None),
    ],
)
def test_threads_are_the_cpus_given_never_more_than_usable(
    monkeypatch: pytest.MonkeyPatch, given: str, threads: int | None
) -> None:
    monkeypatch.setenv(CPUS_ENV, given)
    assert task_threads() == threads


def test_threads_unset_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CPUS_ENV, raising=False)
    assert task_threads() is None


def test_the_booster_predicts_with_the_threads_it_was_given(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.random((500, 4), dtype=np.float32)
    booster = xgb.train({"max_depth": 3, "nthread": 1}, xgb.DMatrix(x, label=x[:, 0]), 5)
    path = tmp_path / "m.json"
    booster.save_model(path)
    one = load_model(str(path), "xgboost_json", 1)
    assert json.loads(one.save_config())["learner"]["generic_param"]["nthread"] == "1"
    default = load_model(str(path), "xgboost_json")
    assert np.array_equal(one.inplace_predict(x), default.inplace_predict(x))
