from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from shoprec.data.dataset import Dataset
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.schema import EVENTS_SCHEMA, conform
from shoprec.models import model_from_config


def test_shared_sample_pairs_every_product_with_the_other_two(
    shared_data: Path, workspace: Path
) -> None:
    folder = shared_data / "retail-copurchases-sample"
    ingest(
        [folder / "products.txt", folder / "transactions.txt"],
        "copurchase-txt",
        workspace=workspace,
    )
    model = model_from_config("copurchase").fit(Dataset.from_lake(Lake(workspace)))
    products = ["ITEM_CODE_1", "ITEM_CODE_2", "ITEM_CODE_3"]
    similar = model.similar_items(products, k=5)
    for product in products:
        rows = similar.filter(pl.col("item_id") == product)
        assert sorted(rows["similar_item_id"]) == sorted(set(products) - {product})
        assert rows["score"].to_list() == [1.0, 1.0]
    # names are attached and ties break by id
    first = similar.filter(pl.col("item_id") == "ITEM_CODE_2")
    assert first.select("similar_item_id", "title").rows() == [
        ("ITEM_CODE_1", "Item 1 Description"), ("ITEM_CODE_3", "Item 3 Description"),
    ]  # fmt: skip


def test_counts_both_directions_and_lonely_items() -> None:
    baskets = [("o1", ["a", "b", "c"]), ("o2", ["a", "b"]), ("o3", ["a", "d"]), ("o4", ["e"])]
    rows = [
        ("u1", item, "purchase", datetime(2024, 1, 1, tzinfo=UTC), basket)
        for basket, items in baskets
        for item in items
    ]
    events = pl.DataFrame(
        rows, schema=["user_id", "item_id", "event_type", "ts", "basket_id"], orient="row"
    )
    model = model_from_config("copurchase").fit(Dataset.from_events(conform(events, EVENTS_SCHEMA)))
    similar = model.similar_items(["a", "b", "e"], k=10)
    by_item = {
        key: group.select("similar_item_id", "score").rows()
        for (key,), group in similar.group_by("item_id", maintain_order=True)
    }
    assert by_item["a"] == [("b", 2.0), ("c", 1.0), ("d", 1.0)]
    assert by_item["b"] == [("a", 2.0), ("c", 1.0)]
    assert "e" not in by_item  # never bought with anything: an empty list


def test_an_item_nothing_was_bought_with_is_not_explained_as_bought_together() -> None:
    baskets = [
        ("o1", "u1", ["a", "b", "c"]),
        ("o2", "u1", ["a", "b"]),
        ("o3", "u3", ["a", "d"]),
        ("o4", "u2", ["e"]),
    ]
    rows = [
        (user, item, "purchase", datetime(2024, 1, 1, tzinfo=UTC), basket)
        for basket, user, items in baskets
        for item in items
    ]
    events = pl.DataFrame(
        rows, schema=["user_id", "item_id", "event_type", "ts", "basket_id"], orient="row"
    )
    model = model_from_config("copurchase").fit(Dataset.from_events(conform(events, EVENTS_SCHEMA)))
    # u3 bought a and d: b and c were bought with a; e never with anything (padding, score 0)
    recs = model.recommend(["u3"], k=3)
    reasons = dict(zip(recs["item_id"], recs["reason"], strict=True))
    assert reasons["b"] == reasons["c"] == "bought together with a"
    assert reasons["e"] == "popular with shoppers"
