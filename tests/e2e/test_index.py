"""IndeX on the real local Slurm cluster, end to end through the CLI.

One session runs through the module, as a user would drive it: start on 4 nodes, look at
it in Chromium, grow by 2, shrink by 1, lose an agent, stop. Each test states one step.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hpcrun.locks import lock_path
from tests.conftest import (
    HPCRUN,
    Cluster,
    cli_env,
    free_port,
    own_cluster,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def _json(done: Any) -> dict[str, Any]:
    return dict(json.loads(done.stdout))


def viewer_status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.rstrip("/") + "/api/status", timeout=5) as response:
        return dict(json.loads(response.read()))


def eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def session(local_cluster: Cluster) -> Iterator[dict[str, Any]]:
    port = free_port()
    done = local_cluster.cli(
        "index",
        "--nodes",
        "4",
        "--scene",
        "supernova",
        "--port",
        str(port),
        "--json",
        timeout=300,
    )
    started = _json(done)
    try:
        yield started
    finally:
        local_cluster.cli("index", "stop", check=False)


def test_index_prints_the_url_and_four_agents_on_four_nodes_register(
    session: dict[str, Any],
) -> None:
    assert session["url"].startswith("http://127.0.0.1:")
    assert session["agents"] == 4
    assert len(set(session["nodes"])) == 4
    status = viewer_status(session["url"])
    assert status["agents"] == 4
    assert sorted(a["node"] for a in status["agent_list"]) == sorted(session["nodes"])


def test_status_json_has_url_jobs_nodes_and_agents(
    local_cluster: Cluster, session: dict[str, Any]
) -> None:
    status = _json(local_cluster.cli("index", "status", "--json"))
    assert status["url"] == session["url"]
    assert [j["role"] for j in status["jobs"]] == ["initial"]
    assert status["jobs"][0]["state"] == "RUNNING"
    assert len(status["nodes"]) == 4
    assert status["agents"] == 4


@pytest.mark.browser
def test_the_page_in_chromium_shows_the_volume(session: dict[str, Any], tmp_path: Any) -> None:
    from tests.browser import chromium_driver, page_shows_volume

    driver = chromium_driver(tmp_path)
    try:
        driver.get(session["url"])
        assert page_shows_volume(driver, agents=4)
    finally:
        driver.quit()


def test_scaling_beyond_the_free_nodes_fails_at_once_naming_them(
    local_cluster: Cluster, session: dict[str, Any]
) -> None:
    done = local_cluster.cli("scale", "+3", check=False)
    assert done.returncode == 1
    assert "3 nodes requested but only 2 are free (n5, n6)" in done.stderr
    assert "--wait" in done.stderr
    assert viewer_status(session["url"])["agents"] == 4  # nothing changed


def test_scale_plus_two_attaches_a_second_job_whose_agents_render(
    local_cluster: Cluster, session: dict[str, Any]
) -> None:
    grown = _json(local_cluster.cli("scale", "+2", "--json", timeout=300))
    assert grown["agents"] == 6
    assert [j["role"] for j in grown["jobs"]] == ["initial", "attached"]
    assert len(set(grown["nodes"])) == 6

    # The next frame has bricks rendered by all six agents.
    def six_contribute() -> bool:
        agents = viewer_status(session["url"])["agent_list"]
        return len(agents) == 6 and all(a["bricks"] for a in agents)

    eventually(six_contribute)


def test_scale_minus_one_ends_a_node_and_the_viewer_keeps_rendering(
    local_cluster: Cluster, session: dict[str, Any]
) -> None:
    before = viewer_status(session["url"])["frame"]
    shrunk = _json(local_cluster.cli("scale", "-1", "--json", timeout=300))
    assert shrunk["agents"] == 5
    assert len(shrunk["nodes"]) == 5
    eventually(lambda: viewer_status(session["url"])["frame"] > before)


def test_a_killed_agent_is_dropped_and_its_bricks_move(
    local_cluster: Cluster, session: dict[str, Any]
) -> None:
    agents = viewer_status(session["url"])["agent_list"]
    victim = next(a for a in agents if a["rank"] != 0 or a["job_id"] != agents[0]["job_id"])
    os.kill(int(victim["pid"]), signal.SIGKILL)

    def dropped() -> bool:
        status = viewer_status(session["url"])
        return status["agents"] == len(agents) - 1 and all(
            a["bricks"] for a in status["agent_list"]
        )

    eventually(dropped)
    with urllib.request.urlopen(session["url"].rstrip("/") + "/api/image.png", timeout=30) as r:
        assert r.read(8) == b"\x89PNG\r\n\x1a\n"

    # Status names the node that is allocated but renders nothing, and how to heal it.
    node = victim["node"]
    status = local_cluster.cli("index", "status")
    assert f"no render agent on {node}: the node is allocated" in status.stdout
    assert "hpcrun index status --heal" in status.stdout
    assert _json(local_cluster.cli("index", "status", "--json"))["missing_agents"] == [node]

    # --heal starts the agent there again, and it renders its share once more.
    healed = _json(local_cluster.cli("index", "status", "--heal", "--json", timeout=180))
    assert healed["healed"] == [node]
    assert healed["missing_agents"] == []
    assert healed["agents"] == len(agents)

    def back() -> bool:
        listed = viewer_status(session["url"])["agent_list"]
        return any(a["node"] == node and a["bricks"] for a in listed)

    eventually(back)
    again = local_cluster.cli("index", "status", "--heal")
    assert "nothing to do" in again.stderr + again.stdout


def test_changes_while_a_scale_waits_are_refused_and_ctrl_c_leaves_nothing_queued(
    local_cluster: Cluster, session: dict[str, Any]
) -> None:
    before = _json(local_cluster.cli("index", "status", "--json"))
    free = 6 - len(before["nodes"])
    lock = lock_path(local_cluster.home, f"index-itest-{before['session']}")
    # More nodes than are free, with --wait: the scale queues in salloc, holding the lock.
    said = local_cluster.workdir / "scale-wait.err"
    waiting = subprocess.Popen(
        [*HPCRUN, "scale", f"+{free + 1}", "--wait"],
        env=cli_env(local_cluster.home),
        cwd=local_cluster.workdir,
        stdout=subprocess.DEVNULL,
        stderr=said.open("w"),
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (
            queued := [
                j.job_id
                for j in local_cluster.client.jobs()
                if j.state == "PENDING" and j.name == "hpcrun-index-agents"
            ]
        ):
            assert waiting.poll() is None, said.read_text()
            assert time.monotonic() < deadline, said.read_text()
            time.sleep(0.2)
        assert f'"pid": {waiting.pid}' in lock.read_text()
        for change in (["scale", "+1"], ["index", "stop"]):
            refused = local_cluster.cli(*change, check=False)
            assert refused.returncode == 1, refused.stdout
            first = refused.stderr.strip().splitlines()[0]
            assert "is being changed by another hpcrun" in first, refused.stderr
            assert f"pid {waiting.pid}: scale +{free + 1}" in first
        waiting.send_signal(signal.SIGINT)  # what Ctrl-C at its terminal does
        waiting.wait(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 130, said.read_text()
    # salloc withdrew its request: nothing is left queued to be granted to no one.
    eventually(
        lambda: all(j.state.is_terminal for j in local_cluster.client.jobs(queued)), timeout_s=15
    )
    after = _json(local_cluster.cli("index", "status", "--json"))
    assert after["nodes"] == before["nodes"] and after["missing_agents"] == []
    grown = _json(local_cluster.cli("scale", "+1", "--json", timeout=180))  # lock released
    assert len(grown["nodes"]) == len(before["nodes"]) + 1


def test_stop_frees_every_node(local_cluster: Cluster, session: dict[str, Any]) -> None:
    local_cluster.cli("index", "stop")
    nodes = local_cluster.client.nodes()
    eventually(lambda: all(n.state == "idle" for n in local_cluster.client.nodes()))
    assert len(nodes) == 6
    with pytest.raises(OSError):
        viewer_status(session["url"])
    status = local_cluster.cli("index", "status", check=False)
    assert status.returncode == 1
    assert "no IndeX session is running" in status.stderr


def test_more_nodes_than_the_cluster_has_is_refused_before_allocating(
    local_cluster: Cluster,
) -> None:
    done = local_cluster.cli("index", "--nodes", "9", check=False)
    assert done.returncode == 1
    assert "9 nodes requested but the cluster has 6 usable nodes" in done.stderr


def test_scale_without_a_session_says_how_to_start_one(local_cluster: Cluster) -> None:
    done = local_cluster.cli("scale", "+2", check=False)
    assert done.returncode == 1
    assert "hpcrun index --nodes 4 --scene supernova" in done.stderr


def test_merge_grows_the_first_job_on_a_cluster_without_gpus(local_cluster: Cluster) -> None:
    """Job expansion (`--merge`): Slurm 22.05 refuses it for jobs holding GRES, so this
    runs on a GPU-less cluster of its own; the session then stays one job."""
    with own_cluster("nogpu", "--nodes", "3", "--gpus-per-node", "0") as hpcrun:
        hpcrun("index", "--nodes", "1", "--port", str(free_port()))
        grown = _json(hpcrun("scale", "+2", "--merge", "--json"))
        assert grown["agents"] == 3
        live = [j for j in grown["jobs"] if j["state"] == "RUNNING"]
        assert [(j["role"], j["nodes"]) for j in live] == [("initial", 3)]
        # The merged job shrinks again: the cluster keeps a Slurm database.
        shrunk = _json(hpcrun("scale", "-1", "--json"))
        assert shrunk["agents"] == 2
        assert [j["nodes"] for j in shrunk["jobs"] if j["state"] == "RUNNING"] == [2]


def test_without_a_slurm_database_a_resized_job_is_not_resized_again(
    local_cluster: Cluster,
) -> None:
    """Slurm 22.05 without slurmdbd refuses any update of a job it resized once: hpcrun
    says so instead of hanging in Slurm's retries, and still shrinks by ending whole
    attached jobs."""
    with own_cluster("nodb", "--nodes", "4", "--no-accounting") as hpcrun:
        hpcrun("index", "--nodes", "3", "--port", str(free_port()))
        assert _json(hpcrun("scale", "-1", "--json"))["agents"] == 2  # scontrol NumNodes=2
        refused = hpcrun("scale", "-1", check=False)
        assert refused.returncode == 1
        assert "keeps no Slurm database" in refused.stderr
        assert _json(hpcrun("scale", "+1", "--json"))["agents"] == 3  # an attached job
        shrunk = _json(hpcrun("scale", "-1", "--json"))  # ends that job whole
        assert shrunk["agents"] == 2
        assert [j["state"] for j in shrunk["jobs"]] == ["RUNNING", "ENDED"]


def test_merge_is_refused_for_a_job_holding_gpus(local_cluster: Cluster) -> None:
    port = str(free_port())
    local_cluster.cli("index", "--nodes", "1", "--port", port)
    try:
        done = local_cluster.cli("scale", "+1", "--merge", check=False)
        assert done.returncode == 1
        assert "cannot expand a job that holds GRES" in done.stderr
        # Nothing was allocated for the refused request.
        assert len(_json(local_cluster.cli("index", "status", "--json"))["jobs"]) == 1
    finally:
        local_cluster.cli("index", "stop")


def test_a_viewer_that_cannot_start_fails_with_its_log_and_releases_the_nodes(
    local_cluster: Cluster,
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        done = local_cluster.cli("index", "--nodes", "2", "--port", port, check=False)
    assert done.returncode == 1
    assert "the viewer step exited before it was ready" in done.stderr
    # The cause leads (issue 14: it was line 8 of an 11-line log dump); the tail follows.
    first = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert first.startswith(f"error: the viewer cannot listen on port {port}"), done.stderr
    assert "ends with:" in done.stderr and "srun: error:" in done.stderr
    assert "--port N" in done.stderr.split("\nhint: ", 1)[1]
    eventually(lambda: all(j.state.is_terminal for j in local_cluster.client.jobs()))
    sessions = json.loads(local_cluster.cli("index", "status", "--all", "--json").stdout)
    assert sessions[-1]["status"] == "failed"


def test_a_bad_auth_option_is_refused_before_anything_is_allocated(
    local_cluster: Cluster,
) -> None:
    before = len(json.loads(local_cluster.cli("index", "status", "--all", "--json").stdout))
    done = local_cluster.cli("index", "--nodes", "1", "--auth", "alice", check=False)
    assert done.returncode == 2
    assert "USER:PASSWORD_FILE" in done.stderr
    after = len(json.loads(local_cluster.cli("index", "status", "--all", "--json").stdout))
    assert after == before


def test_exclusive_and_gpus_per_node_together_are_refused(local_cluster: Cluster) -> None:
    done = local_cluster.cli("index", "--exclusive", "--gpus-per-node", "1", check=False)
    assert done.returncode == 2
    assert "--exclusive and --gpus-per-node" in done.stderr


def test_a_session_whose_job_was_cancelled_elsewhere_is_reported_ended(
    local_cluster: Cluster,
) -> None:
    started = _json(
        local_cluster.cli("index", "--nodes", "1", "--port", str(free_port()), "--json")
    )
    local_cluster.client.cancel([started["jobs"][0]["job_id"]])  # scancel, not hpcrun
    eventually(lambda: all(j.state.is_terminal for j in local_cluster.client.jobs()))
    done = local_cluster.cli("scale", "+1", check=False)
    assert done.returncode == 1
    assert "is stopped, not running" in done.stderr
    assert "CANCELLED" in done.stderr
    assert local_cluster.cli("index", "status", check=False).returncode == 1


def test_auth_protects_the_viewer_and_hpcrun_still_reads_its_status(
    local_cluster: Cluster, tmp_path: Any
) -> None:
    secret = tmp_path / "viewer.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    started = _json(
        local_cluster.cli(
            "index",
            "--nodes",
            "1",
            "--port",
            str(free_port()),
            "--auth",
            f"alice:{secret}",
            "--json",
        )
    )
    try:
        assert started["agents"] == 1  # hpcrun authenticated to count the agents
        with pytest.raises(urllib.error.HTTPError) as refused:
            viewer_status(started["url"])
        assert refused.value.code == 401
    finally:
        local_cluster.cli("index", "stop")
