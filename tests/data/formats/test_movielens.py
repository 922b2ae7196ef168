from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.exceptions import SourceError
from tests.data.formats.helpers import lake_events, reasons


def test_movielens_100k(shared_data: Path, workspace: Path) -> None:
    folder = shared_data / "movielens-100k"
    report = ingest(
        [folder / "u.data", folder / "u.item", folder / "u.user"],
        "movielens",
        workspace=workspace,
    )
    assert report.rows_read == 100_000 + 1_682 + 943
    assert report.rows_rejected == 0
    lake = Lake(workspace)
    events = lake.events()
    assert events.height == 100_000
    assert events["user_id"].n_unique() == 943
    assert events["item_id"].n_unique() == 1_682
    counts = dict(events.group_by("value").len().iter_rows())
    assert counts == {1.0: 6_110, 2.0: 11_370, 3.0: 27_145, 4.0: 34_174, 5.0: 21_201}
    assert str(events["ts"].min()) == "1997-09-20 03:05:10+00:00"
    assert events["ts"].max().year == 1998  # type: ignore[union-attr]
    items = lake.items()
    assert items.height == 1_682
    toy_story = items.filter(pl.col("item_id") == "1").row(0, named=True)
    assert toy_story["title"] == "Toy Story (1995)"
    assert toy_story["category"] == "Animation"
    assert "Children's|Comedy" in toy_story["attributes"]
    # u.item is Latin-1: accented titles survive
    assert items.filter(pl.col("title").str.contains("é")).height > 0
    assert lake.users().height == 943


def test_ratings_dat_format(tmp_path: Path, workspace: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::x::978302109\n")
    (tmp_path / "movies.dat").write_text("1193::One Flew Over (1975)::Drama\n")
    report = ingest(
        [tmp_path / "ratings.dat", tmp_path / "movies.dat"], "movielens", workspace=workspace
    )
    assert reasons(report) == {2: "rating is not a number"}
    assert lake_events(workspace).select("user_id", "item_id", "value").rows() == [
        ("1", "1193", 5.0)
    ]
    assert Lake(workspace).items()["category"].to_list() == ["Drama"]


def test_malformed_ratings(tmp_path: Path, workspace: Path) -> None:
    ratings = tmp_path / "u.data"
    ratings.write_text(
        "196\t242\t3\t881250949\n186\t302\tfive\t891717742\n22\t377\t1\tyesterday\n"
        "244\t51\t2\n166\t346\t1\t886397596\n"
    )
    report = ingest([ratings], "movielens", workspace=workspace)
    assert reasons(report) == {
        2: "rating is not a number",
        3: "timestamp is not Unix seconds",
        4: "wrong number of fields (expected 4)",
    }
    assert lake_events(workspace).height == 2


def test_unknown_file_is_refused(tmp_path: Path, workspace: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(SourceError, match=r"notes\.txt: not a file this format reads"):
        ingest([other], "movielens", workspace=workspace)
