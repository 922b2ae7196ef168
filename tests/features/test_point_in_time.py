from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoprec.data.schema import EVENTS_SCHEMA, conform
from shoprec.exceptions import ConfigError
from shoprec.features import compute_features
from shoprec.features.store import OfflineFeatureStore, open_online_store

AS_OF = datetime(2024, 3, 1, tzinfo=UTC)


def _events(rows: list[tuple[str, str, str, datetime, float | None]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        rows, schema=["user_id", "item_id", "event_type", "ts", "price"], orient="row"
    )
    return conform(frame.with_columns(pl.col("ts").dt.replace_time_zone("UTC")), EVENTS_SCHEMA)


ITEMS = pl.DataFrame({
    "item_id": ["a", "b", "c"], "category": ["x", "x", "y"], "price": [1.0, 2.0, 30.0],
    "created_at": [datetime(2024, 1, 1, tzinfo=UTC)] * 3,
})  # fmt: skip
HISTORY = _events([
    ("u1", "a", "view", datetime(2024, 2, 1), None),
    ("u1", "a", "purchase", datetime(2024, 2, 2), 1.0),
    ("u1", "c", "purchase", datetime(2024, 2, 27), 30.0),
    ("u2", "b", "view", datetime(2024, 2, 28), None),
])  # fmt: skip


def _tables(events: pl.DataFrame) -> list[pl.DataFrame]:
    tables = compute_features(events, AS_OF, items=ITEMS)
    keys = {
        "users": ["user_id"],
        "items": ["item_id"],
        "pairs": ["user_id", "item_id"],
        "user_categories": ["user_id", "item_category"],
    }
    return [getattr(tables, name).sort(key) for name, key in keys.items()]


def test_values() -> None:
    users, items, pairs, categories = _tables(HISTORY)
    u1 = users.filter(pl.col("user_id") == "u1").row(0, named=True)
    assert u1["user_purchase_30d"] == 2
    assert u1["user_purchase_7d"] == 1
    assert u1["user_price_median"] == pytest.approx(15.5)
    assert u1["user_days_since_last"] == pytest.approx(3.0)
    a = items.filter(pl.col("item_id") == "a").row(0, named=True)
    assert (a["item_view_3650d"], a["item_purchase_3650d"], a["item_price"]) == (1, 1, 1.0)
    assert a["item_category"] == "x"
    assert pairs.filter(pl.col("user_id") == "u1").select("item_id", "pair_events").rows() == [
        ("a", 2), ("c", 1),
    ]  # fmt: skip
    share = categories.filter(pl.col("user_id") == "u1")["user_category_share"].to_list()
    assert share == pytest.approx([2 / 3, 1 / 3])


def test_taste_features() -> None:
    later = ITEMS.vstack(
        pl.DataFrame(
            {
                "item_id": ["d"],
                "category": ["x"],
                "price": [0.5],
                "created_at": [datetime(2024, 6, 1, tzinfo=UTC)],
            }
        )
    )
    tables = compute_features(HISTORY, AS_OF, items=later)
    items = {row["item_id"]: row for row in tables.items.iter_rows(named=True)}
    # price percentile and band inside the category, among the items listed by then
    assert [items[i]["item_price_pct"] for i in "abc"] == pytest.approx([0.25, 0.75, 0.5])
    assert [items[i]["item_band"] for i in "abc"] == [0, 2, 1]
    assert items["d"]["item_price_pct"] is None
    assert items["a"]["item_category_global_share"] == pytest.approx(3 / 4)
    # per day listed (both since the first event): a 2 events, b 1, each + 0.5
    assert items["a"]["item_category_pop_share"] == pytest.approx(2.5 / 4.0)
    assert items["c"]["item_category_purchase_share"] == pytest.approx(1.0)
    u1 = tables.users.filter(pl.col("user_id") == "u1").row(0, named=True)
    assert u1["user_category_events"] == 3
    assert u1["user_price_pct"] == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    shares = [u1[f"user_band{b}_share"] for b in range(3)]
    assert shares == pytest.approx([3 / 6, 2 / 6, 1 / 6])


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["u1", "u2", "u3"]),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from(["view", "add_to_cart", "purchase"]),
            st.integers(min_value=0, max_value=20 * 24),
            st.one_of(st.none(), st.floats(min_value=0.5, max_value=100)),
        ),
        min_size=1,
        max_size=15,
    )
)
def test_label_window_events_never_change_a_feature(
    planted: list[tuple[str, str, str, int, float | None]],
) -> None:
    """Events at or after the cutoff (the ranker's label window) cannot move any feature."""
    later = _events(
        [
            (u, i, t, (AS_OF + timedelta(hours=h)).replace(tzinfo=None), p)
            for u, i, t, h, p in planted
        ]
    )
    before = _tables(HISTORY)
    after = _tables(pl.concat([HISTORY, later]))
    for left, right in zip(before, after, strict=True):
        assert left.equals(right)


def test_offline_and_online_stores_serve_the_same_values(tmp_path: Path) -> None:
    tables = compute_features(HISTORY, AS_OF, items=ITEMS)
    offline = OfflineFeatureStore(tmp_path)
    offline.write(tables)
    read = offline.latest()
    assert read.as_of == AS_OF
    assert read.users.equals(tables.users)
    online = open_online_store("memory://")
    online.load(read)
    for row in tables.users.iter_rows(named=True):
        assert online.user(row.pop("user_id")) == row
    for row in tables.items.iter_rows(named=True):
        assert online.item(row.pop("item_id")) == row
    assert online.pair("u1", "a") == {
        "pair_events": 2,
        "pair_purchases": 1,
        "pair_days_since_last": pytest.approx(28.0),
        "pair_days_since_purchase": pytest.approx(28.0),
        "pair_recent_purchases": 1,
    }
    assert online.user("nobody") is None
    with pytest.raises(ConfigError, match="unknown online store"):
        open_online_store("cassandra://x")
