"""The score task as the cluster runs it: a subprocess with real files, models and servers.

Every test trains a real (small) XGBoost model, writes real Parquet/CSV files and runs the
task's zipapp (`score_task.pyz`, built as hpcrun ships it) with `sys.executable`;
predictions are compared with `booster.inplace_predict` on the whole table using exact
equality, because every mode must give the same bits.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hpcrun.node.zipapp import score_task

np = pytest.importorskip("numpy")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pacsv = pytest.importorskip("pyarrow.csv")
xgb = pytest.importorskip("xgboost")

SCRIPT = Path()  # the task's zipapp, written by the `zipapp` fixture
ROWS = 5000
FEATURES = [f"f{i}" for i in range(8)]
ROW_GROUP = 1500
needs_pytriton = pytest.mark.skipif(
    importlib.util.find_spec("pytriton") is None, reason="nvidia-pytriton is not installed"
)


@pytest.fixture(scope="module", autouse=True)
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """score_task.pyz exactly as `hpcrun score` ships it, once for the module."""
    global SCRIPT
    SCRIPT = tmp_path_factory.mktemp("bin") / "score_task.pyz"
    SCRIPT.write_bytes(score_task())
    return SCRIPT


@dataclass
class Data:
    dir: Path
    X: Any  # (ROWS, 8) float32 with some NaN
    ids: Any  # int64, not 0..n-1, so a lost or shuffled id shows
    models: dict[str, Path]
    parquet: Path
    csv: Path


def train(X: Any, y: Any, params: dict[str, Any], path: Path) -> Path:
    booster = xgb.train({"max_depth": 4, "nthread": 2, **params}, xgb.DMatrix(X, label=y), 10)
    booster.save_model(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    root = tmp_path_factory.mktemp("score")
    rng = np.random.default_rng(7)
    train_x = rng.random((2000, 8), dtype=np.float32)
    score = train_x[:, 0] + train_x[:, 1] * train_x[:, 2]
    models = {
        "binary": train(train_x, score > 0.6, {"objective": "binary:logistic"}, root / "b.json"),
        "multi": train(
            train_x,
            np.digitize(score, [0.4, 0.9]),
            {"objective": "multi:softprob", "num_class": 3},
            root / "m.json",
        ),
        "regression": train(train_x, score, {"objective": "reg:squarederror"}, root / "r.json"),
    }
    X = rng.random((ROWS, 8), dtype=np.float32)
    X[rng.random((ROWS, 8)) < 0.05] = np.nan
    ids = np.arange(ROWS, dtype=np.int64) * 3 + 1000
    table = pa.table({"id": ids, **{name: X[:, j] for j, name in enumerate(FEATURES)}})
    pq.write_table(table, root / "t.parquet", row_group_size=ROW_GROUP)
    pacsv.write_csv(table, root / "t.csv")
    return Data(root, X, ids, models, root / "t.parquet", root / "t.csv")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def inspect(*inputs: Path, model: Path, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    done = run(
        "inspect",
        "--input",
        *map(str, inputs),
        "--model",
        str(model),
        "--model-format",
        "xgboost_json",
        *extra,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def inspect_error(*inputs: Path, model: Path, fmt: str = "xgboost_json") -> dict[str, str]:
    done = run(
        "inspect", "--input", *map(str, inputs), "--model", str(model), "--model-format", fmt
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    error: dict[str, str] = json.loads(lines[0])
    assert set(error) == {"error", "hint"} and error["hint"], error
    return error


def reference(data: Data, model: str, predict_type: str = "value") -> Any:
    booster = xgb.Booster(model_file=data.models[model])
    return booster.inplace_predict(data.X, predict_type=predict_type)


# ----------------------------------------------------------------------------- plans


def split_units(report: dict[str, Any], shard_rows: int) -> list[dict[str, Any]]:
    """Shards of `shard_rows` rows: Parquet row groups cut at offsets, CSV units whole."""
    shards: list[dict[str, Any]] = []
    current: dict[str, Any] = {"segments": [], "rows": 0}
    for unit in report["units"]:
        offset = 0
        while offset < unit["rows"]:
            if report["format"] == "parquet":
                take = min(unit["rows"] - offset, shard_rows - current["rows"])
                segment = {**unit, "offset": offset, "rows": take}
            else:
                take, segment = unit["rows"], dict(unit)
            current["segments"].append(segment)
            current["rows"] += take
            offset += take
            if current["rows"] >= shard_rows:
                shards.append(current)
                current = {"segments": [], "rows": 0}
    if current["rows"]:
        shards.append(current)
    first = 0
    for index, shard in enumerate(shards):
        shard.update(index=index, first_row=first)
        first += shard["rows"]
    return shards


def write_plan(
    report: dict[str, Any],
    out: Path,
    model: Path,
    *,
    shard_rows: int = 1700,
    server: str = "none",
    predict: str = "proba",
    id_column: str | None = "id",
    batch_rows: int = 1024,
) -> Path:
    plan = {
        "version": 1,
        "format": report["format"],
        "files": report["files"],
        "column_types": report["column_types"],
        "csv_header": [c["name"] for c in report["columns"]],
        "features": FEATURES,
        "id_column": id_column,
        "model": str(model),
        "model_format": "xgboost_json",
        "predict": predict,
        "threshold": 0.5,
        "num_class": report["model"]["num_class"],
        "server": server,
        "model_name": "hpcrun_model",
        "tritonserver": "tritonserver",
        "batch_rows": batch_rows,
        "parts_dir": str(out / "parts"),
        "merged": str(out / "predictions.parquet"),
        "summary": str(out / "summary.json"),
        "shards": split_units(report, shard_rows),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(plan))
    return out / "plan.json"


def score_all(plan_path: Path, env: dict[str, str] | None = None) -> Any:
    """Run every shard then merge; the merged table."""
    plan = json.loads(plan_path.read_text())
    for shard in plan["shards"]:
        done = run("shard", "--plan", str(plan_path), "--index", str(shard["index"]), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"hpcrun: shard {shard['index']} done: {shard['rows']} rows" in done.stdout
    done = run("merge", "--plan", str(plan_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"hpcrun: merged {ROWS} rows from {len(plan['shards'])} shards" in done.stdout
    assert not list(Path(plan["parts_dir"]).glob(".*")), "a .partial file was left"
    return pq.read_table(plan["merged"])


# ----------------------------------------------------------------------------- inspect


def test_inspect_parquet_reports_row_groups_columns_and_model(data: Data) -> None:
    report = inspect(data.parquet, model=data.models["binary"], extra=("--id-column", "id"))
    assert report["format"] == "parquet"
    assert report["files"] == [str(data.parquet)]
    assert report["rows"] == ROWS
    assert report["units"] == [
        {"file": 0, "row_group": i, "rows": rows} for i, rows in enumerate([1500, 1500, 1500, 500])
    ]
    assert report["columns"][:2] == [
        {"name": "id", "type": "int64"},
        {"name": "f0", "type": "float"},
    ]
    assert report["numeric"] == ["id", *FEATURES] and report["non_numeric"] == []
    assert report["column_types"] == {"id": "int64", **{f: "float32" for f in FEATURES}}
    assert report["model"] == {
        "format": "xgboost_json",
        "features": 8,
        "num_class": 0,
        "objective": "binary:logistic",
        "feature_names": None,
    }
    assert set(report["servers"]) == {"pytriton", "tritonserver", "tritonclient"}


def test_inspect_reports_multiclass_model(data: Data) -> None:
    model = inspect(data.parquet, model=data.models["multi"])["model"]
    assert (model["num_class"], model["objective"]) == (3, "multi:softprob")


@pytest.mark.parametrize("ending", ["\n", "", "\n\n\n"], ids=["newline", "none", "blank-lines"])
def test_inspect_csv_units_are_line_aligned_and_count_every_row(
    data: Data, tmp_path: Path, ending: str
) -> None:
    text = data.csv.read_text().rstrip("\n") + ending
    path = tmp_path / "t.csv"
    path.write_text(text)
    report = inspect(path, model=data.models["binary"], extra=("--block-bytes", "4096"))
    raw = path.read_bytes()
    units = report["units"]
    assert len(units) > 10
    assert units[0]["start"] == raw.index(b"\n") + 1
    for unit, after in itertools.pairwise(units):
        assert unit["end"] == after["start"]
    for unit in units:
        chunk = raw[unit["start"] : unit["end"]]
        assert raw[unit["start"] - 1 : unit["start"]] == b"\n"
        assert chunk.endswith(b"\n") or unit["end"] == len(raw)
        assert unit["rows"] == len([line for line in chunk.split(b"\n") if line])
    assert sum(u["rows"] for u in units) == report["rows"] == ROWS
    assert report["column_types"] == {"id": "int64", **{f: "float64" for f in FEATURES}}


def test_inspect_directory_takes_its_files_sorted_by_name(data: Data, tmp_path: Path) -> None:
    table = pq.read_table(data.parquet)
    pq.write_table(table.slice(0, 3000), tmp_path / "b.parquet", row_group_size=2000)
    pq.write_table(table.slice(3000), tmp_path / "a.parquet", row_group_size=2000)
    (tmp_path / "notes.txt").write_text("not part of the table")
    report = inspect(tmp_path, model=data.models["binary"])
    assert report["files"] == [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    assert [(u["file"], u["rows"]) for u in report["units"]] == [(0, 2000), (1, 2000), (1, 1000)]
    assert report["rows"] == ROWS


def test_inspect_error_missing_input(data: Data, tmp_path: Path) -> None:
    error = inspect_error(tmp_path / "nope.parquet", model=data.models["binary"])
    assert str(tmp_path / "nope.parquet") in error["error"] and "does not exist" in error["error"]


def test_inspect_error_file_that_is_not_parquet(data: Data, tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    path.write_text("id,f0\n1,2\n")
    error = inspect_error(path, model=data.models["binary"])
    assert f"{path} is not a Parquet file" in error["error"]


def test_inspect_error_names_the_file_and_column_that_differ(data: Data, tmp_path: Path) -> None:
    table = pq.read_table(data.parquet)
    pq.write_table(table, tmp_path / "a.parquet")
    other = table.set_column(3, "f2", table.column("f2").cast(pa.float64()))
    pq.write_table(other, tmp_path / "b.parquet")
    error = inspect_error(tmp_path, model=data.models["binary"])
    assert str(tmp_path / "b.parquet") in error["error"]
    assert "column 4 is f2 (double), expected f2 (float)" in error["error"]


def test_inspect_error_missing_model(data: Data, tmp_path: Path) -> None:
    error = inspect_error(data.parquet, model=tmp_path / "model.json")
    assert error["error"] == f"model {tmp_path / 'model.json'} does not exist"


def test_inspect_error_file_that_is_not_a_model(data: Data) -> None:
    error = inspect_error(data.parquet, model=data.csv)
    assert error["error"].startswith(f"{data.csv} is not an XGBoost JSON model: ")
    assert "--model-format" in error["hint"]


def test_inspect_error_ubjson_model_given_as_json(data: Data, tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    xgb.Booster(model_file=data.models["binary"]).save_model(tmp_path / "model.ubj")
    (tmp_path / "model.ubj").rename(path)
    error = inspect_error(data.parquet, model=path)
    assert error["hint"] == "pass --model-format xgboost_ubj"
    assert inspect(data.parquet, model=path, extra=("--model-format", "xgboost_ubj"))


# ----------------------------------------------------------------------------- shard + merge


def test_parquet_shards_split_row_groups_and_merge_to_exact_predictions(
    data: Data, tmp_path: Path
) -> None:
    report = inspect(data.parquet, model=data.models["binary"])
    plan = write_plan(report, tmp_path, data.models["binary"])
    shards = json.loads(plan.read_text())["shards"]
    assert len(shards) == 3 and shards[1]["segments"][0]["offset"] == 200  # cuts a row group
    merged = score_all(plan)
    assert merged.column_names == ["id", "prediction"]
    assert merged.schema.field("prediction").type == pa.float32()
    assert np.array_equal(merged.column("id").to_numpy(), data.ids)
    assert np.array_equal(merged.column("prediction").to_numpy(), reference(data, "binary"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["rows"] == ROWS and summary["merged"] == str(tmp_path / "predictions.parquet")
    assert [s["rows"] for s in summary["shards"]] == [1700, 1700, 1600]
    assert summary["shards"][0]["batches"] == 2 and summary["shards"][0]["server"] == "none"
    assert summary["wall_seconds"] <= summary["seconds"]


def test_csv_without_final_newline_scores_to_a_row_column(data: Data, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(data.csv.read_text().rstrip("\n"))
    report = inspect(path, model=data.models["binary"], extra=("--block-bytes", "8192"))
    plan = write_plan(report, tmp_path / "out", data.models["binary"], id_column=None)
    merged = score_all(plan)
    assert merged.column_names == ["row", "prediction"]
    assert np.array_equal(merged.column("row").to_numpy(), np.arange(ROWS))
    assert np.array_equal(merged.column("prediction").to_numpy(), reference(data, "binary"))


def test_csv_feature_inferred_as_integer_still_reads_later_decimals(
    data: Data, tmp_path: Path
) -> None:
    rows = 15000  # the first 1 MiB, which pyarrow infers types from, holds only integers
    X = np.random.default_rng(3).random((rows, 8), dtype=np.float32)
    X[:14000, 0] = np.floor(X[:14000, 0] * 10)
    path = tmp_path / "t.csv"
    pacsv.write_csv(pa.table({name: X[:, j] for j, name in enumerate(FEATURES)}), path)
    report = inspect(path, model=data.models["binary"], extra=("--block-bytes", "65536"))
    assert report["column_types"]["f0"] == "int64" and report["rows"] == rows
    out = tmp_path / "out"
    plan = write_plan(report, out, data.models["binary"], shard_rows=8000, id_column=None)
    plan_data = json.loads(plan.read_text())
    for shard in plan_data["shards"]:
        assert run("shard", "--plan", str(plan), "--index", str(shard["index"])).returncode == 0
    assert run("merge", "--plan", str(plan)).returncode == 0
    merged = pq.read_table(plan_data["merged"])
    booster = xgb.Booster(model_file=data.models["binary"])
    assert np.array_equal(merged.column("prediction").to_numpy(), booster.inplace_predict(X))


@pytest.mark.parametrize(
    ("model", "predict", "columns"),
    [
        ("binary", "class", ["prediction"]),
        ("binary", "raw", ["prediction"]),
        ("multi", "proba", ["prediction_0", "prediction_1", "prediction_2"]),
        ("multi", "class", ["prediction"]),
        ("multi", "raw", ["prediction_0", "prediction_1", "prediction_2"]),
        ("regression", "proba", ["prediction"]),
    ],
)
def test_prediction_kinds_and_widths(
    data: Data, tmp_path: Path, model: str, predict: str, columns: list[str]
) -> None:
    report = inspect(data.parquet, model=data.models[model])
    plan = write_plan(report, tmp_path, data.models[model], shard_rows=ROWS, predict=predict)
    merged = score_all(plan)
    assert merged.column_names == ["id", *columns]
    got = np.column_stack([merged.column(c).to_numpy() for c in columns])
    values = reference(data, model, "margin" if predict == "raw" else "value")
    if predict == "class":
        want = np.argmax(values, axis=1) if values.ndim == 2 else values > 0.5
        assert merged.schema.field("prediction").type == pa.int32()
        assert np.array_equal(got[:, 0], want.astype(np.int32))
        assert 0 < got.mean() < values.ndim  # not all one class
    else:
        assert merged.schema.field(columns[0]).type == pa.float32()
        assert np.array_equal(got, values.reshape(ROWS, -1))


def test_merge_refuses_when_a_part_is_missing(data: Data, tmp_path: Path) -> None:
    report = inspect(data.parquet, model=data.models["binary"])
    plan = write_plan(report, tmp_path, data.models["binary"], shard_rows=1000)
    for index in (0, 2, 4):
        assert run("shard", "--plan", str(plan), "--index", str(index)).returncode == 0
    done = run("merge", "--plan", str(plan))
    assert done.returncode == 1
    assert "shards 1, 3 have no part" in done.stderr
    assert not (tmp_path / "predictions.parquet").exists()
    assert not (tmp_path / "summary.json").exists()


def test_failed_shard_leaves_no_part_and_no_partial(data: Data, tmp_path: Path) -> None:
    report = inspect(data.parquet, model=data.models["binary"])
    plan_path = write_plan(report, tmp_path, data.models["binary"], batch_rows=256)
    plan = json.loads(plan_path.read_text())
    # The first segment's batches are written; the second segment's file is gone.
    plan["files"].append(str(tmp_path / "gone.parquet"))
    plan["shards"][0]["segments"][1]["file"] = 1
    plan_path.write_text(json.dumps(plan))
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / ".part-00000.parquet.partial").write_text("stale, from a killed attempt")
    done = run("shard", "--plan", str(plan_path), "--index", "0")
    assert done.returncode == 1
    assert f"hpcrun: shard 0 failed: cannot read row group 1 of {tmp_path / 'gone.parquet'}" in (
        done.stderr
    )
    assert list(parts.iterdir()) == []


# ----------------------------------------------------------------------------- pytriton


def processes_mentioning(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line mentions `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if state != "Z" and marker.encode() in cmdline:
            found.append(int(entry))
    return found


@pytest.fixture
def triton_env(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path, str]]:
    """TMPDIR and HPCRUN_JOB_ID of our own, so the server's leftovers can be found."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    job = f"t{os.getpid()}{time.monotonic_ns() % 100000}"
    env = {**os.environ, "TMPDIR": str(tmp), "HPCRUN_JOB_ID": job}
    yield env, tmp, f"hpcrun_{job}_"
    for pid in processes_mentioning(str(tmp)):  # only if a test failed: do not leak servers
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def assert_nothing_left(tmp: Path, prefix: str) -> None:
    assert processes_mentioning(str(tmp)) == [], "tritonserver survived the shard"
    assert list(tmp.iterdir()) == [], "the server's temp dir was left"
    assert list(Path("/dev/shm").glob(f"{prefix}*")) == [], "shared memory was left"


def start_shard(plan: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """A shard in the background, returned once it printed that its server is ready."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "shard", "--plan", str(plan), "--index", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    if "hpcrun: shard 0: server ready in" not in first:
        proc.kill()
        pytest.fail(f"no server: {first}{proc.communicate()[1]}")
    return proc


@pytest.mark.slow
@needs_pytriton
def test_pytriton_gives_the_same_bits_as_none_and_cleans_up(
    data: Data, tmp_path: Path, triton_env: tuple[dict[str, str], Path, str]
) -> None:
    env, tmp, prefix = triton_env
    report = inspect(data.parquet, model=data.models["multi"])
    plan = write_plan(
        report, tmp_path / "out", data.models["multi"], shard_rows=ROWS, server="pytriton"
    )
    merged = score_all(plan, env=env)
    local = score_all(write_plan(report, tmp_path / "local", data.models["multi"], shard_rows=ROWS))
    assert merged.equals(local)  # same schema, ids and prediction bits as --server none
    assert np.array_equal(
        np.column_stack([merged.column(f"prediction_{k}").to_numpy() for k in range(3)]),
        reference(data, "multi"),
    )
    stats = json.loads((tmp_path / "out" / "parts" / "part-00000.json").read_text())
    assert stats["server"] == "pytriton" and stats["server_start_seconds"] > 0
    assert stats["batches"] == 5
    assert_nothing_left(tmp, prefix)


@pytest.mark.slow
@needs_pytriton
def test_sigterm_stops_the_server_and_leaves_nothing(
    data: Data, tmp_path: Path, triton_env: tuple[dict[str, str], Path, str]
) -> None:
    env, tmp, prefix = triton_env
    report = inspect(data.parquet, model=data.models["binary"])
    # 4-row batches: 1250 requests, so the shard is still scoring when SIGTERM comes.
    plan = write_plan(
        report, tmp_path, data.models["binary"], shard_rows=ROWS, server="pytriton", batch_rows=4
    )
    proc = start_shard(plan, env)
    try:
        servers = processes_mentioning(str(tmp))
        assert servers, "no tritonserver process while the shard runs"
        time.sleep(0.3)
        assert proc.poll() is None, "the shard ended before SIGTERM: make it longer"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "hpcrun: shard 0 stopped by signal 15" in err
    assert not any(Path(f"/proc/{pid}").exists() for pid in servers)
    assert_nothing_left(tmp, prefix)
    assert list((tmp_path / "parts").iterdir()) == []


@pytest.mark.slow
@needs_pytriton
def test_sigkilled_task_takes_its_server_along_and_the_next_task_sweeps_up(
    data: Data, tmp_path: Path, triton_env: tuple[dict[str, str], Path, str]
) -> None:
    env, tmp, prefix = triton_env
    report = inspect(data.parquet, model=data.models["binary"])
    slow = write_plan(
        report,
        tmp_path / "a",
        data.models["binary"],
        shard_rows=ROWS,
        server="pytriton",
        batch_rows=4,
    )
    proc = start_shard(slow, env)
    servers = processes_mentioning(str(tmp))
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while processes_mentioning(str(tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_mentioning(str(tmp)) == [], f"the server outlived its task: {servers}"
    assert list(tmp.iterdir()) and list(Path("/dev/shm").glob(f"{prefix}*"))  # left behind
    fresh = write_plan(
        report, tmp_path / "b", data.models["binary"], shard_rows=ROWS, server="pytriton"
    )
    done = run("shard", "--plan", str(fresh), "--index", "0", env={**env, "HPCRUN_JOB_ID": "other"})
    assert done.returncode == 0, done.stderr
    assert_nothing_left(tmp, prefix)
    assert list((tmp_path / "a" / "parts").iterdir()) == []


@pytest.mark.slow
@needs_pytriton
def test_server_that_cannot_load_the_model_fails_the_shard_with_its_log(
    data: Data, tmp_path: Path, triton_env: tuple[dict[str, str], Path, str]
) -> None:
    env, tmp, prefix = triton_env
    report = inspect(data.parquet, model=data.models["binary"])
    plan = write_plan(report, tmp_path, tmp_path / "gone.json", shard_rows=ROWS, server="pytriton")
    done = run("shard", "--plan", str(plan), "--index", "0", env=env)
    assert done.returncode == 1
    assert "hpcrun: shard 0 failed: tritonserver exited with status 1" in done.stderr
    assert f"model {tmp_path / 'gone.json'} does not exist" in done.stderr  # from the server log
    assert_nothing_left(tmp, prefix)
    assert list((tmp_path / "parts").iterdir()) == []
