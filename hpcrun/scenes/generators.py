"""Procedural volume data, so scenes ship without data files and never download any.

Each generator is deterministic in (size, seed) and fills its output a slab of z-planes
at a time: memory stays bounded at any size (the caller may pass a memory-mapped file as
`out`), and small float32 slabs keep the NumPy work in cache, which is what makes a 256^3
supernova take well under the 3 s budget on one core. Sizes are (nx, ny, nz) like the
IndeX bbox; arrays are (nz, ny, nx), x fastest, like the raw files.

- `supernova`: stand-in for the NCSA core-collapse supernova entropy field: an aspherical
  turbulent shell with thin filaments around a bubbly high-entropy interior (uint8).
- `marschner_lobb`: the classic analytic test signal of volume rendering (uint8).
- `ct_phantom`: the 3D modified Shepp-Logan head phantom with scanner noise (uint16).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt

Size = int | tuple[int, int, int]
F32 = npt.NDArray[np.float32]

SLAB_PLANES = 16
"""z-planes computed per step: 16 x 256 x 256 float32 = 4 MiB, cache-sized temporaries."""


def _xyz(size: Size) -> tuple[int, int, int]:
    nx, ny, nz = (size, size, size) if isinstance(size, int) else size
    if min(nx, ny, nz) < 2:
        raise ValueError(f"volume size must be at least 2 voxels per axis, got {(nx, ny, nz)}")
    return nx, ny, nz


def _output(
    size: Size, dtype: type[np.generic], out: npt.NDArray[np.generic] | None
) -> tuple[tuple[int, int, int], npt.NDArray[np.generic]]:
    nx, ny, nz = _xyz(size)
    if out is None:
        out = np.empty((nz, ny, nx), dtype=dtype)
    elif out.shape != (nz, ny, nx) or out.dtype != np.dtype(dtype):
        raise ValueError(
            f"out has shape {out.shape} {out.dtype}, expected {(nz, ny, nx)} {np.dtype(dtype)}"
        )
    return (nx, ny, nz), out


def _slabs(nz: int) -> Iterator[tuple[int, int]]:
    for z0 in range(0, nz, SLAB_PLANES):
        yield z0, min(z0 + SLAB_PLANES, nz)


def _centered(n: int, half: float) -> F32:
    """Voxel-centre coordinates of one axis, 0 at the volume centre, +-1 at `half` voxels."""
    return ((np.arange(n, dtype=np.float32) + 0.5 - n / 2) / half).astype(np.float32)


class _ValueNoise:
    """Smooth lattice noise in [-1, 1], interpolated separably with smoothstep weights.

    The x and y interpolation is done once for the whole volume (a (lattice_z, ny, nx)
    table); each slab then costs only one lerp along z. Features have the same size on
    every axis: the lattice spacing is set by the largest dimension.
    """

    def __init__(self, rng: np.random.Generator, cells: int, size: tuple[int, int, int]) -> None:
        nx, ny, nz = size
        longest = max(size)
        axes = [self._axis(n, longest, cells) for n in (nx, ny, nz)]
        lz, ly, lx = (int(a[0].max()) + 2 for a in reversed(axes))
        lattice = rng.uniform(-1.0, 1.0, size=(lz, ly, lx)).astype(np.float32)
        (ix, wx), (iy, wy), (self._iz, self._wz) = axes
        along_x = lattice[:, :, ix] * (1 - wx) + lattice[:, :, ix + 1] * wx
        wy2 = wy[:, None]
        plane = along_x[:, iy, :] * (1 - wy2) + along_x[:, iy + 1, :] * wy2
        self._plane: F32 = plane.astype(np.float32, copy=False)

    @staticmethod
    def _axis(n: int, longest: int, cells: int) -> tuple[npt.NDArray[np.intp], F32]:
        t = (np.arange(n, dtype=np.float64) + 0.5) / longest * cells
        i = np.floor(t).astype(np.intp)
        f = t - np.floor(t)
        w: F32 = (f * f * (3 - 2 * f)).astype(np.float32)
        return i, w

    def slab(self, z0: int, z1: int) -> F32:
        i = self._iz[z0:z1]
        w = self._wz[z0:z1, None, None]
        lo = self._plane[i]
        value: F32 = lo + (self._plane[i + 1] - lo) * w
        return value


def _store(out: npt.NDArray[np.generic], z0: int, z1: int, value: F32, top: int) -> None:
    """Scale a [0, 1] slab to the integer range [0, top], rounding, into out[z0:z1]."""
    np.clip(value, 0.0, 1.0, out=value)
    value *= np.float32(top)
    value += np.float32(0.5)
    out[z0:z1] = value.astype(out.dtype)


def supernova(
    size: Size, seed: int = 1074, out: npt.NDArray[np.generic] | None = None
) -> npt.NDArray[np.generic]:
    """A turbulent supernova-like entropy field, uint8, shape (nz, ny, nx).

    Layers, all driven by value noise from `seed`: an aspherical shell (radius wobbling by
    ~20 % with large lobes), thin filaments carved into it by ridged noise (1-|n|)^6, and a
    bubbly interior at about half the shell's value; the surroundings stay near zero, so
    a colormap domain starting around 0.2 shows the shell and its filaments.
    """
    (nx, ny, nz), out = _output(size, np.uint8, out)
    rng = np.random.default_rng(seed)
    shape = (nx, ny, nz)
    lobes = _ValueNoise(rng, 3, shape)
    swirl = _ValueNoise(rng, 8, shape)
    ridge = _ValueNoise(rng, 20, shape)
    fine = _ValueNoise(rng, 44, shape)
    half = max(shape) / 2
    x, y, z = _centered(nx, half), _centered(ny, half), _centered(nz, half)
    xy2 = x[None, :] ** 2 + y[:, None] ** 2
    radius, width = np.float32(0.6), np.float32(0.09)
    for z0, z1 in _slabs(nz):
        r = np.sqrt(xy2[None, :, :] + (z[z0:z1] ** 2)[:, None, None])
        sw = swirl.slab(z0, z1)
        rw = r * (1 + 0.22 * lobes.slab(z0, z1) + 0.07 * sw)
        shell = np.exp(-(((rw - radius) / width) ** 2))
        fil = 1 - np.abs(ridge.slab(z0, z1) + 0.45 * fine.slab(z0, z1))
        fil **= 6
        inside = np.clip((radius - rw) / np.float32(0.05), 0, 1)
        bubbles = 0.5 + 0.5 * swirl.slab(z0, z1) * fine.slab(z0, z1)
        value = shell * (0.35 + 0.65 * fil) + 0.45 * inside * (0.6 + 0.4 * sw) * bubbles
        _store(out, z0, z1, value.astype(np.float32, copy=False), 255)
    return out


def marschner_lobb(
    size: Size, seed: int = 0, out: npt.NDArray[np.generic] | None = None
) -> npt.NDArray[np.generic]:
    """The Marschner-Lobb test signal (1994) on [-1, 1]^3, uint8, shape (nz, ny, nx).

    rho = (1 - sin(pi z / 2) + a (1 + cos(2 pi f cos(pi r / 2)))) / (2 (1 + a)),
    r = sqrt(x^2 + y^2), f = 6, a = 0.25: concentric wavy rings that expose the
    reconstruction filter and sampling rate of a renderer. Analytic, so `seed` is unused.
    """
    del seed
    (nx, ny, nz), out = _output(size, np.uint8, out)
    f_m, alpha = 6.0, 0.25
    x = (np.arange(nx, dtype=np.float32) + 0.5) / nx * 2 - 1
    y = (np.arange(ny, dtype=np.float32) + 0.5) / ny * 2 - 1
    z = (np.arange(nz, dtype=np.float32) + 0.5) / nz * 2 - 1
    r = np.sqrt(x[None, :] ** 2 + y[:, None] ** 2)
    rings = (alpha * (1 + np.cos(2 * math.pi * f_m * np.cos(math.pi * r / 2)))).astype(np.float32)
    scale = np.float32(1 / (2 * (1 + alpha)))
    for z0, z1 in _slabs(nz):
        tilt = (1 - np.sin(np.float32(math.pi / 2) * z[z0:z1]))[:, None, None]
        _store(out, z0, z1, ((tilt + rings[None, :, :]) * scale).astype(np.float32), 255)
    return out


# Modified 3D Shepp-Logan phantom (Toft 1996 / Kak & Slaney), head in [-1, 1]^3:
# intensity, semi-axes (a, b, c), centre (x0, y0, z0), rotation about z in degrees.
_SHEPP_LOGAN: tuple[tuple[float, float, float, float, float, float, float, float], ...] = (
    (1.0, 0.6900, 0.920, 0.810, 0.00, 0.000, 0.00, 0.0),
    (-0.8, 0.6624, 0.874, 0.780, 0.00, -0.0184, 0.00, 0.0),
    (-0.2, 0.1100, 0.310, 0.220, 0.22, 0.000, 0.00, -18.0),
    (-0.2, 0.1600, 0.410, 0.280, -0.22, 0.000, 0.00, 18.0),
    (0.1, 0.2100, 0.250, 0.410, 0.00, 0.350, -0.15, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.00, 0.100, 0.25, 0.0),
    (0.1, 0.0460, 0.046, 0.050, 0.00, -0.100, 0.25, 0.0),
    (0.1, 0.0460, 0.023, 0.050, -0.08, -0.605, 0.00, 0.0),
    (0.1, 0.0230, 0.023, 0.020, 0.00, -0.606, 0.00, 0.0),
    (0.1, 0.0230, 0.046, 0.020, 0.06, -0.605, 0.00, 0.0),
)


def ct_phantom(
    size: Size, seed: int = 0, out: npt.NDArray[np.generic] | None = None
) -> npt.NDArray[np.generic]:
    """A CT-like head: the 3D modified Shepp-Logan phantom, uint16, shape (nz, ny, nx).

    Skull 1.0, brain ~0.2, ventricles ~0, small tumours ~0.3 of the full uint16 range,
    plus Gaussian noise (sigma 1 %, seeded per z-plane so slabs never change the result)
    and an air floor at 0, the way a reconstructed CT slice stack looks.
    """
    (nx, ny, nz), out = _output(size, np.uint16, out)
    x = (np.arange(nx, dtype=np.float32) + 0.5) / nx * 2 - 1
    y = (np.arange(ny, dtype=np.float32) + 0.5) / ny * 2 - 1
    z = (np.arange(nz, dtype=np.float32) + 0.5) / nz * 2 - 1
    for z0, z1 in _slabs(nz):
        value = np.zeros((z1 - z0, ny, nx), dtype=np.float32)
        zs = z[z0:z1]
        for amp, a, b, c, cx, cy, cz, phi in _SHEPP_LOGAN:
            dz2 = ((zs - cz) / c) ** 2
            rows = np.nonzero(dz2 <= 1)[0]
            if rows.size == 0:
                continue
            cos, sin = math.cos(math.radians(phi)), math.sin(math.radians(phi))
            u = ((x[None, :] - cx) * cos + (y[:, None] - cy) * sin) / a
            v = (-(x[None, :] - cx) * sin + (y[:, None] - cy) * cos) / b
            uv = (u * u + v * v).astype(np.float32)
            inside = uv[None, :, :] + dz2[rows, None, None] <= 1
            value[rows] += np.float32(amp) * inside
        for k in range(z0, z1):
            noise = np.random.default_rng([seed, k]).standard_normal((ny, nx), dtype=np.float32)
            plane = value[k - z0]
            plane += np.float32(0.01) * noise * (plane > 0)
        _store(out, z0, z1, value, 65535)
    return out


GENERATORS: dict[str, Callable[..., npt.NDArray[np.generic]]] = {
    "supernova": supernova,
    "marschner_lobb": marschner_lobb,
    "ct_phantom": ct_phantom,
}
"""Generator name (as written in generate.json) -> function; formats: GENERATOR_FORMATS."""
