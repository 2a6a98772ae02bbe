"""No shell injection through names, paths or job files: every job-script builder gets
hostile strings (quotes, `$(...)`, backticks, `;`, newlines, NUL, leading `-`) and each
either refuses the value with a UsageError naming the field, or the value ends up literal.

"Literal" is checked by running the real output: the generated script passes `bash -n`,
then runs with its programs (blender, ffmpeg, the score task's python, the launcher,
the job's command) replaced by a printer that records its argv and environment, and
what it recorded must equal what went in; no hostile string may create its marker file.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from hpcrun.errors import UsageError
from hpcrun.scheduler.index import IndexInstall, IndexPlan
from hpcrun.slurm.index import agents_step, viewer_step
from hpcrun.slurm.spec import JobSpec
from hpcrun.workloads.blender import PNG_END, FrameRange, RenderPlan, chunk_script, encode_script
from hpcrun.workloads.score import ScorePlan, shard_script

MARKER = "pwned"  # every injection below would create ./pwned in the script's directory
HOSTILE = [
    "it's",
    'say "hi"',
    f"$(touch {MARKER})",
    f"`touch {MARKER}`",
    f"a; touch {MARKER}",
    f"a && touch {MARKER} #",
    f"line\ntouch {MARKER}",
    f"cr\rtouch {MARKER}",
    f"'; touch {MARKER}; '",
    f'"; touch {MARKER}; "',
    "-rf",
    "--help",
    "$HOME ${IFS} $((1+1))",
    "a b\tc  d",
    "back\\slash\\",
    "#hash",
    "glob * ?",
    "%s %n %%",
    "ünï cödé",
]
NUL = "nul\0byte"
ONE_LINE = [h for h in HOSTILE if "\n" not in h and "\r" not in h]

# Records its argv (and $HOSTILE) NUL-separated in $ARGV_OUT; with $TOUCH_LAST it also
# creates the file its last argument names (what ffmpeg would write).
PRINTER = """#!/bin/bash
{ printf '%s\\0' "$@"; printf 'HOSTILE=%s\\0' "${HOSTILE-unset}"; } > "$ARGV_OUT"
if [ -n "${TOUCH_LAST-}" ]; then for last; do :; done; : > "$last"; fi
"""


def printer(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PRINTER)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def recorded(out: Path) -> tuple[list[str], str]:
    """(argv, $HOSTILE) the printer saw."""
    words = out.read_bytes().decode().split("\0")[:-1]
    assert words[-1].startswith("HOSTILE=")
    return words[:-1], words[-1][len("HOSTILE="):]


def run_script(script: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`bash -n` (it parses), then run it in `tmp` where an injection would leave ./pwned."""
    path = tmp / "job.sh"
    path.write_text(script)
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    done = subprocess.run(
        ["bash", str(path)],
        cwd=tmp,
        env={"PATH": os.environ["PATH"], "ARGV_OUT": str(tmp / "argv"), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert not (tmp / MARKER).exists(), f"injected:\n{script}"
    return done


def ids(values: list[str]) -> list[str]:
    return [repr(v)[1:-1][:24] for v in values]


# -- JobSpec: the sbatch script, srun and salloc argv ------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE, ids=ids(HOSTILE))
def test_sbatch_script_keeps_every_value_literal(hostile: str, tmp_path: Path) -> None:
    command = (printer(tmp_path / "bin" / "prog"), hostile, f"x{hostile}")
    if hostile not in ONE_LINE:
        with pytest.raises(UsageError, match="job name must be a single line"):
            JobSpec(command=command, name=hostile)
        spec = JobSpec(command=command, env={"HOSTILE": hostile})
    else:
        spec = JobSpec(
            command=command,
            name=hostile,
            env={"HOSTILE": hostile},
            workdir=f"/w/{hostile}",
            output=f"/o/{hostile}",
            partition=hostile,
        )
    script = spec.to_sbatch_script()
    # sbatch reads `#SBATCH` lines as words with shell-like quotes: each stays one option.
    directives = [line[len("#SBATCH ") :] for line in script.splitlines()
                  if line.startswith("#SBATCH")]
    for option, line in zip(spec.sbatch_options(), directives, strict=True):
        assert shlex.split(line) == [option]
    done = run_script(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert recorded(tmp_path / "argv") == ([hostile, f"x{hostile}"], hostile)


@pytest.mark.parametrize("hostile", HOSTILE, ids=ids(HOSTILE))
def test_srun_and_salloc_argv_keep_values_as_single_words(hostile: str, tmp_path: Path) -> None:
    prog = printer(tmp_path / "prog")
    line = hostile if hostile in ONE_LINE else "one line"
    spec = JobSpec(command=(prog, hostile), name=line, workdir=f"/w/{line}",
                   env={"HOSTILE": hostile}, partition=line)
    argv = spec.to_srun_argv(jobid="7")
    srun = argv.index("srun")
    options = argv[srun + 1 : -2]
    assert all(o.startswith("--") and "=" in o for o in options)
    assert f"--chdir=/w/{line}" in options and argv[-2:] == [prog, hostile]
    # Run what srun would start, with the same environment prefix (`env K=V`).
    subprocess.run([*argv[:srun], *argv[-2:]], env={"ARGV_OUT": str(tmp_path / "argv"),
                                                     "PATH": os.environ["PATH"]}, check=True)
    assert recorded(tmp_path / "argv") == ([hostile], hostile)
    salloc = JobSpec(command=(), name=line, partition=line).to_salloc_argv()
    assert salloc[:2] == ["salloc", "--no-shell"]
    assert f"--job-name={line}" in salloc and f"--partition={line}" in salloc


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"command": ("echo", NUL)}, "command word 2"),
        ({"command": ("echo",), "env": {"X": NUL}}, "environment variable X"),
        ({"command": ("echo",), "name": NUL}, "job name"),
        ({"command": ("echo",), "workdir": NUL}, "workdir"),
        ({"command": ("echo",), "output": NUL}, "output"),
    ],
)
def test_a_nul_is_refused_naming_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(UsageError, match=f"{named} contains a NUL"):
        JobSpec(**fields)  # type: ignore[arg-type]


def test_a_command_that_looks_like_an_option_is_refused() -> None:
    spec = JobSpec(command=("--wrap=touch pwned",))
    for build in (spec.to_sbatch_script, spec.to_srun_argv,
                  lambda: spec.to_salloc_argv(no_shell=False)):
        with pytest.raises(UsageError, match="starts with '-': Slurm would read it as an option"):
            build()


# -- hpcrun render: the chunk and encode scripts -----------------------------------------


def render_plan(root: Path, hostile: str) -> RenderPlan:
    here = root / hostile.replace("/", "_")
    return RenderPlan(
        blend=str(here / f"{hostile}.blend"),
        name=hostile,
        frames=FrameRange(1, 2),
        run_dir=str(here / "run"),
        frames_dir=str(here / f"frames {hostile}"),
        video=str(here / f"{hostile}.mp4"),
        chunk=2,
        retries=0,
        blender=printer(here / "bin" / "blender"),
        ffmpeg=printer(here / "bin" / "ffmpeg"),
    )


@pytest.mark.parametrize("hostile", HOSTILE, ids=ids(HOSTILE))
def test_render_scripts_keep_names_and_paths_literal(hostile: str, tmp_path: Path) -> None:
    plan = render_plan(tmp_path, hostile)
    Path(plan.run_dir).mkdir(parents=True)
    Path(plan.chunk_table).write_text("0 1 2\n")
    done = run_script(chunk_script(plan), tmp_path, HPCRUN_TASK_INDEX="0")
    assert "hpcrun: chunk 0 attempt 1/1: frames 1-2" in done.stdout, done.stderr
    argv, _ = recorded(tmp_path / "argv")
    assert argv[:2] == ["-b", plan.blend]
    assert argv[argv.index("-o") + 1] == f"{plan.frames_dir}/frame_####"
    assert argv[argv.index("--python-expr") + 1] == plan.settings_expr
    for frame in (1, 2):  # every frame there: the encode job runs ffmpeg
        (Path(plan.frames_dir) / f"frame_{frame:04d}.png").write_bytes(b"\x89PNG" + PNG_END)
    done = run_script(encode_script(plan), tmp_path, TOUCH_LAST="1")
    assert done.returncode == 0, done.stdout + done.stderr
    argv, _ = recorded(tmp_path / "argv")
    assert argv[argv.index("-i") + 1] == f"{plan.frames_dir}/frame_%04d.png"
    assert argv[-1] == f"{plan.video}.partial.mp4"
    assert Path(str(plan.video)).is_file()


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("blend", "-P evil.py", "blend file"),
        ("video", "-y.mp4", "video"),
        ("frames_dir", "--help", "output directory"),
        ("run_dir", "-ew pwned", "run directory"),
        ("blend", f"/a/{NUL}.blend", "blend file"),
        ("name", NUL, "name"),
        ("blender", NUL, "blender program"),
    ],
)
def test_render_values_a_script_cannot_hold_are_refused(
    field: str, value: str, named: str, tmp_path: Path
) -> None:
    plan = render_plan(tmp_path, "ok")
    bad = RenderPlan(**{**plan.__dict__, field: value})
    for build in (chunk_script, encode_script):
        with pytest.raises(UsageError, match=f"the {named} "):
            build(bad)


# -- hpcrun score: the shard script ------------------------------------------------------


def score_plan(root: Path, hostile: str) -> ScorePlan:
    here = root / hostile.replace("/", "_")
    return ScorePlan(
        name=hostile, run_dir=str(here / "run"), python=printer(here / "bin" / "python"),
        worker=str(here / f"{hostile}.pyz"), format="parquet", files=[f"/d/{hostile}"],
        column_types={}, csv_header=None, features=["f0"], id_column=None, model="/m.json",
        model_format="xgboost_json", predict="proba", threshold=0.5, num_class=0,
        objective="binary:logistic", server="none", batch_rows=1024,
        parts_dir=str(here / f"{hostile}.parts"), merged=str(here / "m.parquet"),
        summary=str(here / "s.json"), rows=1, retries=0,
    )


@pytest.mark.parametrize("hostile", HOSTILE, ids=ids(HOSTILE))
def test_score_shard_script_keeps_names_and_paths_literal(hostile: str, tmp_path: Path) -> None:
    plan = score_plan(tmp_path, hostile)
    done = run_script(shard_script(plan), tmp_path, HPCRUN_TASK_INDEX="1")
    assert "hpcrun: shard 1 attempt 1/1" in done.stdout, done.stderr
    argv, _ = recorded(tmp_path / "argv")
    assert argv == [plan.worker, "shard", "--plan", plan.plan_file, "--index", "1"]


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [("worker", "-c", "task program"), ("run_dir", "-x", "run directory"),
     ("name", NUL, "name"), ("parts_dir", NUL, "output"), ("python", NUL, "python program")],
)
def test_score_values_a_script_cannot_hold_are_refused(
    field: str, value: str, named: str, tmp_path: Path
) -> None:
    bad = ScorePlan(**{**score_plan(tmp_path, "ok").__dict__, field: value})
    with pytest.raises(UsageError, match=f"the {named} "):
        shard_script(bad)


# -- hpcrun index: the viewer and agent steps --------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE, ids=ids(HOSTILE))
def test_index_steps_pass_scene_and_options_as_single_words(
    hostile: str, tmp_path: Path
) -> None:
    launcher = printer(tmp_path / "bin" / "hpcrun-nvindex-slurm")
    options = ("--rendezvous", f"/s/{hostile}/r", "--auth", f"{hostile}:/s/{hostile}/pw")
    line = hostile if hostile in ONE_LINE else "one line"
    install = IndexInstall(launcher=launcher, workdir=f"/s/{hostile}", scenes_dir="/scenes",
                           open_renderer=True)
    plan = IndexPlan(nodes=2, scene_prj=f"/scenes/{hostile}.prj", install=install,
                     open_options=options)
    if hostile != line:  # srun's --chdir=: one line, as every Slurm option
        with pytest.raises(UsageError, match="the workdir must be a single line"):
            viewer_step(plan, "7")
        plan = IndexPlan(nodes=2, scene_prj=plan.scene_prj, open_options=options,
                         install=IndexInstall(launcher=launcher, workdir=f"/s/{line}",
                                              scenes_dir="/scenes", open_renderer=True))
    expected = {
        "viewer": ["-v", "./nvindex-viewer.sh", "--add", plan.scene_prj,
                   "-dice::log_timestamp", "yes", "--port", "8080", *options],
        "agents": ["-a7", "./nvindex-viewer.sh", *options],
    }
    for role, argv in (("viewer", viewer_step(plan, "7")),
                       ("agents", agents_step(plan, "8", "7", 1, nodelist="n[3-4]"))):
        start = argv.index(launcher)
        assert f"--chdir=/s/{line}" in argv[:start]
        subprocess.run(argv[start:], env={"ARGV_OUT": str(tmp_path / "argv")}, check=True)
        assert recorded(tmp_path / "argv")[0] == expected[role]


def test_index_values_no_argv_can_hold_are_refused() -> None:
    install = IndexInstall(launcher="hpcrun-nvindex-slurm", workdir="/w", scenes_dir="/s")
    with pytest.raises(UsageError, match="contains a NUL"):
        viewer_step(IndexPlan(nodes=1, scene_prj=NUL, install=install), "7")
    dash = IndexPlan(nodes=1, scene_prj="/s.prj",
                     install=IndexInstall(launcher="-x", workdir="/w", scenes_dir="/s"))
    with pytest.raises(UsageError, match="starts with '-'"):
        viewer_step(dash, "7")
