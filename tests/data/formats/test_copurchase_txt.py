from __future__ import annotations

from pathlib import Path

import polars as pl

from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from tests.data.formats.helpers import lake_events


def test_shared_sample(shared_data: Path, workspace: Path) -> None:
    folder = shared_data / "retail-copurchases-sample"
    report = ingest(
        [folder / "products.txt", folder / "transactions.txt"],
        "copurchase-txt",
        workspace=workspace,
    )
    # SOURCE.txt: 3 products (the first separated by spaces) and 1 transaction of 3 items.
    assert report.rows_read == 4
    assert report.rows_rejected == 0
    items = Lake(workspace).items().sort("item_id")
    assert items.select("item_id", "category", "title").rows() == [
        ("ITEM_CODE_1", "M0001", "Item 1 Description"),
        ("ITEM_CODE_2", "M0002", "Item 2 Description"),
        ("ITEM_CODE_3", "M0003", "Item 3 Description"),
    ]
    events = lake_events(workspace)
    assert events.height == 3
    assert events["basket_id"].n_unique() == 1
    assert set(events["user_id"]) == {"10"}
    assert events["price"].sort().to_list() == [0.99, 1.79, 1.88]
    assert str(events["ts"][0]) == "2017-04-06 12:09:32+00:00"
    assert set(events["context"]) == {'{"store": "0001"}'}


def test_malformed_products_and_transactions(fixtures: Path, workspace: Path) -> None:
    report = ingest(
        [fixtures / "products.txt", fixtures / "transactions.txt"],
        "copurchase-txt",
        workspace=workspace,
    )
    rejects = report.rejects.with_columns(pl.col("file").str.split("/").list.last())
    assert rejects.select("file", "line", "reason").rows() == [
        ("products.txt", 3, "expected product id, category code and name separated by tabs"),
        ("transactions.txt", 2, "bad JSON: Expecting ',' delimiter"),
        ("transactions.txt", 3, "missing customer"),
        ("transactions.txt", 4, "bad date (expected YYYY.MM.DD HH:MM:SS)"),
        ("transactions.txt", 5, "price is not a number"),
        ("transactions.txt", 6, "itemList must be a non-empty list"),
        ("transactions.txt", 7, "a transaction must be a JSON object"),
    ]
    assert report.rows_read == 4 + 8
    items = Lake(workspace).items().sort("item_id")
    assert items["item_id"].to_list() == ["ITEM_CODE_1", "ITEM_CODE_2", "ITEM_CODE_3"]
    assert items.filter(pl.col("item_id") == "ITEM_CODE_3")["category"].item() == "M0003"
    events = lake_events(workspace)
    assert events.select("user_id", "item_id", "value").rows() == [
        ("10", "ITEM_CODE_1", 1.0),
        ("10", "ITEM_CODE_2", 2.0),
        ("15", "ITEM_CODE_2", 1.0),
        ("15", "ITEM_CODE_3", 1.0),
    ]
    assert events["basket_id"].n_unique() == 2
