"""`JobSpec`: one description of a Slurm job, turned into sbatch scripts and salloc/srun argv.

Every hpcrun workload describes what it runs as a `JobSpec`; this module is the only place
that turns one into Slurm syntax. The conversions are pure (no I/O) so golden files can pin
them, and nothing reaches a shell unquoted: argv lists stay lists, and the batch script's
command line is built with `shlex.join`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from hpcrun.errors import UsageError
from hpcrun.scheduler import CPUS_ENV, JOB_ID_ENV, NODE_NAME_ENV, TASK_INDEX_ENV

# Slurm's own grammar for --array: "0-999", "1,3,5-7", "0-239:2", optionally "%16".
_ARRAY_RE = re.compile(r"^\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?$")
# --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS, or UNLIMITED.
_TIME_RE = re.compile(r"^(\d+|\d+:\d{2}|\d+:\d{2}:\d{2}|\d+-\d+(:\d{2}){0,2}|UNLIMITED|INFINITE)$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What a task of the neutral Scheduler reads instead of Slurm's own variables.
NEUTRAL_ENV = [
    (TASK_INDEX_ENV, '"${SLURM_ARRAY_TASK_ID:-0}"'),
    (JOB_ID_ENV, '"$SLURM_JOB_ID"'),
    (NODE_NAME_ENV, '"${SLURMD_NODENAME:-$(hostname)}"'),
    # --cpus-per-task N gives SLURM_CPUS_PER_TASK; --exclusive (or neither) only
    # SLURM_CPUS_ON_NODE, the CPUs the job holds on this node (all of them when exclusive;
    # with CR_Core it may exceed N, rounded up to whole cores, hence PER_TASK first).
    (CPUS_ENV, '"${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-}}"'),
]


@dataclass(frozen=True)
class JobSpec:
    """What to run and the resources it needs; immutable so plans can be shared and hashed.

    `command` is an argv list. A batch job runs it once, on the first node of the
    allocation, exactly as `sbatch --wrap` does; put `srun` in front to run on every node.
    """

    command: tuple[str, ...]
    name: str = "hpcrun"
    nodes: int = 1
    ntasks_per_node: int | None = None
    cpus_per_task: int | None = None
    exclusive: bool = False
    gpus_per_node: int | None = None
    gpus: int | None = None
    gpus_per_task: int | None = None
    array: str | None = None
    dependency: str | None = None
    time_limit: str | None = None
    partition: str | None = None
    # Copied into a read-only mapping; left out of the hash (equality still compares it).
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    workdir: str | None = None
    output: str | None = None
    error: str | None = None
    # Export HPCRUN_TASK_INDEX / HPCRUN_JOB_ID / HPCRUN_NODE_NAME from Slurm's variables
    # (jobs the neutral Scheduler submits; their scripts read no SLURM_*).
    neutral_env: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.command, list):  # accept lists, keep the dataclass hashable
            object.__setattr__(self, "command", tuple(self.command))
        # A copy: the caller's dict changing later must not change a validated spec.
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        self.validate()

    def to_json(self) -> dict[str, Any]:
        """Plain data for the state store (`asdict` cannot copy the read-only env)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["command"] = list(self.command)
        data["env"] = dict(self.env)
        return data

    def validate(self) -> None:
        """Reject what Slurm would reject, earlier and with a message that names the field."""
        if self.nodes < 1:
            raise UsageError(f"nodes must be at least 1 (got {self.nodes})")
        for label, value in (
            ("ntasks-per-node", self.ntasks_per_node),
            ("cpus-per-task", self.cpus_per_task),
            ("gpus-per-node", self.gpus_per_node),
            ("gpus", self.gpus),
            ("gpus-per-task", self.gpus_per_task),
        ):
            if value is not None and value < 1:
                raise UsageError(f"{label} must be at least 1 (got {value})")
        if self.array is not None:
            problem = array_problem(self.array)
            if problem is not None:
                raise UsageError(
                    f"--array {self.array!r} {problem}",
                    "use e.g. 0-999, 1,3,5-7, 0-99:2 or 0-239%16 (at most 16 at a time)",
                )
        if self.time_limit is not None and not _TIME_RE.fullmatch(self.time_limit):
            raise UsageError(
                f"--time {self.time_limit!r} is not a Slurm time limit",
                "use minutes (30), HH:MM:SS (01:30:00) or D-HH:MM:SS (2-00:00:00)",
            )
        for key in self.env:
            if not _ENV_NAME_RE.fullmatch(key):
                raise UsageError(f"environment variable name {key!r} is not valid")
        single_line = {
            "job name": self.name,
            "array": self.array,
            "dependency": self.dependency,
            "partition": self.partition,
            "workdir": self.workdir,
            "output": self.output,
            "error": self.error,
        }
        for label, text in single_line.items():
            # A newline in an #SBATCH value would start a line of its own: a shell command.
            if text is not None and ("\n" in text or "\r" in text):
                raise UsageError(f"the {label} must be a single line (got {text!r})")
        # No argv, environment or script can carry a NUL: exec refuses it and bash drops
        # it, so the job would run something other than what was written.
        for label, text in {
            **single_line,
            "time limit": self.time_limit,
            **{f"command word {i + 1}": word for i, word in enumerate(self.command)},
            **{f"value of environment variable {k}": v for k, v in self.env.items()},
        }.items():
            if text is not None and "\0" in text:
                raise UsageError(f"the {label} contains a NUL character (got {text!r})")

    @property
    def default_output(self) -> str:
        """Where stdout goes when no `output` is given: named so `hpcrun logs` can find it."""
        return "hpcrun-%A_%a.out" if self.array else "hpcrun-%j.out"

    def resource_options(self) -> list[str]:
        """The options salloc, sbatch and srun share, in a fixed order (golden files rely on it)."""
        opts = [f"--job-name={self.name}", f"--nodes={self.nodes}"]
        if self.ntasks_per_node is not None:
            opts.append(f"--ntasks-per-node={self.ntasks_per_node}")
        if self.cpus_per_task is not None:
            opts.append(f"--cpus-per-task={self.cpus_per_task}")
        if self.exclusive:
            opts.append("--exclusive")
        if self.gpus_per_node is not None:
            opts.append(f"--gpus-per-node={self.gpus_per_node}")
        if self.gpus is not None:
            opts.append(f"--gpus={self.gpus}")
        if self.gpus_per_task is not None:
            opts.append(f"--gpus-per-task={self.gpus_per_task}")
        if self.dependency:
            opts.append(f"--dependency={self.dependency}")
        if self.time_limit:
            opts.append(f"--time={self.time_limit}")
        if self.partition:
            opts.append(f"--partition={self.partition}")
        return opts

    def sbatch_options(self) -> list[str]:
        opts = self.resource_options()
        if self.array:
            opts.append(f"--array={self.array}")
        if self.workdir:
            opts.append(f"--chdir={self.workdir}")
        opts.append(f"--output={self.output or self.default_output}")
        if self.error:
            opts.append(f"--error={self.error}")
        return opts

    def _require_command(self) -> None:
        # Only an allocation (`salloc --no-shell`, whose steps come later) has no command.
        if not self.command:
            raise UsageError("the job has no command", "put the command after `--`")
        if self.command[0].startswith("-"):
            # After srun's or salloc's options a leading `-` would be read as one more.
            raise UsageError(
                f"the command {self.command[0]!r} starts with '-': Slurm would read it as "
                "an option",
                "name the program by its path (e.g. ./-prog)",
            )

    def to_sbatch_script(self) -> str:
        """The batch script `sbatch` reads on stdin; one `#SBATCH` line per option.

        Assembled here, not from a jinja2 template as other generated files are: every
        submission writes one, and importing jinja2 was ~50 ms of a ~270 ms `hpcrun
        submit`. Golden files pin it all the same (tests/golden/sbatch_*.sh)."""
        self._require_command()
        lines = ["#!/bin/bash", "# Generated by hpcrun. Submit with: sbatch < this-file"]
        lines += [f"#SBATCH {_directive(option)}" for option in self.sbatch_options()]
        lines += [f"export {k}={v}" for k, v in (NEUTRAL_ENV if self.neutral_env else [])]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(self.env.items())]
        lines.append(shlex.join(self.command))
        return "\n".join(lines) + "\n"

    def to_salloc_argv(self, *, no_shell: bool = True) -> list[str]:
        """An allocation; step-less (`--no-shell`) by default, as job expansion requires."""
        if not no_shell:
            self._require_command()
        argv = ["salloc", *(["--no-shell"] if no_shell else []), *self.resource_options()]
        return argv if no_shell else [*argv, *self.command]

    def to_srun_argv(self, *, jobid: str | None = None) -> list[str]:
        """A step: inside allocation `jobid` when given, else a new allocation of its own."""
        self._require_command()
        opts = self.resource_options()
        if self.workdir:
            opts.append(f"--chdir={self.workdir}")
        if jobid is not None:
            # Inside an existing allocation, job-level options (name, dependency) do not apply.
            opts = [o for o in opts if not o.startswith(("--job-name=", "--dependency="))]
            opts.insert(0, f"--jobid={jobid}")
        env_prefix = _env_argv(self.env)
        return [*env_prefix, "srun", *opts, *self.command]


def _directive(option: str) -> str:
    """Quote an option's value for an `#SBATCH` line.

    sbatch splits these lines on whitespace, ends them at an unquoted `#`, pairs quotes and
    drops backslashes; inside double quotes a backslash escapes the next character.
    """
    key, sep, value = option.partition("=")
    if not sep or not any(ch.isspace() or ch in "#'\"\\" for ch in value):
        return option
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{key}="{escaped}"'


def _env_argv(env: Mapping[str, str]) -> Sequence[str]:
    if not env:
        return []
    return ["env", *(f"{k}={v}" for k, v in sorted(env.items()))]


def array_problem(text: str) -> str | None:
    """What is wrong with an --array value, in words; None when Slurm will take it.
    Checked here because sbatch says only "Invalid job array specification"."""
    if not _ARRAY_RE.fullmatch(text):
        return "is not a Slurm array range"
    ranges, _, limit = text.partition("%")
    if limit and int(limit) < 1:
        return f"runs at most {limit} tasks at a time: it must be at least 1"
    for part in ranges.split(","):
        bounds, _, step = part.partition(":")
        first, _, last = bounds.partition("-")
        if last and int(last) < int(first):
            return f"is reversed: {first}-{last} ends before it starts (write {last}-{first})"
        if step and int(step) < 1:
            return f"steps by {step}: a step must be at least 1"
    return None


def array_range(task_ids: Sequence[int], max_parallel: int | None) -> str:
    """Slurm's --array value for these task ids, runs of consecutive ids collapsed."""
    parts: list[str] = []
    ids = sorted(set(task_ids))
    run_start = prev = ids[0]
    for task in [*ids[1:], None]:
        if task is not None and task == prev + 1:
            prev = task
            continue
        parts.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
        if task is not None:
            run_start = prev = task
    return ",".join(parts) + (f"%{max_parallel}" if max_parallel else "")
