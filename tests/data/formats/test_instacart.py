from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from tests.data.formats.helpers import reasons


def test_instacart_catalogue(shared_data: Path, workspace: Path) -> None:
    folder = shared_data / "instacart-products"
    report = ingest(
        [folder / "products.csv", folder / "aisles.csv", folder / "departments.csv"],
        "instacart-products",
        workspace=workspace,
    )
    assert report.rows_read == 49_688 + 134 + 21
    assert report.rows_rejected == 0
    assert report.warnings == []
    items = Lake(workspace).items()
    assert items.height == 49_688
    assert set(items["entity_type"]) == {"product"}
    first = items.filter(pl.col("item_id") == "1").row(0, named=True)
    assert first["title"] == "Chocolate Sandwich Cookies"
    assert first["category"] == "snacks/cookies cakes"
    assert json.loads(first["attributes"])["aisle_id"] == "61"
    assert items["category"].null_count() == 0


def test_missing_name_and_unknown_aisle(tmp_path: Path, workspace: Path) -> None:
    (tmp_path / "products.csv").write_text(
        "product_id,product_name,aisle_id,department_id\n1,Milk,1,1\n2,,1,1\n3,Tea,99,1\n"
    )
    (tmp_path / "aisles.csv").write_text("aisle_id,aisle\n1,dairy\n")
    report = ingest(
        [tmp_path / "products.csv", tmp_path / "aisles.csv"],
        "instacart-products",
        workspace=workspace,
    )
    assert reasons(report) == {3: "missing product name"}
    assert report.warnings == [
        f"{tmp_path / 'aisles.csv'}: 1 product(s) refer to a aisle_id not listed here"
    ]
    assert Lake(workspace).items().height == 2
