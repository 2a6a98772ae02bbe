"""The launcher: nvindex-slurm's command line, and real viewer/agent processes without Slurm.

Process tests start `python -m hpcrun.node.viewer.launcher` tasks with the environment srun
gives them, exactly as `srun -N3 hpcrun-nvindex-slurm ...` would, and watch their output
and /api/status: readiness line, agents joining, attach with -a, an agent killed, the
viewer stopped.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.node.viewer.launcher import parse_args
from hpcrun.node.viewer.options import DEFAULT_PORT, LaunchOptions, TaskIdentity, read_auth
from tests.node.viewer._launch import READY, launch, non_background, running_session

# -- command line ----------------------------------------------------------------------


def test_nvidia_command_line_parses() -> None:
    options = parse_args([
        "-v", "./nvindex-viewer.sh", "--add", "/opt/scenes/00-supernova_ncsa_small/scene/"
        "scene.prj", "-dice::log_timestamp", "yes",
    ])
    assert options == LaunchOptions(
        verbose=1,
        viewer_script="./nvindex-viewer.sh",
        scenes=("/opt/scenes/00-supernova_ncsa_small/scene/scene.prj",),
        extra=(("dice::log_timestamp", "yes"),),
    )
    assert options.log_timestamp
    assert options.port == DEFAULT_PORT
    assert options.attach_job is None


@pytest.mark.parametrize("argv", [["-a12", "./v.sh"], ["-a", "12", "./v.sh"],
                                  ["--attach=12"], ["-a=12"]])
def test_attach_forms(argv: list[str]) -> None:
    assert parse_args(argv).attach_job == "12"


def test_options_of_every_kind() -> None:
    options = parse_args([
        "-vv", "--port=9000", "--auth", "me:/tmp/pw", "--rendezvous", "/shared/r",
        "--add", "a.prj", "--add=b.prj", "--bricks", "27", "-index::some::key", "-1.5",
        "-app::flag", "-dice::verbose=4",
    ])
    assert options.verbose == 2
    assert options.port == 9000
    assert options.auth == "me:/tmp/pw"
    assert options.rendezvous == "/shared/r"
    assert options.scenes == ("a.prj", "b.prj")
    assert options.bricks == 27
    assert options.extra == (("index::some::key", "-1.5"), ("app::flag", ""),
                             ("dice::verbose", "4"))
    assert options.option("dice::verbose") == "4"
    assert not options.log_timestamp


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "unknown option '--bogus'"),
        (["--port", "http"], "--port takes a number"),
        (["--port", "70000"], "--port must be within 0..65535"),
        (["--add"], "--add needs a value"),
        (["--auth", "nocolon"], "--auth takes USER:PASSWORD_FILE"),
        (["a.sh", "b.sh"], "unexpected argument 'b.sh'"),
        (["-a"], "-a needs a value"),
        (["-a="], "-a needs a job id"),
    ],
)
def test_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_args(argv)


def test_read_auth(tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("s3cret\nignored\n")
    assert read_auth(f"admin:{password}") == ("admin", "s3cret")
    with pytest.raises(HpcrunError, match="cannot read the password file"):
        read_auth(f"admin:{tmp_path / 'missing'}")
    (tmp_path / "empty").write_text("")
    with pytest.raises(HpcrunError, match="is empty"):
        read_auth(f"admin:{tmp_path / 'empty'}")


def test_identity_from_slurm_environment() -> None:
    env = {"SLURM_PROCID": "3", "SLURM_JOB_ID": "77", "SLURMD_NODENAME": "n4",
           "SLURM_CPUS_ON_NODE": "64"}
    identity = TaskIdentity.from_env(env)
    assert (identity.rank, identity.job_id, identity.node) == (3, "77", "n4")
    assert identity.cpus == min(64, os.cpu_count() or 1)
    outside = TaskIdentity.from_env({})
    assert (outside.rank, outside.job_id) == (0, "local")


def test_help_exits_zero() -> None:
    task = launch("help", ["--help"], job_id="1")
    assert task.process.wait(30) == 0
    task.wait_for("usage: hpcrun-nvindex-slurm")


def test_usage_error_exits_two() -> None:
    task = launch("bad", ["--port", "x"], job_id="1")
    assert task.process.wait(30) == 2
    task.wait_for("error: --port takes a number")


# -- real processes --------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _numba_cache() -> None:
    """Compile the kernels once (a no-op when numba's cache is warm), so no agent's first
    frame pays for compilation inside a test's time limit."""
    from hpcrun.node.viewer.kernel import warm

    warm()


@pytest.mark.slow  # starts a real viewer and agents (seconds each)
def test_viewer_ready_agents_join_and_image(tmp_path: Path) -> None:
    with running_session(tmp_path, job_id="501", agents=2) as session:
        ready_s = session.viewer.wait_for(READY)[0] - session.viewer.started
        assert session.url.startswith("http://127.0.0.1:")
        status = session.wait_status(lambda s: s["agents"] == 3 and s["frame_agents"] == 3)
        join_s = session.viewer.wait_for("3 agents")[0] - session.viewer.started
        print(f"readiness {ready_s:.2f} s, 3 agents joined {join_s:.2f} s after start")
        assert status["job_id"] == "501"
        assert status["scene"] == "Test supernova"
        assert status["nodes"] == ["n1", "n2", "n3"]
        assert sorted(a["rank"] for a in status["agent_list"]) == [0, 1, 2]
        assert all(a["bricks"] > 0 and a["pid"] > 0 and a["host"] for a in status["agent_list"])
        assert sum(a["bricks"] for a in status["agent_list"]) == status["bricks"] == 8
        image = session.image()
        assert image.shape == (512, 512, 3)
        assert non_background(image) > 2000
        # The log says who joined, with node, job and rank, as the lead's CLI reads it.
        session.viewer.wait_for("[viewer] agent joined: n2 (job 501, rank 1)")
        assert "[viewer] Application layer viewer server is running at http://" in \
            session.viewer.output
        # -dice::log_timestamp yes: lines start with a date.
        assert session.viewer.wait_for(READY)[1][:4].isdigit()
        # rendezvous file: private to the user
        mode = (session.rendezvous / "501.json").stat().st_mode & 0o777
        assert mode == 0o600


@pytest.mark.slow  # starts a real viewer and agents (seconds each)
def test_attach_rebalances_and_lost_agent_is_replaced(tmp_path: Path) -> None:
    with running_session(tmp_path, job_id="610", agents=1) as session:
        session.wait_status(lambda s: s["agents"] == 2 and s["frame_agents"] == 2)
        before = session.image()
        # hpcrun scale +1: a new job whose tasks attach with -a610.
        (attached,) = session.add_agents(1, attach_job="610", job_id="611", first_node=5)
        status = session.wait_status(lambda s: s["agents"] == 3)
        session.viewer.wait_for("agent joined: n5 (job 611, rank 0), 3 agents")
        session.rpc("set_camera", {})  # same view, new version: a frame with 3 agents
        status = session.wait_status(lambda s: s["frame_agents"] == 3)
        bricks = {a["node"]: a["bricks"] for a in status["agent_list"]}
        assert set(bricks) == {"n1", "n2", "n5"}
        assert all(count > 0 for count in bricks.values()), bricks
        assert sum(bricks.values()) == 8
        with_three = session.image()
        assert np.abs(with_three.astype(int) - before.astype(int)).mean() < 1.0
        # Lose an agent abruptly (node down, scontrol shrink): the viewer keeps serving.
        victim = next(a for a in status["agent_list"] if a["node"] == "n2")
        os.kill(victim["pid"], signal.SIGKILL)
        status = session.wait_status(lambda s: s["agents"] == 2)
        session.viewer.wait_for("agent left: n2 (job 610, rank 1)")
        session.rpc("set_camera", {})
        after = session.image()
        status = session.status()
        assert status["frame_agents"] == 2
        assert sum(a["bricks"] for a in status["agent_list"]) == 8
        assert np.abs(after.astype(int) - before.astype(int)).mean() < 1.0
        assert non_background(after) > 2000
        # The attached job ending (scancel 611) takes only its agent away.
        assert attached.stop() == 0
        attached.wait_for("exiting: terminated (SIGTERM)")
        session.wait_status(lambda s: s["agents"] == 1)
        session.rpc("set_camera", {})
        assert np.abs(session.image().astype(int) - before.astype(int)).mean() < 1.0


@pytest.mark.slow  # starts a real viewer and agents (seconds each)
def test_hung_agent_times_out_then_viewer_exit_ends_everything(tmp_path: Path) -> None:
    env = {"NVINDEX_OPEN_FRAME_TIMEOUT": "2"}
    with running_session(tmp_path, job_id="720", agents=2, env=env) as session:
        session.wait_status(lambda s: s["agents"] == 3 and s["frame_agents"] == 3)
        before = session.image()
        # An agent that stops answering (hung node) is dropped after the frame timeout.
        hung = session.agents[0]
        hung.process.send_signal(signal.SIGSTOP)
        try:
            session.rpc("set_camera", {})
            after = session.image()
            session.viewer.wait_for("agent left: n2 (job 720, rank 1): no answer to frame")
            assert session.status()["agents"] == 2
            assert np.abs(after.astype(int) - before.astype(int)).mean() < 1.0
        finally:
            hung.process.send_signal(signal.SIGCONT)
        assert hung.process.wait(10) == 0
        hung.wait_for("exiting: the viewer went away")
        # SIGTERM to the viewer (scancel): every agent exits, the rendezvous file goes.
        own_agent = next(a["pid"] for a in session.status()["agent_list"] if a["rank"] == 0)
        assert (session.rendezvous / "720.json").exists()
        started = time.monotonic()
        assert session.viewer.stop() == 0
        session.viewer.wait_for("stopping: 2 agents told to exit")
        for agent in session.agents[1:]:
            assert agent.process.wait(10) == 0
            agent.wait_for("exiting: the viewer")  # said bye, or went away mid-frame
        deadline = time.monotonic() + 10
        while _alive(own_agent) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(own_agent), "the viewer's own agent survived the viewer"
        print(f"viewer and agents gone {time.monotonic() - started:.2f} s after SIGTERM")
        assert list(session.rendezvous.iterdir()) == []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_agent_without_viewer_gives_up_with_a_hint(tmp_path: Path) -> None:
    task = launch("agent", ["-a999", "--rendezvous", str(tmp_path)], job_id="1000",
                  env={"NVINDEX_OPEN_RENDEZVOUS_TIMEOUT": "0.5"})
    assert task.process.wait(30) == 1
    task.wait_for("error: no viewer found for this job")
    task.wait_for("hint: start the viewer first")


@pytest.mark.slow  # starts a real viewer and agents (seconds each)
def test_viewer_with_a_missing_scene_fails_before_ready(tmp_path: Path) -> None:
    task = launch("viewer", ["--add", str(tmp_path / "nope.prj"), "--port", "0",
                             "--rendezvous", str(tmp_path)], job_id="1001")
    assert task.process.wait(30) == 1
    assert READY not in task.output
    task.wait_for("error: ")
    assert list(tmp_path.iterdir()) == []


def test_agent_renders_what_it_is_assigned(tmp_path: Path) -> None:
    """The agent loop in process: assign, render (all and a subset), reassign, bye."""
    import socket
    import threading

    from hpcrun.node.viewer import protocol
    from hpcrun.node.viewer.agent import BrickWorker, serve
    from hpcrun.node.viewer.partial import Partial
    from tests.node.viewer._launch import small_frame

    prj, bricks, view, lut = small_frame(tmp_path)
    viewer, agent = socket.socketpair()
    reasons: list[str] = []
    worker = BrickWorker()
    thread = threading.Thread(target=lambda: reasons.append(serve(agent, worker)))
    thread.start()
    with viewer, agent:
        def assign(ids: list[int]) -> None:
            message = protocol.Assign(str(prj), "test_volume",
                                      protocol.brick_specs([bricks[i] for i in ids]),
                                      (0.0, 255.0))
            protocol.send_message(viewer, message.to_header())

        def render(frame: int, only: tuple[int, ...] | None = None) -> list[int]:
            request = protocol.Render(frame, view.to_json(), lut, only)
            protocol.send_message(viewer, request.to_header(), request.lut)
            answer = protocol.Partials.from_message(protocol.recv_message(viewer))
            assert answer.frame == frame
            return [Partial.from_bytes(blob).brick_id for blob in answer.blobs]

        assign([0, 1, 2, 3])
        assert render(1) == [0, 1, 2, 3]
        assert render(2, (3, 1)) == [3, 1]
        assign([3, 4])
        assert render(3) == [3, 4]
        assert sorted(worker.renderers) == [3, 4]
        protocol.send_message(viewer, protocol.bye("test over"))
        thread.join(10)
    assert reasons == ["the viewer said bye (test over)"]


@pytest.mark.slow  # starts a real viewer and agents (seconds each)
def test_port_in_use_is_reported_before_ready(tmp_path: Path) -> None:
    import socket

    from tests.node.viewer._launch import write_scene

    prj = write_scene(tmp_path / "scene", 16)
    with socket.create_server(("0.0.0.0", 0)) as taken:
        port = taken.getsockname()[1]
        task = launch("viewer", ["--add", str(prj), "--port", str(port),
                                 "--rendezvous", str(tmp_path / "r")], job_id="1002")
        assert task.process.wait(30) == 1
    task.wait_for(f"error: the viewer cannot listen on port {port}")
    task.wait_for("hint: another viewer may run on this node")
    assert READY not in task.output
    assert not (tmp_path / "r" / "1002.json").exists()
