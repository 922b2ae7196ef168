from __future__ import annotations

from pathlib import Path

import polars as pl

from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from tests.data.formats.helpers import lake_events, reasons


def test_event_log_is_exploded_and_mapped(fixtures: Path, workspace: Path) -> None:
    report = ingest([fixtures / "ab_events.csv"], "ab-events", workspace=workspace)
    assert report.rows_read == 20
    assert report.rows_rejected == 0
    events = lake_events(workspace)
    counts = dict(events.group_by("event_type").len().iter_rows())
    # two multi-item purchases ([501, 733] and [502, 733, 734]) explode into 5 events
    assert counts == {
        "pageview": 3, "engagement": 3, "view": 7, "add_to_cart": 4, "purchase": 6,
    }  # fmt: skip
    visits = events.filter(pl.col("event_type").is_in(["pageview", "engagement"]))
    assert visits["item_id"].null_count() == visits.height
    purchase = events.filter((pl.col("event_type") == "purchase") & (pl.col("user_id") == "u-1003"))
    assert purchase.sort("item_id").select("item_id", "price", "value").rows() == [
        ("502", 319.0, 1.0), ("733", 19.9, 1.0), ("734", 9.9, 3.0),
    ]  # fmt: skip
    assert purchase["basket_id"].n_unique() == 1
    # an empty utc_event_time falls back to the date
    fallback = events.filter((pl.col("user_id") == "u-1002") & (pl.col("event_type") == "view"))
    assert sorted(str(t) for t in fallback["ts"]) == [
        "2024-03-01 18:02:15+00:00", "2024-03-02 00:00:00+00:00",
    ]  # fmt: skip
    assert set(events["context"]) == {
        '{"platform":"web"}',
        '{"platform":"ios"}',
        '{"platform":"android"}',
    }
    items = Lake(workspace).items().sort("item_id")
    assert items.select("item_id", "category", "price").rows() == [
        ("501", "phones/smartphones", 277.0),
        ("502", "phones/smartphones", 319.0),
        ("733", "phones/cases", 19.9),
        ("734", "phones/cables", 9.9),
        ("812", "home/kitchen", 45.9),
    ]


def test_malformed_rows(fixtures: Path, workspace: Path) -> None:
    report = ingest([fixtures / "ab_events_bad.csv"], "ab-events", workspace=workspace)
    assert report.rows_read == 12
    assert reasons(report) == {
        3: "unknown event type",
        4: "bad utc_event_time",
        5: "bad or missing utc_event_date (expected YYYY-MM-DD)",
        6: "ecom.price100 has a non-numeric element",
        7: "ecom.qty has a different length than ecom.nm",
        8: "item event without items in ecom.nm",
        9: "missing user_id",
        10: "ecom.price100 is not a [..] list",
        11: "wrong number of fields (expected 8)",
        12: "ecom.price100 has a negative element",
    }
    assert report.rows_kept == 2
    assert lake_events(workspace)["event_type"].to_list() == ["view", "pageview"]
