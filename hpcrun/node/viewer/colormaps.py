"""Colormaps (transfer functions) the viewer offers, as 256-entry RGBA look-up tables.

Each table is a (256, 4) float32 array: entry i is the colour and opacity of the normalised
value i/255. Alpha is the opacity of one voxel-length step (the kernel corrects it for
other step sizes), which is what IndeX colormaps and VTK's scalar opacity unit distance
mean too, so a table can be handed to either. Built-ins are defined by a few control
points and interpolated; scene files bring their own (`register`), resampled to 256. The
registry is per process, as matplotlib's: a scene's colormaps are registered once when the
scene loads and every frame afterwards looks them up by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Lut = npt.NDArray[np.float32]
LUT_SIZE = 256
DEFAULT = "fire"

# (value, r, g, b, alpha) control points. Opacity is zero below ~0.1: the empty space of
# most volumes (air, vacuum) stays transparent and the kernel can skip it.
_CONTROL_POINTS: dict[str, tuple[tuple[float, float, float, float, float], ...]] = {
    "fire": ((0.0, 0.0, 0.0, 0.0, 0.0), (0.12, 0.25, 0.0, 0.0, 0.0),
             (0.3, 0.7, 0.05, 0.0, 0.02), (0.55, 1.0, 0.45, 0.0, 0.08),
             (0.8, 1.0, 0.85, 0.3, 0.25), (1.0, 1.0, 1.0, 1.0, 0.6)),
    "viridis": ((0.0, 0.267, 0.005, 0.329, 0.0), (0.12, 0.283, 0.141, 0.458, 0.0),
                (0.25, 0.254, 0.265, 0.530, 0.01), (0.5, 0.128, 0.567, 0.551, 0.05),
                (0.75, 0.369, 0.789, 0.383, 0.15), (1.0, 0.993, 0.906, 0.144, 0.5)),
    "coolwarm": ((0.0, 0.23, 0.30, 0.75, 0.0), (0.12, 0.30, 0.40, 0.85, 0.0),
                 (0.3, 0.55, 0.69, 1.0, 0.02), (0.5, 0.87, 0.87, 0.87, 0.05),
                 (0.75, 0.96, 0.6, 0.48, 0.15), (1.0, 0.71, 0.02, 0.15, 0.5)),
    "gray": ((0.0, 0.0, 0.0, 0.0, 0.0), (0.12, 0.1, 0.1, 0.1, 0.0),
             (1.0, 1.0, 1.0, 1.0, 0.4)),
    "ice": ((0.0, 0.0, 0.0, 0.1, 0.0), (0.12, 0.0, 0.1, 0.3, 0.0),
            (0.4, 0.1, 0.5, 0.9, 0.03), (0.7, 0.6, 0.9, 1.0, 0.12),
            (1.0, 1.0, 1.0, 1.0, 0.5)),
}

_registered: dict[str, Lut] = {}


def _from_control_points(points: Sequence[tuple[float, float, float, float, float]]) -> Lut:
    xs = np.array([p[0] for p in points], dtype=np.float64)
    grid = np.linspace(0.0, 1.0, LUT_SIZE)
    table = np.empty((LUT_SIZE, 4), dtype=np.float32)
    for channel in range(4):
        table[:, channel] = np.interp(grid, xs, [p[channel + 1] for p in points])
    return table


def resample(table: Any) -> Lut:
    """A (n, 4) RGBA table (n >= 1, entries 0..1) linearly resampled to (256, 4) float32."""
    array = np.asarray(table, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4 or array.shape[0] < 1:
        raise ValueError(f"a colormap table is n x 4 RGBA entries, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("a colormap table holds only finite numbers")
    array = np.clip(array, 0.0, 1.0)
    if array.shape[0] == 1:
        return np.repeat(array, LUT_SIZE, axis=0).astype(np.float32)
    source = np.linspace(0.0, 1.0, array.shape[0])
    grid = np.linspace(0.0, 1.0, LUT_SIZE)
    out = np.empty((LUT_SIZE, 4), dtype=np.float32)
    for channel in range(4):
        out[:, channel] = np.interp(grid, source, array[:, channel])
    return out


def names() -> list[str]:
    """Built-in names first (the default leading), then registered ones, sorted."""
    return [*_CONTROL_POINTS, *sorted(n for n in _registered if n not in _CONTROL_POINTS)]


def lut(name: str) -> Lut:
    """The (256, 4) float32 table of `name` (a fresh copy: callers may modify it)."""
    if name in _registered:
        return _registered[name].copy()
    if name in _CONTROL_POINTS:
        return _from_control_points(_CONTROL_POINTS[name])
    raise KeyError(f"unknown colormap {name!r} (known: {', '.join(names())})")


def register(name: str, table: Any) -> None:
    """Make a scene's colormap available under `name` (replacing an earlier one)."""
    if not name:
        raise ValueError("a colormap needs a name")
    _registered[name] = resample(table)


def apply_ramp(table: Lut, ramp: Sequence[tuple[float, float]]) -> Lut:
    """`table` with its opacity multiplied by the piecewise-linear `ramp` of (value, gain)
    points over the normalised value (flat beyond the end points), clamped to 1; an
    empty ramp returns the table unchanged. Every agent and the compositor call this with
    the ramp of the frame's view, so they agree on what is transparent."""
    if not ramp:
        return table
    xs = np.array([p[0] for p in ramp], dtype=np.float64)
    gains = np.array([p[1] for p in ramp], dtype=np.float64)
    grid = np.linspace(0.0, 1.0, table.shape[0])
    out = np.array(table, dtype=np.float32, copy=True)
    out[:, 3] = np.clip(out[:, 3] * np.interp(grid, xs, gains), 0.0, 1.0)
    return out
