"""Triton servers for one task: start, wait until ready, stop, and sweep what killed tasks left.

`--server pytriton` starts the real `tritonserver` that ships inside the nvidia-pytriton
wheel (Triton's Python backend only), so users get Triton's serving path on any node
without installing Triton or pulling a container; its model is a Python backend model
that imports `load_model` and `predict` from the task's own package (out of the zipapp,
which it puts on sys.path). `--server triton` runs a site's own Triton (the FIL backend)
with the model repository the submitting side wrote.

Several array tasks share a host, so the model repository, backend directory and
shared-memory names are private to the task (its job id and shard index, from
HPCRUN_JOB_ID). The server dies with the task (PR_SET_PDEATHSIG) and is stopped and
cleaned up in `finally` and on SIGTERM; what a SIGKILLed task leaves behind is removed by
the next task on the host that starts a server (`sweep_stale`, told by a lock the kernel
drops when the task dies).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import TaskError
from .packages import TRITON_HINT, package_file
from .plan import MODEL_NAME, ScorePlan
from .scoring import check_stop, predict_options

INPUT_NAME = "input__0"
OUTPUT_NAME = "output__0"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
PORT_ATTEMPTS = 4
TMP_PREFIX = "hpcrun-score-"
LOG_ERROR_WORDS = ("UNAVAILABLE", "rror", "failed", "Traceback")


@dataclass
class Server:
    """A tritonserver child process, its client, and what it leaves to clean up."""

    kind: str  # pytriton | triton
    model_name: str
    tmp: Path
    shm_prefix: str
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    client: Any = None

    @property
    def log(self) -> Path:
        return self.tmp / "tritonserver.log"

    def log_tail(self, lines: int = 8) -> str:
        """The log's error lines (a failed model's status row among them) and its last lines."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        errors = [line for line in text if any(w in line for w in LOG_ERROR_WORDS)]
        keep = dict.fromkeys([*errors[:15], *text[-lines:]])
        return "\n".join(line.rstrip() for line in keep)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise TaskError(
                f"tritonserver exited with status {self.proc.returncode}; its log ends:\n"
                f"{self.log_tail()}"
            )


def shm_prefix(index: int) -> str:
    """Unique per array task on a host, and the same when the scheduler requeues the task
    (HPCRUN_JOB_ID is the task's job id, exported by the batch script)."""
    job = os.environ.get("HPCRUN_JOB_ID") or f"pid{os.getpid()}"
    return f"hpcrun_{job}_{index}_"


def remove_shm(prefix: str) -> None:
    for path in Path("/dev/shm").glob(f"{prefix}*"):
        with contextlib.suppress(OSError):
            path.unlink()


def pytriton_dir() -> Path:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TaskError("the Python package nvidia-pytriton is not installed", TRITON_HINT)
    return Path(next(iter(spec.submodule_search_locations)))


def write_backend_dir(tmp: Path) -> None:
    """`<tmp>/backends/python`: pytriton's Python backend and the stub of this Python."""
    root = pytriton_dir() / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    backend = tmp / "backends" / "python"
    backend.mkdir(parents=True)
    sources = {
        "libtriton_python.so": root / "backends/python/libtriton_python.so",
        "triton_python_backend_utils.py": root / "backends/python/triton_python_backend_utils.py",
        "triton_python_backend_stub": root
        / "python_backend_stubs"
        / version
        / "triton_python_backend_stub",
    }
    for name, source in sources.items():
        if not source.exists():
            raise TaskError(f"nvidia-pytriton has no {source} for Python {version}", TRITON_HINT)
        (backend / name).symlink_to(source)


MODEL_PY = '''\
"""hpcrun's Triton Python backend model: the predictions of {package}.model.predict."""
import json
import sys

sys.path.insert(0, {root!r})  # the score task's zipapp (zipimport), or its source tree

import numpy  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
import xgboost  # noqa: E402
from {package}.model import load_model, predict  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.opts = json.loads(config["parameters"]["hpcrun"]["string_value"])
        for mod in (numpy, xgboost):  # the stub's Python must import the task's packages
            want = self.opts["expect"][mod.__name__]
            if mod.__file__ != want:
                raise RuntimeError(f"stub imported {{mod.__file__}}, expected {{want}}")
        self.booster = load_model(
            self.opts["model"], self.opts["model_format"], self.opts.get("threads")
        )

    def execute(self, requests):
        o = self.opts
        responses = []
        for request in requests:
            X = pb_utils.get_input_tensor_by_name(request, "{input_name}").as_numpy()
            y = predict(self.booster, X, o["predict"], o["threshold"], o["num_class"])
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("{output_name}", y)]))
        return responses
'''


CONFIG_PBTXT = """\
name: "{name}"
backend: "python"
max_batch_size: {batch_rows}
input [ {{ name: "{input_name}", data_type: TYPE_FP32, dims: [ {features} ] }} ]
output [ {{ name: "{output_name}", data_type: TYPE_FP32, dims: [ -1 ] }} ]
instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
parameters {{ key: "hpcrun", value: {{ string_value: {options} }} }}
"""


def pbtxt_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def package_root() -> tuple[str, str]:
    """(the sys.path entry this package was imported from, the package's name): the
    task's zipapp and `hpcrun_score` on a node, the source tree and `hpcrun.node.score`
    where hpcrun is installed."""
    package = __package__ or __name__.rpartition(".")[0]
    root = Path(__file__).resolve().parent
    for _ in package.split("."):
        root = root.parent
    return str(root), package


def write_model_repository(tmp: Path, plan: ScorePlan, threads: int | None = None) -> Path:
    """`<tmp>/models/hpcrun_model`: config.pbtxt and a 1/model.py that calls `predict`
    with `threads` XGBoost threads (the task's CPUs; None: XGBoost's default)."""
    repo = tmp / "models"
    (repo / MODEL_NAME / "1").mkdir(parents=True)
    mode, threshold, num_class = predict_options(plan)
    options = {
        "model": str(Path(plan.model).absolute()),
        "model_format": plan.model_format,
        "predict": mode,
        "threshold": threshold,
        "num_class": num_class,
        "threads": threads,
        "expect": {m: package_file(m) for m in ("numpy", "xgboost")},
    }
    root, package = package_root()
    model_py = MODEL_PY.format(
        root=root,
        package=package,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
    )
    (repo / MODEL_NAME / "1" / "model.py").write_text(model_py)
    config = CONFIG_PBTXT.format(
        name=MODEL_NAME,
        batch_rows=plan.batch_rows,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        features=len(plan.features),
        options=pbtxt_string(json.dumps(options)),
    )
    (repo / MODEL_NAME / "config.pbtxt").write_text(config)
    return repo


def pytriton_env() -> dict[str, str]:
    """The bundled server's environment: the stub must embed this very Python.

    LD_LIBRARY_PATH puts this interpreter's libpython first (another one can fail with
    `'_thread.RLock' object has no attribute '_recursion_count'`); PATH and PYTHONPATH make
    the stub import this environment's numpy and xgboost, not another Python's (a numpy 2
    there answered with empty outputs); model.py checks which files it imported.
    """
    env = dict(os.environ)
    libs = [
        str(sysconfig.get_config_var("LIBDIR")),
        str(pytriton_dir().parent / "nvidia_pytriton.libs"),
    ]
    env["LD_LIBRARY_PATH"] = join_paths(libs, env.get("LD_LIBRARY_PATH"))
    env["PATH"] = join_paths([str(Path(sys.executable).parent)], env.get("PATH"))
    roots = [str(Path(package_file(m)).parent.parent) for m in ("numpy", "xgboost")]
    env["PYTHONPATH"] = join_paths(list(dict.fromkeys(roots)), env.get("PYTHONPATH"))
    return env


def join_paths(first: list[str], rest: str | None) -> str:
    return os.pathsep.join([*first, *([rest] if rest else [])])


def server_argv(plan: ScorePlan, server: Server) -> list[str]:
    if server.kind == "pytriton":
        program = [str(pytriton_dir() / "tritonserver" / "bin" / "tritonserver")]
        repo = str(server.tmp / "models")
        extra = [
            f"--backend-directory={server.tmp / 'backends'}",
            f"--backend-config=python,shm-region-prefix-name={server.shm_prefix}",
        ]
    else:
        program = shlex.split(plan.tritonserver)
        repo = plan.model_repository
        extra = []
    return [
        *program,
        f"--model-repository={repo}",
        "--allow-http=false",
        "--allow-metrics=false",
        "--grpc-address=127.0.0.1",  # the task is the only client; others on the node are not
        f"--grpc-port={server.port}",
        "--exit-timeout-secs=5",
        "--log-verbose=0",
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> Callable[[], None]:
    """A preexec_fn: the kernel sends the server SIGTERM when this task dies, even by SIGKILL.

    prctl is looked up here, before the fork, so the child only makes the call.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the task died before the call took effect
            os._exit(1)

    return set_death_signal


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    try:
        with open(log, "ab") as out:
            return subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
                start_new_session=False,
            )
    except OSError as exc:
        raise TaskError(f"cannot start {argv[0]}: {exc.strerror}", "check --tritonserver") from exc


def start_server(plan: ScorePlan, index: int, tmp: Path, threads: int | None = None) -> Server:
    """Start tritonserver on a free port (another one if the bind fails); wait until ready.

    `threads` (the task's CPUs) sizes the model's threads: pytriton's model sets XGBoost's
    nthread; OMP_NUM_THREADS caps the OpenMP pools of the server's backends (FIL's on CPUs)."""
    kind = plan.server
    name = MODEL_NAME if kind == "pytriton" else plan.model_name
    server = Server(kind, name, tmp, shm_prefix(index))
    remove_shm(server.shm_prefix)  # left by an earlier attempt of this task that was killed
    env = dict(os.environ)
    if kind == "pytriton":
        write_backend_dir(tmp)
        write_model_repository(tmp, plan, threads)
        env = pytriton_env()
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    for _ in range(PORT_ATTEMPTS):
        server.port = free_port()
        server.proc = spawn(server_argv(plan, server), env, server.log)
        if wait_ready(server):
            return server
        if not port_taken(server):
            break
    server.check_alive()
    raise TaskError(f"tritonserver was not ready in {READY_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def port_taken(server: Server) -> bool:
    tail = server.log_tail().lower()
    return "address already in use" in tail or "failed to listen" in tail


def wait_ready(server: Server) -> bool:
    """True once server and model are ready; False when the process exited first.

    The gRPC client is made only once the port accepts connections: a channel whose first
    connection was refused backs off for seconds before it tries again.
    """
    import tritonclient.grpc as grpcclient  # type: ignore[import-untyped]

    close_client(server)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        check_stop()
        assert server.proc is not None
        if server.proc.poll() is not None:
            return False
        if server.client is None and port_open(server.port):
            server.client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.port}")
        if server.client is not None and model_ready(server):
            return True
        time.sleep(0.05)
    return False


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def model_ready(server: Server) -> bool:
    client = server.client
    try:  # with a timeout: the port may belong to another program that never answers
        return bool(
            client.is_server_ready(client_timeout=2.0)
            and client.is_model_ready(server.model_name, client_timeout=2.0)
        )
    except Exception:  # tritonclient's InferenceServerException while it starts
        return False


def close_client(server: Server) -> None:
    if server.client is not None:
        with contextlib.suppress(Exception):
            server.client.close()
        server.client = None


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, STOP_TIMEOUT_S to exit, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_server(server: Server) -> None:
    close_client(server)
    stop_process(server.proc)
    remove_shm(server.shm_prefix)


def connect_remote(plan: ScorePlan) -> Server:
    """A Triton someone else runs (`score --server grpc://HOST:PORT`, e.g. `hpcrun serve
    triton`): nothing to start or stop, only a client, once the model answers ready."""
    import tritonclient.grpc as grpcclient

    if not plan.server_url:
        raise TaskError("the plan's server is remote but names no address", "score again")
    server = Server("remote", plan.model_name, Path(tempfile.gettempdir()), "")
    server.client = grpcclient.InferenceServerClient(plan.server_url)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not model_ready(server):
        check_stop()
        if time.monotonic() > deadline:
            close_client(server)
            raise TaskError(
                f"the Triton server at {plan.server_url} did not report model "
                f"{plan.model_name!r} ready within {READY_TIMEOUT_S:.0f} s",
                "check the address (`hpcrun serve status`); the model's name goes after "
                "the port: grpc://HOST:PORT/MODEL",
            )
        time.sleep(0.2)
    return server


@contextlib.contextmanager
def serving(plan: ScorePlan, index: int, threads: int | None = None) -> Iterator[Server]:
    """A ready server; afterwards it is stopped and its temp dir and shared memory removed."""
    if plan.server == "remote":
        remote = connect_remote(plan)
        try:
            yield remote
        finally:
            close_client(remote)
        return
    base = Path(tempfile.gettempdir())
    sweep_stale(base)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=base))
    lock = claim(tmp, shm_prefix(index))
    server: Server | None = None
    try:
        server = start_server(plan, index, tmp, threads)
        yield server
    finally:
        if server is not None:
            stop_server(server)
        remove_shm(shm_prefix(index))
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(lock)


def claim(tmp: Path, prefix: str) -> int:
    """Lock `<tmp>/owner.lock` (naming the shared-memory prefix) for as long as the task lives.

    The kernel drops the lock when the task dies, even by SIGKILL, so `sweep_stale` can tell
    a dead task's leftovers from a live one's without trusting pids. The file gets its name
    only once locked, so a sweep never sees it unlocked while its task lives.
    """
    fd = os.open(tmp / ".owner.lock", os.O_CREAT | os.O_RDWR, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, prefix.encode())
    os.rename(tmp / ".owner.lock", tmp / "owner.lock")
    return fd


def sweep_stale(base: Path) -> None:
    """Remove the temp dirs and shared memory of tasks that were killed (SIGKILL, OOM)."""
    for tmp in base.glob(f"{TMP_PREFIX}*"):
        try:
            fd = os.open(tmp / "owner.lock", os.O_RDWR)
        except OSError:
            continue  # not ours, or not claimed yet
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its task is alive
        prefix = os.read(fd, 256).decode(errors="replace")
        if prefix.startswith("hpcrun_"):
            remove_shm(prefix)
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)
