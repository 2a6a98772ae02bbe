"""One brick's partial image as it travels from an agent to the viewer (`Partial`), in a
module of its own: the viewer reads partials before it needs the numba kernels, and
importing those (numba: ~0.26 s) is no longer on the way to its readiness line."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

PartialKind = Literal["rgba", "max"]

_KIND_CODES: dict[str, int] = {"rgba": 0, "max": 1}
_DTYPE_CODES: dict[int, type[np.floating[Any]]] = {0: np.float16, 1: np.float32}
_HEADER = struct.Struct("<4sIiiIIBBd")
_MAGIC = b"HPK1"


@dataclass(frozen=True)
class Partial:
    """One brick's image: `data` covers the screen rectangle at (x0, y0) of its size.
    kind "rgba": (h, w, 4) premultiplied float32; kind "max": (h, w) float32 normalised
    maxima, -1 where the ray took no sample. `seconds`: wall time the render took."""

    brick_id: int
    x0: int
    y0: int
    kind: PartialKind
    data: npt.NDArray[np.float32]
    seconds: float

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    def to_bytes(self, compact: bool = True) -> bytes:
        """Header + raw array. `compact` sends RGBA as float16 (error < 1/2000 per channel,
        half the bytes); maxima always go as float32 so MIP stays exact."""
        code = 0 if compact and self.kind == "rgba" else 1
        array = np.ascontiguousarray(self.data, dtype=_DTYPE_CODES[code])
        header = _HEADER.pack(
            _MAGIC,
            self.brick_id,
            self.x0,
            self.y0,
            self.height,
            self.width,
            _KIND_CODES[self.kind],
            code,
            self.seconds,
        )
        return header + array.tobytes()

    @staticmethod
    def from_bytes(blob: bytes | bytearray | memoryview) -> Partial:
        view = memoryview(blob)
        if len(view) < _HEADER.size:
            raise ValueError("partial image: truncated header")
        magic, brick_id, x0, y0, h, w, kind_code, code, seconds = _HEADER.unpack_from(view)
        if magic != _MAGIC or kind_code not in (0, 1) or code not in _DTYPE_CODES:
            raise ValueError("partial image: bad header")
        kind: PartialKind = "rgba" if kind_code == 0 else "max"
        shape = (h, w, 4) if kind == "rgba" else (h, w)
        dtype = np.dtype(_DTYPE_CODES[code])
        count = int(np.prod(shape))
        if len(view) != _HEADER.size + count * dtype.itemsize:
            raise ValueError("partial image: payload size does not match its header")
        array = np.frombuffer(view, dtype=dtype, count=count, offset=_HEADER.size)
        data = array.reshape(shape).astype(np.float32)
        return Partial(int(brick_id), int(x0), int(y0), kind, data, float(seconds))
