"""resolve_output_path: Slurm's filename patterns expanded after the fact for `hpcrun logs`."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcrun.errors import HpcrunError
from hpcrun.slurm.output import resolve_output_path


def resolve(
    pattern: str,
    *,
    job_id: str = "124",
    array_job_id: str | None = "120",
    array_task_id: str | None = "4",
    name: str = "frames",
    user: str = "alice",
    workdir: str = "/home/alice/run",
) -> Path:
    return resolve_output_path(
        pattern,
        job_id=job_id,
        array_job_id=array_job_id,
        array_task_id=array_task_id,
        name=name,
        user=user,
        workdir=workdir,
    )


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("hpcrun-%A_%a.out", "hpcrun-120_4.out"),
        ("%j.log", "124.log"),
        ("%x-%u.out", "frames-alice.out"),
        ("100%%-%j.out", "100%-124.out"),
        ("%%j", "%j"),  # an escaped percent is literal, not the start of %j
        ("%4a.out", "0004.out"),
        ("%6A_%2a", "000120_04"),
        ("%2j", "124"),  # a width narrower than the value does not truncate
        ("plain.out", "plain.out"),
    ],
)
def test_symbols_expand_as_slurm_does(pattern: str, expected: str) -> None:
    assert resolve(pattern) == Path("/home/alice/run") / expected


def test_relative_pattern_is_under_the_workdir() -> None:
    assert resolve("logs/%j.out", workdir="/scratch/x") == Path("/scratch/x/logs/124.out")


def test_absolute_pattern_ignores_the_workdir() -> None:
    assert resolve("/shared/logs/%x-%j.out") == Path("/shared/logs/frames-124.out")


def test_plain_job_uses_its_own_id_for_A_and_no_val_for_a() -> None:
    path = resolve("%A_%a.out", job_id="77", array_job_id=None, array_task_id=None)
    assert path.name == "77_4294967294.out"


def test_task_zero_is_a_task() -> None:
    assert resolve("%a", array_task_id="0").name == "0"


def test_width_does_not_pad_names() -> None:
    assert resolve("%8x", name="ab").name == "ab"


@pytest.mark.parametrize("symbol", ["%N", "%n", "%s", "%t", "%3N"])
def test_unsupported_symbols_raise_naming_the_symbol(symbol: str) -> None:
    with pytest.raises(HpcrunError, match=f"cannot resolve %{symbol[-1]}") as err:
        resolve(f"out-{symbol}.log")
    assert err.value.hint is not None
