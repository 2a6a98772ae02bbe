"""The score plan: shards that cover every row once and in order, the checks a table must
pass before anything is submitted, and the generated files (golden): the shard script,
the two jobs, and Triton's FIL model configuration."""

from __future__ import annotations

import random
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from hpcrun.errors import UsageError
from hpcrun.scheduler import JobRef
from hpcrun.slurm.scheduler import to_job_spec
from hpcrun.workloads.score import (
    ScorePlan,
    Shard,
    Unit,
    array_spec,
    check_table,
    fil_config,
    fil_model_repository,
    merge_spec,
    model_format_of,
    model_path_in_repository,
    output_layout,
    output_width,
    plan_shards,
    shard_script,
    shards_for,
)
from tests.golden_util import assert_golden


def _covered_rows(units: list[Unit], shards: list[Shard]) -> list[int]:
    """Every row number the shards read, in order (row groups: offset + rows)."""
    starts, at = {}, 0
    for unit in units:
        starts[(unit.file, unit.row_group, unit.start)] = at
        at += unit.rows
    rows: list[int] = []
    for shard in shards:
        shard_rows: list[int] = []
        for seg in shard.segments:
            begin = starts[(seg["file"], seg.get("row_group"), seg.get("start"))]
            offset = seg.get("offset", 0)
            shard_rows += range(begin + offset, begin + offset + seg["rows"])
        assert shard_rows[:1] == [shard.first_row]
        assert len(shard_rows) == shard.rows
        rows += shard_rows
    return rows


def test_parquet_shards_split_row_groups_evenly_and_in_order() -> None:
    units = [Unit(file=f, row_group=g, rows=20_000) for f in range(2) for g in range(5)]
    shards = plan_shards(units, 4)
    assert [s.rows for s in shards] == [50_000] * 4
    assert [s.first_row for s in shards] == [0, 50_000, 100_000, 150_000]
    # Shard 1 starts half-way through row group 2 of file 0.
    assert shards[1].segments[0] == {"file": 0, "row_group": 2, "offset": 10_000, "rows": 10_000}
    assert _covered_rows(units, shards) == list(range(200_000))


def test_csv_blocks_are_never_split_and_cuts_move_to_the_nearer_edge() -> None:
    units = [
        Unit(file=0, start=i * 100, end=(i + 1) * 100, rows=r)
        for i, r in enumerate([30, 30, 30, 10])
    ]
    shards = plan_shards(units, 2)  # the ideal cut (row 50) is inside block 1: 20 vs 10
    assert [(s.first_row, s.rows) for s in shards] == [(0, 60), (60, 40)]
    assert all("offset" not in seg for s in shards for seg in s.segments)
    assert shards[1].segments[0] == {"file": 0, "start": 200, "end": 300, "rows": 30}


def test_fewer_shards_than_tasks_when_the_table_is_small_and_none_empty() -> None:
    assert [s.rows for s in plan_shards([Unit(0, 3, row_group=0)], 8)] == [1, 1, 1]
    csv = [Unit(0, 500, start=0, end=10), Unit(0, 500, start=10, end=20)]
    assert [s.rows for s in plan_shards(csv, 4)] == [500, 500]
    assert plan_shards([Unit(0, 0, row_group=0)], 4) == []
    with pytest.raises(UsageError, match="at least 1"):
        plan_shards(csv, 0)


def test_a_small_table_is_not_cut_into_shards_too_small_to_pay_for_their_server() -> None:
    # Issue 14: `--tasks 1000` on 1,000 rows made 1,000 shards, each starting Triton.
    shards, why = shards_for([Unit(0, 1000, row_group=0)], 1000, server="triton")
    assert [s.rows for s in shards] == [1000]
    assert why == (
        "1 shard, not 1000: fewer than 10,000 rows per shard would cost more in Triton "
        "server start-up than it saves (1,000 rows in all)"
    )
    shards, why = shards_for([Unit(0, 25_000, row_group=0)], 4, server="none")
    assert [s.rows for s in shards] == [12_500, 12_500]
    assert why.startswith("2 shards, not 4: fewer than 10,000 rows") and "in task start-up" in why
    # As many as asked when every shard keeps enough rows: no reason given.
    shards, why = shards_for([Unit(0, 200_000, row_group=0)], 4, server="pytriton")
    assert (len(shards), why) == (4, "")


def test_a_csv_with_fewer_blocks_than_tasks_says_shards_are_whole_blocks() -> None:
    csv = [Unit(0, 40_000, start=0, end=16 << 20), Unit(0, 40_000, start=16 << 20, end=1 << 25)]
    shards, why = shards_for(csv, 3, server="none")
    assert [s.rows for s in shards] == [40_000, 40_000]
    assert why == (
        "2 shards, not 3: a CSV shard reads whole line-aligned blocks of about 16 MiB, "
        "and the table has 2"
    )
    one, why = shards_for([Unit(0, 20_000, start=0, end=900)], 3, server="none")
    assert len(one) == 1 and why.startswith("1 shard, not 3: a CSV shard reads whole")


def test_random_layouts_cover_every_row_exactly_once() -> None:
    rng = random.Random(7)
    for _ in range(200):
        parquet = rng.random() < 0.5
        units = [
            Unit(0, rng.randint(0, 50), row_group=i)
            if parquet
            else Unit(0, rng.randint(0, 50), start=i * 10, end=i * 10 + 10)
            for i in range(rng.randint(1, 12))
        ]
        tasks = rng.randint(1, 9)
        shards = plan_shards(units, tasks)
        total = sum(u.rows for u in units)
        assert _covered_rows(units, shards) == list(range(total))
        assert len(shards) <= tasks and all(s.rows > 0 for s in shards)
        assert [s.index for s in shards] == list(range(len(shards)))


def test_output_layout_file_or_directory() -> None:
    assert output_layout("/d/scores.parquet").parts_dir == "/d/scores.parts"
    assert output_layout("/d/scores.parquet").summary == "/d/scores.parts/summary.json"
    out = output_layout("/d/day1/")
    assert (out.parts_dir, out.merged, out.summary) == (
        "/d/day1/parts",
        "/d/day1/predictions.parquet",
        "/d/day1/summary.json",
    )


def test_model_format_from_the_suffix_or_the_flag() -> None:
    assert model_format_of("m/model.json", None) == "xgboost_json"
    assert model_format_of("m/model.UBJ", None) == "xgboost_ubj"
    assert model_format_of("m/anything", "lightgbm") == "lightgbm"
    with pytest.raises(UsageError, match="cannot tell the format"):
        model_format_of("m/model.bin", None)
    with pytest.raises(UsageError, match="not a format"):
        model_format_of("m/model.json", "onnx")


def _inspected(**model: Any) -> dict[str, Any]:
    columns = [{"name": "id", "type": "int64"}] + [
        {"name": f"f{i}", "type": "float"} for i in range(3)
    ]
    return {
        "rows": 10,
        "columns": columns,
        "numeric": [c["name"] for c in columns],
        "model": {"features": 3, "num_class": 0, "objective": "binary:logistic", **model},
    }


def test_table_checks_find_features_and_the_id_column() -> None:
    found = check_table(_inspected(), "t.parquet", id_column=None, predict="proba")
    assert (found.features, found.id_column) == (["f0", "f1", "f2"], "id")
    # A model with feature names picks its columns by name, in its order.
    named = _inspected(features=2, feature_names=["f2", "f0"])
    found = check_table(named, "t.parquet", id_column=None, predict="proba")
    assert found.features == ["f2", "f0"]


def test_table_checks_name_each_mistake() -> None:
    with pytest.raises(UsageError, match=r"expects 5 features but t\.parquet has 3 columns"):
        check_table(_inspected(features=5), "t.parquet", id_column=None, predict="proba")
    with pytest.raises(UsageError, match="holds no rows"):
        check_table({**_inspected(), "rows": 0}, "t.parquet", id_column=None, predict="proba")
    text = _inspected()
    text["columns"].append({"name": "city", "type": "string"})
    with pytest.raises(UsageError, match=r"column 'city' \(string\) is not numeric"):
        check_table(text, "t.csv", id_column=None, predict="proba")
    with pytest.raises(UsageError, match="'key' is not a column"):
        check_table(_inspected(), "t.parquet", id_column="key", predict="proba")
    regression = _inspected(objective="reg:squarederror")
    with pytest.raises(UsageError, match="not a classifier"):
        check_table(regression, "t.parquet", id_column=None, predict="class")


def test_output_width() -> None:
    assert output_width(0, "binary:logistic", "proba") == 1
    assert output_width(3, "multi:softprob", "proba") == 3
    assert output_width(3, "multi:softmax", "proba") == 1
    assert output_width(3, "multi:softmax", "raw") == 3
    assert output_width(3, "multi:softprob", "class") == 1


PLAN = ScorePlan(
    name="day 1",
    run_dir="/home/u/.hpcrun/score/5",
    python="/opt/venv/bin/python",
    worker="/home/u/.hpcrun/score/bin/0123456789ab/score_task.pyz",
    format="parquet",
    files=["/data/day 1.parquet"],
    column_types={},
    csv_header=None,
    features=["f0", "f1"],
    id_column="id",
    model="/models/m.json",
    model_format="xgboost_json",
    predict="proba",
    threshold=0.5,
    num_class=0,
    objective="binary:logistic",
    server="pytriton",
    batch_rows=65536,
    parts_dir="/out/day 1.parts",
    merged="/out/day 1.parquet",
    summary="/out/day 1.parts/summary.json",
    rows=100,
    shards=tuple(plan_shards([Unit(0, 100, row_group=0)], 3)),
    retries=2,
    max_parallel=2,
    partition="cpu",  # `--partition cpu`: both jobs go to that queue
)


def test_jobs_and_shard_script_golden() -> None:
    array = to_job_spec(array_spec(PLAN, [0, 2]))
    merge = to_job_spec(merge_spec(PLAN, JobRef("41")))
    sized = to_job_spec(array_spec(replace(PLAN, cpus_per_task=4, gpus_per_task=1), [0, 2]))
    text = (
        "# array job (default: a whole node a task)\n"
        + array.to_sbatch_script()
        + "# array job, --cpus-per-task 4 --gpus-per-task 1\n"
        + sized.to_sbatch_script()
        + "# merge job\n"
        + merge.to_sbatch_script()
    )
    assert array.exclusive and array.cpus_per_task is None
    assert sized.cpus_per_task == 4 and not sized.exclusive and sized.gpus == 1
    assert not merge.exclusive
    assert_golden("score_jobs.txt", text)
    assert_golden("score_shard.sh", shard_script(PLAN))


def test_shard_script_retries_until_the_part_exists(tmp_path: Path) -> None:
    """The script for real in bash, with a fake 'python' that fails once, then writes."""
    parts = tmp_path / "parts"
    parts.mkdir()
    fake = tmp_path / "python"
    count = tmp_path / "count"
    fake.write_text(
        "#!/bin/bash\n"
        f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n+1)) > {count}\n"
        f'[ "$n" -ge 1 ] && echo data > {parts}/part-00001.parquet\n'
        "exit 3\n"
    )
    fake.chmod(0o755)
    plan = ScorePlan(**{**PLAN.__dict__, "python": str(fake), "parts_dir": str(parts)})
    script = tmp_path / "shard.sh"
    script.write_text(shard_script(plan))
    done = subprocess.run(
        ["bash", str(script)],
        env={"HPCRUN_TASK_INDEX": "1", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout
    assert done.stdout.count(" attempt ") == 2
    assert count.read_text().strip() == "2"
    # Nothing ever writes the part: every attempt is made, then the task fails.
    plan = ScorePlan(**{**plan.__dict__, "python": "/bin/false"})
    script.write_text(shard_script(plan))
    done = subprocess.run(
        ["bash", str(script)],
        env={"HPCRUN_TASK_INDEX": "2", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "FAILED after 3 attempts" in done.stdout


def test_fil_model_repository_golden() -> None:
    repo = fil_model_repository(
        model_format="xgboost_json",
        features=32,
        width=1,
        predict="proba",
        threshold=0.5,
        batch_rows=65536,
        gpus=True,
    )
    assert list(repo) == ["hpcrun_model/config.pbtxt"]
    assert_golden("score_fil_config.pbtxt", repo["hpcrun_model/config.pbtxt"])
    assert model_path_in_repository("xgboost_json") == "hpcrun_model/1/xgboost.json"
    assert model_path_in_repository("lightgbm") == "hpcrun_model/1/model.txt"
    classes = fil_config(features=4, width=1, predict="class", model_format="lightgbm", gpus=False)
    assert 'string_value: "false"' in classes.split("predict_proba")[1].split("}")[0]
    assert "kind: KIND_CPU" in classes and "dims: [ 1 ]" in classes
