"""JobSpec: validation, and the sbatch script / salloc / srun argv it turns into.

The golden files in tests/golden/ pin the exact text; the round-trip tests below check
the same text the way its two readers do: sbatch's own `#SBATCH` tokenizer (transcribed
from Slurm's src/sbatch/opt.c) and bash, which runs the script body.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

from hpcrun.errors import UsageError
from hpcrun.slurm.spec import JobSpec
from tests.golden_util import argv_text, assert_golden

# --- sbatch's reading of #SBATCH lines -----------------------------------------------------


def sbatch_directives(script: str) -> list[str]:
    """The options sbatch takes from a script, decoded as sbatch decodes them.

    Transcribed from `_opt_batch_script` and `_get_argument` (src/sbatch/opt.c): directives
    are read until the first line that is neither blank nor a comment; on a directive line
    arguments split on unquoted whitespace, ' and " quote, a backslash escapes the next
    character, an unquoted # ends the line, and an unmatched quote is fatal.
    """
    options: list[str] = []
    for line in script.splitlines():
        if line.startswith("#SBATCH"):
            options.extend(_sbatch_arguments(line[len("#SBATCH") :]))
        elif line.strip() and not line.lstrip().startswith("#"):
            break
    return options


def _sbatch_arguments(text: str) -> list[str]:
    args: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return args
        chars: list[str] = []
        quote: str | None = None
        escaped = comment = False
        while i < n and (quote or not text[i].isspace()):
            ch = text[i]
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
                i += 1
                continue
            elif quote:
                if ch == quote:
                    quote = None
                    i += 1
                    continue
            elif ch in "\"'":
                quote = ch
                i += 1
                continue
            elif ch == "#":
                comment = True
                break
            chars.append(ch)
            i += 1
        if quote:
            raise ValueError(f"sbatch: fatal: Unmatched `{quote}` in [{text.strip()}]")
        if chars:
            args.append("".join(chars))
        if comment or not chars:
            return args


def test_sbatch_tokenizer_transcription_matches_slurm_examples() -> None:
    # Each case checked once against `sbatch -vv --test-only` of Slurm 22.05.
    assert sbatch_directives('#SBATCH --chdir="/a b"\n') == ["--chdir=/a b"]
    assert sbatch_directives("#SBATCH --job-name=frame#1\n") == ["--job-name=frame"]
    assert sbatch_directives("#SBATCH --output=/tmp/o\\x.out\n") == ["--output=/tmp/ox.out"]
    assert sbatch_directives("#SBATCH -N 2 # two nodes\ntrue\n#SBATCH -p x\n") == ["-N", "2"]
    with pytest.raises(ValueError, match="Unmatched"):
        sbatch_directives("#SBATCH --chdir=/home/o'brien\n")


# --- specs pinned by golden files ---------------------------------------------------------

ARRAY_SPEC = JobSpec(
    name="frames",
    command=["blender", "-b", "scenes/city.blend", "--render-frame", "1"],
    array="0-239%16",
    cpus_per_task=2,
    time_limit="01:00:00",
    partition="batch",
)

MULTINODE_GPU_SPEC = JobSpec(
    name="index-session",
    command=["srun", "nvindex-viewer", "--scene", "/shared/scenes/supernova/scene.prj"],
    nodes=4,
    ntasks_per_node=1,
    exclusive=True,
    gpus_per_node=2,
    dependency="afterok:41",
    time_limit="2-00:00:00",
    partition="gpu",
    workdir="/shared/run",
    output="/shared/logs/%x-%j.out",
    error="/shared/logs/%x-%j.err",
)

ENV_QUOTING_SPEC = JobSpec(
    name="quote test",
    command=[
        "bash",
        "-c",
        "echo \"$GREETING\" > 'out file.txt'; echo $((1 + 2)) `date`",
        "arg with spaces",
        "it's",
        "",
    ],
    env={
        "GREETING": "hello world",
        "QUOTED": 'it\'s "quoted"',
        "DOLLAR": "$HOME and `whoami` and $(id)",
        "EMPTY": "",
        "A_1": "plain",
    },
    workdir="/a b",
    output="logs dir/%j.out",
)

SALLOC_SPEC = JobSpec(
    name="index",
    command=["sleep", "infinity"],
    nodes=2,
    ntasks_per_node=1,
    exclusive=True,
    gpus_per_node=2,
    time_limit="04:00:00",
    partition="gpu",
)

SRUN_SPEC = JobSpec(
    name="attach-agents",
    command=["python", "-m", "hpcrun.viewer.agent", "--port", "9000"],
    nodes=2,
    ntasks_per_node=1,
    gpus_per_node=1,
    dependency="after:41",
    env={"INDEX_LOG": "debug", "SCENE": "/shared/scenes/super nova"},
)


def test_sbatch_array_golden() -> None:
    assert_golden("sbatch_array.sh", ARRAY_SPEC.to_sbatch_script())


def test_sbatch_multinode_gpu_golden() -> None:
    assert_golden("sbatch_multinode_gpu.sh", MULTINODE_GPU_SPEC.to_sbatch_script())


def test_sbatch_env_quoting_golden() -> None:
    assert_golden("sbatch_env_quoting.sh", ENV_QUOTING_SPEC.to_sbatch_script())


def test_salloc_golden() -> None:
    assert_golden("salloc_index.txt", argv_text(SALLOC_SPEC.to_salloc_argv()))


def test_srun_attach_golden() -> None:
    assert_golden("srun_attach.txt", argv_text(SRUN_SPEC.to_srun_argv(jobid="41")))


# --- what sbatch and bash make of the script ----------------------------------------------


@pytest.mark.parametrize("spec", [ARRAY_SPEC, MULTINODE_GPU_SPEC, ENV_QUOTING_SPEC])
def test_sbatch_reads_back_every_option_unchanged(spec: JobSpec) -> None:
    assert sbatch_directives(spec.to_sbatch_script()) == spec.sbatch_options()


def test_script_starts_with_shebang_and_directives_precede_commands() -> None:
    lines = ENV_QUOTING_SPEC.to_sbatch_script().splitlines()
    assert lines[0] == "#!/bin/bash"
    first_code = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    assert all(not line.startswith("#SBATCH") for line in lines[first_code:])
    assert sum(line.startswith("#SBATCH") for line in lines) == len(
        ENV_QUOTING_SPEC.sbatch_options()
    )


def test_workdir_with_space_is_a_quoted_chdir_directive() -> None:
    script = ENV_QUOTING_SPEC.to_sbatch_script()
    assert '#SBATCH --chdir="/a b"\n' in script
    assert '#SBATCH --job-name="quote test"\n' in script
    assert '#SBATCH --output="logs dir/%j.out"\n' in script


def test_default_output_names_the_array_task_or_the_job() -> None:
    assert "--output=hpcrun-%A_%a.out" in ARRAY_SPEC.sbatch_options()
    assert "--output=hpcrun-%j.out" in JobSpec(command=["true"]).sbatch_options()


def test_value_with_space_and_double_quote_survives_sbatch() -> None:
    spec = JobSpec(command=["true"], workdir='/a b/"c"')
    assert sbatch_directives(spec.to_sbatch_script()) == spec.sbatch_options()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_runs_the_script_with_exact_argv_and_env() -> None:
    argv = ["a b", "it's", '"dq"', "$HOME", "`id`", "$(id)", "", "new\nline", "back\\slash"]
    env = {"GREETING": "hello world", "QUOTED": 'it\'s "q"', "DOLLAR": "$HOME `id`", "E": ""}
    probe = (
        "import json, os, sys; print(json.dumps([sys.argv[1:], {k: os.environ[k] for k in %r}]))"
    )
    spec = JobSpec(command=[sys.executable, "-c", probe % sorted(env), *argv], env=env)
    done = subprocess.run(
        ["bash", "-c", spec.to_sbatch_script()],
        capture_output=True,
        text=True,
        timeout=10,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        check=True,
    )
    got_argv, got_env = json.loads(done.stdout)
    assert got_argv == argv
    assert got_env == env


# --- salloc / srun argv -------------------------------------------------------------------


def test_salloc_is_stepless_by_default_and_carries_no_command() -> None:
    argv = SALLOC_SPEC.to_salloc_argv()
    assert argv[:2] == ["salloc", "--no-shell"]
    assert "sleep" not in argv
    assert "--job-name=index" in argv


def test_salloc_with_shell_appends_the_command() -> None:
    argv = SALLOC_SPEC.to_salloc_argv(no_shell=False)
    assert "--no-shell" not in argv
    assert argv[-2:] == ["sleep", "infinity"]


def test_srun_inside_allocation_drops_job_level_options() -> None:
    argv = SRUN_SPEC.to_srun_argv(jobid="41")
    srun_at = argv.index("srun")
    assert argv[:srun_at] == ["env", "INDEX_LOG=debug", "SCENE=/shared/scenes/super nova"]
    assert argv[srun_at + 1] == "--jobid=41"
    assert not any(a.startswith(("--job-name=", "--dependency=")) for a in argv)
    assert argv[-5:] == ["python", "-m", "hpcrun.viewer.agent", "--port", "9000"]


def test_srun_without_jobid_keeps_name_and_dependency() -> None:
    argv = SRUN_SPEC.to_srun_argv()
    assert "--job-name=attach-agents" in argv
    assert "--dependency=after:41" in argv
    assert not any(a.startswith("--jobid") for a in argv)


def test_srun_without_env_has_no_env_prefix() -> None:
    assert JobSpec(command=["hostname"]).to_srun_argv()[0] == "srun"


def test_srun_honours_workdir() -> None:
    argv = JobSpec(command=["ls"], workdir="/shared/run").to_srun_argv(jobid="7")
    assert "--chdir=/shared/run" in argv


# --- values sbatch would misread ------------------------------------------------------------


def test_hash_in_a_value_survives_sbatch() -> None:
    spec = JobSpec(command=["true"], name="frame#1", output="out#%j.log")
    assert sbatch_directives(spec.to_sbatch_script()) == spec.sbatch_options()


def test_apostrophe_in_workdir_survives_sbatch() -> None:
    spec = JobSpec(command=["true"], workdir="/home/o'brien/run")
    assert sbatch_directives(spec.to_sbatch_script()) == spec.sbatch_options()


def test_backslash_in_a_value_survives_sbatch() -> None:
    spec = JobSpec(command=["true"], output=r"logs\%j.out")
    assert sbatch_directives(spec.to_sbatch_script()) == spec.sbatch_options()


@pytest.mark.parametrize("field", ["workdir", "output", "error", "partition", "dependency"])
def test_newline_in_any_directive_value_is_refused(field: str) -> None:
    with pytest.raises(UsageError, match=field.replace("workdir", "(workdir|chdir)")):
        JobSpec(command=["true"], **{field: "x\ntouch /tmp/hpcrun-injected #"})


@pytest.mark.parametrize(
    "kwargs",
    [{"array": "0-9\n"}, {"time_limit": "30\n"}, {"env": {"PATH\n": "x"}}],
    ids=["array", "time", "env-name"],
)
def test_trailing_newline_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        JobSpec(command=["true"], **kwargs)  # type: ignore[arg-type]


def test_newline_injection_is_refused_before_a_script_exists() -> None:
    # The failure mode this guards: the injected line would be a shell command.
    with pytest.raises(UsageError, match="workdir must be a single line"):
        JobSpec(command=["true"], workdir="x\ntouch /tmp/hpcrun-injected #")


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("array", ["0-999", "1,3,5-7", "0-239%16", "0-99:2", "7", "0-9,20-29%4"])
def test_good_arrays_are_accepted(array: str) -> None:
    assert JobSpec(command=["true"], array=array).array == array


@pytest.mark.parametrize("array", ["0-", "abc", "1-5%", "", "-1", "1-5%a", "1,,2", "0-9 "])
def test_bad_arrays_are_refused_naming_the_option(array: str) -> None:
    with pytest.raises(UsageError, match="--array") as err:
        JobSpec(command=["true"], array=array)
    assert err.value.hint and "0-239%16" in err.value.hint


@pytest.mark.parametrize(
    "time_limit", ["30", "10:00", "01:30:00", "2-00", "2-00:30", "2-00:00:00", "UNLIMITED"]
)
def test_good_time_limits_are_accepted(time_limit: str) -> None:
    assert JobSpec(command=["true"], time_limit=time_limit).time_limit == time_limit


@pytest.mark.parametrize("time_limit", ["1h", "abc", "", "-5", "01:30:00:00", "1 day", "10:5x"])
def test_bad_time_limits_are_refused_naming_the_option(time_limit: str) -> None:
    with pytest.raises(UsageError, match="--time"):
        JobSpec(command=["true"], time_limit=time_limit)


@pytest.mark.parametrize("nodes", [0, -1])
def test_nodes_below_one_are_refused(nodes: int) -> None:
    with pytest.raises(UsageError, match="nodes must be at least 1"):
        JobSpec(command=["true"], nodes=nodes)


@pytest.mark.parametrize(
    ("field", "label"),
    [
        ("ntasks_per_node", "ntasks-per-node"),
        ("cpus_per_task", "cpus-per-task"),
        ("gpus_per_node", "gpus-per-node"),
        ("gpus", "gpus"),
    ],
)
def test_counts_below_one_are_refused_naming_the_field(field: str, label: str) -> None:
    with pytest.raises(UsageError, match=f"^{label} must be at least 1"):
        JobSpec(command=["true"], **{field: 0})


@pytest.mark.parametrize("command", [[], ()])
def test_empty_command_is_refused_where_something_must_run(command: list[str]) -> None:
    spec = JobSpec(command=command, nodes=2)
    for build in (
        spec.to_sbatch_script,
        spec.to_srun_argv,
        lambda: spec.to_salloc_argv(no_shell=False),
    ):
        with pytest.raises(UsageError, match="no command"):
            build()
    # A step-less allocation runs nothing itself: its steps come later.
    assert spec.to_salloc_argv() == ["salloc", "--no-shell", "--job-name=hpcrun", "--nodes=2"]


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "", "A=B", "É"])
def test_bad_env_names_are_refused_naming_the_variable(key: str) -> None:
    with pytest.raises(UsageError, match="environment variable name") as err:
        JobSpec(command=["true"], env={key: "x"})
    assert repr(key) in err.value.message


@pytest.mark.parametrize("name", ["two\nlines", "carriage\rreturn"])
def test_multiline_names_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="job name"):
        JobSpec(command=["true"], name=name)


# --- immutability ---------------------------------------------------------------------------


def test_list_command_becomes_a_tuple() -> None:
    spec = JobSpec(command=["echo", "hi"])
    assert spec.command == ("echo", "hi")
    assert isinstance(spec.command, tuple)


def test_spec_is_frozen() -> None:
    spec = JobSpec(command=["echo"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.nodes = 2  # type: ignore[misc]


def test_equal_specs_compare_equal() -> None:
    assert JobSpec(command=["echo", "hi"]) == JobSpec(command=("echo", "hi"))
    assert JobSpec(command=["echo", "hi"]) != JobSpec(command=["echo", "ho"])


def test_spec_is_hashable() -> None:
    spec = JobSpec(command=["echo", "hi"])
    assert hash(spec) == hash(JobSpec(command=("echo", "hi")))
    assert len({spec, JobSpec(command=["echo", "hi"])}) == 1


def test_env_is_copied_not_shared() -> None:
    env = {"OK": "1"}
    spec = JobSpec(command=["true"], env=env)
    env["BAD NAME"] = "x"
    assert dict(spec.env) == {"OK": "1"}
