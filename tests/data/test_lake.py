"""The lake's event-id cache: a long-lived writer reads only files it has not seen."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from shoprec.data.lake import EventIdCache, Lake
from shoprec.data.schema import EVENTS_SCHEMA, conform


def _events(ids: list[str], day: int = 1) -> pl.DataFrame:
    return conform(
        pl.DataFrame(
            {
                "event_id": ids,
                "user_id": ["u"] * len(ids),
                "item_id": ["i"] * len(ids),
                "event_type": ["view"] * len(ids),
                "ts": [datetime(2026, 1, day, 12, tzinfo=UTC)] * len(ids),
            }
        ),
        EVENTS_SCHEMA,
    )


def test_cached_writer_skips_its_own_and_others_stored_ids(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "ws")
    cache = EventIdCache()
    assert lake.append(_events(["a", "b"]), known=cache).events_added == 2
    # another writer (no cache) stores c; the cached writer must still see it
    assert lake.append(_events(["c"])).events_added == 1
    result = lake.append(_events(["a", "c", "d"]), known=cache)
    assert (result.events_added, result.events_duplicate) == (1, 2)
    assert sorted(lake.events()["event_id"].to_list()) == ["a", "b", "c", "d"]
    # the cache read each file once: its own files are recorded, not re-read
    assert len(cache._files["2026-01-01"]) == len(lake.event_files(["2026-01-01"]))


def test_cache_keeps_only_recent_days(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "ws")
    cache = EventIdCache(days=2)
    for day in (1, 2, 3):
        lake.append(_events([f"e{day}"], day), known=cache)
    assert sorted(cache._files) == ["2026-01-02", "2026-01-03"]
    # an evicted day is read again from disk: duplicates are still found
    assert lake.append(_events(["e1"], 1), known=cache).events_duplicate == 1
