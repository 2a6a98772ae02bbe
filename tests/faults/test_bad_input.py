"""The bad-input catalogue (issue 14): what a new user gets wrong, run through the real
CLI against the real local cluster. Every case must end with exit 1 or 2, no traceback, a
first line that names what is wrong, and nothing left behind: no job in Slurm, no run,
job or session in the state store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cluster

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def files(root: Path) -> None:
    """What the cases point at: each file wrong in one way."""
    (root / "notes.txt").write_text("not a blend\n")
    (root / "fake.blend").write_bytes(b"NOTBLEND" + bytes(64))
    (root / "header.blend").write_bytes(b"BLENDER-v304" + bytes(64))  # flags fail first
    (root / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (root / "latin1.json").write_bytes('{"file": "caf\xe9.blend"}'.encode("latin-1"))
    (root / "start_x.json").write_text('{"file": "fake.blend", "start": "x", "end": "2"}')
    (root / "no_end.json").write_text('{"file": "fake.blend", "start": "1"}')
    (root / "list.json").write_text("[1, 2]")
    (root / "broken.json").write_text("{")
    (root / "bad.yaml").write_text("backend: local\nnodes: [\n")
    (root / "nodes_x.yaml").write_text("backend: local\nnodes: many\n")
    (root / "unknown_key.yaml").write_text("backend: local\nnodez: 3\n")
    (root / "model.json").write_text("{}")
    (root / "table.csv").write_text("a,b\n1,2\n")


# (argv, what the first line must contain). `{d}` is the directory holding `files`.
CASES: list[tuple[list[str], str]] = [
    # submit
    (["submit", "-N", "0", "--", "true"], "nodes must be at least 1 (got 0)"),
    (["submit", "-N", "-3", "--", "true"], "nodes must be at least 1 (got -3)"),
    (["submit", "-N", "17", "--", "true"], "--nodes 17: cluster itest has 6 nodes"),
    (
        ["submit", "--gpus-per-node", "5", "--", "true"],
        "--gpus-per-node 5: the nodes of cluster itest have 2",
    ),
    (["submit", "--array", "5-1", "--", "true"], "--array '5-1' is reversed"),
    (["submit", "--array", "x", "--", "true"], "--array 'x'"),
    (["submit", "--array", "1-3%0", "--", "true"], "at most 0 tasks at a time"),
    (["submit", "--time", "soon", "--", "true"], "--time 'soon'"),
    (["submit", "--dependency", "whenever", "--", "true"], "--dependency whenever"),
    (["submit", "--partition", "nope", "--", "true"], "nope"),
    (["submit", "--output", "/proc/nope/x.out", "--", "true"], "/proc/nope"),
    (["submit", "--chdir", "{d}/missing-dir", "--", "true"], "missing-dir"),
    (["submit"], "command"),
    # jobs, logs, cancel
    (["cancel", "99999"], "99999"),
    (["cancel", "abc"], "abc"),
    (["logs", "99999"], "99999"),
    (["logs", "abc"], "abc"),
    (["jobs", "abc"], "abc"),
    # clusters
    (["use", "no-such-cluster"], "no-such-cluster"),
    (["status", "--cluster", "no-such-cluster"], "no-such-cluster"),
    (["create", "--nodes", "0", "--name", "x1"], "flags is not a valid cluster config: nodes"),
    (["create", "--nodes", "99", "--name", "x1"], "config: nodes"),
    (["create", "--name", "bad name!"], "config: name"),
    (["create", "--backend", "nimbus"], "nimbus"),
    (["create", "--backend", "ssh"], "--backend ssh"),
    (["create", "--config", "{d}/missing.yaml"], "missing.yaml"),
    (["create", "--config", "{d}/latin1.yaml"], "latin1.yaml"),
    (["create", "--config", "{d}/bad.yaml"], "bad.yaml"),
    (["create", "--config", "{d}/nodes_x.yaml"], "nodes"),
    (["create", "--config", "{d}/unknown_key.yaml"], "nodez"),
    (["create", "--gpus-per-node", "-1", "--name", "x1"], "config: gpus_per_node"),
    # config
    (["config", "validate", "{d}/latin1.yaml"], "latin1.yaml"),
    (["config", "validate", "{d}/bad.yaml"], "bad.yaml"),
    (["config", "validate", "{d}/missing.yaml"], "missing.yaml"),
    (["config", "validate", "{d}/unknown_key.yaml"], "nodez"),
    (["config", "import", "{d}/latin1.yaml"], "latin1.yaml"),
    (["config", "import", "{d}/missing.yaml"], "missing.yaml"),
    (["config", "init", "--preset", "nope"], "nope"),
    # render
    (["render", "{d}/missing.blend"], "missing.blend"),
    (["render", "{d}/notes.txt"], "notes.txt"),
    (["render", "{d}/fake.blend"], "fake.blend"),
    (["render", "{d}/header.blend", "--frames", "9-3"], "9-3"),
    (["render", "{d}/header.blend", "--frames", "a-b"], "a-b"),
    (["render", "{d}/header.blend", "--chunk", "0"], "--chunk 0"),
    (["render", "{d}/header.blend", "--resolution", "wide"], "wide"),
    (["render", "{d}/header.blend", "--resolution", "0x10"], "0x10"),
    (["render", "{d}/header.blend", "--engine", "LUXCORE"], "LUXCORE"),
    (["render", "{d}/header.blend", "--fps", "0"], "--fps 0"),
    (["render", "{d}/header.blend", "--fps", "-5"], "--fps -5"),
    (["render", "{d}/header.blend", "--encode", "gif"], "gif"),
    (["render", "{d}/header.blend", "--max-parallel", "0"], "0"),
    (["render", "{d}/header.blend", "--samples", "0"], "samples"),
    (["render", "--job", "{d}/start_x.json"], "start_x.json"),
    (["render", "--job", "{d}/no_end.json"], "no_end.json"),
    (["render", "--job", "{d}/list.json"], "list.json"),
    (["render", "--job", "{d}/broken.json"], "broken.json"),
    (["render", "--job", "{d}/latin1.json"], "latin1.json"),
    (["render", "--job", "{d}/missing.json"], "missing.json"),
    (["render", "status", "99999"], "99999"),
    # score
    (["score", "-m", "{d}/missing.json", "-i", "{d}/table.csv", "-o", "{d}/o.parquet"], "missing"),
    (["score", "-m", "{d}/model.json", "-i", "{d}/missing.csv", "-o", "{d}/o.parquet"], "missing"),
    (
        [
            "score",
            "-m",
            "{d}/model.json",
            "-i",
            "{d}/table.csv",
            "-o",
            "{d}/o.parquet",
            "--tasks",
            "0",
        ],
        "--tasks 0",
    ),
    (
        [
            "score",
            "-m",
            "{d}/model.json",
            "-i",
            "{d}/table.csv",
            "-o",
            "{d}/o.parquet",
            "--predict",
            "maybe",
        ],
        "maybe",
    ),
    (["score", "status", "99999"], "99999"),
    # index
    (["index", "--nodes", "0"], "0"),
    (["index", "--nodes", "99"], "99"),
    (["index", "--scene", "no-such-scene"], "no-such-scene"),
    (["index", "--renderer", "magic"], "magic"),
    (["index", "--port", "70000"], "70000"),
    (["index", "--auth", "nobody"], "--auth"),
    (["index", "--time", "soon"], "soon"),
    (["scale", "+2"], "IndeX session"),
    (["scale", "sideways"], "no IndeX session"),
    (["scenes", "show", "no-such-scene"], "no-such-scene"),
]


def _ids() -> list[str]:
    return [" ".join(a)[:60] for a, _ in CASES]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input")
    files(root)
    return root


def footprint(cluster: Cluster) -> tuple[int, ...]:
    """The newest job id Slurm has handed out (ids only grow; a count would shrink as
    other tests' jobs age out) and the state store's row counts."""
    store = cluster.store
    rows = store._db.execute(
        "SELECT (SELECT COUNT(*) FROM array_runs), (SELECT COUNT(*) FROM jobs),"
        " (SELECT COUNT(*) FROM clusters), (SELECT COUNT(*) FROM index_sessions)"
    ).fetchone()
    newest = max((int(j.raw_id) for j in cluster.client.jobs()), default=0)
    return (newest, *tuple(rows))


def test_the_catalogue_has_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize(("argv", "names"), CASES, ids=_ids())
def test_bad_input_is_refused_in_one_line_and_leaves_nothing(
    local_cluster: Cluster, inputs: Path, argv: list[str], names: str
) -> None:
    args = [a.replace("{d}", str(inputs)) for a in argv]
    before = footprint(local_cluster)
    done = local_cluster.workload(*args, check=False)
    text = done.stdout + done.stderr
    lines = [line for line in text.splitlines() if line.strip()]
    # Progress may come first ("• reading the table's layout"); the error's first line
    # must then name the problem.
    first = next((line for line in lines if not line.startswith("•")), "")
    assert done.returncode in (1, 2), f"exit {done.returncode}: {text}"
    assert "Traceback" not in text, text
    assert names in first, f"first line {first!r} does not name {names!r}:\n{text}"
    after = footprint(local_cluster)
    assert after[0] <= before[0], f"a job reached Slurm: {text}"
    assert after[1:] == before[1:], f"the state store changed: {text}"
    json.dumps(args)  # the case itself stays printable
