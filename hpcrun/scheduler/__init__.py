"""The seam between what runs and where: `WorkSpec`, `JobRef`, `TaskState`, and the
`Scheduler` and `Workspace` protocols every backend implements.

A service (render, score, ...) describes its work as `WorkSpec`s and its files as paths in
a `Workspace`; it never writes a scheduler's syntax. Slurm (`hpcrun.slurm.scheduler`)
turns a WorkSpec into an sbatch script; Kubernetes will turn the same one into a Job.
What a task needs to know about itself comes in neutral environment variables
(`HPCRUN_TASK_INDEX`, `HPCRUN_JOB_ID`, `HPCRUN_NODE_NAME`, `HPCRUN_CPUS`), which each
scheduler sets.

Durations are seconds, never a scheduler's time grammar; `parse_duration` reads the
forms users type on the command line (`30`, `01:30:00`, `2-00:00:00`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from hpcrun.errors import UsageError
from hpcrun.transport.runner import Completed
from hpcrun.transport.workspace import FileInfo

TASK_INDEX_ENV = "HPCRUN_TASK_INDEX"  # the array index of this task (0 outside arrays)
JOB_ID_ENV = "HPCRUN_JOB_ID"  # the scheduler's id of this job
NODE_NAME_ENV = "HPCRUN_NODE_NAME"  # the scheduler's name of the node the task runs on
# The CPUs the scheduler gave the task on its node (`cpus_per_task`, or the whole node's
# with `exclusive`): what a task sizes its threads by. Empty where the scheduler does not say.
CPUS_ENV = "HPCRUN_CPUS"
# In a WorkSpec's log path, where each array task's index goes.
INDEX_PLACEHOLDER = "{index}"

_DURATION_RE = re.compile(r"^(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d{2}))?(?::(?P<c>\d{2}))?$")


class Progress(Protocol):
    """How long operations report progress; the CLI draws it, tests may record it."""

    def step(self, message: str) -> None: ...

    def advance(self, done: int, total: int, message: str) -> None: ...


class NullProgress:
    def step(self, message: str) -> None:
        pass

    def advance(self, done: int, total: int, message: str) -> None:
        pass


class After(StrEnum):
    """When a dependent job may start, relative to the jobs it names."""

    OK = "ok"  # every one of them succeeded
    ANY = "any"  # every one of them ended, however
    NOT_OK = "notok"  # at least one failed
    STARTED = "started"  # every one of them began running (a server its clients need)


class TaskState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED}


@dataclass(frozen=True)
class JobRef:
    """A submitted job (an array counts as one) as its scheduler names it."""

    id: str

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class TaskStatus:
    """One task of a job (the job itself when it is no array), as the scheduler sees it.

    `native` is the scheduler's own word for the state (Slurm's `TIMEOUT`), for messages;
    decisions use `state`.
    """

    ref: JobRef
    index: int | None
    state: TaskState
    native: str
    node: str | None = None
    exit_code: int | None = None
    job_name: str | None = None  # the name the job was submitted with, where known
    nodes: tuple[str, ...] = ()  # every node the task runs (or ran) on, by name
    held: bool = False  # pending, but the scheduler holds it after failing to launch it

    @property
    def name(self) -> str:
        return self.ref.id if self.index is None else f"{self.ref.id}[{self.index}]"


@dataclass(frozen=True)
class NodeTrouble:
    """A node that tasks run on but whose agent (Slurm's slurmd, a kubelet) is not
    answering, in words a status line can use: "n2, whose `why`: `then`; `hint`".

    The scheduler notices such a node only after its own timeout (Slurm: SlurmdTimeout,
    then DOWN); until then its tasks still look as if they ran. A backend that watches the
    agents' processes (the local cluster) knows at once.
    """

    node: str
    why: str  # "slurmd is not running (it exited, status -9)"
    then: str  # what the scheduler will do to the tasks there
    hint: str = ""  # what brings the node back, where the backend knows


@dataclass(frozen=True)
class WorkSpec:
    """One unit of work and the resources it needs, in no scheduler's terms.

    `argv` runs once per task; `script` (a bash script's text) may stand in its place.
    `array` runs one task per index, at most `max_parallel` at a time; each task's output
    goes to `log_path` with `{index}` replaced by its index. `after` holds the jobs this
    one waits for, `after_condition` how they must have ended. `image` is the container
    image for schedulers that need one (Kubernetes); `queue` a Slurm partition or a
    Kubernetes node pool. `cpus_per_task` is the CPUs each task gets (None: the scheduler's
    default, one on Slurm); `exclusive` gives each task (each array task) its nodes whole,
    every CPU of them; either way the task reads the count in `HPCRUN_CPUS`.
    """

    name: str
    argv: tuple[str, ...] = ()
    script: str | None = None
    image: str | None = None
    nodes: int = 1
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    gpus_per_task: int | None = None
    exclusive: bool = False
    array: tuple[int, ...] | None = None
    max_parallel: int | None = None
    after: tuple[JobRef, ...] = ()
    after_condition: After = After.OK
    time_limit_s: int | None = None
    queue: str | None = None
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    workdir: str | None = None
    log_path: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.argv, list):
            object.__setattr__(self, "argv", tuple(self.argv))
        if isinstance(self.array, list):
            object.__setattr__(self, "array", tuple(self.array))
        if isinstance(self.after, list):
            object.__setattr__(self, "after", tuple(self.after))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        if bool(self.argv) == (self.script is not None):
            raise UsageError(f"work {self.name!r} needs either a command or a script, not both")
        if self.array is not None and not self.array:
            raise UsageError(f"work {self.name!r} has an empty array")
        if self.array is not None and min(self.array) < 0:
            raise UsageError(f"work {self.name!r}: array indices must be 0 or more")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise UsageError(f"at most {self.max_parallel} tasks at a time: must be at least 1")
        if self.time_limit_s is not None and self.time_limit_s < 1:
            raise UsageError(f"time limit {self.time_limit_s} s: must be at least 1 s")

    def to_json(self) -> dict[str, Any]:
        """The spec as the state store keeps it, so a job the scheduler lost (a controller
        restart that purged it) can be submitted again exactly as it was."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["env"] = dict(self.env)
        data["after"] = [r.id for r in self.after]
        data["after_condition"] = str(self.after_condition)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkSpec:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["after"] = tuple(JobRef(str(i)) for i in values.get("after", ()))
        values["after_condition"] = After(values.get("after_condition", After.OK))
        return cls(**values)


class Scheduler(Protocol):
    """Submits work and reports on it; one backend call per method, whatever the count."""

    def submit(self, spec: WorkSpec) -> JobRef: ...

    def states(self, refs: Sequence[JobRef]) -> list[TaskStatus]:
        """Every task of these jobs the scheduler still knows; a job it has forgotten
        (ended long ago, or lost) has no entry."""
        ...

    def cancel(self, refs: Sequence[JobRef]) -> None: ...

    def release(self, tasks: Sequence[TaskStatus]) -> None:
        """Let tasks the scheduler holds (`TaskStatus.held`) start again."""
        ...

    def node_trouble(self, nodes: Sequence[str]) -> list[NodeTrouble]:
        """Those of `nodes` (where tasks run now) whose agent is not answering: a call or
        two to the backend, none for no nodes."""
        ...

    def wait(
        self,
        ref: JobRef,
        *,
        timeout_s: float | None = None,
        on_poll: Callable[[list[TaskStatus]], None] | None = None,
    ) -> list[TaskStatus]:
        """Block until every task of the job ended; return them with exit codes."""
        ...


class Workspace(Protocol):
    """The cluster's storage as services need it: paths there, as the cluster sees them.

    Every method is one round trip (one command or one SFTP call) on a remote cluster.
    `hpcrun.transport.workspace.RunnerWorkspace` implements it over any `Runner`.
    """

    @property
    def root(self) -> str:
        """hpcrun's own directory on the cluster, seen by every node."""
        ...

    def put(self, path: str, data: bytes) -> None:
        """Write atomically (readers never see half a file), making parent directories."""
        ...

    def put_private(self, path: str, text: str) -> None:
        """Write a file only its owner can read (0600 from the start): a password."""
        ...

    def get(self, path: str, offset: int = 0) -> bytes:
        """The file's bytes from `offset` on; `OSError` when it is not there."""
        ...

    def read_text(self, path: str) -> str:
        """The file as text; "" while it does not exist (a log of a job not started)."""
        ...

    def stat(self, path: str, *, head_bytes: int = 0) -> FileInfo | None:
        """Size, mtime and the first `head_bytes` of a file; None when it cannot be read."""
        ...

    def list(self, directory: str) -> list[str]:
        """The names in `directory`, sorted; [] when it does not exist."""
        ...

    def tails(self, directory: str, glob: str, nbytes: int) -> dict[str, bytes]:
        """The last `nbytes` of every file in `directory` matching `glob` (a PNG's IEND
        tells it was written to the end)."""
        ...

    def exists(self, path: str) -> bool: ...

    def remove(self, *paths: str) -> None:
        """Remove files and directory trees; paths that are not there are fine."""
        ...

    def copy(self, source: str, target: str) -> None:
        """Copy a file within the cluster's storage, making the target's directory."""
        ...

    def make_dirs(self, *paths: str) -> None: ...

    def make_writable_dir(self, path: str, named: str) -> None:
        """Create `path` and prove a file can be written there, before any job is
        submitted to write into it; `named` is how the user gave it (`--output X`)."""
        ...

    def which(self, programs: Sequence[str]) -> dict[str, str | None]:
        """Where each program is on the cluster's PATH (None when it is not there)."""
        ...

    def run(self, argv: Sequence[str], *, timeout_s: float | None = 60.0) -> Completed:
        """One small command where the files are (a probe, an inspection)."""
        ...


def parse_duration(text: str, *, option: str = "--time") -> int | None:
    """Seconds in a time limit as users type it: minutes (`30`), `MM:SS`, `HH:MM:SS`,
    `D-HH`, `D-HH:MM`, `D-HH:MM:SS` (the forms Slurm users know); None for `UNLIMITED`."""
    if text.strip().upper() in {"UNLIMITED", "INFINITE"}:
        return None
    found = _DURATION_RE.fullmatch(text.strip())
    if found is None:
        raise UsageError(
            f"{option} {text!r} is not a time limit",
            "use minutes (30), HH:MM:SS (01:30:00) or D-HH:MM:SS (2-00:00:00)",
        )
    days, a, b, c = found["days"], found["a"], found["b"], found["c"]
    parts = [int(a), *(int(p) for p in (b, c) if p is not None)]
    if days is not None:
        hours, minutes, seconds = [*parts, 0, 0][:3]
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif len(parts) == 1:
        total = parts[0] * 60
    elif len(parts) == 2:
        total = parts[0] * 60 + parts[1]
    else:
        total = parts[0] * 3600 + parts[1] * 60 + parts[2]
    if total < 1:
        raise UsageError(f"{option} {text!r}: the time limit must be at least a second")
    return total
