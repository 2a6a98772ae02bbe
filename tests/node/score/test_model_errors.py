"""XGBoost's errors as a user reads them: no log stamp, no path into XGBoost's build tree
(issue 14: the model-load error leaked `/workspace/src/common/json.cc:409`)."""

from __future__ import annotations

import pytest

from hpcrun.node.score.model import first_line


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "[10:11:12] /workspace/src/c_api/c_api.cc:1513: Invalid model format.\nStack:",
            "Invalid model format.",
        ),
        ('/workspace/src/common/json.cc:409: Expecting: "{"', 'Expecting: "{"'),
        (
            "plain words: a.cc:3 stays inside a sentence",
            "plain words: a.cc:3 stays inside a sentence",
        ),
        ("", "unknown error"),
    ],
)
def test_xgboost_errors_lose_their_stamp_and_source_location(raw: str, shown: str) -> None:
    assert first_line(raw) == shown
