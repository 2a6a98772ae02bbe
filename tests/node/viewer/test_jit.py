"""numba loaded lean (without scipy and cffi) and the background kernel loader."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from types import ModuleType

import pytest

from hpcrun.node.viewer import jit

RENDER = """
import json, sys
import numpy as np
{load}
from hpcrun.node.viewer import colormaps
from hpcrun.node.viewer.bricks import Brick
from hpcrun.node.viewer.camera import Camera, View
volume = (np.random.default_rng(3).random((24, 24, 24)) * 255).astype(np.uint8)
renderer = kernel.BrickRenderer(volume, Brick(0, (0, 0, 0), (24, 24, 24)), (0.0, 255.0))
view = View(Camera.default_for((24, 24, 24)), 32, 32, colormaps.DEFAULT)
partial = renderer.render(view, colormaps.lut(colormaps.DEFAULT))
print(json.dumps({{"modules": [m for m in ("scipy", "cffi") if m in sys.modules],
                  "image": partial.data.tolist(), "x0": partial.x0, "y0": partial.y0}}))
"""


def _render_in_a_process(load: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", RENDER.format(load=load)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.skipif(
    importlib.util.find_spec("scipy") is None or importlib.util.find_spec("cffi") is None,
    reason="scipy and cffi are not installed: numba cannot load them anyway",
)
def test_kernels_load_without_scipy_and_cffi_and_render_the_same() -> None:
    lean = _render_in_a_process(
        "from hpcrun.node.viewer import jit\nkernel = jit.load('hpcrun.node.viewer.kernel')"
    )
    full = _render_in_a_process("import hpcrun.node.viewer.kernel as kernel")
    assert lean["modules"] == []  # numba went without them, through the first render
    assert full["modules"] == ["scipy", "cffi"]  # what a plain import costs
    assert (lean["image"], lean["x0"], lean["y0"]) == (full["image"], full["x0"], full["y0"])


@pytest.mark.skipif(
    importlib.util.find_spec("scipy") is None or importlib.util.find_spec("cffi") is None,
    reason="scipy and cffi are not installed: numba cannot load them anyway",
)
def test_the_viewer_loads_its_compositor_lean() -> None:
    code = (
        "import sys, json\n"
        "from hpcrun.node.viewer import server\n"
        "compositor = server._warm_compositor().get()\n"
        "print(json.dumps([compositor.__name__]"
        " + [m for m in ('scipy', 'cffi') if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    assert json.loads(done.stdout.splitlines()[-1]) == ["hpcrun.node.viewer.compositor"]


def test_refusing_is_scoped_and_spares_loaded_packages() -> None:
    before = list(sys.meta_path)
    with jit.refusing(("hpcrun_no_such_package", "json")):
        with pytest.raises(ImportError, match="not loaded"):
            __import__("hpcrun_no_such_package.sub")
        import json.decoder  # loaded already: not refused

        assert json.decoder is not None
    assert sys.meta_path == before
    with pytest.raises(ModuleNotFoundError):  # the ordinary failure again
        __import__("hpcrun_no_such_package")


def test_kernel_loader_loads_in_the_background() -> None:
    release = threading.Event()
    asked: list[str] = []

    def importer(name: str) -> ModuleType:
        asked.append(name)
        release.wait()
        return ModuleType(name)

    loader = jit.KernelLoader("some.kernels", importer=importer).start()
    assert not loader.ready  # still loading: the importer waits for the test
    release.set()
    module = loader.get()
    assert module.__name__ == "some.kernels" and asked == ["some.kernels"] and loader.ready
    assert loader.seconds is not None


def test_kernel_loader_hands_its_error_to_whoever_asks() -> None:
    def importer(name: str) -> ModuleType:
        raise ImportError("no numba here")

    loader = jit.KernelLoader(importer=importer)  # not started: get() starts it
    with pytest.raises(ImportError, match="no numba here"):
        loader.get()
    with pytest.raises(ImportError, match="no numba here"):
        loader.get()
