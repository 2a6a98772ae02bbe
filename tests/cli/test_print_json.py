"""`--json` of an object with thousands of records in a list (a render's chunks): valid
JSON that reads back the same, one key per line and one record per line."""

from __future__ import annotations

import json

import pytest

from hpcrun.cli._common import print_json


def test_an_object_prints_a_key_a_line_and_its_lists_a_record_a_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = {
        "run": 3,
        "status": "rendering",
        "chunks": [{"chunk": i, "frames": f"{i}-{i}"} for i in range(3)],
        "failed_chunks": [],
        "nested": {"a": [1, 2], "b": None},
    }
    print_json(data)
    out = capsys.readouterr().out
    assert json.loads(out) == data
    lines = out.splitlines()
    assert lines[0] == "{" and lines[-1] == "}"
    assert '    {"chunk": 1, "frames": "1-1"},' in lines
    assert '  "failed_chunks": [],' in lines and '  "nested": {"a": [1, 2], "b": null}' in lines
    for value in ({}, "x", 3, None, []):
        print_json(value)
        assert json.loads(capsys.readouterr().out) == value
