"""`fill`: the `{{ slot }}`-only templates of the job scripts on a submit's path are
filled strictly, as StrictUndefined makes the jinja2 ones."""

from __future__ import annotations

import pytest

from hpcrun import templates
from hpcrun.templates import fill


@pytest.fixture
def text(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    holder = ["echo {{ a }} {{ b }} ${HOME} {{ a }}\n"]
    monkeypatch.setattr(templates, "_slotted", lambda package, name: holder[0])
    return holder


def test_every_slot_is_filled_and_shell_braces_are_left(text: list[str]) -> None:
    assert fill("p", "t.in", {"a": "'x y'", "b": 3}) == "echo 'x y' 3 ${HOME} 'x y'\n"


def test_a_slot_without_a_value_or_a_value_without_a_slot_is_refused(text: list[str]) -> None:
    with pytest.raises(ValueError, match=r"slots without a value \['b'\]"):
        fill("p", "t.in", {"a": 1})
    with pytest.raises(ValueError, match=r"values unused \['c'\]"):
        fill("p", "t.in", {"a": 1, "b": 2, "c": 3})


def test_jinja_syntax_in_a_slot_template_is_refused(text: list[str]) -> None:
    text[0] = "{{ a }} {{ q(b) }}\n"
    with pytest.raises(ValueError, match="only"):
        fill("p", "t.in", {"a": 1})
    text[0] = "{% if a %}{{ a }}{% endif %}\n"
    with pytest.raises(ValueError, match="only"):
        fill("p", "t.in", {"a": 1})


def test_the_shipped_slot_templates_fill_without_jinja2() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hpcrun.workloads.blender import chunk_script, encode_script\n"
        "from tests.workloads.test_blender import PLAN\n"
        "assert 'frame_' in chunk_script(PLAN) and 'ffmpeg' in encode_script(PLAN)\n"
        "print('jinja2' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
