"""Node programs as one file: a deterministic zipapp built from a package's own sources.

Where hpcrun is not installed on the cluster, a node program travels as a zipapp that the
node's Python runs as it is (`python score_task.pyz inspect ...`). The archive holds the
package's modules under a top-level name of their own (`hpcrun.node.score` becomes
`hpcrun_score`), so the package must import only itself, relatively, and a `__main__.py`
that calls the package's `main`. Something on sys.path (the Triton Python backend model
of `--server pytriton`) imports the package from the archive by zipimport.

The bytes depend on the sources alone: names sorted, every timestamp 1980-01-01, fixed
permissions, no compression (zlib's output may differ between versions and the modules
are ~100 kB). So the content hash that names the installed copy changes exactly when the
code does, and a run in flight never sees its program change.
"""

from __future__ import annotations

import io
import zipfile
from importlib import resources
from importlib.abc import Traversable

SCORE_PACKAGE = "hpcrun.node.score"
SCORE_NAME = "hpcrun_score"  # the score package's name inside its zipapp
FLARE_PACKAGE = "hpcrun.node.flare"
FLARE_NAME = "hpcrun_flare"
FARM_PACKAGE = "hpcrun.node.farm"
FARM_NAME = "hpcrun_farm"  # the render-farm worker, beside a stock Blender image
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
_MAIN = '''\
"""Runs {name}: python <this zipapp> ARGS."""
import sys

from {name}.{entry} import main

sys.exit(main())
'''


def package_sources(package: str) -> dict[str, bytes]:
    """The package's .py files by path relative to it (sub-packages too, no caches)."""
    found: dict[str, bytes] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for item in folder.iterdir():
            if item.is_dir():
                if item.name != "__pycache__":
                    walk(item, f"{prefix}{item.name}/")
            elif item.name.endswith(".py"):
                found[prefix + item.name] = item.read_bytes()

    walk(resources.files(package), "")
    return found


def build_zipapp(package: str, *, name: str, entry: str = "cli") -> bytes:
    """A zipapp of `package` importable inside as `name`, whose `__main__.py` runs
    `name.entry.main()` and exits with its status; the same sources give the same bytes."""
    files = {f"{name}/{path}": data for path, data in package_sources(package).items()}
    files["__main__.py"] = _MAIN.format(name=name, entry=entry).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=_EPOCH)
            info.create_system = 3  # unix, wherever it is built, for the permission bits
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[path])
    return buffer.getvalue()


def score_task() -> bytes:
    """The score task (`inspect`, `shard`, `merge`) as shipped to the cluster."""
    return build_zipapp(SCORE_PACKAGE, name=SCORE_NAME)


def flare_task() -> bytes:
    """The FLARE participant task (`server`, `site`) as shipped to the cluster."""
    return build_zipapp(FLARE_PACKAGE, name=FLARE_NAME)
