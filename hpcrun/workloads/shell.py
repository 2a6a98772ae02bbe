"""What keeps values safe in the job scripts workloads generate: every value a script
uses is `shlex.quote`d, and this module covers what quoting cannot.

A `# comment` line ends at a newline whatever the quoting, so values shown in comments go
through `one_line`; bash drops NUL bytes, so a value holding one would run as something
else and is refused; and a path that starts with `-` would be read as an option by the
program it is handed to (blender, ffmpeg, mkdir, sed, python), so it is refused too.
"""

from __future__ import annotations

from collections.abc import Mapping

from hpcrun.errors import UsageError


def one_line(text: object) -> str:
    """`text` with control characters written as escapes, fit for a `#` comment line."""
    return "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in str(text)
    )


def check_script_values(
    values: Mapping[str, str | None], *, option_like: Mapping[str, str | None]
) -> None:
    """Refuse a NUL in any of `values` and a leading `-` in any of `option_like` (both
    keyed by the name the user knows the field by)."""
    for label, text in {**values, **option_like}.items():
        if text is not None and "\0" in text:
            raise UsageError(f"the {label} contains a NUL character (got {text!r})")
    for label, text in option_like.items():
        if text and text.startswith("-"):
            raise UsageError(
                f"the {label} {text!r} starts with '-': a program would read it as an option",
                "give the path with a directory in front (e.g. ./" + text + ")",
            )
