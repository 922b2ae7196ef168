"""Every ingest adapter under malformed input (hypothesis): a clean result or a one-line
:class:`~shoprec.exceptions.ShoprecError`, never another exception; and every source row is
accounted for, read = kept + rejected.

Files are built from a valid header and lines whose cells mix plausible values with what breaks
parsers (lone quotes, separators, control characters, NULs, over-long fields), then damaged as a
whole (a BOM, CRLF or CR line ends, Latin-1 bytes, a cut, random bytes). The reader's own
accounting is checked exactly: each data line of a delimited file is a blank line, a rejected
line, or a line of exactly one kept record.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from shoprec.data.formats import SourceData, ab_events, cars, get_adapter, online_retail
from shoprec.data.formats.movielens import GENRES
from shoprec.data.formats.reading import read_delimited
from shoprec.data.ingest import read_events
from shoprec.data.report import FILE, LINE, LoadReport
from shoprec.data.schema import CONTROL_CHARACTERS, EARLIEST_TS, FUTURE_TOLERANCE, Bounds
from shoprec.exceptions import ShoprecError

FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NASTY = ["a", "1", " ", ",", '"', "\t", "|", ":", "\r", "\x00", "\x1f", "é", "\ufeff", "[", "]"]
NASTY += ["{", "}", "\\", "'", "-", ".", "::"]
HUGE = "x" * 150_000  # longer than every bound, and than the csv module's field limit


def _pieces(alphabet: Sequence[str], most: int) -> st.SearchStrategy[str]:
    """Text made of up to ``most`` pieces of ``alphabet`` (which may be longer than one)."""
    return st.lists(st.sampled_from(alphabet), max_size=most).map("".join)


VALUES = {
    "id": ["u1", "i-2", "17850.0", "536365", "C536365", "ITEM_CODE_1", " ", "a" * 201],
    "ts": ["2024-01-01", "2024-03-01 09:12:44.120", "0001-01-01", "9999-12-31", "881250949"],
    "number": ["1", "2.55", "-3", "NaN", "inf", "1e400", "1e300", "true", "[27700]", "[]"],
    "list": ["[1, 2]", "[1e300]", "['a']", "[" + "9" * 400 + "]"],
    "text": ["Toy Story (1995)", "WHITE HEART", '"quoted, text"', "01-Jan-1995", "ec.purchase"],
}
CELL = st.one_of(
    st.sampled_from([v for values in VALUES.values() for v in values]),
    _pieces(NASTY, 6),
    st.just(HUGE),
)


def _lines(columns: int, separator: str) -> st.SearchStrategy[list[str]]:
    """Data lines of about ``columns`` cells (sometimes one more or one fewer)."""
    row = st.integers(max(columns - 1, 1), columns + 1).flatmap(
        lambda n: st.lists(CELL, min_size=n, max_size=n)
    )
    return st.lists(row.map(separator.join), max_size=6)


def _json_lines() -> st.SearchStrategy[list[str]]:
    scalar = st.one_of(
        st.sampled_from([v for vs in VALUES.values() for v in vs]),
        st.integers(),
        st.sampled_from([10**400, 1e300, -1.5, True, None, [1], {"a": 1}]),
    )
    entry = st.fixed_dictionaries(
        {"item": scalar, "price": st.one_of(scalar, st.floats()), "quantity": scalar}
    )
    transaction = st.fixed_dictionaries(
        {},
        optional={
            "customer": scalar,
            "date": st.sampled_from(["2017.04.06 12:09:32", "0001.01.01 00:00:00", "x"]),
            "itemList": st.lists(entry, max_size=3),
            "store": scalar,
            "user_id": scalar,
            "item_id": scalar,
            "event_type": st.sampled_from(["view", "purchase", "Bad Type", ""]),
            "ts": st.sampled_from(VALUES["ts"]),
            "title": st.sampled_from([HUGE, "t"]),
            "_line": st.integers(),
        },
    )
    line = st.one_of(
        transaction.map(json.dumps),
        _pieces(NASTY, 12),
        st.sampled_from(["[" * 5000 + "]" * 5000, '{"customer": ' + "9" * 5000 + "}"]),
    )
    return st.lists(line, max_size=6)


DAMAGE = ["none", "bom", "crlf", "cr", "latin1", "cut", "bytes", "nul", "empty"]


@st.composite
def _file(draw: st.DrawFn, header: str | None, lines: st.SearchStrategy[list[str]]) -> bytes:
    rows = draw(lines)
    text = "\n".join(([header] if header is not None else []) + rows) + "\n"
    damage = draw(st.sampled_from(DAMAGE))
    data = text.encode("latin-1", errors="replace") if damage == "latin1" else text.encode()
    if damage == "bom":
        data = b"\xef\xbb\xbf" + data
    elif damage == "crlf":
        data = data.replace(b"\n", b"\r\n")
    elif damage == "cr":
        data = data.replace(b"\n", b"\r")
    elif damage == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=12)) + data[at:]
    elif damage == "nul":
        data = data.replace(b",", b"\x00,", 1)
    elif damage == "empty":
        data = b"" if draw(st.booleans()) else (header or "").encode() + b"\n"
    return data


def _delimited(
    columns: Sequence[str], separator: str = ",", *, header: bool = True
) -> st.SearchStrategy[bytes]:
    return _file(separator.join(columns) if header else None, _lines(len(columns), separator))


SOURCES: dict[str, dict[str, st.SearchStrategy[bytes]]] = {
    "csv": {
        "events.csv": _delimited(["user_id", "item_id", "event_type", "ts", "value", "price"]),
        "items.csv": _delimited(["item_id", "title", "category", "price", "lat", "lon", "x"]),
        "users.tsv": _delimited(["user_id", "email", "lat", "lon"], "\t"),
    },
    "jsonl": {"events.jsonl": _file(None, _json_lines())},
    "online-retail": {"retail.csv": _delimited(online_retail.COLUMNS)},
    "ab-events": {"log.csv": _delimited([*ab_events.REQUIRED, "main_category", "sub_category"])},
    "cars": {"cars.csv": _delimited(cars.COLUMNS)},
    "movielens": {
        "u.data": _delimited(["user", "movie", "rating", "ts"], "\t", header=False),
        "u.item": _delimited(["id", "title", "date", "video", "url", *GENRES], "|", header=False),
        "u.user": _delimited(["user", "age", "gender", "job", "zip"], "|", header=False),
        "ratings.dat": _delimited(["user", "movie", "rating", "ts"], "::", header=False),
        "movies.dat": _delimited(["id", "title", "genres"], "::", header=False),
    },
    "amazon-seq": {
        "Beauty.txt": _delimited(["user", "item", "item"], " ", header=False),
        "Beauty_item2attributes.json": _file(None, _json_lines()),
    },
    "copurchase-txt": {
        "products.txt": _delimited(["id", "category", "name"], "\t", header=False),
        "transactions.txt": _file(None, _json_lines()),
    },
    "instacart-products": {
        "products.csv": _delimited(["product_id", "product_name", "aisle_id", "department_id"]),
        "aisles.csv": _delimited(["aisle_id", "aisle"]),
        "departments.csv": _delimited(["department_id", "department"]),
    },
}


@st.composite
def _source(draw: st.DrawFn, format_name: str) -> dict[str, bytes]:
    files = SOURCES[format_name]
    names = draw(st.lists(st.sampled_from(sorted(files)), min_size=1, unique=True))
    return {name: draw(files[name]) for name in names}


def _read(format_name: str, files: dict[str, bytes]) -> tuple[pl.DataFrame, LoadReport] | None:
    """Read ``files`` with the adapter, then through ingest's validation: the events and the
    report, or None after a clean refusal (a ShoprecError with a one-line message)."""
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name, data in files.items():
            path = Path(folder) / name
            path.write_bytes(data)
            paths.append(path)
        try:
            _check_every_row_accounted_for(get_adapter(format_name).read(paths))
            events, items, report = read_events(paths, format_name)
        except ShoprecError as exc:
            message = str(exc)
            assert message.strip(), "an error without a message"
            assert "\n" not in message.strip(), message
            _outcome(f"refused: {type(exc).__name__}")
            return None
    _outcome("read")
    _check_bounds(events, items)
    return events, report


def _outcome(name: str) -> None:
    """Count an outcome for ``--hypothesis-show-statistics``."""
    if currently_in_test_context():
        event(name)


def _check_every_row_accounted_for(source: SourceData) -> None:
    """Each row the adapter counts is a row it kept or one it rejected, by file and line."""
    frames = [*source.iter_events(), source.items, source.users, *source.rejects]
    seen: dict[str, set[int]] = {}
    for frame in frames:
        if frame is None or frame.height == 0:
            continue
        located = frame.rename({"file": FILE, "line": LINE}, strict=False)
        if FILE not in located.columns or LINE not in located.columns:
            continue  # a table the adapter derived from many rows (items of invoice lines)
        for file, line in located.select(FILE, LINE).drop_nulls().unique().iter_rows():
            seen.setdefault(file, set()).add(line)
    for file, rows in source.rows_by_file.items():
        if Path(file).name in ("aisles.csv", "departments.csv"):
            continue  # lookups: their rows name the products' categories, none is an item
        assert len(seen.get(file, set())) == rows, (file, rows, sorted(seen.get(file, set())))


def _check_bounds(events: pl.DataFrame, items: pl.DataFrame | None) -> None:
    """What ingest keeps, the API would accept."""
    latest = datetime.now(UTC) + FUTURE_TOLERANCE
    ts = events.get_column("ts")
    assert ts.is_between(EARLIEST_TS, latest).all(), ts.to_list()
    for column in ("user_id", "item_id", "basket_id", "session_id"):
        ids = events.get_column(column).drop_nulls().str.strip_chars()
        assert (ids.str.len_chars().is_between(1, Bounds.ID_LENGTH)).all(), column
        assert not ids.str.contains(CONTROL_CHARACTERS).any(), column
    if items is not None and items.height:
        assert (items.get_column("item_id").str.len_chars() <= Bounds.ID_LENGTH).all()
        titles = items.get_column("title").drop_nulls()
        assert (titles.str.len_chars() <= Bounds.TITLE_LENGTH).all()


def _check_counts(report: LoadReport, files: dict[str, bytes]) -> None:
    assert 0 <= report.rows_rejected <= report.rows_read
    assert report.rows_kept + report.rows_rejected == report.rows_read
    lines = {name: data.replace(b"\r\n", b"\n").count(b"\n") + 1 for name, data in files.items()}
    for name, line in report.rejects.select("file", "line").drop_nulls().iter_rows():
        assert 1 <= line <= max(lines[Path(name).name], len(files[Path(name).name])), (name, line)


@pytest.mark.parametrize("format_name", sorted(SOURCES))
@FUZZ
@given(data=st.data())
def test_malformed_files_are_refused_cleanly_or_accounted_for(
    format_name: str, data: st.DataObject
) -> None:
    files = data.draw(_source(format_name), label="files")
    result = _read(format_name, files)
    if result is not None:
        _check_counts(result[1], files)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(sorted(SOURCES)))
def test_random_bytes_in_every_file(data: bytes, format_name: str) -> None:
    files = dict.fromkeys(SOURCES[format_name], data)
    result = _read(format_name, files)
    if result is not None:
        _check_counts(result[1], files)


def test_parquet_that_is_not_parquet() -> None:
    assert _read("parquet", {"events.parquet": b"PAR1 not really"}) is None


TYPED = {
    "user_id": [pl.Series([1, None, 3]), pl.Series(["u1", "\x00", "u" * 300])],
    "item_id": [pl.Series([[1], [2], []]), pl.Series([{"a": 1}, {"a": 2}, None])],
    "event_type": [pl.Series(["view", "Bad", None]), pl.Series([True, False, None])],
    "ts": [
        pl.Series([0.0, 1.7e9, 1e300]),
        pl.Series([datetime(1, 1, 1), datetime(2024, 1, 1), None]),
        pl.Series(["0001-01-01", "2024-01-01", "x"]),
        pl.Series([b"\x00", b"", None]),
    ],
    "price": [pl.Series([1.5, float("nan"), -1.0]), pl.Series(["1", "x", None])],
}


@FUZZ
@given(
    st.fixed_dictionaries({name: st.sampled_from(options) for name, options in TYPED.items()}),
    st.integers(0, 3),
)
def test_fuzz_parquet(columns: dict[str, pl.Series], rows: int) -> None:
    frame = pl.DataFrame({name: series.head(rows) for name, series in columns.items()})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.parquet"
        frame.write_parquet(path)
        files = {"events.parquet": path.read_bytes()}
    result = _read("parquet", files)
    if result is not None:
        assert result[1].rows_read == rows
        _check_counts(result[1], files)


# -- the delimited reader's accounting, exactly --------------------------------------------------
@FUZZ
@given(
    st.lists(
        _pieces([*NASTY, "\n", "\n", "\r\n", '"', '"'], 40),
        max_size=6,
    ),
    st.sampled_from([",", "\t"]),
)
def test_every_delimited_line_is_blank_rejected_or_kept_once(
    rows: list[str], separator: str
) -> None:
    data = ("a" + separator + "b\n" + "\n".join(rows) + "\n").encode()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.csv"
        path.write_bytes(data)
        table = read_delimited(path)
    physical = data.split(b"\n")[1:-1]  # the data lines, without the header
    owner: dict[int, str] = {}
    for line in table.rejects.get_column("line").to_list():
        assert line not in owner, f"line {line} rejected twice"
        owner[line] = "rejected"
    for row in table.frame.iter_rows(named=True):
        span = sum((value or "").count("\n") for key, value in row.items() if key != LINE)
        for line in range(row[LINE], row[LINE] + span + 1):
            assert line not in owner, f"line {line} kept by two records or kept and rejected"
            owner[line] = "kept"
    for number, raw in enumerate(physical, start=2):
        if number not in owner:
            assert not raw.strip(), f"line {number} ({raw!r}) neither kept nor rejected"
    assert max(owner, default=1) <= len(physical) + 1
    assert table.rows_read == len(table.rejects) + table.frame.height
