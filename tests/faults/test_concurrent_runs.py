"""Two hpcrun processes on one cluster at once (issue 14, concurrency): two renders into
one output would render every frame twice and race to encode, so the second is refused
while the first is unfinished, naming it; renders into different outputs run side by
side and both finish whole."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import HPCRUN, Cluster, cli_env
from tests.e2e.test_render import TINY, blend, pngs
from tests.faults.test_lost_jobs import as_json, follow

__all__ = ["blend"]

pytestmark = [pytest.mark.slurm, pytest.mark.blender, pytest.mark.slow]


def render_args(blend: Path, out: Path) -> list[str]:
    return [str(blend), "--frames", "1-4", *TINY, "--output", str(out), "--max-parallel", "1"]


def test_a_second_render_into_an_unfinished_runs_output_is_refused_naming_it(
    local_cluster: Cluster, blend: Path, tmp_path: Path
) -> None:
    out = tmp_path / "frames"
    args = render_args(blend, out)
    first = as_json(local_cluster.workload("render", *args, "--detach", "--json"))
    again = local_cluster.workload("render", *args, "--detach", check=False)
    assert again.returncode == 1, again.stdout
    line = again.stderr.strip().splitlines()[0]
    assert f"render run {first['run']} is still writing to {out}" in line, again.stderr
    assert f"hpcrun render status {first['run']}" in again.stderr
    assert follow(local_cluster, first["run"])["status"] == "done"
    # Once it has ended, the same command resumes (here: nothing left to render).
    done = as_json(local_cluster.workload("render", *args, "--json"))
    assert done["status"] == "done"


def test_two_renders_started_at_once_into_two_outputs_both_finish_whole(
    local_cluster: Cluster, blend: Path, tmp_path: Path
) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    env = {**local_cluster.env, **cli_env(local_cluster.home)}
    env.pop("HPCRUN_CLUSTER", None)
    started = [
        subprocess.Popen(
            [*HPCRUN, "render", *render_args(blend, out), "--detach", "--json"],
            env=env,
            cwd=local_cluster.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    runs = []
    for child in started:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        runs.append(as_json(subprocess.CompletedProcess([], 0, out, err)))
    assert runs[0]["run"] != runs[1]["run"]
    for run, out in zip(runs, outs, strict=True):
        assert follow(local_cluster, run["run"])["status"] == "done"
        assert pngs(out) == [f"frame_{i:04d}.png" for i in range(1, 5)]
        assert (out / "rolling_ball.mp4").stat().st_size > 0
