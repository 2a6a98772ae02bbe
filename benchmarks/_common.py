"""What every benchmark shares: a throw-away local cluster, timing, the peers venv, reports.

Each benchmark script measures hpcrun and its yardstick in the same run, on the same
cluster, and prints the ratio on its last line (`RATIO <figure> <value> goal <op> <goal>
PASS|MISS`), so `make bench` output can be grepped. The cluster lives in a fresh
`HPCRUN_HOME` under /tmp and is always torn down (`hpcrun down --yes --purge`), on
success, on error and on Ctrl-C; if that fails, the processes still running from that
home are ended by PID.

Tools hpcrun is compared with (aws-parallelcluster's `pcluster`, submitit) are not
dependencies of hpcrun: they go into a venv of their own, benchmarks/.peers-venv, created
on first use.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
PEERS_VENV = BENCH_DIR / ".peers-venv"
CLUSTER_NAME = "bench"
# Away from the 16800+ block `hpcrun create` picks by default, so a developer's own cluster
# and a benchmark run can share the machine.
PORT_BASE = 17600


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the report (or the JSON)."""
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


def hpcrun_exe() -> str:
    """The `hpcrun` console script next to the running interpreter (the project venv)."""
    beside = Path(os.path.abspath(sys.executable)).parent / "hpcrun"
    if beside.exists():
        return str(beside)
    found = shutil.which("hpcrun")
    if found is None:
        raise SystemExit("hpcrun is not installed: run `pip install -e .` in the project venv")
    return found


# arguments -------------------------------------------------------------------------------


def parse_args(
    description: str, add: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of the table")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the goal is missed")
    parser.add_argument("--repeats", type=int, default=None,
                        help="override the number of timed runs")
    if add is not None:
        add(parser)
    return parser.parse_args()


# timing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    samples_s: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def min(self) -> float:
        return min(self.samples_s)

    @property
    def max(self) -> float:
        return max(self.samples_s)

    def to_json(self) -> dict[str, Any]:
        return {"median_s": self.median, "min_s": self.min, "max_s": self.max,
                "samples_s": list(self.samples_s)}

    def describe(self) -> str:
        return (
            f"{fmt_s(self.median)} (min {fmt_s(self.min)}, max {fmt_s(self.max)}, "
            f"n={len(self.samples_s)})"
        )


def cap_repeats(repeats: int, contenders: int, warmup: int, capacity: int, what: str) -> int:
    """Lower `repeats` so contenders * (warmup + repeats) submissions fit in `capacity`."""
    most = capacity // contenders - warmup
    if repeats > most:
        log(f"only {capacity} {what} fit in the controller: {most} timed runs, not {repeats}")
        return max(1, most)
    return repeats


def measure(
    fn: Callable[[], Any],
    repeats: int,
    *,
    warmup: int = 0,
    after: Callable[[Any], None] | None = None,
) -> Timing:
    """Time `fn()` `repeats` times after `warmup` untimed calls; `after(result)` runs
    untimed after every call (e.g. to cancel what it submitted)."""
    samples = []
    for index in range(warmup + repeats):
        started = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - started
        if after is not None:
            after(result)
        if index >= warmup:
            samples.append(elapsed)
    return Timing(tuple(samples))


def median_time(fn: Callable[[], Any], repeats: int, *, warmup: int = 0) -> float:
    """Median wall seconds of `repeats` calls of `fn()`."""
    return measure(fn, repeats, warmup=warmup).median


def interleaved(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int,
    *,
    warmup: int = 1,
    after: Callable[[str, Any], None] | None = None,
) -> dict[str, Timing]:
    """Time several contenders in turn (A B A B ...), so a machine that gets busier or
    quieter during the run shifts every contender alike, not whichever ran last."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for index in range(warmup + repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            result = fn()
            elapsed = time.perf_counter() - started
            if after is not None:
                after(name, result)
            if index >= warmup:
                samples[name].append(elapsed)
    return {name: Timing(tuple(values)) for name, values in samples.items()}


def fmt_s(seconds: float) -> str:
    if abs(seconds) < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if abs(seconds) < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def end_peer(proc: subprocess.Popen[str]) -> None:
    """End a long-lived peer process that reads commands on stdin: close its stdin (its
    cue to exit), wait, and kill it if it has not gone within 30 s."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_quiet(
    argv: Sequence[str], env: Mapping[str, str] | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output, fail loudly (with its stderr) when it fails."""
    done = subprocess.run(list(argv), env=dict(env) if env is not None else None,
                          capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr or done.stdout}"
        )
    return done


# the cluster -----------------------------------------------------------------------------


@dataclass
class BenchCluster:
    """A running local cluster in its own `HPCRUN_HOME`."""

    home: Path
    name: str
    env: dict[str, str]  # os.environ + HPCRUN_HOME + SLURM_CONF: for hpcrun and raw Slurm
    slurm_conf: str
    create_s: float

    def backend(self) -> Any:
        from hpcrun.backends import open_backend
        from hpcrun.state import StateStore

        store = StateStore(self.home)
        record = store.cluster(self.name)
        if record is None:
            raise RuntimeError(f"cluster {self.name!r} is not recorded under {self.home}")
        return open_backend(record, store)

    def client(self) -> Any:
        """hpcrun's `SlurmClient` for this cluster, in this process."""
        return self.backend().slurm()

    def hpcrun(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [hpcrun_exe(), *args]
        if check:
            return run_quiet(argv, self.env)
        return subprocess.run(argv, env=self.env, capture_output=True, text=True)

    def slurm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_quiet(args, self.env)

    def config(self) -> dict[str, str]:
        """slurmctld's running configuration (`scontrol show config`) as key -> value."""
        text = self.slurm("scontrol", "show", "config").stdout
        return {
            key.strip(): value.strip()
            for key, sep, value in (line.partition("=") for line in text.splitlines())
            if sep
        }

    def array_capacity(self, tasks: int) -> int:
        """How many arrays of `tasks` tasks one run may submit. Every task counts against
        MaxJobCount from submission until MinJobAge after it ended, cancelled or not;
        past the limit sbatch blocks, retrying, for minutes."""
        max_jobs = int(self.config().get("MaxJobCount", "10000"))
        return max(1, (max_jobs - tasks) // tasks)

    def cancel(self, *job_ids: str) -> None:
        """Cancel jobs and wait until the controller has let go of them, so the next
        measurement does not share the controller with 1000 dying tasks."""
        ids = [j for j in job_ids if j]
        if not ids:
            return
        subprocess.run(["scancel", *ids], env=self.env, capture_output=True)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            done = subprocess.run(
                ["squeue", "-h", "-j", ",".join(ids), "-t", "PD,R,CG,CF,S", "-o", "%i"],
                env=self.env, capture_output=True, text=True,
            )
            if done.returncode != 0 or not done.stdout.strip():
                return
            time.sleep(0.05)

    def drain_queue(self, timeout_s: float = 60.0) -> None:
        """Wait until no job of this cluster is pending, running or completing."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env,
                                  capture_output=True, text=True)
            if done.returncode == 0 and not done.stdout.strip():
                return
            time.sleep(0.1)
        log(f"queue still busy after {timeout_s:g} s")


class _Interrupted(BaseException):
    pass


def fresh_bytecode() -> None:
    """Bring hpcrun's bytecode up to date before timing, as installing it does: where
    PYTHONDONTWRITEBYTECODE is set, every module edited since its last compile is
    compiled from source again by every hpcrun process (~25 ms for a dozen modules),
    which times the edit rather than hpcrun."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "hpcrun")],
                   check=True, capture_output=True)


def run_main(main: Callable[[], None]) -> None:
    """Run a benchmark's main (hpcrun's bytecode brought up to date first); Ctrl-C or
    SIGTERM end it with status 130 and no traceback (the cluster has been torn down by
    then)."""
    fresh_bytecode()
    try:
        main()
    except (KeyboardInterrupt, _Interrupted):
        log("interrupted")
        sys.exit(130)


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    raise _Interrupted(f"signal {signum}")


@contextlib.contextmanager
def bench_cluster(nodes: int = 4, *, port_base: int = PORT_BASE, name: str = CLUSTER_NAME,
                  extra_args: Sequence[str] = ()) -> Iterator[BenchCluster]:
    """Create a local cluster in a fresh temp `HPCRUN_HOME` with the hpcrun CLI; always
    tear it down (also on errors, Ctrl-C and SIGTERM) and remove the home."""
    # A short path: unix sockets under it are limited to 108 bytes.
    home = Path(tempfile.mkdtemp(prefix="hrb", dir="/tmp"))
    env = {**os.environ, "HPCRUN_HOME": str(home)}
    env.pop("SLURM_CONF", None)
    env.pop("HPCRUN_CLUSTER", None)
    previous_term = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        log(f"creating cluster {name!r} ({nodes} nodes, ports {port_base}+) in {home}")
        started = time.perf_counter()
        done = subprocess.run(
            [hpcrun_exe(), "create", "--name", name, "--nodes", str(nodes),
             "--port-base", str(port_base), "--json", *extra_args],
            env=env, capture_output=True, text=True,
        )
        create_s = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(
                f"hpcrun create failed ({done.returncode}):\n{done.stderr}{done.stdout}"
            )
        status = json.loads(done.stdout)
        default_conf = home / "clusters" / name / "etc" / "slurm.conf"
        slurm_conf = status.get("slurm_conf") or str(default_conf)
        env["SLURM_CONF"] = slurm_conf
        log(f"cluster up in {create_s:.1f} s")
        yield BenchCluster(home=home, name=name, env=env, slurm_conf=slurm_conf, create_s=create_s)
    finally:
        # A second Ctrl-C must not leave daemons behind half-way through the teardown.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            _teardown(home, name, env)
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)


def _teardown(home: Path, name: str, env: Mapping[str, str]) -> None:
    log(f"tearing down cluster {name!r}")
    try:
        done = subprocess.run(
            [hpcrun_exe(), "down", "--cluster", name, "--yes", "--purge"],
            env=dict(env), capture_output=True, text=True, timeout=150,
        )
        if done.returncode != 0:
            log(f"hpcrun down exited {done.returncode}: {done.stderr.strip()}")
    except subprocess.TimeoutExpired:
        log("hpcrun down did not finish within 150 s")
    leftover = _processes_under(home)
    for pid in leftover:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if leftover:
        log(f"killed {len(leftover)} leftover process(es) from {home}: {leftover}")
    shutil.rmtree(home, ignore_errors=True)


def _processes_under(home: Path) -> list[int]:
    """PIDs whose command line or environment names `home` (slurmdbd's command line does
    not: it finds its config through SLURM_CONF): only processes this run started."""
    marker = str(home).encode()
    mine = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == mine:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in cmdline or marker + b"/" in environ or b"=" + marker + b"\0" in environ:
            found.append(int(entry.name))
    return found


# the peers venv --------------------------------------------------------------------------


def peers_python(packages: Sequence[str], probe: str) -> tuple[str | None, str]:
    """Python of benchmarks/.peers-venv with `packages` installed (installing on first
    use); `probe` is code that must run there (e.g. `import submitit`). Returns
    (python, "") or (None, why it could not be had)."""
    python = PEERS_VENV / "bin" / "python"
    if python.exists() and _probe(python, probe):
        return str(python), ""
    try:
        if not python.exists():
            log(f"creating {PEERS_VENV.relative_to(ROOT)} (one time)")
            base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
            run_quiet([base, "-m", "venv", str(PEERS_VENV)])
        where = PEERS_VENV.relative_to(ROOT)
        log(f"installing {' '.join(packages)} into {where} (one time, ~1 min)")
        run_quiet([str(python), "-m", "pip", "install", "--quiet", *packages], timeout=900)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return None, f"could not install {' '.join(packages)}: {str(exc).strip().splitlines()[-1]}"
    if not _probe(python, probe):
        return None, f"{' '.join(packages)} installed but `{probe}` fails in {PEERS_VENV}"
    return str(python), ""


def _probe(python: Path, code: str) -> bool:
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return done.returncode == 0


# the report ------------------------------------------------------------------------------


@dataclass
class Goal:
    """What PASS means. `op` is "<=", "<" or "none" (report only: INFO); `value` is what
    is compared with `target`:
    the hpcrun / yardstick ratio by default, or an absolute figure (`unit`="s")."""

    target: float
    op: str = "<="
    unit: str = ""  # "" for a ratio, "s" when the value is hpcrun's seconds
    checks: dict[str, bool] = field(default_factory=dict)  # further conditions, all must hold

    def met(self, value: float | None) -> bool:
        if value is None:
            return False
        ok = value <= self.target if self.op == "<=" else value < self.target
        return ok and all(self.checks.values())


def report(
    figure: str,
    hpcrun_s: float | None,
    yardstick_s: float | None,
    goal_ratio: float | None,
    extra: Mapping[str, Any] | None = None,
    *,
    as_json: bool = False,
    strict: bool = False,
    hpcrun_label: str = "hpcrun",
    yardstick_label: str = "yardstick",
    goal: Goal | None = None,
    notes: Sequence[str] = (),
) -> bool:
    """Print the figure: a table (or, with `as_json`, one JSON object), ending with the
    line `RATIO <figure> <value> goal <op> <goal> PASS|MISS|SKIP` (SKIP: no yardstick).

    The value is hpcrun_s / yardstick_s against `goal_ratio`, unless `goal` says
    otherwise (status_scale: hpcrun's own seconds against an absolute budget). `extra`
    maps labels to further figures (floats are seconds) or text. Returns whether the
    goal was met; with `strict`, a miss exits 1 after printing.
    """
    extra = dict(extra or {})
    ratio = (hpcrun_s / yardstick_s) if hpcrun_s is not None and yardstick_s else None
    if goal is None:
        goal = Goal(goal_ratio if goal_ratio is not None else float("nan"))
    value = hpcrun_s if goal.unit == "s" else ratio
    passed = goal.met(value) if goal_ratio is not None or goal.unit else False
    # No yardstick (a peer tool that would not install): nothing to compare, not a miss.
    verdict = "PASS" if passed else "SKIP" if value is None else "MISS"
    if goal.op == "none":  # a figure to report (frame_time), not to pass or miss
        verdict = "INFO"
    value_text = "n/a" if value is None else f"{value:.3f}"
    goal_text = f"{goal.target:g}{goal.unit}" if goal.unit else f"{goal.target:g}"
    if goal.op == "none":
        goal_text = "-"
    ratio_line = f"RATIO {figure} {value_text} goal {goal.op} {goal_text} {verdict}"

    if as_json:
        print(json.dumps({
            "figure": figure,
            "hpcrun_s": hpcrun_s,
            "hpcrun_label": hpcrun_label,
            "yardstick_s": yardstick_s,
            "yardstick_label": yardstick_label,
            "ratio": ratio,
            "value": value,
            "goal": {"op": goal.op, "target": goal.target, "unit": goal.unit or "ratio",
                     "checks": goal.checks},
            "pass": passed,
            "verdict": verdict,
            "extra": {k: (v.to_json() if isinstance(v, Timing) else v) for k, v in extra.items()},
            "notes": list(notes),
            "ratio_line": ratio_line,
        }, indent=2))
    else:
        rows: list[tuple[str, str]] = [
            (hpcrun_label, "n/a" if hpcrun_s is None else fmt_s(hpcrun_s)),
            (yardstick_label, "n/a" if yardstick_s is None else fmt_s(yardstick_s)),
            ("ratio hpcrun / yardstick", "n/a" if ratio is None else f"{ratio:.3f}x"),
        ]
        for label, item in extra.items():
            if isinstance(item, Timing):
                text = item.describe()
            elif isinstance(item, float):
                text = fmt_s(item)
            else:
                text = str(item)
            rows.append((label, text))
        for label, ok in goal.checks.items():
            rows.append((f"check: {label}", "yes" if ok else "NO"))
        width = max(len(label) for label, _ in rows)
        print(f"== {figure} ==")
        for label, text in rows:
            print(f"  {label.ljust(width)}  {text}")
        for note in notes:
            print(f"  note: {note}")
        print(ratio_line)
    sys.stdout.flush()
    if strict and verdict == "MISS":
        sys.exit(1)
    return passed
