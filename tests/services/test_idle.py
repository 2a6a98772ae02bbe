"""The idle computation as a pure function of facts (hpcrun.node.idle.compute), what
`down --if-idle` decides from it, and the two parsers of Slurm's answer agreeing.

The facts themselves come from a real Slurm cluster in tests/e2e/test_idle_guard.py and
tests/node/test_idle_guard.py; here they are written down."""

from __future__ import annotations

import json
import time

import pytest

from hpcrun.node.idle import compute
from hpcrun.node.idle.compute import Idle, IdleFacts, compute_idle, duration_text
from hpcrun.node.idle.install import PLAN_KEYS
from hpcrun.services.idle import down_decision
from hpcrun.slurm import client

NOW = 1_800_000_000.0


def minutes_ago(minutes: float) -> float:
    return NOW - minutes * 60


def test_a_running_or_pending_job_means_not_idle_whatever_ended_before() -> None:
    idle = compute_idle(
        IdleFacts(
            now_s=NOW,
            queue=[
                ("7", "RUNNING", NOW + 3600, False),  # squeue's %e of a running job: its time limit
                ("8", "PENDING", None, False),
                ("9", "PENDING", None, False),
                ("6", "COMPLETED", minutes_ago(50), True),
            ],
            accounting=[("5", "COMPLETED", minutes_ago(90), True)],
            up_since_s=minutes_ago(100),
        )
    )
    assert idle.known and idle.busy and idle.idle_s == 0
    assert idle.active == {"running": 1, "pending": 2}
    assert idle.text() == "no (3 jobs: 2 pending, 1 running)"
    assert not idle.at_least(0)


def test_one_active_job_reads_as_such() -> None:
    idle = compute_idle(IdleFacts(now_s=NOW, queue=[("7", "COMPLETING", None, False)]))
    assert idle.text() == "no (1 job completing)"


def test_idle_since_the_last_end_from_accounting() -> None:
    facts = IdleFacts(
        now_s=NOW,
        queue=[("12", "COMPLETED", minutes_ago(8), True)],  # what squeue still remembers
        accounting=[
            ("11", "CANCELLED", minutes_ago(30), True),
            ("12", "COMPLETED", minutes_ago(8), True),
            ("13", "FAILED", minutes_ago(23), True),
        ],
        up_since_s=minutes_ago(300),
    )
    idle = compute_idle(facts)
    assert (idle.known, idle.busy, idle.minutes) == (True, False, 8)
    assert idle.last_job_id == "12" and idle.since_s == minutes_ago(8)
    assert not idle.approximate
    clock = time.strftime("%H:%M", time.localtime(minutes_ago(8)))
    assert idle.text(now_s=NOW) == f"no job for 8 min (last job 12 ended {clock})"
    assert idle.at_least(8) and not idle.at_least(9)


def test_a_cluster_that_came_up_after_the_last_job_is_idle_since_it_came_up() -> None:
    idle = compute_idle(
        IdleFacts(
            now_s=NOW,
            queue=[],
            accounting=[("3", "COMPLETED", minutes_ago(600), True)],
            up_since_s=minutes_ago(5),
        )
    )
    assert idle.minutes == 5 and idle.since_s == minutes_ago(5)
    assert "no job seen since" in idle.text(now_s=NOW)


def test_without_accounting_the_estimate_takes_hpcruns_records_and_says_so() -> None:
    idle = compute_idle(
        IdleFacts(
            now_s=NOW,
            queue=[],
            accounting=None,
            up_since_s=minutes_ago(120),
            recorded_s=minutes_ago(40),  # a job hpcrun submitted then
        )
    )
    assert idle.known and idle.approximate and idle.minutes == 40
    assert idle.text(now_s=NOW).endswith("; no Slurm accounting: estimated)")
    # With accounting, hpcrun's records add nothing: Slurm knows every job.
    exact = compute_idle(
        IdleFacts(now_s=NOW, queue=[], accounting=[], up_since_s=minutes_ago(120), recorded_s=NOW)
    )
    assert exact.minutes == 120 and not exact.approximate


def test_no_answer_from_slurm_is_unknown_and_never_idle_enough() -> None:
    idle = compute_idle(IdleFacts(now_s=NOW, queue=None, error="Slurm did not answer: boom"))
    assert not idle.known and idle.idle_s is None
    assert idle.text() == "unknown (Slurm did not answer: boom)"
    assert not idle.at_least(0)
    nothing = compute_idle(IdleFacts(now_s=NOW, queue=[], accounting=None))
    assert not nothing.known and not nothing.at_least(0)


def test_an_end_in_the_future_from_a_skewed_clock_is_idle_zero() -> None:
    idle = compute_idle(
        IdleFacts(now_s=NOW, queue=[], accounting=[("1", "COMPLETED", NOW + 30, True)])
    )
    assert idle.idle_s == 0 and idle.at_least(0) and not idle.at_least(1)


def test_json_carries_the_numbers_and_the_words() -> None:
    idle = compute_idle(
        IdleFacts(now_s=NOW, queue=[], accounting=[("4", "TIMEOUT", minutes_ago(61), True)])
    )
    data = idle.to_json()
    assert data["known"] is True and data["idle"] is True
    assert data["idle_minutes"] == 61 and data["last_job_id"] == "4"
    assert data["text"].startswith("no job for 61 min (last job 4 ended ")
    busy = compute_idle(IdleFacts(now_s=NOW, queue=[("4", "RUNNING", None, False)])).to_json()
    assert busy["idle"] is False and busy["active"] == {"running": 1}
    assert Idle(False, None, {}, reason="x").to_json()["idle"] is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 min"), (59, "0 min"), (23 * 60 + 5, "23 min"), (125 * 60, "2 h 5 min"),
     (50 * 3600, "2 d 2 h")],
)  # fmt: skip
def test_durations_read_in_the_largest_sensible_unit(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_down_decision_says_why_a_cluster_stays_up() -> None:
    busy = compute_idle(IdleFacts(now_s=NOW, queue=[("1", "RUNNING", None, False)] * 2))
    left = down_decision("big", busy, 30)
    assert left is not None and left.known
    assert left.message == "cluster big is not idle (2 jobs running): left up"
    short = compute_idle(IdleFacts(now_s=NOW, queue=[], accounting=[], up_since_s=minutes_ago(5)))
    left = down_decision("big", short, 30)
    assert left is not None and left.message == "cluster big is idle 5 min < 30: left up"
    assert down_decision("big", short, 5) is None
    assert down_decision("big", short, 0) is None
    unknown = compute_idle(IdleFacts(now_s=NOW, queue=None, error="Slurm did not answer: x"))
    left = down_decision("big", unknown, 0)
    assert left is not None and not left.known and "idle time unknown" in left.message


def test_both_sides_read_slurms_answer_alike() -> None:
    """hpcrun's SlurmClient and the head-node guard (which does not speak Slurm: it gets
    `IDLE_QUERIES` as data) each parse the answer: one reading in two places."""
    answer = (
        "123|CANCELLED by 1000|1799990000\n"
        "124_3|RUNNING|1800003600\n"
        "125|PENDING|N/A\n"
        "126|COMPLETED|Unknown\n"
        "127|REQUEUED|N/A\n"
        "\n"
    )
    parsed = compute.parse_job_times(answer, client.IDLE_QUERIES["ended_states"])
    assert parsed == client._job_times(answer)
    assert parsed == [
        ("123", "CANCELLED", 1799990000.0, True),
        ("124_3", "RUNNING", 1800003600.0, False),
        ("125", "PENDING", None, False),
        ("126", "COMPLETED", None, True),
        ("127", "REQUEUED", None, False),
    ]


def test_the_guards_plan_is_plain_json() -> None:
    plan = json.loads(json.dumps(client.IDLE_QUERIES))
    assert plan == client.IDLE_QUERIES
    assert set(PLAN_KEYS) <= set(plan)
