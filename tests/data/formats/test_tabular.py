from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from shoprec.config import ColumnMapping, IngestConfig
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.exceptions import SourceError
from tests.data.formats.helpers import lake_events, reasons


def test_canonical_csv_events_with_bad_rows(fixtures: Path, workspace: Path) -> None:
    report = ingest([fixtures / "events_bad.csv"], "csv", workspace=workspace)
    assert report.rows_read == 8
    assert reasons(report) == {
        4: "price is not a number",
        5: "ts is not a timestamp",
        6: "missing item_id",
        7: "invalid event_type (lower-case letters, digits and _)",
        8: "negative price",
    }
    events = lake_events(workspace)
    assert events.select("user_id", "item_id", "event_type", "value", "price").rows() == [
        ("u1", "i1", "view", None, None),
        ("u1", "i1", "purchase", 2.0, 19.99),
        ("u3", "i3", "view", None, None),
    ]
    assert events["ts"].to_list()[-1] == datetime(2024, 5, 2, 12, 0, tzinfo=UTC)
    # a non-canonical column is kept in the context
    assert json.loads(events["context"][0]) == {"platform": "web"}


def test_mapping_and_event_type_map_from_config(tmp_path: Path, workspace: Path) -> None:
    path = tmp_path / "clicks.tsv"
    path.write_text(
        "customer\tsku\taction\twhen\nc1\ts1\tpv\t2024-01-01 10:00\nc1\ts2\tbuy\t2024-01-02 11:00\n"
    )
    config = IngestConfig(
        mapping=ColumnMapping(
            events={"user_id": "customer", "item_id": "sku", "event_type": "action", "ts": "when"}
        ),
        event_type_map={"pv": "view", "buy": "purchase"},
    )
    report = ingest([path], "csv", workspace=workspace, config=config)
    assert report.rows_rejected == 0
    assert lake_events(workspace).select("user_id", "item_id", "event_type").rows() == [
        ("c1", "s1", "view"), ("c1", "s2", "purchase"),
    ]  # fmt: skip


def test_missing_required_and_mapped_columns(tmp_path: Path, workspace: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,when\nu,i,2024-01-01\n")
    with pytest.raises(
        SourceError,
        match=r"events\.csv: missing required column\(s\) ts, "
        r"event_type for events",
    ):
        ingest([path], "csv", workspace=workspace)
    config = IngestConfig(mapping=ColumnMapping(events={"ts": "time"}))
    with pytest.raises(SourceError, match=r"mapped column\(s\) time not in the file"):
        ingest([path], "csv", workspace=workspace, config=config)
    assert not Lake(workspace).event_files()


def test_items_and_users_tables(tmp_path: Path, workspace: Path) -> None:
    items = tmp_path / "products.csv"
    items.write_text(
        "item_id,title,price,available,colour\nA,Mug,4.5,yes,red\nB,Cup,x,no,blue\nC,Jug,3,maybe,\n"
    )
    users = tmp_path / "customers.csv"
    users.write_text("user_id,email,lat,lon\nu1,a@example.com,51.5,-0.1\n")
    report = ingest([items, users], "csv", workspace=workspace)
    assert reasons(report) == {3: "price is not a number", 4: "available is not true/false"}
    lake = Lake(workspace)
    assert lake.items().select("item_id", "title", "price", "available", "attributes").rows() == [
        ("A", "Mug", 4.5, True, '{"colour":"red"}')
    ]
    assert lake.users().select("user_id", "email", "lat").rows() == [("u1", "a@example.com", 51.5)]


def test_items_are_upserted_not_duplicated(tmp_path: Path, workspace: Path) -> None:
    first = tmp_path / "items.csv"
    first.write_text("item_id,title,price\nA,Mug,4.5\nB,Cup,2\n")
    ingest([first], "csv", workspace=workspace)
    second = tmp_path / "items2.csv"
    second.write_text("item_id,price,category\nA,5.0,kitchen\nC,1,kitchen\n")
    ingest([second], "csv", workspace=workspace)
    rows = Lake(workspace).items().select("item_id", "title", "price", "category").rows()
    assert rows == [
        ("A", "Mug", 5.0, "kitchen"),
        ("B", "Cup", 2.0, None),
        ("C", None, 1.0, "kitchen"),
    ]


def test_jsonl_with_bad_lines(tmp_path: Path, workspace: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2024-01-01T00:00:00Z",'
        ' "context": {"device": "phone"}}\n'
        '{"user_id": "u1", "item_id": "i2", "event_type": "view", "ts": "2024-01-01T00:01:00Z"\n'
        '["not", "an", "object"]\n'
    )
    report = ingest([path], "jsonl", workspace=workspace)
    assert reasons(report) == {2: "not a JSON object", 3: "not a JSON object"}
    assert report.rejects["value"].to_list()[1] == "a JSON list, not an object"
    assert lake_events(workspace)["context"].to_list() == ['{"device": "phone"}']


def test_typed_parquet_in_pieces(tmp_path: Path, workspace: Path) -> None:
    path = tmp_path / "events.parquet"
    pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "item_id": [1, 2, 3],
            "event_type": ["view", "view", "purchase"],
            "ts": [datetime(2024, 1, 1, 10), datetime(2024, 1, 2, 10), datetime(2024, 1, 3, 10)],
            "value": [1, 1, 2],
        }
    ).write_parquet(path, row_group_size=1)
    report = ingest([path], "parquet", workspace=workspace)
    assert report.rows_read == 3
    events = lake_events(workspace)
    assert events["item_id"].to_list() == ["1", "2", "3"]
    assert events["ts"].dtype == pl.Datetime("us", "UTC")
    again = ingest([path], "parquet", workspace=workspace)
    assert (again.events_added, again.events_already_in_lake) == (0, 3)


def test_empty_files_warn_and_load_nothing(tmp_path: Path, workspace: Path) -> None:
    for name in ("events.csv", "events.jsonl"):
        (tmp_path / name).write_bytes(b"")
        report = ingest([tmp_path / name], name.split(".")[1], workspace=workspace)
        assert report.rows_read == 0
        assert report.warnings == [f"{tmp_path / name}: file is empty, nothing read"]


def test_damaged_parquet_is_one_clear_error(tmp_path: Path, workspace: Path) -> None:
    path = tmp_path / "events.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SourceError, match=r"events\.parquet: not a readable Parquet file"):
        ingest([path], "parquet", workspace=workspace)


def test_table_cannot_be_guessed(tmp_path: Path, workspace: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match="cannot tell whether this file holds events"):
        ingest([path], "csv", workspace=workspace)


def test_one_load_merges_repeated_items_field_by_field(tmp_path: Path, workspace: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,title,price\nA,Mug,4.5\nA,,5.0\n")
    ingest([path], "csv", workspace=workspace)
    assert Lake(workspace).items().select("item_id", "title", "price").rows() == [("A", "Mug", 5.0)]


def test_ids_with_control_characters_are_rejected_with_their_line(
    tmp_path: Path, workspace: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event_type,ts\n"
        "u1,i1,view,2024-05-01T10:00:00Z\n"
        "u\x002,i1,view,2024-05-01T10:00:00Z\n"
        "u3,i\x1b3,view,2024-05-01T10:00:00Z\n"
        '"u4","i4\x7f",view,2024-05-01T10:00:00Z\n'
    )
    report = ingest([path], "csv", workspace=workspace)
    assert reasons(report) == {
        3: "user_id has a control character (a NUL, a line break, ...)",
        4: "item_id has a control character (a NUL, a line break, ...)",
        5: "item_id has a control character (a NUL, a line break, ...)",
    }
    assert lake_events(workspace).select("user_id", "item_id").rows() == [("u1", "i1")]
    # the rejects file shows where the character was, never the character itself
    assert report.rejects["value"].to_list() == ["u\ufffd2", "i\ufffd3", "i4\ufffd"]


def test_catalogue_ids_with_control_characters_are_rejected(
    tmp_path: Path, workspace: Path
) -> None:
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni1,Lamp\ni\x002,Chair\n")
    users = tmp_path / "users.csv"
    users.write_text("user_id,country\nu1,DE\nu\n2,FR\n".replace("u\n2", '"u\n2"'))
    report = ingest([items], "csv", workspace=workspace)
    assert reasons(report) == {3: "item_id has a control character (a NUL, a line break, ...)"}
    report = ingest([users], "csv", workspace=workspace)
    assert list(reasons(report).values()) == [
        "user_id has a control character (a NUL, a line break, ...)"
    ]
    lake = Lake(workspace)
    assert lake.items()["item_id"].to_list() == ["i1"]
    assert lake.users()["user_id"].to_list() == ["u1"]
