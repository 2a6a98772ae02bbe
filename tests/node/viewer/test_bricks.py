"""Brick split, visibility order and cost-balanced assignment with little movement."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hpcrun.node.viewer.bricks import Brick, assign, split, visibility_order


@pytest.mark.parametrize("shape", [(64, 64, 64), (33, 40, 48), (5, 200, 17)])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 8, 12, 27])
def test_split_covers_the_volume_exactly_once(shape: tuple[int, int, int], count: int) -> None:
    bricks = split(shape, count)
    assert len(bricks) == count
    assert [b.id for b in bricks] == list(range(count))
    cover = np.zeros(shape, dtype=np.int32)
    for b in bricks:
        cover[b.lo[0]:b.hi[0], b.lo[1]:b.hi[1], b.lo[2]:b.hi[2]] += 1
    assert (cover == 1).all()
    assert sum(b.voxels for b in bricks) == int(np.prod(shape))


def test_split_makes_cubic_bricks_and_refuses_the_impossible() -> None:
    bricks = split((64, 64, 64), 8)
    assert {b.shape for b in bricks} == {(32, 32, 32)}
    assert {b.shape for b in split((64, 64, 256), 4)} == {(64, 64, 64)}
    with pytest.raises(ValueError):
        split((2, 2, 2), 11)
    with pytest.raises(ValueError):
        split((8, 8, 8), 0)


def test_brick_geometry_and_json() -> None:
    b = Brick(3, (0, 10, 20), (8, 30, 60))
    assert b.center_xyz() == (40.0, 20.0, 4.0)
    assert b.box_xyz() == (20.0, 10.0, 0.0, 60.0, 30.0, 8.0)
    assert b.distance_to((40.0, 20.0, 4.0)) == 0.0
    assert b.distance_to((63.0, 34.0, 4.0)) == pytest.approx(5.0)
    assert Brick.from_json(b.to_json()) == b
    with pytest.raises(ValueError):
        Brick(0, (0, 0, 0), (0, 1, 1))


def _bricks_along(bricks: list[Brick], eye: np.ndarray, d: np.ndarray) -> list[int]:
    """The bricks a ray meets, in the order it meets them (fine steps, vectorised)."""
    points = eye[None, :] + np.arange(0.0, 320.0, 0.25)[:, None] * d[None, :]
    boxes = np.array([b.box_xyz() for b in bricks])
    inside = ((points[:, None, :] >= boxes[None, :, :3])
              & (points[:, None, :] < boxes[None, :, 3:])).all(axis=2)
    hits = [int(np.argmax(row)) for row in inside if row.any()]
    return [h for i, h in enumerate(hits) if i == 0 or hits[i - 1] != h]


@pytest.mark.parametrize("count", [4, 8, 12, 27])
def test_visibility_order_is_front_to_back_along_every_ray(count: int) -> None:
    """Every ray from the eye (outside or inside the volume) meets the bricks in the
    order `visibility_order` gives; sorting by centre distance fails this for some."""
    rng = random.Random(count)
    bricks = split((40, 50, 60), count)
    for _ in range(15):
        eye = np.array([rng.uniform(-80, 140), rng.uniform(-80, 130), rng.uniform(-80, 120)])
        if rng.random() < 0.3:
            eye = np.array([rng.uniform(0, 60), rng.uniform(0, 50), rng.uniform(0, 40)])
        rank = {b.id: i for i, b in enumerate(visibility_order(bricks, tuple(eye)))}
        for _ in range(12):
            target = np.array([rng.uniform(0, 60), rng.uniform(0, 50), rng.uniform(0, 40)])
            d = (target - eye) / np.linalg.norm(target - eye)
            seen = _bricks_along(bricks, eye, d)
            assert [rank[b] for b in seen] == sorted(rank[b] for b in seen)


def test_centre_distance_order_would_be_wrong_inside_the_volume() -> None:
    """Why `visibility_order` sorts by box distance: from inside a long brick, a small
    neighbour's centre can be nearer than the centre of the brick holding the eye."""
    bricks = [Brick(0, (0, 0, 0), (8, 8, 48)), Brick(1, (0, 0, 48), (8, 8, 56))]
    eye = (40.0, 4.0, 4.0)  # inside brick 0, nearer to brick 1's centre
    assert visibility_order(bricks, eye)[0].id == 0
    by_centre = sorted(bricks, key=lambda b: sum((c - e) ** 2 for c, e in
                                                 zip(b.center_xyz(), eye, strict=True)))
    assert by_centre[0].id == 1


def _loads(result: dict[int, str], cost: dict[int, float]) -> dict[str, float]:
    loads: dict[str, float] = {}
    for brick, agent in result.items():
        loads[agent] = loads.get(agent, 0.0) + cost[brick]
    return loads


def test_assign_balances_by_cost_not_by_count() -> None:
    rng = random.Random(1)
    cost = {b: rng.choice([0.05, 0.1, 1.0, 2.0]) for b in range(32)}
    agents = ["n0", "n1", "n2", "n3"]
    result = assign(list(cost), agents, cost)
    assert set(result) == set(cost) and set(result.values()) == set(agents)
    loads = _loads(result, cost)
    fair = sum(cost.values()) / len(agents)
    assert max(loads.values()) <= fair + max(cost.values()) / 2
    assert max(loads.values()) / fair < 1.15


def test_assign_with_unknown_or_zero_costs_spreads_bricks_evenly() -> None:
    result = assign(list(range(8)), ["a", "b", "c", "d"], {})
    assert sorted(list(result.values()).count(a) for a in "abcd") == [2, 2, 2, 2]
    result = assign(list(range(8)), ["a", "b"], dict.fromkeys(range(8), 0.0))
    assert sorted(list(result.values()).count(a) for a in "ab") == [4, 4]
    with pytest.raises(ValueError):
        assign([0, 1], [], {})


def test_no_agent_is_left_without_a_brick_when_one_brick_dominates() -> None:
    """A brick dearer than the fair share (seen in CI: 7 / 1 / 0 over 3 agents, and the
    third node took part in no frame) must not leave an agent idle."""
    cost = {b: 0.01 for b in range(7)} | {7: 5.0}
    previous = {b: "a" for b in range(7)} | {7: "b"}
    result = assign(list(cost), ["a", "b", "c"], cost, previous=previous)
    assert set(result.values()) == {"a", "b", "c"}
    assert max(_loads(result, cost).values()) == pytest.approx(5.0)
    # Fewer bricks than agents: someone sits out, and nothing breaks.
    assert sorted(assign([0, 1], ["a", "b", "c"], {}).values()) == ["a", "b"]


def test_rebalance_when_an_agent_joins_moves_few_bricks() -> None:
    rng = random.Random(2)
    cost = {b: rng.uniform(0.5, 1.5) for b in range(24)}
    before = assign(list(cost), ["a", "b", "c"], cost)
    after = assign(list(cost), ["a", "b", "c", "d"], cost, previous=before)
    moved = [b for b in cost if after[b] != before[b]]
    assert all(after[b] == "d" for b in moved)
    assert len(moved) <= 24 // 4 + 2
    loads = _loads(after, cost)
    assert max(loads.values()) <= (sum(cost.values()) / 4) * 1.1 + max(cost.values())
    # Without memory of the previous owners, LPT reshuffles much more.
    fresh = assign(list(cost), ["d", "c", "b", "a"], cost)
    assert sum(fresh[b] != before[b] for b in cost) > len(moved)


def test_rebalance_when_an_agent_leaves_moves_only_its_bricks() -> None:
    rng = random.Random(3)
    cost = {b: rng.uniform(0.5, 1.5) for b in range(24)}
    before = assign(list(cost), ["a", "b", "c", "d"], cost)
    after = assign(list(cost), ["a", "b", "d"], cost, previous=before)
    moved = {b for b in cost if after[b] != before[b]}
    assert moved == {b for b in cost if before[b] == "c"}
    assert set(after.values()) == {"a", "b", "d"}
    loads = _loads(after, cost)
    assert max(loads.values()) <= (sum(cost.values()) / 3) * 1.1 + max(cost.values())


def test_rebalance_after_costs_change_follows_the_work() -> None:
    cost = dict.fromkeys(range(16), 1.0)
    before = assign(list(cost), ["a", "b"], cost)
    heavy = {b: (4.0 if before[b] == "a" else 1.0) for b in cost}  # a's bricks got slow
    after = assign(list(cost), ["a", "b"], heavy, previous=before)
    loads = _loads(after, heavy)
    assert max(loads.values()) / min(loads.values()) < 1.3
