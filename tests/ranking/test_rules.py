from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from shoprec.ranking.rules import RulesConfig, apply_rules

ITEMS = [f"i{n}" for n in range(12)]


@st.composite
def scenario(draw: st.DrawFn) -> tuple[pl.DataFrame, pl.DataFrame, RulesConfig, int]:
    users = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True))
    rows = []
    for user in users:
        chosen = draw(st.lists(st.sampled_from(ITEMS), min_size=0, max_size=12, unique=True))
        rows += [(user, item, draw(st.floats(-5, 5))) for item in chosen]
    ranked = pl.DataFrame(
        rows,
        schema={"user_id": pl.String, "item_id": pl.String, "score": pl.Float64},
        orient="row",
    )
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
    return ranked, items, config, draw(st.integers(1, 8))


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_rules_hold_for_any_input(
    case: tuple[pl.DataFrame, pl.DataFrame, RulesConfig, int],
) -> None:
    ranked, items, config, k = case
    result = apply_rules(ranked, items, k, config)
    info = result.join(items, on="item_id", how="left")
    free = info.filter(~pl.col("item_id").is_in(list(config.pinned)))
    assert not set(info["item_id"]) & set(config.blocked)
    assert info["available"].all()
    for _, group in result.group_by("user_id"):
        assert group["rank"].to_list() == list(range(1, group.height + 1))
        assert group.height <= k
        assert group["item_id"].n_unique() == group.height
    if config.max_per_category is not None:
        per_category = free.group_by("user_id", "category").len()
        assert per_category["len"].max() is None or (
            per_category["len"].max() <= config.max_per_category  # type: ignore[operator]
        )
    # A pin sits at its position whenever enough other items exist to fill the slots before
    # it (a list has no holes, so with too few items a pin moves up).
    unavailable = set(items.filter(~pl.col("available"))["item_id"])
    pins = {
        i: p
        for i, p in config.pinned.items()
        if i not in config.blocked and i not in unavailable and p <= k
    }
    for item, position in pins.items():
        earlier = sum(1 for p in pins.values() if p < position)
        for _, group in result.group_by("user_id"):
            free_items = group.filter(~pl.col("item_id").is_in(list(pins))).height
            if free_items >= position - 1 - earlier:
                assert group.filter(pl.col("rank") == position)["item_id"].item() == item


def test_filters_boost_and_seen() -> None:
    ranked = pl.DataFrame(
        {"user_id": ["u"] * 4, "item_id": ["a", "b", "c", "d"], "score": [4.0, 3.0, 2.0, 1.0]}
    )
    items = pl.DataFrame(
        {
            "item_id": ["a", "b", "c", "d"],
            "category": ["x", "x", "y", "y"],
            "price": [10.0, 500.0, 20.0, 5.0],
            "age_days": [100, 100, 100, 1],
        }
    )
    seen = pl.DataFrame({"user_id": ["u"], "item_id": ["a"]})
    config = RulesConfig(exclude_seen=True, freshness_boost=10.0, price_guard=2.0)
    result = apply_rules(
        ranked,
        items,
        3,
        config,
        seen=seen,
        user_max_price=pl.DataFrame({"user_id": ["u"], "max_price": [30.0]}),
    )
    assert result["item_id"].to_list() == ["d", "c"]  # a seen, b too dear, d fresh
    only_y = apply_rules(ranked, items, 3, RulesConfig(), category="y", max_price=10.0)
    assert only_y["item_id"].to_list() == ["d"]
