"""How an IndeX session that an exception ended is recorded (issue 14, item 11)."""

from __future__ import annotations

from hpcrun.errors import HpcrunError
from hpcrun.services.index import StartInterrupted, ended_by
from hpcrun.state import IndexJobState, SessionState


def test_ctrl_c_is_recorded_as_interrupted_not_failed() -> None:
    assert ended_by(KeyboardInterrupt()) == (
        SessionState.STOPPED,
        IndexJobState.ENDED,
        "interrupted (Ctrl-C)",
    )
    # What `start` re-raises is a KeyboardInterrupt too, and maps the same way.
    assert ended_by(StartInterrupted(3, "12"))[2] == "interrupted (Ctrl-C)"


def test_errors_are_recorded_as_failures_with_their_message() -> None:
    assert ended_by(HpcrunError("the viewer did not start")) == (
        SessionState.FAILED,
        IndexJobState.FAILED,
        "the viewer did not start",
    )
    assert ended_by(TimeoutError())[2] == "TimeoutError"


def test_the_interrupt_says_what_was_cleaned_up() -> None:
    stopped = StartInterrupted(3, "12")
    assert isinstance(stopped, KeyboardInterrupt)
    assert stopped.summary == (
        "interrupted (Ctrl-C): IndeX session 3 stopped; its job 12 was cancelled"
    )
    assert "no allocation had been granted yet" in StartInterrupted(4, None).summary
