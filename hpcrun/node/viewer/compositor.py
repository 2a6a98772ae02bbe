"""Sort-last compositing: the bricks' partial images into one frame.

Composite mode blends the premultiplied partials front to back ("under" operator) in the
bricks' visibility order from the eye, then puts the result over the background. MIP takes
the per-pixel maximum over the partials and maps it through the colormap; its colour is
weighted by the colormap's opacity (full from a tenth of the table's peak opacity) so
values the colormap hides show the background, as they do in composite mode. `tint`
recolours each brick's pixels by the agent that rendered it (the page's "show bricks").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from hpcrun.node.viewer.bricks import Brick, visibility_order
from hpcrun.node.viewer.camera import View
from hpcrun.node.viewer.colormaps import apply_ramp
from hpcrun.node.viewer.kernel import blend_under, over_background
from hpcrun.node.viewer.partial import Partial

Rgb = tuple[float, float, float]
TINT_WEIGHT = 0.55


def _order(partials: Iterable[Partial], bricks: Mapping[int, Brick],
           view: View) -> list[Partial]:
    by_id = {p.brick_id: p for p in partials}
    known = [b for b in by_id if b in bricks]
    rank = {brick: i for i, brick in
            enumerate(visibility_order([bricks[b] for b in known], view.camera.eye))}
    ordered = [by_id[b] for b in sorted(known, key=lambda b: rank[bricks[b]])]
    # A partial of an unknown brick cannot be ordered; it goes last rather than nowhere.
    return ordered + [p for b, p in by_id.items() if b not in bricks]


def _rgb01(rgb: Sequence[float]) -> npt.NDArray[np.float32]:
    """An RGB colour as 3 floats 0..1; 0..255 is accepted too (any channel above 1)."""
    values = np.asarray(rgb, dtype=np.float32).reshape(-1)[:3]
    if values.max(initial=0.0) > 1.0:
        values = values / np.float32(255.0)
    return values


def _to_uint8(image: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    out: npt.NDArray[np.uint8] = np.clip(image * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
    return out


def _tinted(p: Partial, tint: Mapping[int, Rgb] | None) -> npt.NDArray[np.float32]:
    """A composite partial recoloured towards its owner's colour (alpha kept)."""
    if tint is None or p.brick_id not in tint:
        return p.data
    colour = _rgb01(tint[p.brick_id])
    data = p.data.copy()
    alpha = data[..., 3:4]
    data[..., :3] = (1.0 - TINT_WEIGHT) * data[..., :3] + TINT_WEIGHT * colour * alpha
    return data


def composite(
    partials: Iterable[Partial],
    bricks: Mapping[int, Brick],
    view: View,
    lut: npt.NDArray[np.float32],
    background: Sequence[float] = (0.0, 0.0, 0.0),
    tint: Mapping[int, Rgb] | None = None,
) -> npt.NDArray[np.uint8]:
    """The (height, width, 3) uint8 frame of `view` from the bricks' partials."""
    h, w = view.height, view.width
    bg = _rgb01(background)
    ordered = _order(partials, bricks, view)
    if view.mode == "mip":
        return _mip(ordered, view, lut, bg, tint)
    acc = np.zeros((h, w, 4), dtype=np.float32)
    for p in ordered:
        if p.kind != "rgba" or p.height == 0 or p.width == 0 or p.y0 >= h or p.x0 >= w:
            continue
        data = np.ascontiguousarray(_tinted(p, tint), dtype=np.float32)
        blend_under(acc, data, p.y0, p.x0)
    out = np.empty((h, w, 3), dtype=np.uint8)
    over_background(acc, bg.astype(np.float32), out)
    return out


def _mip_palette(table: npt.NDArray[np.float32], bg: npt.NDArray[np.float32],
                 tint: npt.NDArray[np.float32] | None) -> npt.NDArray[np.uint8]:
    """The final colour of each of the 256 values, plus entry 256 (no sample) = background.
    Full colour from a tenth of the colormap's peak opacity up: values it hides fade out."""
    ramp = 0.1 * float(table[:, 3].max(initial=0.0))
    weight = np.clip(table[:, 3:4] / ramp, 0.0, 1.0) if ramp > 0.0 else np.zeros((256, 1))
    colour = table[:, :3]
    if tint is not None:
        colour = (1.0 - TINT_WEIGHT) * colour + TINT_WEIGHT * tint
    palette = np.vstack([weight * colour + (1.0 - weight) * bg, bg[None, :]])
    return _to_uint8(palette.astype(np.float32))


def _mip(ordered: Sequence[Partial], view: View, lut: npt.NDArray[np.float32],
         bg: npt.NDArray[np.float32], tint: Mapping[int, Rgb] | None) -> npt.NDArray[np.uint8]:
    """Per-pixel maximum over the partials, then one palette look-up per pixel."""
    h, w = view.height, view.width
    best = np.full((h, w), -1.0, dtype=np.float32)
    owner = np.full((h, w), -1, dtype=np.int64) if tint else None
    for p in ordered:
        if p.kind != "max" or p.height == 0 or p.width == 0:
            continue
        region = best[p.y0:p.y0 + p.height, p.x0:p.x0 + p.width]
        data = p.data[:region.shape[0], :region.shape[1]]
        if owner is not None:
            better = data > region
            owner[p.y0:p.y0 + p.height, p.x0:p.x0 + p.width][better] = p.brick_id
        np.maximum(region, data, out=region)
    table = apply_ramp(np.asarray(lut, dtype=np.float32), view.opacity)
    index = np.where(best >= 0.0, np.clip(best * 255.0 + 0.5, 0.0, 255.0), 256.0).astype(np.intp)
    image = _mip_palette(table, bg, None)[index]
    if owner is not None and tint:
        for brick_id, rgb in tint.items():
            mask = owner == brick_id
            image[mask] = _mip_palette(table, bg, _rgb01(rgb))[index[mask]]
    return image
