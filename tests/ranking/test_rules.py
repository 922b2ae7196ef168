"""The business rules, on any input (hypothesis) and on a hand-made case."""

from __future__ import annotations

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from shoprec.ranking.rules import ItemFacts, RulesConfig, apply_rules

ITEMS = [f"i{n}" for n in range(12)]
INDEX = {item: i for i, item in enumerate(ITEMS)}


def _facts(items: pl.DataFrame, config: RulesConfig) -> ItemFacts:
    return ItemFacts.of(
        np.arange(len(ITEMS)), len(ITEMS), items, config, np.arange(len(ITEMS)), INDEX
    )


@st.composite
def scenario(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, pl.DataFrame, RulesConfig, int]:
    chosen = draw(st.lists(st.sampled_from(range(len(ITEMS))), max_size=12, unique=True))
    scores = np.array([draw(st.floats(-5, 5)) for _ in chosen])
    items = pl.DataFrame(
        {
            "item_id": ITEMS,
            "category": [draw(st.sampled_from(["x", "y", "z"])) for _ in ITEMS],
            "available": [draw(st.booleans()) for _ in ITEMS],
        }
    )
    pinned_items = draw(st.lists(st.sampled_from(ITEMS), max_size=2, unique=True))
    positions = draw(
        st.lists(
            st.integers(1, 6), min_size=len(pinned_items), max_size=len(pinned_items), unique=True
        )
    )
    config = RulesConfig(
        blocked=draw(st.lists(st.sampled_from(ITEMS), max_size=3)),
        pinned=dict(zip(pinned_items, positions, strict=True)),
        max_per_category=draw(st.one_of(st.none(), st.integers(1, 3))),
    )
    return np.array(chosen, np.int64), scores, items, config, draw(st.integers(1, 8))


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_rules_hold_for_any_input(
    case: tuple[np.ndarray, np.ndarray, pl.DataFrame, RulesConfig, int],
) -> None:
    candidates, scores, items, config, k = case
    picked, values = apply_rules(candidates, scores, k, config, _facts(items, config))
    ids = [ITEMS[i] for i in picked.tolist()]
    available = dict(zip(items["item_id"], items["available"], strict=True))
    category = dict(zip(items["item_id"], items["category"], strict=True))
    assert len(ids) <= k
    assert len(set(ids)) == len(ids)
    assert not set(ids) & set(config.blocked)
    assert all(available[i] for i in ids)
    pins = {
        i: p
        for i, p in config.pinned.items()
        if i not in config.blocked and available[i] and p <= k
    }
    free = [i for i in ids if i not in pins]
    assert set(free) <= {ITEMS[i] for i in candidates.tolist()}
    if config.max_per_category is not None:
        for name in "xyz":
            assert sum(category[i] == name for i in free) <= config.max_per_category
    # the free items keep the order of their scores
    order = [float(values[ids.index(i)]) for i in free]
    assert order == sorted(order, reverse=True)
    # A pin sits at its position whenever enough other items exist to fill the slots before
    # it (a list has no holes, so with too few items a pin moves up).
    for item, position in pins.items():
        assert item in ids
        assert np.isnan(values[ids.index(item)])
        earlier = sum(1 for p in pins.values() if p < position)
        if len(free) >= position - 1 - earlier:
            assert ids[position - 1] == item


def test_price_guard_boost_and_ties() -> None:
    items = pl.DataFrame(
        {
            "item_id": ITEMS[:5],
            "category": ["x", "x", "y", "y", "y"],
            "price": [10.0, 500.0, 20.0, 5.0, None],
            "age_days": [100, 100, 100, 1, None],
        }
    )
    config = RulesConfig(freshness_boost=10.0, price_guard=2.0)
    facts = ItemFacts.of(
        np.arange(5), len(ITEMS), items, config, np.array([4, 3, 2, 1, 0, *range(5, 12)]), INDEX
    )
    candidates = np.arange(5)
    scores = np.array([4.0, 3.0, 2.0, 1.0, 2.0])
    picked, values = apply_rules(candidates, scores, 4, config, facts, max_price=30.0)
    # i1 too dear (500 > 2 × 30); i3 fresh (+10); i2 and i4 tie at 2.0: i4's tie rank is lower
    assert [ITEMS[i] for i in picked] == ["i3", "i0", "i4", "i2"]
    np.testing.assert_allclose(values, [11.0, 4.0, 2.0, 2.0])
    # a user who never paid: no guard
    unguarded, _ = apply_rules(candidates, scores, 2, config, facts)
    assert [ITEMS[i] for i in unguarded] == ["i3", "i0"]
    assert ITEMS[apply_rules(candidates, scores, 5, config, facts)[0][2]] == "i1"
