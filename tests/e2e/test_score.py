"""`hpcrun score` end to end: a real XGBoost model, a 200k-row Parquet table, the real
local Slurm cluster and real Triton servers (nvidia-pytriton's tritonserver), through the
CLI. The merged predictions must equal the model's own predict on the whole table, in the
table's order; a task killed mid-way is retried and the result is still complete; a
resumed run scores only missing shards; bad input is refused before Slurm sees anything;
S3 input and output go through a moto server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cluster, scontrol_tasks

np = pytest.importorskip("numpy")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
xgb = pytest.importorskip("xgboost")

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROWS = 200_000
FEATURES = 16


def make_table(rows: int, features: int, seed: int) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    ids = np.arange(10_000_000, 10_000_000 + rows, dtype=np.int64)
    return ids, x


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A model and the table it scores, with the model's own predictions to compare."""
    root = tmp_path_factory.mktemp("score-data")
    _, train = make_table(4000, FEATURES, seed=1)
    label = (train[:, 0] + 0.5 * train[:, 3] - train[:, 7] > 0).astype(np.float32)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 5, "nthread": 2},
        xgb.DMatrix(train, label=label),
        num_boost_round=20,
    )
    model = root / "model.json"
    booster.save_model(model)
    ids, x = make_table(ROWS, FEATURES, seed=2)
    columns = {"id": pa.array(ids)} | {f"f{i}": pa.array(x[:, i]) for i in range(FEATURES)}
    table = root / "table.parquet"
    pq.write_table(pa.table(columns), table, row_group_size=25_000)
    expected = booster.inplace_predict(x, predict_type="value").astype(np.float32)
    return {
        "root": root,
        "model": model,
        "table": table,
        "ids": ids,
        "x": x,
        "expected": expected,
        "booster": booster,
    }


def score(
    cluster: Cluster, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return cluster.workload("score", *args, env=env, check=check)


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return dict(json.loads(done.stdout))


def assert_predictions(merged: Path, data: dict[str, Any], id_column: str = "id") -> None:
    table = pq.read_table(merged)
    assert table.num_rows == ROWS
    assert table.column(id_column).to_numpy().tolist() == data["ids"].tolist()
    got = table.column("prediction").to_numpy()
    np.testing.assert_allclose(got, data["expected"], rtol=1e-6, atol=1e-7)


def score_runs(cluster: Cluster) -> int:
    return len(cluster.store.array_runs(cluster.name, "score"))


def tritonservers(cluster: Cluster) -> list[int]:
    """Live Triton servers started by this cluster's jobs (their environment names the
    cluster's home), so another Triton on the machine does not count."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes()
                environ = Path(f"/proc/{entry}/environ").read_bytes()
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            ours = str(cluster.home).encode() in environ
            if b"tritonserver" in argv.split(b"\0")[0] and state != "Z" and ours:
                found.append(int(entry))
    return found


def test_pytriton_on_four_nodes_gives_the_models_own_predictions_in_order(
    local_cluster: Cluster, data: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "scores.parquet"
    result = as_json(
        score(
            local_cluster,
            "-m",
            str(data["model"]),
            "-i",
            str(data["table"]),
            "-o",
            str(out),
            "--tasks",
            "4",
            "--server",
            "pytriton",
            "--json",
        )
    )
    assert result["status"] == "done", result
    assert result["server"] == "pytriton"
    assert result["rows"] == {"total": ROWS, "done": ROWS}
    assert_predictions(out, data)
    summary = result["summary"]
    assert summary["rows"] == ROWS
    assert [s["rows"] for s in summary["shards"]] == [ROWS // 4] * 4
    assert all(s["server"] == "pytriton" and s["rows_per_s"] > 0 for s in summary["shards"])
    assert sorted(p.name for p in (tmp_path / "scores.parts").glob("part-*.parquet")) == [
        f"part-{i:05d}.parquet" for i in range(4)
    ]
    assert not list(tmp_path.glob("**/.*partial*"))
    assert tritonservers(local_cluster) == []
    # The same output again is refused (nothing submitted); --resume has nothing to score.
    before = score_runs(local_cluster)
    again = score(
        local_cluster,
        "-m",
        str(data["model"]),
        "-i",
        str(data["table"]),
        "-o",
        str(out),
        check=False,
    )
    assert again.returncode == 2, again.stderr
    assert "already exists" in again.stderr and "--resume" in again.stderr
    assert score_runs(local_cluster) == before


def test_a_small_table_with_many_tasks_makes_one_shard_and_says_why(
    local_cluster: Cluster, data: dict[str, Any], tmp_path: Path
) -> None:
    # Issue 14: `--tasks 1000` on a 1,000-row table made 1,000 shards, each a server.
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(data["table"]).slice(0, 1000), small)
    args = ["-m", str(data["model"]), "-i", str(small), "-o", str(tmp_path / "out.parquet")]
    done = score(local_cluster, *args, "--tasks", "1000", "--server", "none")
    assert (
        "1 shard, not 1000: fewer than 10,000 rows per shard would cost more in task "
        "start-up than it saves (1,000 rows in all)"
    ) in done.stderr, done.stderr
    assert "job array" in done.stderr and ": 1 shard(s), 1,000 rows" in done.stderr
    assert ": done" in done.stdout and "shards: 1 done" in done.stdout, done.stdout


def test_four_shards_run_on_four_nodes_each_with_the_whole_node(
    local_cluster: Cluster, data: dict[str, Any], tmp_path: Path
) -> None:
    """Issue 19: the array asked for no CPUs, Slurm's default of one a task packed all four
    shards onto n1. By default each task now has a node to itself (--exclusive): four
    distinct nodes, NumCPUs the node's 8, and the model's threads from HPCRUN_CPUS."""
    args = ["-m", str(data["model"]), "-i", str(data["table"]), "--server", "none", "--json"]
    result = as_json(score(local_cluster, *args, "-o", str(tmp_path / "a"), "--tasks", "4"))
    assert result["status"] == "done", result
    shards = result["summary"]["shards"]
    assert len({s["host"] for s in shards}) == 4, shards
    tasks = scontrol_tasks(local_cluster, result["array_job_id"])
    assert len(tasks) == 4, tasks
    assert sorted(t["NodeList"] for t in tasks) == sorted(s["host"] for s in shards)
    assert {t["NumCPUs"] for t in tasks} == {"8"}, tasks  # the local cluster's node CPUs
    assert {t["OverSubscribe"] for t in tasks} == {"NO"}, tasks  # --exclusive
    usable = len(os.sched_getaffinity(0))  # 8 declared, the host's own cores to run on
    assert {s["threads"] for s in shards} == {min(8, usable)}, shards
    assert_predictions(tmp_path / "a" / "predictions.parquet", data)
    # --cpus-per-task 2: what scontrol reports is the count asked for, and the threads.
    result = as_json(
        score(
            local_cluster,
            *args,
            "-o",
            str(tmp_path / "b"),
            "--tasks",
            "4",
            "--cpus-per-task",
            "2",
        )
    )
    assert result["status"] == "done", result
    tasks = scontrol_tasks(local_cluster, result["array_job_id"])
    assert len(tasks) == 4, tasks
    assert {(t["NumCPUs"], t["CPUs/Task"]) for t in tasks} == {("2", "2")}, tasks
    assert {s["threads"] for s in result["summary"]["shards"]} == {min(2, usable)}
    assert_predictions(tmp_path / "b" / "predictions.parquet", data)


def test_server_none_and_csv_give_the_same_predictions(
    local_cluster: Cluster, data: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "none"
    result = as_json(
        score(
            local_cluster,
            "-m",
            str(data["model"]),
            "-i",
            str(data["table"]),
            "-o",
            str(out),
            "--tasks",
            "3",
            "--server",
            "none",
            "--json",
        )
    )
    assert result["status"] == "done", result
    assert_predictions(out / "predictions.parquet", data)
    assert json.loads((out / "summary.json").read_text())["rows"] == ROWS
    # The same table as CSV, without an id column: a `row` number is written instead.
    csv = tmp_path / "table.csv"
    header = ",".join(f"f{i}" for i in range(FEATURES))
    np.savetxt(csv, data["x"], delimiter=",", header=header, comments="", fmt="%.9g")
    csv_out = tmp_path / "csv.parquet"
    result = as_json(
        score(
            local_cluster,
            "-m",
            str(data["model"]),
            "-i",
            str(csv),
            "-o",
            str(csv_out),
            "--tasks",
            "2",
            "--server",
            "none",
            "--json",
        )
    )
    assert result["status"] == "done", result
    table = pq.read_table(csv_out)
    assert table.column("row").to_numpy().tolist() == list(range(ROWS))
    np.testing.assert_allclose(
        table.column("prediction").to_numpy(), data["expected"], rtol=1e-6, atol=1e-7
    )


def test_a_task_killed_mid_way_is_retried_and_the_result_is_complete(
    local_cluster: Cluster, data: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "killed.parquet"
    run = as_json(
        score(
            local_cluster,
            "-m",
            str(data["model"]),
            "-i",
            str(data["table"]),
            "-o",
            str(out),
            "--tasks",
            "4",
            "--server",
            "pytriton",
            "--detach",
            "--json",
        )
    )
    plan = f"/score/{run['run']}/plan.json"
    # Shard 1's task, once its Triton server is up: kill the task outright (SIGKILL).
    deadline = time.monotonic() + 90
    victim = server = None
    while time.monotonic() < deadline and server is None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                argv = [a for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
            except OSError:
                continue
            is_shard_1 = b"shard" in argv and argv[-2:] == [b"--index", b"1"]
            if is_shard_1 and any(plan.encode() in a for a in argv):
                victim = int(pid)
        if victim is not None:
            children = [p for p in tritonservers(local_cluster) if _parent(p) == victim]
            server = children[0] if children else None
        time.sleep(0.05)
    assert victim is not None and server is not None, "shard 1 never started its server"
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and server in tritonservers(local_cluster):
        time.sleep(0.1)
    assert server not in tritonservers(local_cluster), "the killed task's Triton server survived it"
    result = _wait(local_cluster, run["run"])
    assert result["status"] == "done", result
    attempts = {s["shard"]: s["attempts"] for s in result["shards"]}
    assert attempts[1] == 2, attempts
    assert_predictions(out, data)
    assert tritonservers(local_cluster) == []


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _wait(cluster: Cluster, run_id: int, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        result = as_json(score(cluster, "status", str(run_id), "--json"))
        if result["status"] in {"done", "failed", "cancelled"} or time.monotonic() > deadline:
            return result
        time.sleep(1)


def test_resume_scores_only_the_missing_shards(
    local_cluster: Cluster, data: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "resume"
    args = [
        "-m",
        str(data["model"]),
        "-i",
        str(data["table"]),
        "-o",
        str(out),
        "--tasks",
        "4",
        "--server",
        "none",
        "--json",
    ]
    assert as_json(score(local_cluster, *args))["status"] == "done"
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("part-*.parquet")}
    (out / "parts" / "part-00002.parquet").unlink()
    (out / "predictions.parquet").unlink()
    result = as_json(score(local_cluster, *args, "--resume"))
    assert result["status"] == "done", result
    assert [s["attempts"] for s in result["shards"]] == [0, 0, 1, 0]
    for name, mtime in kept.items():
        if name != "part-00002.parquet":
            assert (out / "parts" / name).stat().st_mtime_ns == mtime, name
    assert_predictions(out / "predictions.parquet", data)
    # A resume with other settings would mix two runs' parts: refused.
    other = score(local_cluster, *args[:-1], "--predict", "raw", "--resume", check=False)
    assert other.returncode == 2 and "scored with another predict" in other.stderr
    assert "--predict raw now, proba when the parts were scored" in other.stderr


def test_bad_input_is_named_before_anything_is_submitted(
    local_cluster: Cluster, data: dict[str, Any], tmp_path: Path
) -> None:
    root = tmp_path
    narrow = root / "narrow.parquet"
    pq.write_table(pa.table({f"f{i}": pa.array(data["x"][:100, i]) for i in range(15)}), narrow)
    empty = root / "empty.parquet"
    pq.write_table(pa.table({f"f{i}": pa.array([], pa.float32()) for i in range(FEATURES)}), empty)
    texty = root / "texty.csv"
    texty.write_text(
        "city,"
        + ",".join(f"f{i}" for i in range(FEATURES))
        + "\n"
        + "paris,"
        + ",".join(["1.5"] * FEATURES)
        + "\n"
    )
    model, table = str(data["model"]), str(data["table"])
    cases = [
        (["-m", str(root / "nope.json"), "-i", table], "nope.json"),
        (["-m", table, "--model-format", "xgboost_json", "-i", table], "not an XGBoost"),
        (["-m", model, "-i", str(narrow)], "expects 16 features but"),
        (["-m", model, "-i", str(empty)], "holds no rows"),
        (["-m", model, "-i", str(texty)], "'city' (string) is not numeric"),
        (["-m", model, "-i", str(root / "missing.parquet")], "missing.parquet"),
        (["-m", model, "-i", table, "--tasks", "0"], "--tasks 0"),
        (["-m", model, "-i", table, "--server", "gpu"], "--server 'gpu'"),
    ]
    before = score_runs(local_cluster)
    for args, message in cases:
        done = score(local_cluster, *args, "-o", str(root / "out"), check=False)
        assert done.returncode != 0, args
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    assert score_runs(local_cluster) == before
    assert not (root / "out" / "predictions.parquet").exists()


@pytest.mark.aws
def test_s3_model_input_and_output_through_a_moto_bucket(
    local_cluster: Cluster, data: dict[str, Any], tmp_path: Path
) -> None:
    from tests.aws import client, moto_server

    with moto_server(tmp_path) as server:
        s3 = client(server, "s3")
        s3.create_bucket(Bucket="tables")
        s3.upload_file(str(data["model"]), "tables", "models/model.json")
        s3.upload_file(str(data["table"]), "tables", "day1/part-a.parquet")
        result = as_json(
            score(
                local_cluster,
                "-m",
                "s3://tables/models/model.json",
                "-i",
                "s3://tables/day1/",
                "-o",
                "s3://tables/scores/day1",
                "--tasks",
                "2",
                "--server",
                "none",
                "--json",
                env=server.env(),
            )
        )
        assert result["status"] == "done", result
        listed = s3.list_objects_v2(Bucket="tables", Prefix="scores/day1/")
        keys = sorted(o["Key"] for o in listed.get("Contents", []))
        assert keys == [
            "scores/day1/parts/part-00000.json",  # the shard's stats
            "scores/day1/parts/part-00000.parquet",
            "scores/day1/parts/part-00001.json",
            "scores/day1/parts/part-00001.parquet",
            "scores/day1/parts/plan.json",
            "scores/day1/predictions.parquet",
            "scores/day1/summary.json",
        ]
        fetched = tmp_path / "fetched.parquet"
        s3.download_file("tables", "scores/day1/predictions.parquet", str(fetched))
        assert_predictions(fetched, data)
        missing = score(
            local_cluster,
            "-m",
            str(data["model"]),
            "-i",
            str(data["table"]),
            "-o",
            "s3://no-such-bucket/x",
            env=server.env(),
            check=False,
        )
        assert missing.returncode != 0 and "no-such-bucket" in missing.stderr


def test_score_through_a_served_triton_gives_the_models_own_predictions_in_order(
    local_cluster: Cluster, data: dict[str, Any], tmp_path: Path
) -> None:
    """`--server grpc://HOST:PORT/MODEL`: the tasks stream through a Triton someone else
    runs (here pytriton's tritonserver serving the model through its python backend, as
    `--server pytriton` starts one per task; on Kubernetes `hpcrun serve triton`), and
    start no server of their own."""
    from hpcrun.node.score.model import load_model, predict
    from hpcrun.node.score.plan import ScorePlan
    from hpcrun.node.score.servers import serving

    served = ScorePlan.from_json(
        {
            "format": "parquet",
            "files": [str(data["table"])],
            "features": [f"f{i}" for i in range(FEATURES)],
            "model": str(data["model"]),
            "model_format": "xgboost_json",
            "predict": "proba",
            "objective": "binary:logistic",
            "server": "pytriton",
            "batch_rows": 65536,
            "parts_dir": "",
            "merged": "",
            "summary": "",
            "shards": [],
        }
    )
    out = tmp_path / "scores.parquet"
    with serving(served, 0) as server:
        url = f"grpc://127.0.0.1:{server.port}/{server.model_name}"
        before = tritonservers(local_cluster)
        result = as_json(
            score(
                local_cluster,
                "-m",
                str(data["model"]),
                "-i",
                str(data["table"]),
                "-o",
                str(out),
                "--tasks",
                "2",
                "--server",
                url,
                "--json",
            )
        )
        assert tritonservers(local_cluster) == before  # the tasks started none
    assert result["status"] == "done", result
    assert result["server"] == "remote"
    table = pq.read_table(out)
    assert table.column("id").to_numpy().tolist() == data["ids"].tolist()
    booster = load_model(str(data["model"]), "xgboost_json")
    own = predict(booster, data["x"], "proba", 0.5, 0).reshape(-1)
    assert np.array_equal(table.column("prediction").to_numpy(), own)  # bit for bit


def test_a_bad_server_url_and_serve_on_slurm_are_refused(local_cluster: Cluster) -> None:
    done = score(
        local_cluster,
        "-m",
        "m.json",
        "-i",
        "t.parquet",
        "-o",
        "o.parquet",
        "--server",
        "grpc://host-without-port",
        check=False,
    )
    assert done.returncode != 0 and "is not grpc://HOST:PORT[/MODEL]" in done.stderr
    refused = local_cluster.cli("serve", "status", check=False)
    assert refused.returncode != 0
    assert "runs Slurm" in refused.stderr and "eks or kubernetes" in refused.stderr
