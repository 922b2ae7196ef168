"""The next-item generator follows the order of what users touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import scipy.sparse as sp

from shoprec.data.dataset import Dataset
from shoprec.data.schema import EVENTS_SCHEMA, conform
from shoprec.models.next_item import NextItemModel

START = datetime(2024, 1, 1, tzinfo=UTC)


def _chains() -> Dataset:
    """Every user walks part of the chain a → b → c → d → e in order; one user walks it
    backwards (so co-occurrence alone cannot tell the direction)."""
    chain = list("abcde")
    rows = []
    for u in range(20):
        first = u % 3
        for step, item in enumerate(chain[first : first + 3]):
            rows.append((f"u{u}", item, "view", START + timedelta(hours=u, minutes=step)))
    for step, item in enumerate(reversed(chain)):
        rows.append(("back", item, "view", START + timedelta(days=9, minutes=step)))
    events = pl.DataFrame(rows, schema=["user_id", "item_id", "event_type", "ts"], orient="row")
    return Dataset.from_events(conform(events, EVENTS_SCHEMA))


def test_the_next_item_follows_the_latest_one() -> None:
    model = NextItemModel().fit(_chains())
    # u0 walked a, b, c: what follows c comes first
    recs = model.recommend(["u0"], k=2, exclude_seen=True)
    assert recs["item_id"].to_list() == ["d", "e"]
    assert recs["reason"][0] == "often chosen after c"
    # a new visitor who touched b is led to c, not back to a
    history = pl.DataFrame({"user_id": ["new"], "item_id": ["b"]})
    assert model.recommend(["new"], k=1, history=history)["item_id"].to_list() == ["c"]


def test_live_items_weigh_as_the_latest() -> None:
    model = NextItemModel().fit(_chains())
    # u1 walked b, c, d (next: e); a live view of a makes b the next step
    history = pl.DataFrame({"user_id": ["u1"], "item_id": ["a"]})
    top = model.recommend(["u1"], k=1, history=history, exclude_seen=False)
    assert top["item_id"].to_list() == ["b"]


def test_the_serving_row_scores_equal_the_batch_scores() -> None:
    dataset = _chains()
    model = NextItemModel().fit(dataset)
    users = np.arange(dataset.n_users)
    rows = sp.csr_matrix(model.user_items_)
    batch = model._score(rows, users)
    for user in users.tolist():
        start, end = rows.indptr[user], rows.indptr[user + 1]
        items, values = model._score_row(rows.indices[start:end], rows.data[start:end], user)
        dense = np.zeros(dataset.n_items, np.float32)
        dense[items] = values
        np.testing.assert_array_equal(dense, batch[user])
