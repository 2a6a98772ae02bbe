"""What "idle" means, as a pure function of facts any side can gather.

Idle time is now minus the latest of: the end of the last job (Slurm accounting when the
cluster keeps it, else the ended jobs the controller still lists, MinJobAge: 5 minutes by
default) and the moment the cluster came up; it is 0 while any job is pending, running,
completing or otherwise not ended (a queued job is work asked for). Without accounting a
job that ended earlier than the controller remembers is invisible, so the estimate also
takes the latest activity the caller knows of (hpcrun's own records; the guard's memory
of the last job it saw) and says it is approximate. Without an answer from Slurm it is
unknown, and nothing may be taken down on an unknown.

What is asked of Slurm, and which of its states mean a job ended, is hpcrun.slurm's
(`IDLE_QUERIES`): hpcrun's SlurmClient asks it directly, the guard gets it as data.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# (job id, Slurm state, end time in epoch seconds or None, whether the job has ended)
if TYPE_CHECKING:  # an alias only: `tuple[...] | None` is not Python 3.7's
    JobTime = tuple[str, str, float | None, bool]


def parse_job_times(text: str, ended_states: Collection[str]) -> list[JobTime]:
    """Lines of `ID|STATE|END` (END in epoch seconds, else not known); a state's first
    word counts (`CANCELLED by 0`)."""
    found: list[JobTime] = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0]:
            continue
        state = parts[1].split()[0].rstrip("+").upper() if parts[1].strip() else "UNKNOWN"
        end = parts[2].strip()
        found.append(
            (parts[0], state, float(end) if end.isdigit() else None, state in ended_states)
        )
    return found


@dataclass(frozen=True)
class IdleFacts:
    """What is known of a cluster at `now_s`. `queue` is squeue's answer (None: Slurm did
    not answer, `error` says why); `accounting` is sacct's (None: no accounting);
    `up_since_s` when the cluster came up; `recorded_s` the latest activity the caller
    knows of otherwise (used only without accounting)."""

    now_s: float
    queue: Sequence[JobTime] | None
    accounting: Sequence[JobTime] | None = None
    up_since_s: float | None = None
    recorded_s: float | None = None
    error: str = ""


@dataclass(frozen=True)
class Idle:
    known: bool
    idle_s: float | None  # 0 while a job is active; None when unknown
    active: dict[str, int]  # active jobs by lower-case state: {"running": 2}
    last_job_id: str | None = None
    last_end_s: float | None = None
    since_s: float | None = None  # idle since (None while busy or unknown)
    approximate: bool = False  # no accounting: a job ended long ago may be unseen
    reason: str = ""  # why it is unknown

    @property
    def busy(self) -> bool:
        return bool(self.active)

    @property
    def minutes(self) -> int | None:
        return None if self.idle_s is None else int(self.idle_s // 60)

    def at_least(self, minutes: float) -> bool:
        """Idle `minutes` or longer (0: no job now); never on an unknown."""
        return self.known and not self.busy and (self.idle_s or 0.0) >= minutes * 60

    def active_text(self) -> str:
        """`2 jobs running`, `1 job pending`, `3 jobs: 2 running, 1 pending`."""
        total = sum(self.active.values())
        parts = [f"{n} {state}" for state, n in sorted(self.active.items(), key=_by_count)]
        plural = "job" if total == 1 else "jobs"
        if len(parts) == 1:
            return f"{total} {plural} {parts[0].split(' ', 1)[1]}"
        return f"{total} {plural}: {', '.join(parts)}"

    def text(self, now_s: float | None = None) -> str:
        """`no job for 23 min (last job 123 ended 12:01)`, `no (2 jobs running)`,
        `unknown (...)`: what status, clusters and the guard's log say."""
        if not self.known:
            return f"unknown ({self.reason})"
        if self.busy:
            return f"no ({self.active_text()})"
        span = duration_text(self.idle_s or 0.0)
        if self.last_end_s is not None and self.last_end_s == self.since_s:
            what = f"last job {self.last_job_id} ended {clock_text(self.last_end_s, now_s)}"
        elif self.since_s is not None:
            what = f"no job seen since {clock_text(self.since_s, now_s)}"
        else:
            what = ""
        if self.approximate:
            what += ("; " if what else "") + "no Slurm accounting: estimated"
        return f"no job for {span}" + (f" ({what})" if what else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "known": self.known,
            "idle": None if not self.known else not self.busy,
            "idle_s": None if self.idle_s is None else round(self.idle_s, 1),
            "idle_minutes": self.minutes,
            "active": dict(self.active),
            "last_job_id": self.last_job_id,
            "last_job_end": self.last_end_s,
            "idle_since": self.since_s,
            "approximate": self.approximate,
            "reason": self.reason or None,
            "text": self.text(),
        }


def _by_count(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


def compute_idle(facts: IdleFacts) -> Idle:
    """How long the cluster of `facts` has had no job (see the module docstring)."""
    if facts.queue is None:
        return Idle(False, None, {}, reason=facts.error or "Slurm did not answer")
    active: dict[str, int] = {}
    for _, state, _end, over in facts.queue:
        if not over:
            key = state.lower()
            active[key] = active.get(key, 0) + 1
    if active:
        return Idle(True, 0.0, active)
    ends = [
        (end, job_id)
        for job_id, _, end, over in [*facts.queue, *(facts.accounting or [])]
        if over and end is not None
    ]
    last_end, last_job = max(ends) if ends else (None, None)
    approximate = facts.accounting is None
    marks = [t for t in (last_end, facts.up_since_s) if t is not None]
    if approximate and facts.recorded_s is not None:
        marks.append(facts.recorded_s)
    if not marks:
        return Idle(
            False, None, {}, reason="no job ended that Slurm remembers and no start time known"
        )
    since = max(marks)
    return Idle(
        True,
        max(0.0, facts.now_s - since),
        {},
        last_job_id=last_job,
        last_end_s=last_end,
        since_s=since,
        approximate=approximate,
    )


def duration_text(seconds: float) -> str:
    """`23 min`, `5 h 3 min`, `2 d 4 h`."""
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def clock_text(epoch_s: float, now_s: float | None = None) -> str:
    """`12:01` today (local time), `Dec 02 12:01` on another day."""
    now = time.localtime(time.time() if now_s is None else now_s)
    then = time.localtime(epoch_s)
    if then[:3] == now[:3]:
        return time.strftime("%H:%M", then)
    return time.strftime("%b %d %H:%M", then)
