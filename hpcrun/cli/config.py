"""Cluster file commands: `hpcrun config init | validate | render | import`.

These turn presets into commented starting files, check a file the way ParallelCluster
would (offline, every problem by key path in *this* file), print the pcluster config
hpcrun would hand to ParallelCluster, and bring an existing pcluster config over.
pydantic, jinja2 and aws-parallelcluster are imported inside the commands, so
`hpcrun --help` never pays for them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hpcrun.cli._common import JsonOption, print_json
from hpcrun.errors import UsageError

if TYPE_CHECKING:
    from hpcrun.config.pcluster import ValidationReport

app = typer.Typer(
    name="config",
    help="Cluster files: start one from a preset, validate it, render pcluster configs.\n\n"
    "Examples:\n\n"
    "\b\n"
    "  hpcrun config init --preset index-aws -o cluster.yaml\n"
    "  hpcrun config validate cluster.yaml\n"
    "  hpcrun config render cluster.yaml --format pcluster-v3 > pcluster.yaml\n"
    "  hpcrun config import pcluster.config -o cluster.yaml",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

FileArgument = Annotated[
    Path, typer.Argument(metavar="FILE", help="An hpcrun cluster file (YAML).", show_default=False)
]


def _write(text: str, output: Path | None, force: bool) -> None:
    """stdout without -o; never overwrite a file the user has not given up (--force)."""
    if output is None:
        sys.stdout.write(text)
        return
    if output.exists() and not force:
        raise UsageError(f"{output} already exists", "pass --force to overwrite it")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    sys.stderr.write(f"wrote {output}\n")


@app.command()
def init(
    preset: Annotated[
        str,
        typer.Option(
            "--preset", "-p", help="index-aws, index-g4dn, index-eks, kubernetes or local."
        ),
    ] = "index-aws",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starting cluster file from a preset (stdout without -o)."""
    from hpcrun.config.presets import preset_text

    _write(preset_text(preset), output, force)


def _load(path: Path) -> dict[str, Any]:
    from hpcrun.config.models import load_yaml_mapping

    return load_yaml_mapping(path)


@app.command()
def validate(
    file: FileArgument,
    json_out: JsonOption = False,
    no_pcluster: Annotated[
        bool, typer.Option("--no-pcluster", help="Skip ParallelCluster's own schema.")
    ] = False,
) -> None:
    """Check a cluster file offline; exit 1 listing every problem by key path.

    ParallelCluster files get hpcrun's checks and then ParallelCluster's own schema (run
    here, AWS is not contacted); its findings name the key of this file that caused them.
    """
    from hpcrun.backends import REGISTRY
    from hpcrun.config.models import load_cluster_file

    data = _load(file)
    backend = data.get("backend", "local")
    entry = REGISTRY.get(backend) if isinstance(backend, str) else None
    report: ValidationReport | None = (
        entry.report(data, source=str(file), thorough=not no_pcluster) if entry else None
    )
    problems: list[dict[str, Any]] = []
    placeholders: list[str] = []
    summary = ""
    if report is not None:
        problems = [
            {"key": p.path, "message": p.message, "pcluster_path": p.pcluster_path}
            for p in report.problems
        ]
        placeholders = report.placeholders
        if report.config is not None:
            summary = report.config.summary()
    else:
        try:
            config = load_cluster_file(file)
        except UsageError as exc:
            lines = exc.message.splitlines()[1:] or [exc.message]
            for line in lines:
                key, _, message = line.strip().partition(": ")
                problems.append({"key": key, "message": message, "pcluster_path": None})
        else:
            summary = config.summary()
    ok = not problems
    if json_out:
        print_json(
            {
                "file": str(file),
                "ok": ok,
                "backend": backend,
                "problems": problems,
                "placeholders": placeholders,
            }
        )
    elif ok:
        note = (
            f" (placeholders still to replace: {', '.join(placeholders)})" if placeholders else ""
        )
        sys.stdout.write(f"OK {file}: {summary}{note}\n")
    else:
        lines = [
            f"{p['key']}: {p['message']}"
            + (f" (ParallelCluster: {p['pcluster_path']})" if p["pcluster_path"] else "")
            for p in problems
        ]
        if len(lines) == 1:  # the problem itself on the first line
            sys.stderr.write(f"{file}: {lines[0]}\n")
        else:
            sys.stderr.write(f"{file}: {len(lines)} problems\n")
            sys.stderr.writelines(f"  {line}\n" for line in lines)
    if not ok:
        raise typer.Exit(1)


@app.command()
def render(
    file: FileArgument,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help="pcluster-v3 or pcluster-v2 (default: the file's format); eksctl for eks files.",
        ),
    ] = None,
    subnet_id: Annotated[
        str | None, typer.Option("--subnet-id", help="Use this subnet (for subnet_id: create).")
    ] = None,
) -> None:
    """Print the ParallelCluster config (v3 YAML or v2 INI) or, for an eks file, the eksctl
    ClusterConfig (checked against eksctl's own schema) this cluster file becomes."""
    from hpcrun.config.pcluster import FORMATS, validate_parallelcluster_config
    from hpcrun.config.pcluster import render as render_config

    if fmt is not None and fmt not in (*FORMATS, "eksctl"):
        raise UsageError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}, eksctl")
    data = _load(file)
    if data.get("backend") == "eks" or fmt == "eksctl":
        _render_eksctl(file, data, fmt)
        return
    pcluster_fmt = next((f for f in FORMATS if f == fmt), None)
    if data.get("backend", "local") != "parallelcluster":
        raise UsageError(
            f"{file} is not a ParallelCluster file (backend: {data.get('backend', 'local')})",
            "only backend: parallelcluster files render to pcluster configs",
        )
    config = validate_parallelcluster_config(data, str(file))
    sys.stdout.write(render_config(config, pcluster_fmt, source=file.name, subnet_id=subnet_id))


def _render_eksctl(file: Path, data: dict[str, Any], fmt: str | None) -> None:
    from hpcrun.config.eks import EksClusterConfig, render_checked
    from hpcrun.config.models import validate_cluster_data

    if data.get("backend") != "eks" or fmt not in (None, "eksctl"):
        raise UsageError(
            f"--format {fmt} does not apply to {file} (backend: {data.get('backend', 'local')})",
            "eks files render with --format eksctl; parallelcluster files with pcluster-v3 "
            "or pcluster-v2",
        )
    config = validate_cluster_data(data, str(file))
    assert isinstance(config, EksClusterConfig)
    sys.stdout.write(render_checked(config, source=file.name))


@app.command("import")
def import_(
    source: Annotated[
        Path,
        typer.Argument(metavar="PCLUSTER_CONFIG", help="A ParallelCluster v2 INI or v3 YAML."),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Cluster name.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_out: JsonOption = False,
) -> None:
    """Make an hpcrun file from a ParallelCluster config, listing what it could not keep."""
    from hpcrun.config.pcluster import import_pcluster_config
    from hpcrun.files import read_text_file

    text = read_text_file(source, "ParallelCluster config")
    cluster_name = name or source.stem.replace("_", "-").replace(".", "-") or "imported"
    if not cluster_name[0].isalpha():
        cluster_name = "c-" + cluster_name
    result = import_pcluster_config(text, name=cluster_name)
    _write(result.to_yaml(str(source)), output, force)
    if json_out:
        print_json(
            {
                "output": str(output) if output else None,
                "placeholders": result.placeholders,
                "refused": result.refused,
                "unmapped": result.unmapped,
                "notes": result.notes,
            }
        )
        return
    # One line each, whether the file went to -o or to stdout: these stop a create.
    for key in result.placeholders:
        sys.stderr.write(f"still a placeholder: {key} = {result.value(key)!r}\n")
    for line in result.refused:
        sys.stderr.write(f"ParallelCluster will refuse {line}\n")
    if output is not None and result.unmapped:
        sys.stderr.write(f"not carried over: {', '.join(result.unmapped)}\n")
