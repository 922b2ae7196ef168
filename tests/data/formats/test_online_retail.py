from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from tests.data.formats.helpers import lake_events, reasons


def test_full_uci_file_matches_its_published_counts(shared_data: Path, workspace: Path) -> None:
    path = shared_data / "uci-online-retail" / "online_retail.csv"
    report = ingest([path], "online-retail", workspace=workspace)
    assert report.rows_read == 541_909
    # Two "Adjust bad debt" lines carry a negative unit price: rejected, never silently kept.
    assert report.rows_rejected == 2
    assert {r.reason for r in report.by_reason()} == {"negative price"}
    lake = Lake(workspace)
    events = lake.events()
    assert events.height == 541_907
    assert events.filter(pl.col("event_type") == "return").height == 10_624
    assert events["basket_id"].n_unique() == 25_900 - 2
    assert events["user_id"].drop_nulls().n_unique() == 4_372
    assert events.filter(pl.col("user_id").is_null()).height == 135_080 - 2
    items = lake.items()
    assert items.height == 4_070
    heart = items.filter(pl.col("item_id") == "85123A").row(0, named=True)
    assert heart["title"] == "WHITE HANGING HEART T-LIGHT HOLDER"
    assert heart["price"] > 0


def test_reingesting_adds_nothing(shared_data: Path, workspace: Path) -> None:
    path = shared_data / "uci-online-retail" / "online_retail.csv"
    first = ingest([path], "online-retail", workspace=workspace)
    again = ingest([path], "online-retail", workspace=workspace)
    assert first.events_added == 541_907
    assert again.events_added == 0
    assert again.events_already_in_lake == 541_907
    assert Lake(workspace).events().height == 541_907


def test_malformed_rows_are_reported_by_line(fixtures: Path, workspace: Path) -> None:
    path = fixtures / "online_retail_bad.csv"
    report = ingest([path], "online-retail", workspace=workspace)
    assert report.rows_read == 11
    assert report.rows_rejected == 7
    assert report.rows_kept == 4
    assert reasons(report) == {
        3: "quantity is not a number",
        4: "bad invoice date (expected YYYY-MM-DD HH:MM:SS)",
        5: "unit price is not a number",
        6: "missing stock code",
        7: "customer id is not a number",
        8: "wrong number of fields (expected 8)",
        12: "quantity is not a whole number",
    }
    assert report.rejects_path is not None
    saved = pl.read_csv(report.rejects_path)
    assert saved["line"].to_list() == [3, 4, 5, 6, 7, 8, 12]
    assert saved.filter(pl.col("line") == 5)["value"].item() == "1,69"

    events = lake_events(workspace)
    assert events.select("user_id", "item_id", "event_type", "value", "basket_id").rows() == [
        ("17850", "85123A", "purchase", 6.0, "536365"),
        (None, "22961", "purchase", 24.0, "536380"),
        ("17850", "85123A", "return", 2.0, "C536379"),
        ("15311", "85123A", "purchase", 4.0, "536382"),
    ]
    items = Lake(workspace).items().sort("item_id")
    assert items.select("item_id", "title", "price").rows() == [
        ("22961", "JAM MAKING SET, PRINTED", 1.45),
        ("85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 2.95),
    ]


def test_uk_local_time_is_stored_in_utc(fixtures: Path, workspace: Path, tmp_path: Path) -> None:
    path = tmp_path / "summer.csv"
    path.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "1,A,X,1,2011-07-01 10:00:00,1.0,1.0,United Kingdom\n"
    )
    ingest([path], "online-retail", workspace=workspace)
    assert str(lake_events(workspace)["ts"].item()) == "2011-07-01 09:00:00+00:00"


def test_missing_columns_stop_before_writing(tmp_path: Path, workspace: Path) -> None:
    path = tmp_path / "retail.csv"
    path.write_text("InvoiceNo,StockCode,Quantity\n1,A,1\n")
    with pytest.raises(Exception, match=r"retail\.csv: missing required column\(s\) Description"):
        ingest([path], "online-retail", workspace=workspace)
    assert Lake(workspace).event_files() == []
