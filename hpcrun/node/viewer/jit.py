"""Loading numba and the kernels lean, once per process, in the background if asked.

numba's start-up is most of a render agent's (and of the viewer compositor's) CPU time
before its first frame: importing numba, then, at the first call of any kernel, filling
its typing and lowering registries, even when every kernel comes from numba's on-disk
cache. Two optional integrations take over a quarter of that, and no kernel here uses
them: `numba.np.arraymath` imports `scipy.linalg` (~0.2 CPU-s) only to learn whether
`np.dot` may call BLAS, and numba's cffi support imports cffi and its C parser
(~0.09 CPU-s). `prepare_numba` loads numba and fills its registries with those two
imports refused, so numba goes without them (as it does where they are not installed);
the kernels use neither. Nothing else is refused, and only while numba loads: a later
`import scipy` works as usual.

`KernelLoader` does that (and imports a kernel module) in a thread, so a render agent
can join its viewer at once and render as soon as the kernels are there.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType

REFUSED = ("scipy", "cffi")
"""Top-level packages numba may not import while it loads (see the module docstring)."""

_lock = threading.RLock()
_prepared = False


class _Refuse(importlib.abc.MetaPathFinder):
    """An import finder that makes `import <name>` fail for the given packages."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            raise ImportError(f"{fullname} is not loaded for numba's optional support")
        return None


@contextlib.contextmanager
def refusing(names: Sequence[str] = REFUSED) -> Iterator[None]:
    """Imports of `names` (and their submodules) fail inside the block; a package that
    is loaded already is not refused (numba finds it anyway)."""
    finder = _Refuse([name for name in names if name not in sys.modules])
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def prepare_numba() -> float:
    """Import numba and fill its registries without scipy and cffi (once per process;
    thread-safe); the seconds it took, 0.0 when already done."""
    global _prepared
    with _lock:
        if _prepared:
            return 0.0
        started = time.perf_counter()
        with refusing():
            import numba  # noqa: F401
            from numba.core.compiler_lock import global_compiler_lock
            from numba.core.registry import cpu_target

            # What numba does at its first compile or cache load, done now (under the
            # lock numba's compilations take), while the optional imports are refused.
            with global_compiler_lock:
                cpu_target.typing_context.refresh()
                cpu_target.target_context.refresh()
        _prepared = True
        return time.perf_counter() - started


def load(module: str) -> ModuleType:
    """`module` (a kernel module: it imports numba), numba prepared lean first."""
    with _lock:
        prepare_numba()
        return importlib.import_module(module)


class KernelLoader:
    """Loads a kernel module in a background thread; `get` waits for it (re-raising what
    the loading raised)."""

    def __init__(
        self,
        module: str = "hpcrun.node.viewer.kernel",
        *,
        importer: Callable[[str], ModuleType] = load,
    ) -> None:
        self.module = module
        self.seconds: float | None = None
        self._importer = importer
        self._result: ModuleType | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> KernelLoader:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="load-kernels", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            self._result = self._importer(self.module)
        except BaseException as exc:  # handed to whoever asks for the kernels
            self._error = exc
        finally:
            self.seconds = time.perf_counter() - started
            self._done.set()

    @property
    def ready(self) -> bool:
        return self._done.is_set()

    def get(self) -> ModuleType:
        """The loaded module (started here if nobody started it)."""
        self.start()
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result
