from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.exceptions import SourceError, UnknownFormatError


def _events_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("user_id,item_id,event_type,ts\n" + "\n".join(rows) + "\n")
    return path


def test_unknown_format_lists_the_known_ones(tmp_path: Path, workspace: Path) -> None:
    with pytest.raises(UnknownFormatError, match="unknown format 'xls'; known formats: ab-events"):
        ingest([tmp_path / "x"], "xls", workspace=workspace)


def test_missing_file_and_directory(tmp_path: Path, workspace: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.csv: file not found"):
        ingest([tmp_path / "nope.csv"], "csv", workspace=workspace)
    with pytest.raises(SourceError, match="is a directory"):
        ingest([tmp_path], "csv", workspace=workspace)


def test_a_bad_later_file_leaves_nothing_half_written(tmp_path: Path, workspace: Path) -> None:
    good = _events_csv(tmp_path / "events1.csv", ["u1,i1,view,2024-01-01"])
    ingest([good], "csv", workspace=workspace)
    before = sorted(p.relative_to(workspace) for p in workspace.rglob("*.parquet"))
    more = _events_csv(tmp_path / "events2.csv", ["u2,i2,view,2024-01-02"])
    broken = tmp_path / "events3.csv"
    broken.write_text("user_id,item_id\nu3,i3\n")
    with pytest.raises(SourceError, match=r"events3\.csv: missing required column"):
        ingest([more, broken], "csv", workspace=workspace)
    after = sorted(p.relative_to(workspace) for p in workspace.rglob("*.parquet"))
    assert after == before
    assert Lake(workspace).events()["user_id"].to_list() == ["u1"]
    assert not list((workspace / "lake").glob(".staging-*"))


def test_events_are_partitioned_by_utc_date(tmp_path: Path, workspace: Path) -> None:
    path = _events_csv(tmp_path / "events.csv", [
        "u1,i1,view,2024-01-01T23:30:00-02:00",  # 01:30 UTC on the 2nd
        "u1,i2,view,2024-01-01T10:00:00Z",
        "u2,i2,view,2024-01-03 00:00:00",
    ])  # fmt: skip
    report = ingest([path], "csv", workspace=workspace)
    assert report.events_added == 3
    folders = sorted(p.parent.name for p in Lake(workspace).event_files())
    assert folders == ["date=2024-01-01", "date=2024-01-02", "date=2024-01-03"]


def test_reingest_is_idempotent_and_identical_rows_stay_two_events(
    tmp_path: Path, workspace: Path
) -> None:
    rows = ["u1,i1,purchase,2024-01-01 10:00", "u1,i1,purchase,2024-01-01 10:00"]
    path = _events_csv(tmp_path / "events.csv", rows)
    first = ingest([path], "csv", workspace=workspace)
    assert first.events_added == 2
    second = ingest([path], "csv", workspace=workspace)
    assert (second.events_added, second.events_already_in_lake) == (0, 2)
    # a third identical row later in an extended export is one new event
    _events_csv(path, [*rows, rows[0]])
    third = ingest([path], "csv", workspace=workspace)
    assert (third.events_added, third.events_already_in_lake) == (1, 2)
    assert Lake(workspace).events().height == 3


def test_supplied_event_ids_are_deduplicated(tmp_path: Path, workspace: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,user_id,item_id,event_type,ts\n"
        "e1,u1,i1,view,2024-01-01\ne1,u1,i1,view,2024-01-01\ne2,u1,i2,view,2024-01-01\n"
    )
    report = ingest([path], "csv", workspace=workspace)
    assert (report.events_added, report.events_already_in_lake) == (2, 1)
    assert sorted(Lake(workspace).events()["event_id"]) == ["e1", "e2"]


def test_log_and_rejects_file(tmp_path: Path, workspace: Path) -> None:
    path = _events_csv(tmp_path / "events.csv", ["u1,i1,view,2024-01-01", "u1,i1,view,never"])
    report = ingest([path], "csv", workspace=workspace)
    assert report.rejects_path is not None
    assert Path(report.rejects_path).read_text().splitlines() == [
        "file,line,reason,field,value",
        f"{path},3,ts is not a timestamp,ts,never",
    ]
    log = (workspace / "lake" / "ingest-log.jsonl").read_text().splitlines()
    entry = json.loads(log[-1])
    assert entry["rows_read"] == 2
    assert entry["rejected_by_reason"][0]["first_line"] == 3


EMPTY_SOURCES = {
    "online-retail": ["retail.csv"],
    "copurchase-txt": ["products.txt", "transactions.txt"],
    "ab-events": ["log.csv"],
    "cars": ["cars.csv"],
    "movielens": ["u.data", "u.item", "u.user"],
    "amazon-seq": ["Beauty.txt"],
    "instacart-products": ["products.csv", "aisles.csv"],
    "csv": ["events.csv"],
    "jsonl": ["events.jsonl"],
}


@pytest.mark.parametrize(("format_name", "names"), sorted(EMPTY_SOURCES.items()))
def test_every_adapter_survives_empty_files(
    format_name: str, names: list[str], tmp_path: Path, workspace: Path
) -> None:
    paths = [tmp_path / name for name in names]
    for path in paths:
        path.write_bytes(b"")
    report = ingest(paths, format_name, workspace=workspace)
    assert report.rows_read == 0
    assert report.warnings == [f"{p}: file is empty, nothing read" for p in paths]


@pytest.mark.parametrize(
    ("format_name", "fixture"),
    [
        ("ab-events", "ab_events_bad.csv"),
        ("csv", "events_bad.csv"),
        ("cars", "cars_bad.csv"),
        ("copurchase-txt", "transactions.txt"),
        ("copurchase-txt", "products.txt"),
    ],
)
def test_bom_and_crlf_change_nothing(
    format_name: str, fixture: str, fixtures: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "plain" / fixture
    windows = tmp_path / "windows" / fixture
    for path in (plain, windows):
        path.parent.mkdir()
    text = (fixtures / fixture).read_bytes().replace(b"\r\n", b"\n")
    plain.write_bytes(text)
    windows.write_bytes(b"\xef\xbb\xbf" + text.replace(b"\n", b"\r\n"))
    a = ingest([plain], format_name, workspace=tmp_path / "a")
    b = ingest([windows], format_name, workspace=tmp_path / "b")
    assert (a.rows_read, a.rows_rejected, a.events_added, a.items) == (
        b.rows_read, b.rows_rejected, b.events_added, b.items,
    )  # fmt: skip
    assert a.rejects.select("line", "reason").equals(b.rejects.select("line", "reason"))
    assert a.rows_read > 0
    events_a = Lake(tmp_path / "a").events().sort("ts", "item_id")
    events_b = Lake(tmp_path / "b").events().sort("ts", "item_id")
    assert events_a.equals(events_b)


def test_an_unclosed_quote_loses_no_row_and_does_not_empty_the_file(
    tmp_path: Path, workspace: Path
) -> None:
    for broken in (2, 3):  # first data line (the file's first piece is then its header alone)
        rows = ["u1,i1,view,2024-01-01", "u2,i2,view,2024-01-02", "u3,i3,view,2024-01-03"]
        rows.insert(broken - 2, 'u9,"i9,view,2024-01-04')
        path = _events_csv(tmp_path / "events.csv", rows)
        report = ingest([path], "csv", workspace=workspace / str(broken))
        assert (report.rows_read, report.rows_rejected, report.rows_kept) == (4, 1, 3)
        assert report.warnings == []
        assert report.rejects.select("line", "reason").rows() == [(broken, "unclosed quote")]
        assert sorted(Lake(workspace / str(broken)).events()["user_id"]) == ["u1", "u2", "u3"]


def test_timestamps_far_outside_a_plausible_range_are_rejected(
    tmp_path: Path, workspace: Path
) -> None:
    rows = [
        "u1,i1,view,0001-01-01",
        "u2,i2,view,1989-12-31 23:59:59",
        "u3,i3,view,9999-12-31",
        "u4,i4,view,1990-01-01",
        "u5,i5,view,0",  # epoch 0, 1970
    ]
    report = ingest([_events_csv(tmp_path / "events.csv", rows)], "csv", workspace=workspace)
    out_of_range = report.rejects.filter(pl.col("reason").str.starts_with("timestamp out of"))
    assert out_of_range.select("line", "field").rows() == [
        (2, "ts"),
        (3, "ts"),
        (4, "ts"),
        (6, "ts"),
    ]
    assert "before 1990-01-01" in out_of_range["reason"][0]
    assert Lake(workspace).events()["user_id"].to_list() == ["u4"]
    assert report.rejects_path is not None
    assert "0001-01-01" in Path(report.rejects_path).read_text()


def test_ingest_applies_the_apis_bounds(tmp_path: Path, workspace: Path) -> None:
    items = tmp_path / "items.csv"
    huge = "t" * 5_000_000
    items.write_text(
        "item_id,title,category,lat,lon,entity_type\n"
        f"ok,A title,cat,1,2,item\n"
        f"long-title,{huge},cat,1,2,item\n"
        f"{'i' * 201},t,cat,1,2,item\n"
        f"far,t,cat,91,2,item\n"
        f"odd-type,t,cat,1,2,car listing\n"
        f"long-category,t,{'c' * 201},1,2,item\n"
    )
    report = ingest([items], "csv", workspace=workspace)
    assert report.items == 1
    by_line = dict(report.rejects.select("line", "reason").iter_rows())
    assert by_line == {
        3: "title is longer than 1,000 characters",
        4: "item_id is longer than 200 characters",
        5: "lat is not between -90 and 90",
        6: "invalid entity_type (letters, digits and _, at most 40)",
        7: "category is longer than 200 characters",
    }
    shown = report.rejects.filter(pl.col("line") == 3)["value"].item()
    assert shown.endswith("(5000000 characters)")
    assert len(shown) < 120
    assert Lake(workspace).items()["item_id"].to_list() == ["ok"]


def test_event_ids_and_context_follow_the_apis_bounds(tmp_path: Path, workspace: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        {"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2024-01-01"},
        {"user_id": "u" * 201, "item_id": "i1", "event_type": "view", "ts": "2024-01-01"},
        {"user_id": " ", "item_id": "i1", "event_type": "view", "ts": "2024-01-01"},
        {"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2024-01-01",
         "context": json.dumps({f"k{i}": i for i in range(33)})},
        {"user_id": "u1", "item_id": "i1", "event_type": "view", "ts": "2024-01-01",
         "context": json.dumps({"page": "p" * 201})},
        {"user_id": "u1", "item_id": "i2", "event_type": "view", "ts": "2024-01-01",
         "context": json.dumps({"page": "p" * 200})},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    report = ingest([path], "jsonl", workspace=workspace)
    by_line = dict(report.rejects.select("line", "value").iter_rows())
    assert sorted(by_line) == [2, 3, 4, 5]
    assert by_line[4] == "more than 32 entries"
    assert by_line[5] == "the value of 'page' is longer than 200 characters"
    assert sorted(Lake(workspace).events()["item_id"]) == ["i1", "i2"]
