from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from shoprec.data.schema import EVENTS_SCHEMA, conform
from shoprec.evaluation.splitters import LeaveLastOutSplit, RandomSplit, TimeSplit, make_split
from shoprec.exceptions import DataError

START = datetime(2024, 1, 1, tzinfo=UTC)


def events(rows: list[tuple[str, str, str, int]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "ts": [START + timedelta(days=r[3]) for r in rows],
        }
    )
    return conform(frame, EVENTS_SCHEMA)


LOG = events([
    ("u1", "a", "purchase", 0), ("u1", "b", "view", 1), ("u1", "a", "purchase", 10),
    ("u1", "c", "purchase", 11), ("u2", "a", "view", 2), ("u2", "d", "purchase", 12),
    ("u3", "e", "purchase", 13),  # u3 has no training history: not a test user
    ("u2", "e", "view", 14),  # a view is not relevant by default
])  # fmt: skip


def test_time_split_by_cutoff_keeps_repeat_purchases() -> None:
    split = make_split(TimeSplit(cutoff=START + timedelta(days=5)), LOG)
    assert split.train.height == 3
    assert sorted(split.truth.select("user_id", "item_id").rows()) == [
        ("u1", "a"), ("u1", "c"), ("u2", "d"),
    ]  # fmt: skip
    assert split.test_users == ["u1", "u2"]


def test_time_split_by_ratio() -> None:
    split = make_split(TimeSplit(train_ratio=0.5), LOG)  # cutoff at day 7
    assert split.train["ts"].max() < START + timedelta(days=7)  # type: ignore[operator]
    assert "time split at 2024-01-08" in split.description


def test_leave_last_out() -> None:
    split = make_split(LeaveLastOutSplit(), LOG)
    assert sorted(split.truth.select("user_id", "item_id").rows()) == [("u1", "c"), ("u2", "d")]
    # u3's only purchase is its test item, so u3 has no training history and is not tested
    assert "u3" not in split.test_users
    u1_train = split.train.filter(pl.col("user_id") == "u1")
    assert u1_train["item_id"].to_list() == ["a", "b", "a"]


def test_random_split_removes_every_event_of_a_test_pair() -> None:
    rows = [("u1", f"i{i}", "rating", i) for i in range(8)]
    rows += [("u1", f"i{i}", "view", i) for i in range(8)]
    split = make_split(
        RandomSplit(test_event_types=["rating"], test_fraction=0.25, seed=1), events(rows)
    )
    test_items = set(split.truth["item_id"])
    assert len(test_items) == 2
    assert not test_items & set(split.train["item_id"])
    again = make_split(
        RandomSplit(test_event_types=["rating"], test_fraction=0.25, seed=1), events(rows)
    )
    assert again.truth.equals(split.truth)


def test_min_value_makes_low_ratings_irrelevant() -> None:
    log = events([("u1", "a", "rating", 0), ("u1", "b", "rating", 10), ("u1", "c", "rating", 11)])
    log = log.with_columns(pl.Series("value", [5.0, 2.0, 4.0]))
    split = make_split(
        TimeSplit(cutoff=START + timedelta(days=5), test_event_types=["rating"], min_value=4),
        log,
    )
    assert split.truth["item_id"].to_list() == ["c"]


def test_bad_splits_are_clear_errors() -> None:
    with pytest.raises(DataError, match="the training set is empty"):
        make_split(TimeSplit(cutoff=START - timedelta(days=1)), LOG)
    with pytest.raises(DataError, match="leaves no test users"):
        make_split(TimeSplit(cutoff=START + timedelta(days=100)), LOG)
    with pytest.raises(DataError, match="no events"):
        make_split(TimeSplit(train_ratio=0.5), LOG.head(0))
    with pytest.raises(ValueError, match="exactly one of cutoff or train_ratio"):
        TimeSplit()
