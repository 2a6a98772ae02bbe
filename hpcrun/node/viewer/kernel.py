"""The CPU ray caster: renders one brick of a volume into a `Partial` image.

Rays start at the eye and take samples at t = k * step (k integer) along the unit
direction of their pixel: one lattice per ray, shared by the whole volume and every
brick. A brick takes exactly the samples that fall inside its box (half-open), and every
sample is interpolated in global voxel coordinates from a copy of the brick with a
one-voxel ghost border, so the bricks of a volume together take the very samples a
whole-volume render takes, with bit-identical values: sort-last compositing then differs
from a one-brick render only by where early ray termination cuts in (MIP: not at all).

Speed comes from what VTK's fixed-point mapper does too: front-to-back emission-
absorption with early termination at 0.99 opacity, and empty-space skipping. The brick is
covered by macro cells of CELL^3 voxels holding the value range of the voxels a sample in
the cell can touch; per frame a cell whose range maps to zero opacity in the colormap is
marked empty. Rays (and the partial's screen rectangle) are clipped to the box of the
non-empty cells. In composite mode a ray steps its samples in fixed point (integer voxel
index and fraction, no floor per sample); each sample looks up the cell of the voxels it
interpolates from, and in an empty cell the ray jumps to its first sample outside the cube
of empty cells around it (a per-frame Chebyshev distance field over the cells, cached
while the colormap leaves the empty cells alike). Only samples that are sure to map to
zero opacity are skipped, so the image is the plain march's. MIP walks the cells (3-D DDA)
and skips those whose maximum cannot raise the ray's maximum. Pixels go in 8x8 tiles over
numba's threads, so neighbouring rays share cache lines of the brick's contiguous copy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt

from hpcrun.node.viewer.bricks import Brick
from hpcrun.node.viewer.camera import Camera, View
from hpcrun.node.viewer.colormaps import apply_ramp
from hpcrun.node.viewer.partial import Partial

CELL = 8
TERMINATE_ALPHA = 0.99
TILE = 8
FIX = 32  # fractional bits of the fixed-point sample positions
FIX_ONE = float(1 << FIX)
FIX_MASK = (1 << FIX) - 1
F = TypeVar("F", bound=Callable[..., Any])


def _njit(parallel: bool = False) -> Callable[[F], F]:
    """numba's njit with the options every kernel uses, typed so mypy keeps signatures."""
    return cast(Callable[[F], F],
                numba.njit(cache=True, nogil=True, fastmath=True, parallel=parallel))


# -- numba kernels -------------------------------------------------------------------------


@_njit()
def _cell_ranges(data: Any, cell: int, shape: Any) -> tuple[Any, Any]:
    """Per macro cell (over the brick's own voxels, shape = brick shape zyx), the min and
    max raw value of the padded voxels its samples interpolate from: padded indices
    c*cell .. (c+1)*cell + 1 on each axis."""
    ncz = (shape[0] + cell - 1) // cell
    ncy = (shape[1] + cell - 1) // cell
    ncx = (shape[2] + cell - 1) // cell
    mins = np.empty((ncz, ncy, ncx), dtype=np.float32)
    maxs = np.empty((ncz, ncy, ncx), dtype=np.float32)
    pz, py, px = data.shape
    for cz in range(ncz):
        for cy in range(ncy):
            for cx in range(ncx):
                lo = np.float32(np.inf)
                hi = np.float32(-np.inf)
                for z in range(cz * cell, min((cz + 1) * cell + 2, pz)):
                    for y in range(cy * cell, min((cy + 1) * cell + 2, py)):
                        for x in range(cx * cell, min((cx + 1) * cell + 2, px)):
                            v = np.float32(data[z, y, x])
                            lo = min(lo, v)
                            hi = max(hi, v)
                mins[cz, cy, cx] = lo
                maxs[cz, cy, cx] = hi
    return mins, maxs


@_njit()
def _ray_interval(box: Any, ex: float, ey: float, ez: float,
                  dx: float, dy: float, dz: float) -> tuple[float, float]:
    """[t0, t1) of the ray inside the box (x0,y0,z0,x1,y1,z1), t0 >= 0 (in front)."""
    t0 = 0.0
    t1 = np.inf
    for axis in range(3):
        e = ex if axis == 0 else (ey if axis == 1 else ez)
        d = dx if axis == 0 else (dy if axis == 1 else dz)
        lo = box[axis]
        hi = box[axis + 3]
        if d == 0.0:
            if e < lo or e >= hi:
                return 1.0, 0.0
        else:
            ta = (lo - e) / d
            tb = (hi - e) / d
            if ta > tb:
                ta, tb = tb, ta
            t0 = max(t0, ta)
            t1 = min(t1, tb)
    return t0, t1


@_njit()
def _sample(flat: Any, nx: int, ny: int, nz: int, org_x: int, org_y: int, org_z: int,
            x: float, y: float, z: float) -> float:
    """Trilinear value at world point (x,y,z) from the padded brick `flat` (C order,
    shape (nz, ny, nx)); voxel centres sit at i + 0.5. Indices are global, then shifted
    to the brick (origin = brick lo - 1), so the same point gives the same value in every
    brick holding it. Unsigned flat indices spare numba's negative-index handling."""
    gx = x - 0.5
    gy = y - 0.5
    gz = z - 0.5
    ix = math.floor(gx)
    iy = math.floor(gy)
    iz = math.floor(gz)
    fx = np.float32(gx - ix)
    fy = np.float32(gy - iy)
    fz = np.float32(gz - iz)
    lx = min(max(ix - org_x, 0), nx - 2)
    ly = min(max(iy - org_y, 0), ny - 2)
    lz = min(max(iz - org_z, 0), nz - 2)
    sxy = nx * ny
    base = (lz * ny + ly) * nx + lx
    c000 = np.float32(flat[np.uintp(base)])
    c001 = np.float32(flat[np.uintp(base + 1)])
    c010 = np.float32(flat[np.uintp(base + nx)])
    c011 = np.float32(flat[np.uintp(base + nx + 1)])
    c100 = np.float32(flat[np.uintp(base + sxy)])
    c101 = np.float32(flat[np.uintp(base + sxy + 1)])
    c110 = np.float32(flat[np.uintp(base + sxy + nx)])
    c111 = np.float32(flat[np.uintp(base + sxy + nx + 1)])
    c00 = c000 + (c001 - c000) * fx
    c01 = c010 + (c011 - c010) * fx
    c10 = c100 + (c101 - c100) * fx
    c11 = c110 + (c111 - c110) * fx
    c0 = c00 + (c01 - c00) * fy
    c1 = c10 + (c11 - c10) * fy
    return float(c0 + (c1 - c0) * fz)


@_njit()
def _ray_dir(ray: Any, px: float, py: float) -> tuple[float, float, float]:
    """Unit direction of the ray through pixel (px, py) (see `View.ray_basis`)."""
    dx = ray[3] + px * ray[6] + py * ray[9]
    dy = ray[4] + px * ray[7] + py * ray[10]
    dz = ray[5] + px * ray[8] + py * ray[11]
    norm = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
    return dx * norm, dy * norm, dz * norm


@_njit()
def _dda_axis(e: float, d: float, lo: float, cell: int, cells: int,
              t: float) -> tuple[int, float, float, int]:
    """One axis of the cell walk (Amanatides & Woo) from the point at t: (cell index,
    t of its far boundary, t per cell, index step)."""
    c = min(max(math.floor((e + t * d - lo) / cell), 0), cells - 1)
    if d > 0.0:
        return c, (lo + (c + 1) * cell - e) / d, cell / d, 1
    if d < 0.0:
        return c, (lo + c * cell - e) / d, -cell / d, -1
    return c, np.inf, np.inf, 0


@_njit()
def _dda_next(cx: int, cy: int, cz: int, tx: float, ty: float, tz: float,
              dtx: float, dty: float, dtz: float, sx: int, sy: int, sz: int,
              ncx: int, ncy: int, ncz: int) -> tuple[int, int, int, float, float, float, bool]:
    """Step the cell walk into the next cell along whichever axis boundary comes first;
    the flag says whether the ray is still inside the brick's grid of cells."""
    if tx <= ty and tx <= tz:
        cx += sx
        return cx, cy, cz, tx + dtx, ty, tz, 0 <= cx < ncx
    if ty <= tz:
        cy += sy
        return cx, cy, cz, tx, ty + dty, tz, 0 <= cy < ncy
    cz += sz
    return cx, cy, cz, tx, ty, tz + dtz, 0 <= cz < ncz


@_njit()
def _cell_distance(empty: Any) -> Any:
    """Per macro cell, the Chebyshev distance (in cells, at most 255) to the nearest cell
    that is not empty: 0 for those, d > 0 where every cell of the cube of radius d - 1
    around it is empty (cells past the grid count as empty: no ray samples there). Three
    separable passes of min over offsets o of max(|o|, d), each stopping at the first
    offset that cannot improve on what it has."""
    ncz, ncy, ncx = empty.shape
    d = np.empty((ncz, ncy, ncx), dtype=np.int32)
    for z in range(ncz):
        for y in range(ncy):
            for x in range(ncx):
                d[z, y, x] = 255 if empty[z, y, x] else 0
    e = np.empty_like(d)
    for axis in range(3):
        n = ncx if axis == 0 else (ncy if axis == 1 else ncz)
        for z in range(ncz):
            for y in range(ncy):
                for x in range(ncx):
                    c = x if axis == 0 else (y if axis == 1 else z)
                    best = d[z, y, x]
                    o = 1
                    while o < best and o < n:
                        for s in (c - o, c + o):
                            if 0 <= s < n:
                                if axis == 0:
                                    v = d[z, y, s]
                                elif axis == 1:
                                    v = d[z, s, x]
                                else:
                                    v = d[s, y, x]
                                best = min(best, max(o, v))
                        o += 1
                    e[z, y, x] = best
        d, e = e, d
    out = np.empty(ncz * ncy * ncx, dtype=np.uint8)
    for z in range(ncz):
        for y in range(ncy):
            for x in range(ncx):
                out[(z * ncy + y) * ncx + x] = d[z, y, x]
    return out


@_njit()
def _fix(v: float) -> int:
    """v in FIX-bit fixed point (rounded to nearest)."""
    return math.floor(v * FIX_ONE + 0.5)


@_njit()
def _exit_k(p0: int, dp: int, inv: float, c: int, dist: int, cells: int, cell: int,
            k: int) -> int:
    """The first sample index after k whose voxel index on this axis ((p0 + k * dp) >> FIX,
    padded) leaves the cube of empty cells c - dist + 1 .. c + dist - 1 (sample k lies in
    cell c); a huge number when it never does inside the grid. Exact integer arithmetic
    on the fixed-point positions (the float quotient, inv = 1 / dp, only proposes it; one
    step back is checked)."""
    if dp > 0:
        edge = c + dist
        if edge >= cells:
            return 1 << 62
        th = (edge * cell) << FIX  # first position past the cube
        kk = max(math.ceil((th - p0) * inv), k + 1)
        if kk > k + 1 and p0 + (kk - 1) * dp >= th:
            kk -= 1
        return kk
    if dp < 0:
        edge = c - dist + 1
        if edge <= 0:
            return 1 << 62
        th = (edge * cell) << FIX  # positions below th are past the cube
        kk = max(math.floor((th - p0) * inv) + 1, k + 1)
        if kk > k + 1 and p0 + (kk - 1) * dp < th:
            kk -= 1
        return kk
    return 1 << 62


@_njit()
def _inside(x0: int, y0: int, z0: int, dx: int, dy: int, dz: int, k: int, nx: int,
            ny: int, nz: int) -> bool:
    """Whether sample k's trilinear footprint lies in the padded brick (nz, ny, nx)."""
    lx = (x0 + k * dx) >> FIX
    ly = (y0 + k * dy) >> FIX
    lz = (z0 + k * dz) >> FIX
    return 0 <= lx <= nx - 2 and 0 <= ly <= ny - 2 and 0 <= lz <= nz - 2


@_njit(parallel=True)
def _render_composite(data: Any, org: Any, box: Any, dist: Any, cell: int, cell_x: Any,
                      cell_y: Any, cell_z: Any, ray: Any, rx0: int, ry0: int, out: Any,
                      lut: Any, s2: float, o2: float, step: float) -> None:
    """Front-to-back emission-absorption into out[h, w, 4] (premultiplied RGBA).

    Each ray steps its samples k in fixed point (position p0 + k * dp, FIX fractional
    bits, relative to the padded brick's voxel 0: integer voxel index and fraction without
    a floor per sample). A sample looks up the macro cell of the voxels it interpolates
    from (the low 32 bits of `cell_x[i] + cell_y[j] + cell_z[k]` are its flat index in
    `dist`, the high bits of each its coordinate); in an empty cell (dist > 0) the ray
    jumps to its first sample outside the cube of empty cells around it. No sample that
    could gather colour is ever skipped, so the image is the one of the plain march."""
    h, w = out.shape[0], out.shape[1]
    tiles_x = (w + TILE - 1) // TILE
    tiles = tiles_x * ((h + TILE - 1) // TILE)
    ex, ey, ez = ray[0], ray[1], ray[2]
    org_x, org_y, org_z = org[0], org[1], org[2]
    pnz, pny, pnx = data.shape
    low = np.int64(0xFFFFFFFF)
    ncx = (cell_x[pnx - 2] >> 32) + 1
    ncy = (cell_y[pny - 2] >> 32) + 1
    ncz = (cell_z[pnz - 2] >> 32) + 1
    sxy = pnx * pny
    flat = data.reshape(pnz * pny * pnx)
    frac = np.float32(1.0 / FIX_ONE)
    lut4 = np.ascontiguousarray(lut).reshape(lut.shape[0] * 4)
    stop = np.float32(TERMINATE_ALPHA)
    s2f = np.float32(s2)
    o2f = np.float32(o2)
    # Positions relative to the padded brick's voxel 0: the integer part is the index.
    gx0 = _fix(ex - 0.5) - (org_x << FIX)
    gy0 = _fix(ey - 0.5) - (org_y << FIX)
    gz0 = _fix(ez - 0.5) - (org_z << FIX)
    for tile in numba.prange(tiles):
        ty0 = (tile // tiles_x) * TILE
        tx0 = (tile % tiles_x) * TILE
        for j in range(ty0, min(ty0 + TILE, h)):
            for i in range(tx0, min(tx0 + TILE, w)):
                dx, dy, dz = _ray_dir(ray, float(rx0 + i), float(ry0 + j))
                t0, t1 = _ray_interval(box, ex, ey, ez, dx, dy, dz)
                if t0 >= t1:
                    continue
                k = math.ceil(t0 / step)
                kend = math.ceil(t1 / step)
                ddx = _fix(dx * step)
                ddy = _fix(dy * step)
                ddz = _fix(dz * step)
                # Samples are inside the box, so their voxels are inside the padded brick
                # (half a voxel to spare each side); positions are linear in k, so checking
                # the first and last sample checks all (a guard, never met in practice).
                while k < kend and not _inside(gx0, gy0, gz0, ddx, ddy, ddz, k, pnx, pny,
                                               pnz):
                    k += 1
                while kend > k and not _inside(gx0, gy0, gz0, ddx, ddy, ddz, kend - 1, pnx,
                                               pny, pnz):
                    kend -= 1
                X = gx0 + k * ddx
                Y = gy0 + k * ddy
                Z = gz0 + k * ddz
                inv_x = 1.0 / ddx if ddx else 0.0
                inv_y = 1.0 / ddy if ddy else 0.0
                inv_z = 1.0 / ddz if ddz else 0.0
                r = np.float32(0.0)
                g = np.float32(0.0)
                b = np.float32(0.0)
                a = np.float32(0.0)
                while k < kend:
                    lx = X >> FIX
                    ly = Y >> FIX
                    lz = Z >> FIX
                    cx = cell_x[np.uintp(lx)]
                    cy = cell_y[np.uintp(ly)]
                    cz = cell_z[np.uintp(lz)]
                    far = dist[np.uintp((cx + cy + cz) & low)]
                    if far:
                        # An empty cell: jump past the empty cube around it.
                        far = int(far)
                        kx = _exit_k(gx0, ddx, inv_x, cx >> 32, far, ncx, cell, k)
                        ky = _exit_k(gy0, ddy, inv_y, cy >> 32, far, ncy, cell, k)
                        kz = _exit_k(gz0, ddz, inv_z, cz >> 32, far, ncz, cell, k)
                        k = min(kx, ky, kz)
                        X = gx0 + k * ddx
                        Y = gy0 + k * ddy
                        Z = gz0 + k * ddz
                        continue
                    fx = np.float32(X & FIX_MASK) * frac
                    fy = np.float32(Y & FIX_MASK) * frac
                    fz = np.float32(Z & FIX_MASK) * frac
                    base = (lz * pny + ly) * pnx + lx
                    c000 = np.float32(flat[np.uintp(base)])
                    c001 = np.float32(flat[np.uintp(base + 1)])
                    c010 = np.float32(flat[np.uintp(base + pnx)])
                    c011 = np.float32(flat[np.uintp(base + pnx + 1)])
                    c100 = np.float32(flat[np.uintp(base + sxy)])
                    c101 = np.float32(flat[np.uintp(base + sxy + 1)])
                    c110 = np.float32(flat[np.uintp(base + sxy + pnx)])
                    c111 = np.float32(flat[np.uintp(base + sxy + pnx + 1)])
                    c00 = c000 + (c001 - c000) * fx
                    c01 = c010 + (c011 - c010) * fx
                    c10 = c100 + (c101 - c100) * fx
                    c11 = c110 + (c111 - c110) * fx
                    c0 = c00 + (c01 - c00) * fy
                    c1 = c10 + (c11 - c10) * fy
                    v = c0 + (c1 - c0) * fz
                    k += 1
                    X += ddx
                    Y += ddy
                    Z += ddz
                    idx = np.uintp(min(max(int(v * s2f + o2f), 0), 255) * 4)
                    rest = np.float32(1.0) - a
                    r += rest * lut4[idx]
                    g += rest * lut4[idx + np.uintp(1)]
                    b += rest * lut4[idx + np.uintp(2)]
                    a += rest * lut4[idx + np.uintp(3)]
                    if a >= stop:
                        break
                out[j, i, 0] = r
                out[j, i, 1] = g
                out[j, i, 2] = b
                out[j, i, 3] = a


@_njit(parallel=True)
def _render_mip(data: Any, org: Any, box: Any, cmax: Any, cell: int, lo: Any,
                ray: Any, rx0: int, ry0: int, out: Any, scale: float, offset: float,
                step: float) -> None:
    """Maximum normalised value per ray into out[h, w] (-1 where the ray takes no sample).
    Cells whose maximum cannot beat the ray's current maximum are skipped, a cell is left
    once the ray reached its maximum, and a ray stops at the brick's maximum. `cmax` is
    nudged up a little, so these shortcuts never change the result."""
    h, w = out.shape[0], out.shape[1]
    ncz, ncy, ncx = cmax.shape
    peak = cmax.max()
    tiles_x = (w + TILE - 1) // TILE
    tiles = tiles_x * ((h + TILE - 1) // TILE)
    ex, ey, ez = ray[0], ray[1], ray[2]
    org_x, org_y, org_z = org[0], org[1], org[2]
    pnz, pny, pnx = data.shape
    flat = data.reshape(pnz * pny * pnx)
    for tile in numba.prange(tiles):
        ty0 = (tile // tiles_x) * TILE
        tx0 = (tile % tiles_x) * TILE
        for j in range(ty0, min(ty0 + TILE, h)):
            for i in range(tx0, min(tx0 + TILE, w)):
                dx, dy, dz = _ray_dir(ray, float(rx0 + i), float(ry0 + j))
                t0, t1 = _ray_interval(box, ex, ey, ez, dx, dy, dz)
                if t0 >= t1:
                    continue
                cx, tx, dtx, sx = _dda_axis(ex, dx, lo[0], cell, ncx, t0)
                cy, ty, dty, sy = _dda_axis(ey, dy, lo[1], cell, ncy, t0)
                cz, tz, dtz, sz = _dda_axis(ez, dz, lo[2], cell, ncz, t0)
                best = np.float32(-1.0)
                k = 0
                tc = t0
                while True:
                    tn = min(tx, ty, tz, t1)
                    top = cmax[cz, cy, cx]
                    if top > best:
                        k = max(k, math.ceil(tc / step))
                        while True:
                            t = k * step
                            if t >= tn:
                                break
                            k += 1
                            v = _sample(flat, pnx, pny, pnz, org_x, org_y, org_z,
                                        ex + t * dx, ey + t * dy, ez + t * dz)
                            v = min(max(v * scale + offset, 0.0), 1.0)
                            if v > best:
                                best = np.float32(v)
                                if best >= top:  # nothing left in this cell is higher
                                    break
                    if tn >= t1 or best >= peak:
                        break
                    tc = tn
                    cx, cy, cz, tx, ty, tz, inside = _dda_next(
                        cx, cy, cz, tx, ty, tz, dtx, dty, dtz, sx, sy, sz, ncx, ncy, ncz)
                    if not inside:
                        break
                out[j, i] = best


@_njit()
def blend_under(acc: Any, data: Any, y0: int, x0: int) -> None:
    """The compositor's "under": a premultiplied partial blended under what `acc` holds,
    at (y0, x0), in one pass (NumPy took four passes and two temporaries: 9 ms of a
    100 ms frame, now under 2)."""
    h = min(data.shape[0], acc.shape[0] - y0)
    w = min(data.shape[1], acc.shape[1] - x0)
    for j in range(h):
        for i in range(w):
            a = data[j, i, 3]
            if a == 0.0:
                continue
            rest = np.float32(1.0) - acc[y0 + j, x0 + i, 3]
            if rest <= 0.0:
                continue
            for c in range(4):
                acc[y0 + j, x0 + i, c] += rest * data[j, i, c]


@_njit()
def over_background(acc: Any, bg: Any, out: Any) -> None:
    """out = uint8(clip(rgb + (1 - alpha) * background)), rounded, in one pass."""
    for j in range(acc.shape[0]):
        for i in range(acc.shape[1]):
            rest = np.float32(1.0) - acc[j, i, 3]
            for c in range(3):
                v = (acc[j, i, c] + rest * bg[c]) * np.float32(255.0) + np.float32(0.5)
                out[j, i, c] = np.uint8(min(max(v, np.float32(0.0)), np.float32(255.0)))


# -- the Python side -----------------------------------------------------------------------


def intersect(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, ...] | None:
    """The overlap of two (x0,y0,z0,x1,y1,z1) boxes, or None when they do not overlap."""
    lo = [max(a[i], b[i]) for i in range(3)]
    hi = [min(a[i + 3], b[i + 3]) for i in range(3)]
    if any(h <= low for low, h in zip(lo, hi, strict=True)):
        return None
    return (*lo, *hi)


def clip_box(brick: Brick, roi: tuple[float, ...]) -> tuple[float, ...] | None:
    """The brick's box intersected with the ROI, or None when they do not overlap."""
    return intersect(brick.box_xyz(), roi)


def screen_rect(view: View, box: tuple[float, ...]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the pixels whose rays may meet the box: the projected corners
    plus a pixel of margin; the whole image when a corner is behind the eye."""
    xs: list[float] = []
    ys: list[float] = []
    for cx in (box[0], box[3]):
        for cy in (box[1], box[4]):
            for cz in (box[2], box[5]):
                px, py, depth = view.project((cx, cy, cz))
                if depth <= 1e-6:
                    return (0, 0, view.width, view.height)
                xs.append(px)
                ys.append(py)
    x0 = max(0, math.floor(min(xs)) - 1)
    y0 = max(0, math.floor(min(ys)) - 1)
    x1 = min(view.width, math.ceil(max(xs)) + 1)
    y1 = min(view.height, math.ceil(max(ys)) + 1)
    return (x0, y0, max(x0, x1), max(y0, y1))


def step_lut(lut: npt.NDArray[np.float32], step: float) -> npt.NDArray[np.float32]:
    """The colormap for one sample of `step` voxels: opacity corrected
    (1 - (1 - a)^step) and colours premultiplied by it."""
    table = np.asarray(lut, dtype=np.float64)
    alpha = 1.0 - np.power(1.0 - np.clip(table[:, 3], 0.0, 1.0), step)
    out = np.empty((table.shape[0], 4), dtype=np.float32)
    out[:, :3] = table[:, :3] * alpha[:, None]
    out[:, 3] = alpha
    return out


class BrickRenderer:
    """Holds one brick (with a one-voxel ghost border for trilinear sampling) and its
    macro-cell value ranges; renders it for any view and colormap."""

    def __init__(self, volume: npt.NDArray[Any], brick: Brick,
                 value_range: tuple[float, float], cell: int = CELL) -> None:
        if volume.ndim != 3:
            raise ValueError(f"a volume is a 3-d array (nz, ny, nx), got shape {volume.shape}")
        self.brick = brick
        self.cell = cell
        nz, ny, nx = volume.shape
        lo, hi = brick.lo, brick.hi
        if any(h > n for h, n in zip(hi, (nz, ny, nx), strict=True)) or min(lo) < 0:
            raise ValueError(f"brick {brick.id} {lo}..{hi} is outside the volume {volume.shape}")
        src = volume[max(lo[0] - 1, 0):min(hi[0] + 1, nz),
                     max(lo[1] - 1, 0):min(hi[1] + 1, ny),
                     max(lo[2] - 1, 0):min(hi[2] + 1, nx)]
        pad = [(1 if lo[a] == 0 else 0, 1 if hi[a] == (nz, ny, nx)[a] else 0) for a in range(3)]
        dtype = volume.dtype if volume.dtype in (np.uint8, np.uint16, np.float32) else np.float32
        # Edge replication outside the volume clamps trilinear sampling to the edge voxel.
        self.data = np.ascontiguousarray(np.pad(np.asarray(src, dtype=dtype), pad, mode="edge"))
        vmin, vmax = float(value_range[0]), float(value_range[1])
        self.scale = 1.0 / (vmax - vmin) if vmax > vmin else 0.0
        self.offset = -vmin * self.scale
        self._org = np.array([lo[2] - 1, lo[1] - 1, lo[0] - 1], dtype=np.int64)
        self._lo = np.array([lo[2], lo[1], lo[0]], dtype=np.float64)
        self.cell_min, self.cell_max = _cell_ranges(self.data, cell,
                                                    np.array(brick.shape, dtype=np.int64))
        # Nudged up where values vary: a trilinear sample there may round a hair above
        # its cell's maximum (in a constant cell every sample is exactly that constant).
        top = np.clip(self.cell_max * self.scale + self.offset, 0.0, 1.0)
        self._cell_max_norm = np.where(self.cell_max > self.cell_min, top + 1e-6,
                                       top).astype(np.float32)
        # Padded voxel index i -> its cell c = i // cell (the cell covering the samples that
        # interpolate from voxels i, i + 1), per axis (x, y, z): c << 32 | c * stride, the
        # low halves of the three adding up to the cell's index in the flat cell grid.
        ncz, ncy, ncx = self.cell_min.shape
        self._cell_of = tuple(
            (c << 32) | (c * stride)
            for c, stride in (
                (np.minimum(np.arange(n + 1) // cell, cells - 1).astype(np.int64), stride)
                for n, cells, stride in ((brick.shape[2], ncx, 1), (brick.shape[1], ncy, ncx),
                                         (brick.shape[0], ncz, ncx * ncy))))
        self._dist: tuple[bytes, npt.NDArray[np.uint8]] = (b"", np.zeros(0, np.uint8))

    def _empty_cells(self, table: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
        """Cells all of whose possible samples map to zero opacity (one LUT entry of
        margin on both sides against rounding)."""
        s2, o2 = self.scale * 255.0, self.offset * 255.0 + 0.5
        first = np.clip(np.floor(self.cell_min * s2 + o2) - 1, 0, 255).astype(np.int64)
        last = np.clip(np.floor(self.cell_max * s2 + o2) + 1, 0, 255).astype(np.int64)
        opaque = np.concatenate(([0], np.cumsum(table[:, 3] > 0.0)))
        empty: npt.NDArray[np.uint8] = (opaque[last + 1] - opaque[first] == 0).astype(np.uint8)
        return empty

    def _distance(self, empty: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """`_cell_distance` of the empty cells, kept while the colormap leaves them alike."""
        key = np.packbits(empty).tobytes()
        cached_key, dist = self._dist  # one tuple: threads rendering at once stay consistent
        if key != cached_key:
            dist = _cell_distance(empty)
            self._dist = (key, dist)
        return dist

    def _occupied_box(self, empty: npt.NDArray[np.uint8]) -> tuple[float, ...] | None:
        """The box of the cells that are not empty (None: all are): rays and pixels
        outside it cannot gather any colour."""
        full = empty == 0
        spans = []
        for axis in range(3):
            others = tuple(a for a in range(3) if a != axis)
            used = np.flatnonzero(full.any(axis=others))
            if used.size == 0:
                return None
            spans.append((int(used[0]), int(used[-1]) + 1))
        (z0, z1), (y0, y1), (x0, x1) = spans
        lo, hi, c = self.brick.lo, self.brick.hi, self.cell
        return (float(lo[2] + x0 * c), float(lo[1] + y0 * c), float(lo[0] + z0 * c),
                float(min(hi[2], lo[2] + x1 * c)), float(min(hi[1], lo[1] + y1 * c)),
                float(min(hi[0], lo[0] + z1 * c)))

    def render(self, view: View, lut: npt.NDArray[np.float32]) -> Partial:
        """The brick's partial image of `view` with colormap `lut` (the raw (256, 4)
        table: opacity per one-voxel step; it is corrected for `view.step` here)."""
        started = time.perf_counter()
        box = clip_box(self.brick, view.roi)
        eye, dir00, du, dv = view.ray_basis()
        ray = np.array([*eye, *dir00, *du, *dv], dtype=np.float64)
        if view.mode == "mip":
            rect = (0, 0, 0, 0) if box is None else screen_rect(view, box)
            out = np.full((rect[3] - rect[1], rect[2] - rect[0]), -1.0, dtype=np.float32)
            if out.size:
                _render_mip(self.data, self._org, np.array(box, dtype=np.float64),
                            self._cell_max_norm, self.cell, self._lo, ray, rect[0], rect[1],
                            out, self.scale, self.offset, view.step)
            return Partial(self.brick.id, rect[0], rect[1], "max", out,
                           time.perf_counter() - started)
        table = step_lut(apply_ramp(lut, view.opacity), view.step)
        empty = self._empty_cells(table)
        occupied = self._occupied_box(empty)
        box = None if box is None or occupied is None else intersect(box, occupied)
        rect = (0, 0, 0, 0) if box is None else screen_rect(view, box)
        rgba = np.zeros((rect[3] - rect[1], rect[2] - rect[0], 4), dtype=np.float32)
        if rgba.size:
            cell_x, cell_y, cell_z = self._cell_of
            _render_composite(self.data, self._org, np.array(box, dtype=np.float64),
                              self._distance(empty), self.cell, cell_x, cell_y, cell_z, ray,
                              rect[0], rect[1], rgba, table, self.scale * 255.0,
                              self.offset * 255.0 + 0.5, view.step)
        return Partial(self.brick.id, rect[0], rect[1], "rgba", rgba,
                       time.perf_counter() - started)


def warm() -> float:
    """Compile (or load from numba's cache) every kernel for every voxel type; returns
    the seconds it took. The Makefile's setup calls it so the first frame is not slow."""
    from hpcrun.node.viewer.colormaps import DEFAULT, lut

    started = time.perf_counter()
    table = lut(DEFAULT)
    volume = np.linspace(0.0, 1.0, 6 * 6 * 6, dtype=np.float32).reshape(6, 6, 6)
    brick = Brick(0, (0, 0, 0), (6, 6, 6))
    view = View(Camera.default_for((6, 6, 6)), 4, 4, DEFAULT)
    for dtype, top in ((np.uint8, 255.0), (np.uint16, 65535.0), (np.float32, 1.0)):
        renderer = BrickRenderer((volume * top).astype(dtype), brick, (0.0, top))
        renderer.render(view, table)
        renderer.render(view.with_(mode="mip"), table)
    acc = np.zeros((4, 4, 4), dtype=np.float32)
    blend_under(acc, np.full((2, 2, 4), 0.5, dtype=np.float32), 1, 1)
    over_background(acc, np.zeros(3, dtype=np.float32), np.empty((4, 4, 3), dtype=np.uint8))
    return time.perf_counter() - started
