"""The rebalance planner (pure): evenness by weight, fewest moves, drains, load mode."""

from __future__ import annotations

import random

import pytest

from dashboard.model.rebalance import PlanError, combine_loads, plan_count, plan_load


def apply(owner: list[int], moves: list[tuple[int, int, int]]) -> list[int]:
    out = list(owner)
    for s, src, dst in moves:
        assert out[s] == src, f"slot {s} moved from {src} but owned by {out[s]}"
        out[s] = dst
    return out


def counts(owner: list[int]) -> dict[int, int]:
    c: dict[int, int] = {}
    for g in owner:
        if g:
            c[g] = c.get(g, 0) + 1
    return c


def test_already_even_moves_nothing() -> None:
    owner = [1] * 512 + [2] * 512
    plan = plan_count(owner, {1: 1, 2: 1})
    assert plan.moves == []


def test_new_group_gets_its_share_with_fewest_moves() -> None:
    owner = [1] * 8192 + [2] * 8192
    plan = plan_count(owner, {1: 1, 2: 1, 3: 1})
    after = counts(apply(owner, plan.moves))
    assert sorted(after.values()) == [5461, 5461, 5462]
    # fewest possible: exactly what group 3 must receive
    assert len(plan.moves) == after[3] == 5461 or len(plan.moves) == after[3]
    assert all(dst == 3 for _, _, dst in plan.moves)
    # each donor gives its highest-numbered slots (contiguous ranges stay contiguous)
    from_1 = sorted(s for s, src, _ in plan.moves if src == 1)
    assert from_1 == list(range(8192 - len(from_1), 8192))


@pytest.mark.parametrize("seed", range(20))
def test_random_layouts_are_evened_minimally(seed: int) -> None:
    rnd = random.Random(seed)
    nslots = rnd.choice([1024, 16384])
    gids = list(range(1, rnd.randint(2, 7)))
    weights = {g: rnd.choice([1, 1, 2, 3, 0.5]) for g in gids}
    owner = [rnd.choice([*gids, 0]) if rnd.random() < 0.1 else rnd.choice(gids[:2])
             for _ in range(nslots)]
    plan = plan_count(owner, weights)
    after = apply(owner, plan.moves)
    c = counts(after)
    assigned = sum(1 for g in owner if g)
    wsum = sum(weights.values())
    for g in gids:
        assert abs(c.get(g, 0) - assigned * weights[g] / wsum) < 1  # within rounding
    before = counts(owner)
    minimal = sum(max(0, before.get(g, 0) - c.get(g, 0)) for g in gids)
    assert len(plan.moves) == minimal
    assert len({s for s, _, _ in plan.moves}) == len(plan.moves)  # no slot moved twice
    assert all(owner[s] != 0 for s, _, _ in plan.moves)  # unassigned slots are left alone


def test_weights() -> None:
    owner = [1] * 1024
    plan = plan_count(owner, {1: 1, 2: 3})
    assert counts(apply(owner, plan.moves)) == {1: 256, 2: 768}


def test_drain_group_with_weight_zero() -> None:
    owner = [1] * 300 + [2] * 300 + [3] * 424
    plan = plan_count(owner, {1: 1, 2: 1, 3: 0})
    after = counts(apply(owner, plan.moves))
    assert 3 not in after and after == {1: 512, 2: 512}
    assert all(src == 3 for _, src, _ in plan.moves)
    assert len(plan.moves) == 424


def test_frozen_slots_never_move() -> None:
    owner = [1] * 1024
    frozen = list(range(900, 1024))
    plan = plan_count(owner, {1: 1, 2: 1}, frozen)
    assert not {s for s, _, _ in plan.moves} & set(frozen)
    assert counts(apply(owner, plan.moves)) == {1: 512, 2: 512}


def test_errors() -> None:
    with pytest.raises(PlanError):
        plan_count([1] * 1024, {1: 0})
    with pytest.raises(PlanError):
        plan_count([1] * 1024, {2: 1})  # group 1 owns slots but has no weight
    with pytest.raises(PlanError):
        plan_count([1] * 1024, {1: -1, 2: 1})


def test_load_mode_evens_load_not_count() -> None:
    # group 1 holds 10 hot slots, group 2 holds 1000 cold ones
    nslots = 1024
    owner = [1] * 512 + [2] * 512
    load = [0.0] * nslots
    for s in range(10):
        load[s] = 100.0
    for s in range(512, 1024):
        load[s] = 1.0
    plan = plan_load(owner, {1: 1, 2: 1}, load)
    after = apply(owner, plan.moves)
    per = {1: 0.0, 2: 0.0}
    for s, g in enumerate(after):
        per[g] += load[s]
    total = sum(load)
    # even within one slot's load (a single move cannot split a slot)
    assert abs(per[1] - per[2]) <= max(load) and per[1] < 0.6 * total
    # it moved hot slots, not hundreds of cold ones
    assert len(plan.moves) < 20
    assert plan.to_json()["slots_moved"] == len(plan.moves)


@pytest.mark.parametrize("seed", range(10))
def test_load_mode_random(seed: int) -> None:
    rnd = random.Random(seed)
    nslots = 1024
    gids = [1, 2, 3, 4]
    weights = {g: rnd.choice([1, 2]) for g in gids}
    owner = [rnd.choice([1, 1, 2, 3]) for _ in range(nslots)]  # 4 starts empty
    load = [rnd.expovariate(1.0) for _ in range(nslots)]
    plan = plan_load(owner, weights, load, tolerance=0.05)
    after = apply(owner, plan.moves)
    total = sum(load)
    wsum = sum(weights.values())
    per = {g: 0.0 for g in gids}
    for s, g in enumerate(after):
        per[g] += load[s]
    worst_before = max(abs(sum(load[s] for s in range(nslots) if owner[s] == g)
                           - total * weights[g] / wsum) for g in gids)
    worst = max(abs(per[g] - total * weights[g] / wsum) for g in gids)
    assert worst < worst_before
    assert worst <= 0.05 * total / len(gids) + max(load)  # within tolerance (one slot's worth)
    assert len({s for s, _, _ in plan.moves}) == len(plan.moves)


def test_load_mode_drain_moves_every_slot_including_empty_ones() -> None:
    owner = [1] * 400 + [2] * 400 + [3] * 224
    load = [1.0 if s % 2 else 0.0 for s in range(1024)]
    plan = plan_load(owner, {1: 1, 2: 1, 3: 0}, load)
    after = apply(owner, plan.moves)
    assert 3 not in after


def test_load_mode_without_load_falls_back_to_count() -> None:
    owner = [1] * 1024
    plan = plan_load(owner, {1: 1, 2: 1}, [0.0] * 1024)
    assert counts(apply(owner, plan.moves)) == {1: 512, 2: 512}


def test_combine_loads() -> None:
    out = combine_loads(4, {"keys": [1, 1, 1, 1], "memory": [0, 0, 0, 0], "ops": [4, 0, 0, 0]})
    assert out == pytest.approx([(0.25 + 1) / 2, 0.125, 0.125, 0.125])
