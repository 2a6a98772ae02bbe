"""`hpcrun score --export-model-repo DIR`: Triton's model repository for the FIL backend,
written from a real XGBoost model (the feature count and classes read from it), golden."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.golden_util import assert_golden

np = pytest.importorskip("numpy")
xgb = pytest.importorskip("xgboost")


def _model(path: Path, features: int, objective: str = "binary:logistic", **extra: int) -> Path:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, features)).astype(np.float32)
    label = rng.integers(0, extra.get("num_class", 2), size=300).astype(np.float32)
    booster = xgb.train(
        {"objective": objective, "max_depth": 3, "nthread": 1, **extra},
        xgb.DMatrix(x, label=label),
        num_boost_round=3,
    )
    booster.save_model(path)
    return path


def test_export_writes_config_and_model_with_the_models_feature_count(tmp_path: Path) -> None:
    model = _model(tmp_path / "model.json", features=32)
    repo = tmp_path / "repo"
    done = run_cli(
        "score",
        "-m",
        str(model),
        "--export-model-repo",
        str(repo),
        "--json",
        home=tmp_path / "home",
    )
    listed = json.loads(done.stdout)
    assert sorted(Path(p).relative_to(repo).as_posix() for p in listed["files"]) == [
        "hpcrun_model/1/xgboost.json",
        "hpcrun_model/config.pbtxt",
    ]
    assert_golden("score_fil_config.pbtxt", (repo / "hpcrun_model/config.pbtxt").read_text())
    assert (repo / "hpcrun_model/1/xgboost.json").read_bytes() == model.read_bytes()


def test_export_of_a_multiclass_model_has_one_output_per_class(tmp_path: Path) -> None:
    model = _model(tmp_path / "m.ubj", 5, "multi:softprob", num_class=4)
    repo = tmp_path / "repo"
    run_cli(
        "score",
        "-m",
        str(model),
        "--export-model-repo",
        str(repo),
        "--gpus-per-task",
        "0",
        home=tmp_path / "home",
    )
    config = (repo / "hpcrun_model/config.pbtxt").read_text()
    assert "dims: [ 5 ]" in config and "dims: [ 4 ]" in config
    assert "KIND_CPU" in config and 'string_value: "xgboost_ubj"' in config
    assert (repo / "hpcrun_model/1/xgboost.ubj").is_file()


def test_export_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    missing = run_cli(
        "score",
        "-m",
        str(tmp_path / "no.json"),
        "--export-model-repo",
        str(tmp_path / "r"),
        home=home,
        check=False,
    )
    assert missing.returncode == 2 and "no.json does not exist" in missing.stderr
    junk = tmp_path / "junk.json"
    junk.write_text('{"not": "a model"}')
    bad = run_cli(
        "score", "-m", str(junk), "--export-model-repo", str(tmp_path / "r"), home=home, check=False
    )
    assert bad.returncode == 2 and "not an XGBoost" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = run_cli(
        "score",
        "-m",
        str(tmp_path / "m.bin"),
        "--export-model-repo",
        str(tmp_path / "r"),
        home=home,
        check=False,
    )
    assert unknown.returncode == 2 and "--model-format" in unknown.stderr
