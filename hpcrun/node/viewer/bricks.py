"""How the volume is cut into bricks and which render agent renders which brick.

`split` cuts a (nz, ny, nx) volume into a rectilinear grid of near-cubic bricks. A grid
(rather than an arbitrary k-d split) is what makes sort-last compositing simple and exact:
along any ray the distance from the eye to the bricks it crosses only grows, so sorting the
bricks by that distance is a correct front-to-back order (see `visibility_order`).
`assign` spreads bricks over agents by measured cost (render seconds of the last frame),
not by voxel count: a shell-shaped volume leaves some bricks almost empty. When agents come
or go it keeps each surviving agent's bricks as long as that agent stays near its fair
share, so a rebalance moves few bricks (each move costs the new owner a brick load).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

Zyx = tuple[int, int, int]
AgentT = TypeVar("AgentT", bound=Hashable)


@dataclass(frozen=True)
class Brick:
    """Voxels [lo, hi) of the volume, as (z, y, x) index triples; in world space the
    brick is the box [lo_x, hi_x] x [lo_y, hi_y] x [lo_z, hi_z]."""

    id: int
    lo: Zyx
    hi: Zyx

    def __post_init__(self) -> None:
        if any(h <= low for low, h in zip(self.lo, self.hi, strict=True)):
            raise ValueError(f"brick {self.id}: empty extent {self.lo}..{self.hi}")

    @property
    def shape(self) -> Zyx:
        return (self.hi[0] - self.lo[0], self.hi[1] - self.lo[1], self.hi[2] - self.lo[2])

    @property
    def voxels(self) -> int:
        z, y, x = self.shape
        return z * y * x

    def center_xyz(self) -> tuple[float, float, float]:
        return ((self.lo[2] + self.hi[2]) / 2.0, (self.lo[1] + self.hi[1]) / 2.0,
                (self.lo[0] + self.hi[0]) / 2.0)

    def box_xyz(self) -> tuple[float, float, float, float, float, float]:
        """(x0, y0, z0, x1, y1, z1), the ROI convention."""
        return (float(self.lo[2]), float(self.lo[1]), float(self.lo[0]),
                float(self.hi[2]), float(self.hi[1]), float(self.hi[0]))

    def distance_to(self, point_xyz: Sequence[float]) -> float:
        """Euclidean distance from a point to the brick's box (0 inside)."""
        x0, y0, z0, x1, y1, z1 = self.box_xyz()
        gaps = [max(lo - p, 0.0, p - hi)
                for p, lo, hi in zip(point_xyz, (x0, y0, z0), (x1, y1, z1), strict=True)]
        return math.sqrt(sum(g * g for g in gaps))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "lo": list(self.lo), "hi": list(self.hi)}

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Brick:
        lo = [int(v) for v in data["lo"]]
        hi = [int(v) for v in data["hi"]]
        return Brick(int(data["id"]), (lo[0], lo[1], lo[2]), (hi[0], hi[1], hi[2]))


def _grid_for(shape_zyx: Zyx, count: int) -> Zyx:
    """The (gz, gy, gx) with gz*gy*gx == count whose bricks are closest to cubes."""
    best: tuple[float, Zyx] | None = None
    for gz in range(1, count + 1):
        if count % gz:
            continue
        rest = count // gz
        for gy in range(1, rest + 1):
            if rest % gy:
                continue
            gx = rest // gy
            grid = (gz, gy, gx)
            if any(g > n for g, n in zip(grid, shape_zyx, strict=True)):
                continue
            extents = [n / g for n, g in zip(shape_zyx, grid, strict=True)]
            score = max(extents) / min(extents)
            if best is None or score < best[0]:
                best = (score, grid)
    if best is None:
        raise ValueError(f"cannot cut a {shape_zyx} volume into {count} bricks")
    return best[1]


def split(shape_zyx: Sequence[int], count: int) -> list[Brick]:
    """Cut the volume into `count` bricks on a rectilinear grid; ids run x fastest."""
    shape = (int(shape_zyx[0]), int(shape_zyx[1]), int(shape_zyx[2]))
    if count < 1 or min(shape) < 1:
        raise ValueError(f"need a non-empty volume and count >= 1, got {shape}, {count}")
    grid = _grid_for(shape, count)
    edges = [[round(i * n / g) for i in range(g + 1)] for n, g in zip(shape, grid, strict=True)]
    bricks: list[Brick] = []
    for iz in range(grid[0]):
        for iy in range(grid[1]):
            for ix in range(grid[2]):
                lo = (edges[0][iz], edges[1][iy], edges[2][ix])
                hi = (edges[0][iz + 1], edges[1][iy + 1], edges[2][ix + 1])
                bricks.append(Brick(len(bricks), lo, hi))
    return bricks


def visibility_order(bricks: Sequence[Brick], eye_xyz: Sequence[float]) -> list[Brick]:
    """Bricks front to back as seen from `eye_xyz`.

    Sorted by the distance from the eye to each brick's box, ties by centre distance. For
    bricks of a rectilinear grid this is exact: a ray crossing a face from brick A into B
    keeps its gaps on the other two axes (A and B share those intervals) and increases the
    gap on the face's axis, so every brick a ray meets is farther than the one before —
    also with the eye inside the volume, where sorting by centre distance goes wrong.
    """

    def key(brick: Brick) -> tuple[float, float]:
        cx, cy, cz = brick.center_xyz()
        centre = math.dist((cx, cy, cz), tuple(float(v) for v in eye_xyz))
        return (brick.distance_to(eye_xyz), centre)

    return sorted(bricks, key=key)


def assign(
    brick_ids: Sequence[int],
    agents: Sequence[AgentT],
    cost: Mapping[int, float],
    previous: Mapping[int, AgentT] | None = None,
    *,
    slack: float = 0.1,
) -> dict[int, AgentT]:
    """Map every brick to an agent, balancing the summed cost per agent.

    Greedy LPT (largest brick to the least loaded agent), after first letting each brick
    stay with its previous owner (if that agent is still here) while the owner's load stays
    within (1 + slack) of the fair share. Bricks without a measured cost count as the mean
    of the measured ones (1.0 when none is known).
    """
    if not agents:
        raise ValueError("no agents to assign bricks to")
    known = [float(cost[b]) for b in brick_ids if b in cost]
    fallback = sum(known) / len(known) if known else 1.0
    costs = {b: max(float(cost.get(b, fallback)), 0.0) for b in brick_ids}
    ordered = sorted(brick_ids, key=lambda b: (-costs[b], b))
    fair = sum(costs.values()) / len(agents)
    cap = fair * (1.0 + slack)
    load: dict[AgentT, float] = dict.fromkeys(agents, 0.0)
    result: dict[int, AgentT] = {}
    if previous:
        for brick in ordered:
            owner = previous.get(brick)
            if owner is not None and owner in load and load[owner] + costs[brick] <= cap:
                result[brick] = owner
                load[owner] += costs[brick]
    count = dict.fromkeys(agents, 0)
    for owner in result.values():
        count[owner] += 1
    rank = {agent: index for index, agent in enumerate(agents)}
    for brick in ordered:
        if brick in result:
            continue
        # Ties (equal or zero costs) go to the agent with fewer bricks.
        agent = min(agents, key=lambda a: (load[a], count[a], rank[a]))
        result[brick] = agent
        load[agent] += costs[brick]
        count[agent] += 1
    _give_idle_agents_a_brick(result, agents, costs, count)
    return result


def _give_idle_agents_a_brick(
    result: dict[int, AgentT],
    agents: Sequence[AgentT],
    costs: Mapping[int, float],
    count: dict[AgentT, int],
) -> None:
    """Hand every agent left without a brick the cheapest brick of the agent with most.

    One brick dearer than the fair share (the core of the supernova, or a first frame
    whose time includes compiling the kernels) makes LPT pile the cheap rest on others
    and leave an agent with nothing: a node that takes no part in any frame. Moving a
    near-free brick to it changes the peak load by that brick's cost at most."""
    for idle in [a for a in agents if count[a] == 0]:
        donor = max(agents, key=lambda a: count[a])
        if count[donor] < 2:
            return  # fewer bricks than agents: someone has to sit out
        brick = min((b for b, a in result.items() if a == donor), key=lambda b: (costs[b], b))
        result[brick] = idle
        count[donor] -= 1
        count[idle] += 1
