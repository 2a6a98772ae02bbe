"""The ParallelCluster cluster file: its model, its problems, its rendering, import.

An hpcrun file with `backend: parallelcluster` says what the user cares about (AMI, node
types and counts, DCV, job expansion); this package turns it into the file ParallelCluster
reads (v3 YAML, or v2 INI for AMIs pinned to ParallelCluster 2.8.0). Problems are reported
by key path *in the hpcrun file*, all at once: first hpcrun's own checks, then
ParallelCluster's own marshmallow schema run in-process, with its paths mapped back to
ours. One module per job:

- `model`: the pydantic model and the values it is checked against
- `problems`: hpcrun's own checks, as `Problem`s by key path
- `render`: the pcluster v3 / v2 files, from the templates beside it
- `schema`: ParallelCluster's own schema, and `validate_data` (every problem of a file)
- `importer`: an existing pcluster config brought over as an hpcrun file
"""

from __future__ import annotations

from hpcrun.config.pcluster.importer import ImportResult, import_pcluster_config
from hpcrun.config.pcluster.model import (
    FORMATS,
    GPUS_BY_INSTANCE_TYPE,
    PLACEHOLDERS,
    ComputeResource,
    DcvSettings,
    Format,
    ParallelClusterConfig,
    Queue,
    SharedStorage,
    compute_resource_name,
)
from hpcrun.config.pcluster.problems import (
    Problem,
    ValidationReport,
    check_config,
    placeholders,
    validate_parallelcluster_config,
)
from hpcrun.config.pcluster.render import (
    RenderError,
    render,
    render_v2,
    render_v3,
    scheduler_parameters,
)
from hpcrun.config.pcluster.schema import (
    PCLUSTER_PATH_TO_KEY,
    hpcrun_key_for,
    pcluster_schema_problems,
    validate_data,
)
from hpcrun.templates import yaml_scalar

__all__ = [
    "FORMATS",
    "GPUS_BY_INSTANCE_TYPE",
    "PCLUSTER_PATH_TO_KEY",
    "PLACEHOLDERS",
    "ComputeResource",
    "DcvSettings",
    "Format",
    "ImportResult",
    "ParallelClusterConfig",
    "Problem",
    "Queue",
    "RenderError",
    "SharedStorage",
    "ValidationReport",
    "check_config",
    "compute_resource_name",
    "hpcrun_key_for",
    "import_pcluster_config",
    "pcluster_schema_problems",
    "placeholders",
    "render",
    "render_v2",
    "render_v3",
    "scheduler_parameters",
    "validate_data",
    "validate_parallelcluster_config",
    "yaml_scalar",
]
