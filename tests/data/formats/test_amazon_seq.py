from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.exceptions import SourceError
from tests.data.formats.helpers import lake_events, reasons


def test_beauty_matches_published_statistics(shared_data: Path, workspace: Path) -> None:
    folder = shared_data / "amazon-5core-seq"
    report = ingest(
        [folder / "Beauty.txt", folder / "Beauty_item2attributes.json"],
        "amazon-seq",
        workspace=workspace,
    )
    assert report.rows_rejected == 0
    lake = Lake(workspace)
    events = lake.events()
    assert events.height == 198_502
    assert events["user_id"].n_unique() == 22_363
    assert events["item_id"].n_unique() == 12_101
    items = lake.items()
    tags = {
        tag
        for attributes in items["attributes"].to_list()
        for tag in json.loads(attributes)["tags"].split()
    }
    assert len(tags) == 637
    # Order survives as time: user 2's sequence is 6 7 8 9 10 4 11, its last item is 11.
    user2 = events.filter(pl.col("user_id") == "2").sort("ts")
    assert user2["item_id"].to_list() == ["6", "7", "8", "9", "10", "4", "11"]


def test_short_lines_and_bad_json(tmp_path: Path, workspace: Path) -> None:
    sequences = tmp_path / "Seq.txt"
    sequences.write_text("1 5 6\r\n2\n\n3 7\n")
    report = ingest([sequences], "amazon-seq", workspace=workspace)
    assert reasons(report) == {2: "a sequence needs a user id and at least one item"}
    assert lake_events(workspace).select("user_id", "item_id").rows() == [
        ("1", "5"), ("3", "7"), ("1", "6"),
    ]  # fmt: skip
    broken = tmp_path / "Seq_item2attributes.json"
    broken.write_text('{"5": [1, 2], ')
    with pytest.raises(SourceError, match="not valid JSON"):
        ingest([broken], "amazon-seq", workspace=workspace)
