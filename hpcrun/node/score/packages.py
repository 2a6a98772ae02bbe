"""What the node's Python has: the packages the task needs, the servers it can start.

Missing packages are reported as a `TaskError` with the pip command that installs them
(`inspect` turns it into the JSON error the submitting side shows), never as a traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
from typing import Any

from .errors import TaskError

SCORE_HINT = "pip install 'hpcrun[score]'"
TRITON_HINT = "pip install 'hpcrun[triton]'"


def missing_package() -> str | None:
    """The first of numpy and pyarrow that does not import (every command needs both)."""
    for module in ("numpy", "pyarrow", "pyarrow.csv", "pyarrow.parquet"):
        try:
            importlib.import_module(module)
        except ImportError as missing:  # pragma: no cover - depends on the node's Python
            return missing.name or module
    return None


def require(module: str, hint: str) -> None:
    if not importable(module):
        raise TaskError(f"the Python package {module} is not installed", hint)


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def check_server_packages(server: str) -> None:
    if server == "pytriton":
        require("pytriton", TRITON_HINT)
    if server in ("pytriton", "triton", "remote"):
        require("tritonclient.grpc", TRITON_HINT)


def server_info(program: str) -> dict[str, Any]:
    pytriton = importable("pytriton") and importable("tritonclient.grpc")
    return {
        "pytriton": pytriton,
        "tritonserver": shutil.which(program),
        "tritonclient": importable("tritonclient.grpc"),
    }


def package_file(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise TaskError(f"the Python package {module} is not installed", SCORE_HINT)
    return spec.origin
