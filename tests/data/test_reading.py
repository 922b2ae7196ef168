from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from shoprec.data.formats.reading import iter_delimited, read_delimited, read_lines
from shoprec.exceptions import SourceError


def write(tmp_path: Path, data: bytes, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_bom_and_crlf_are_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfa,b\r\n1,2\r\n3,4\r\n")
    table = read_delimited(path)
    assert table.frame.columns == ["_line", "a", "b"]
    assert table.frame.rows() == [(2, "1", "2"), (3, "3", "4")]
    assert table.rejects.height == 0


def test_wrong_field_counts_are_rejected_with_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n")
    table = read_delimited(path)
    assert table.frame["_line"].to_list() == [2, 5]
    assert table.rejects.select("line", "value").rows() == [(3, "2 fields"), (4, "4 fields")]
    assert set(table.rejects["reason"]) == {"wrong number of fields (expected 3)"}
    assert table.rows_read == 4


def test_quoted_separators_do_not_count_as_fields(tmp_path: Path) -> None:
    path = write(tmp_path, b'a,b,c\n"x, y",2,3\n"p,q,r",5\n')
    table = read_delimited(path)
    assert table.frame.select("a", "b").rows() == [("x, y", "2")]
    assert table.rejects["line"].to_list() == [3]


def test_quoted_line_breaks_take_the_exact_path(tmp_path: Path) -> None:
    path = write(tmp_path, b'a,b\n"two\nlines",1\nplain,2\nbad\n')
    table = read_delimited(path)
    assert table.frame.select("_line", "a", "b").rows() == [
        (2, "two\nlines", "1"),
        (4, "plain", "2"),
    ]
    assert table.rejects["line"].to_list() == [5]


def test_blank_lines_are_not_rows(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b\n1,2\n\n\r\n3,4\n")
    table = read_delimited(path)
    assert table.frame["_line"].to_list() == [2, 5]
    assert table.rejects.height == 0
    assert table.rows_read == 2


def test_invalid_utf8_line_is_rejected_not_fatal(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b\n1,2\n\xff\xfe,3\n4,5\n")
    table = read_delimited(path)
    assert table.frame["_line"].to_list() == [2, 4]
    assert table.rejects.select("line", "reason").rows() == [(3, "invalid UTF-8 text")]


def test_latin1_is_decoded(tmp_path: Path) -> None:
    path = write(tmp_path, "1|Café (1995)\n".encode("latin-1"), "u.item")
    table = read_delimited(path, separator="|", names=["id", "title"], encoding="latin-1")
    assert table.frame["title"].to_list() == ["Café (1995)"]


def test_missing_required_columns_name_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, b"a,b\n1,2\n")
    with pytest.raises(SourceError, match=r"f\.csv: missing required column\(s\) c, d"):
        read_delimited(path, required=["a", "c", "d"])


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\n"])
def test_empty_file_reads_nothing(tmp_path: Path, data: bytes) -> None:
    table = read_delimited(write(tmp_path, data), names=["a"])
    assert table.rows_read == 0


def test_unreadable_paths_raise_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="file not found"):
        read_delimited(tmp_path / "nope.csv")
    with pytest.raises(SourceError, match="is a directory"):
        read_lines(tmp_path)


def test_read_lines_numbers_physical_lines(tmp_path: Path) -> None:
    path = write(tmp_path, b'\xef\xbb\xbf{"a": 1}\r\n\r\n{"a": 2}', "x.jsonl")
    table = read_lines(path)
    assert table.frame.rows() == [(1, '{"a": 1}'), (3, '{"a": 2}')]
    assert table.frame.schema["_line"] == pl.Int64


def test_pieces_follow_records_and_line_numbers(tmp_path: Path) -> None:
    rows = [f'{i},"text {i}{chr(10) if i % 7 == 0 else ""} more",{i * 2}' for i in range(1, 60)]
    rows[20] = "bad,row"
    path = write(tmp_path, ("a,b,c\n" + "\n".join(rows) + "\n").encode())
    whole = read_delimited(path)
    pieces = list(iter_delimited(path, chunk_bytes=64))
    assert len(pieces) > 5
    joined = pl.concat([p.frame for p in pieces])
    assert joined.equals(whole.frame)
    assert pl.concat([p.rejects for p in pieces]).equals(whole.rejects)
    assert whole.rejects["line"].to_list() == [2 + 20 + 20 // 7]
    # a record whose quoted text spans two lines starts on its first line
    assert whole.frame.filter(pl.col("a") == "8")["_line"].item() == 2 + 7 + 1


def test_blank_lines_before_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, b"\n\r\nid,name\n1,a\n2,b\n")
    for chunk in (4, 64 * 1024):
        table = pl.concat([t.frame for t in iter_delimited(path, chunk_bytes=chunk)])
        assert table.rows() == [(4, "1", "a"), (5, "2", "b")]


def test_a_ragged_first_row_is_rejected_not_fatal(tmp_path: Path) -> None:
    path = write(tmp_path, b"id,name\n1,a,x\n2,b\n")
    table = read_delimited(path)
    assert table.frame.select("_line", "id").rows() == [(3, "2")]
    assert table.rejects["line"].to_list() == [2]
    pieces = list(iter_delimited(path, chunk_bytes=8))
    assert [r for p in pieces for r in p.frame["_line"].to_list()] == [3]


def test_an_unclosed_quote_costs_its_own_line_only(tmp_path: Path) -> None:
    path = write(tmp_path, b'a,b\n1,x\n2,"y\n3,z\n4,w\n')
    table = read_delimited(path)
    assert table.frame.select("_line", "a").rows() == [(2, "1"), (4, "3"), (5, "4")]
    assert table.rejects.select("line", "reason", "value").rows() == [(3, "unclosed quote", '2,"y')]
    assert table.rows_read == 4


def test_a_quote_that_swallows_a_line_of_the_right_width_is_still_caught(tmp_path: Path) -> None:
    # '2,"y' + newline + '3,z' would read as the two fields 2 and 'y\n3,z'
    path = write(tmp_path, b'a,b\n1,x\n2,"y\n3,z\n')
    table = read_delimited(path)
    assert table.frame["_line"].to_list() == [2, 4]
    assert table.rejects["line"].to_list() == [3]


def test_a_stray_carriage_return_is_a_rejected_line_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, b'a,b\n1,x\ny\rz,"q"\n"2\n",w\n')
    table = read_delimited(path)
    assert table.frame.select("_line", "a").rows() == [(2, "1"), (4, "2\n")]
    assert table.rejects.select("line", "reason").rows() == [(3, "not valid CSV")]
    assert "carriage return" in table.rejects["value"].item()


def test_white_space_lines_are_blank_on_either_path(tmp_path: Path) -> None:
    for quoted in (b"", b'"x, y",1\n'):  # the second takes the exact path
        path = write(tmp_path, b"a,b\n1,2\n   \n\t\r\n" + quoted + b"3,4\n")
        table = read_delimited(path)
        assert table.rejects.height == 0
        assert table.rows_read == 2 + bool(quoted)


def test_a_header_naming_a_column_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="names column 'a' twice"):
        read_delimited(write(tmp_path, b"a,b,a\n1,2,3\n"))
    with pytest.raises(SourceError, match="reserved name"):
        read_delimited(write(tmp_path, b"_line,b\n1,2\n"))


def test_an_undecodable_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"the header \(line 1\) is not UTF-8 text"):
        read_delimited(write(tmp_path, b"\xff\xfe,b\n1,2\n"))


def test_a_field_longer_than_the_csv_modules_limit_is_read(tmp_path: Path) -> None:
    long = "x" * 200_000
    path = write(tmp_path, f'a,b\n1,"{long}\nmore"\n2,y\n'.encode())
    table = read_delimited(path)
    assert table.frame["b"].to_list() == [f"{long}\nmore", "y"]
