"""Where clusters come from: one backend per kind, found by name in a registry.

`open_backend` turns a cluster record from the state store into a live backend; heavy
backends (ParallelCluster, EKS) are imported only when a cluster of their kind is used,
so `hpcrun --help` and commands on a local cluster stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from hpcrun.errors import HpcrunError

if TYPE_CHECKING:
    from hpcrun.backends.base import Backend
    from hpcrun.state import ClusterRecord, StateStore

# backend name -> "module:class"; each class has `from_record(record, store)`.
REGISTRY: dict[str, str] = {
    "local": "hpcrun.backends.local:LocalBackend",
    "ssh": "hpcrun.backends.remote:SshBackend",
    "parallelcluster": "hpcrun.backends.parallelcluster:ParallelClusterBackend",
}


def open_backend(record: ClusterRecord, store: StateStore) -> Backend:
    target = REGISTRY.get(record.backend)
    if target is None:
        raise HpcrunError(
            f"cluster {record.name!r} uses backend {record.backend!r}, which this hpcrun lacks",
            f"known backends: {', '.join(sorted(REGISTRY))}",
        )
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = cls.from_record(record, store)
    return backend
