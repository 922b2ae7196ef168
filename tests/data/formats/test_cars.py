from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from shoprec.data.formats.cars import brand_of
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from tests.data.formats.helpers import reasons


@pytest.mark.parametrize(
    ("name", "brand"),
    [
        ("Land Rover Discovery Sport SD4 HSE Luxury", "Land Rover"),
        ("LAND ROVER Range Rover Evoque", "LAND ROVER"),
        ("Landmark Tourer", "Landmark"),
        ("Land Cruiser Prado", "Land"),
        ("Mercedes-Benz E-Class 230", "Mercedes-Benz"),
        ("Mercedes Benz C220", "Mercedes Benz"),
        ("OpelCorsa 1.4 GSi", "OpelCorsa"),
        ("Aston Martin Vantage", "Aston Martin"),
        ("  Maruti   Swift Dzire  ", "Maruti"),
        ("", None),
    ],
)
def test_brand_is_matched_word_by_word(name: str, brand: str | None) -> None:
    assert brand_of(name) == brand


def test_full_car_listings(shared_data: Path, workspace: Path) -> None:
    report = ingest(
        [shared_data / "embi-car-listings" / "car_data.csv"], "cars", workspace=workspace
    )
    assert report.rows_read == 4_340
    assert report.rows_rejected == 0
    items = Lake(workspace).items()
    assert items.height == 4_340
    assert set(items["entity_type"]) == {"listing"}
    assert items["price"].min() == 20_000
    assert items["price"].max() == 8_900_000
    brands = items.group_by("category").len()
    assert dict(brands.iter_rows())["Land Rover"] == 5
    assert "Land" not in set(brands["category"])
    first = items.filter(pl.col("item_id") == "1").row(0, named=True)
    assert first["title"] == "Maruti 800 AC"
    attributes = json.loads(first["attributes"])
    assert attributes == {
        "brand": "Maruti", "model": "800 AC", "year": 2007, "km_driven": 70000,
        "fuel": "Petrol", "seller_type": "Individual", "transmission": "Manual",
        "owner": "First Owner",
    }  # fmt: skip


def test_malformed_listings(fixtures: Path, workspace: Path) -> None:
    report = ingest([fixtures / "cars_bad.csv"], "cars", workspace=workspace)
    assert reasons(report) == {
        4: "year is not a number",
        5: "selling_price is not a number",
        6: "wrong number of fields (expected 8)",
    }
    items = Lake(workspace).items().sort("item_id")
    assert items.select("item_id", "category").rows() == [
        ("1", "Land Rover"), ("2", "Landmark"), ("6", "Mercedes-Benz"), ("7", "MINI"),
    ]  # fmt: skip
