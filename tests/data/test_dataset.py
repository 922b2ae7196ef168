from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from shoprec.config import EventWeights
from shoprec.data.dataset import Dataset, IdMap
from shoprec.data.schema import EVENTS_SCHEMA, conform


def _events(rows: list[tuple[str | None, str | None, str, float | None]]) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "event_type": [r[2] for r in rows],
            "value": [r[3] for r in rows],
            "ts": [datetime(2024, 1, 1 + i, tzinfo=UTC) for i in range(len(rows))],
        }
    )
    return conform(frame, EVENTS_SCHEMA)


def test_id_map_round_trip() -> None:
    ids = IdMap.from_ids(["b", "a", "b", "c"])
    assert len(ids) == 3
    assert ids.to_index(["a", "zzz", "b"]).tolist() == [1, -1, 0]
    assert ids.to_external([2, 0]) == ["c", "b"]


def test_matrix_sums_configured_weights() -> None:
    events = _events([
        ("u1", "i1", "view", None),
        ("u1", "i1", "purchase", 2.0),
        ("u1", "i2", "rating", 4.0),
        ("u2", "i2", "add_to_cart", 1.0),
        ("u2", "i3", "impression", None),  # weight 0 by default: not an interaction
        (None, "i3", "purchase", 1.0),  # a guest basket: not a user
        ("u3", None, "pageview", None),
    ])  # fmt: skip
    items = pl.DataFrame({"item_id": ["i9", "i1"]})
    dataset = Dataset.from_events(events, items=items)
    assert dataset.user_ids.external.tolist() == ["u1", "u2"]
    assert dataset.item_ids.external.tolist() == ["i9", "i1", "i2"]  # catalogue first
    matrix = dataset.matrix().toarray()
    expected = np.array([[0, 1 + 5, 4], [0, 0, 3]], dtype=np.float32)
    np.testing.assert_array_equal(matrix, expected)
    purchases = dataset.matrix(event_types=["purchase"]).toarray()
    np.testing.assert_array_equal(purchases, [[0, 5, 0], [0, 0, 0]])


def test_custom_weights_and_negative_totals_dropped() -> None:
    weights = EventWeights(
        weights={"purchase": 1.0, "return": -1.0}, value_weighted=["purchase", "return"]
    )
    events = _events([
        ("u1", "i1", "purchase", 3.0),
        ("u1", "i1", "return", 3.0),
        ("u1", "i2", "purchase", 2.0),
    ])  # fmt: skip
    dataset = Dataset.from_events(events, weights=weights)
    matrix = dataset.matrix()
    assert matrix.nnz == 1
    assert matrix[0, dataset.item_ids.to_index(["i2"])[0]] == pytest.approx(2.0)


def test_interactions_are_time_ordered_indices() -> None:
    dataset = Dataset.from_events(_events([("u1", "i1", "view", None), ("u2", "i1", "view", None)]))
    assert dataset.interactions.columns == [
        "user_index",
        "item_index",
        "weight",
        "ts",
        "event_type",
        "price",
    ]
    assert dataset.interactions["ts"].is_sorted()
    assert dataset.n_users == 2
    assert dataset.n_items == 1


def test_baskets_include_guests_and_catalogue_is_aligned() -> None:
    frame = pl.DataFrame({
        "user_id": ["u1", "u1", None, None, "u2"],
        "item_id": ["a", "b", "a", "c", "a"],
        "event_type": ["purchase", "purchase", "purchase", "purchase", "view"],
        "basket_id": ["o1", "o1", "g1", "g1", None],
        "ts": [datetime(2024, 1, 1, tzinfo=UTC)] * 5,
    })  # fmt: skip
    items = pl.DataFrame({"item_id": ["c", "z"], "title": ["Cup", "Zed"]})
    dataset = Dataset.from_events(conform(frame, EVENTS_SCHEMA), items=items)
    assert dataset.item_ids.external.tolist() == ["c", "z", "a", "b"]
    assert dataset.items["title"].to_list() == ["Cup", "Zed", None, None]
    baskets = dataset.basket_matrix().toarray()
    assert baskets.shape == (2, 4)
    assert sorted(map(tuple, baskets.tolist())) == [(0, 0, 1, 1), (1, 0, 1, 0)]
