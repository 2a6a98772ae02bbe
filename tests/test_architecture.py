"""The layer rules of hpcrun/ (../DESIGN.md), read from the code's own imports.

cli -> services -> workloads / scheduler -> slurm | k8s -> transport; backends give
services what they run through; node/ (programs that run ON cluster nodes) imports only
node/, scenes/ and errors. Every import counts, also those inside functions (where heavy
packages are imported lazily) and under TYPE_CHECKING. And only hpcrun/slurm/ writes
Slurm's syntax.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "hpcrun"

# package -> the hpcrun packages it must not import (besides itself, anything not
# named is allowed). A module's package is its first component under hpcrun/
# (`hpcrun.slurm.client` -> slurm; `hpcrun.state` -> state).
FORBIDDEN: dict[str, set[str]] = {
    "transport": {
        "cli",
        "services",
        "workloads",
        "scheduler",
        "slurm",
        "k8s",
        "backends",
        "state",
        "config",
        "node",
        "storage",
        "scenes",
    },
    "slurm": {"cli", "services", "workloads", "backends", "state", "config", "node", "k8s"},
    "k8s": {"cli", "services", "workloads", "backends", "state", "config", "node", "slurm"},
    "scheduler": {"cli", "services", "workloads", "slurm", "k8s", "backends", "state", "node"},
    "workloads": {"cli", "services", "slurm", "k8s", "backends", "transport", "state"},
    "services": {"cli", "transport", "k8s"},
    "backends": {"cli", "services", "workloads"},
    "config": {"cli", "services", "workloads", "slurm", "transport", "node"},
    "state": {"cli", "services", "workloads", "slurm", "backends", "node", "transport"},
    "storage": {"cli", "services", "workloads", "slurm", "backends", "node"},
    "scenes": {"cli", "services", "workloads", "slurm", "backends", "state", "node", "config"},
}
# node/ may import only these of hpcrun.
NODE_ALLOWED = {"node", "scenes", "errors"}
# Modules that speak Slurm on purpose outside hpcrun/slurm/, and why.
SLURM_SPEAKERS = {
    # `hpcrun submit/jobs/logs/cancel` are Slurm's own commands (the SLURM feature): they
    # take and document Slurm's flags (`--dependency afterok:ID`, `%A_%a` patterns).
    "hpcrun/cli/jobs.py",
    "hpcrun/services/jobs.py",
}
# Services that are Slurm's own commands, and so may use hpcrun.slurm.
SLURM_SERVICES = {"hpcrun.services.jobs"}
SLURM_WORDS = ("afterok", "afterany", "afternotok", "expand:", "SLURM_ARRAY_TASK_ID", "%a")
SLURM_COMMANDS = {"sbatch", "squeue", "scontrol", "salloc", "srun", "scancel", "sinfo", "sacct"}


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports_of(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "hpcrun" or m.startswith("hpcrun.")}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def known_modules() -> set[str]:
    return {name for name, _ in modules()}


def resolve(module: str, known: set[str]) -> str | None:
    """The hpcrun module an import names (`from hpcrun.slurm import Job` names the
    package hpcrun.slurm, not a module hpcrun.slurm.Job)."""
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


def graph() -> dict[str, set[str]]:
    known = known_modules()
    edges: dict[str, set[str]] = {}
    for name, path in modules():
        targets = {resolve(m, known) for m in imports_of(name, path)}
        edges[name] = {t for t in targets if t and t != name and t != "hpcrun"}
    return edges


def violations(edges: dict[str, set[str]]) -> list[str]:
    broken = []
    for module, targets in edges.items():
        own = package_of(module)
        for target in targets:
            other = package_of(target)
            if other == own:
                continue
            if own == "node":
                if other not in NODE_ALLOWED:
                    broken.append(f"{module} -> {target} (node code imports only {NODE_ALLOWED})")
                continue
            if other == "slurm" and own == "services" and module not in SLURM_SERVICES:
                broken.append(f"{module} -> {target} (services run work through the Scheduler)")
            elif other in FORBIDDEN.get(own, set()):
                broken.append(f"{module} -> {target}")
    return sorted(broken)


def test_layers_import_only_downwards() -> None:
    broken = violations(graph())
    assert not broken, "imports against the layer rules:\n" + "\n".join(broken)


def test_the_layer_check_catches_an_upward_import() -> None:
    edges = {
        "hpcrun.node.viewer.agent": {"hpcrun.state"},
        "hpcrun.transport.runner": {"hpcrun.slurm.client"},
        "hpcrun.services.render": {"hpcrun.slurm.spec", "hpcrun.scheduler"},
        "hpcrun.services.jobs": {"hpcrun.slurm.client"},
    }
    assert violations(edges) == [
        f"hpcrun.node.viewer.agent -> hpcrun.state (node code imports only {NODE_ALLOWED})",
        "hpcrun.services.render -> hpcrun.slurm.spec (services run work through the Scheduler)",
        "hpcrun.transport.runner -> hpcrun.slurm.client",
    ]


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle between modules (depth-first search), once."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    # A package's __init__ re-exporting its own modules is no circle between modules.
    return [c for c in found if not all(_is_reexport(a, b) for a, b in itertools.pairwise(c))]


def test_no_import_circles() -> None:
    found = circles(graph())
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_circle_check_finds_one() -> None:
    edges = {
        "hpcrun.node.viewer.agent": {"hpcrun.node.viewer.launcher"},
        "hpcrun.node.viewer.launcher": {"hpcrun.node.viewer.agent"},
        "hpcrun.slurm": {"hpcrun.slurm.client"},
        "hpcrun.slurm.client": {"hpcrun.slurm"},
    }
    assert circles(edges) == [
        ["hpcrun.node.viewer.agent", "hpcrun.node.viewer.launcher", "hpcrun.node.viewer.agent"]
    ]


def _is_reexport(a: str, b: str) -> bool:
    return b.startswith(a + ".") or a.startswith(b + ".")


def _strings(tree: ast.AST) -> Iterator[ast.Constant]:
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in docstrings:
            yield node


def slurm_syntax(source: str) -> list[tuple[int, str]]:
    """(line, word) of each string in `source` (docstrings aside) that holds Slurm's
    grammar (dependencies, array patterns, its array variable) or is one of its commands
    as an argv word."""
    found = []
    for const in _strings(ast.parse(source)):
        text = str(const.value)
        hit = next((w for w in SLURM_WORDS if w in text), None)
        if hit is None and text in SLURM_COMMANDS:
            hit = text
        if hit is not None:
            found.append((const.lineno, hit))
    return sorted(found)


def test_only_slurm_speaks_slurm() -> None:
    found = []
    for name, path in modules():
        relative = str(path.relative_to(ROOT.parent))
        if package_of(name) == "slurm" or relative in SLURM_SPEAKERS:
            continue
        found += [f"{relative}:{line}: {word!r}" for line, word in slurm_syntax(path.read_text())]
    assert not found, "Slurm syntax outside hpcrun/slurm/:\n" + "\n".join(found)


def test_the_syntax_check_reads_strings_not_prose() -> None:
    source = (
        '"""Runs after every chunk succeeded (afterok, in Slurm)."""\n'
        'DEP = f"afterok:{job}"\n'
        'ARGV = ["scontrol", "show", "job"]\n'
        'LOG = "logs/chunk-%a.out"\n'
        'HELP = "like sbatch --wrap"\n'
    )
    assert slurm_syntax(source) == [(2, "afterok"), (3, "scontrol"), (4, "%a")]
