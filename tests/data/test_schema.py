from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoprec.data.report import split_rejects
from shoprec.data.schema import (
    EVENTS_SCHEMA,
    EventIdAssigner,
    add_event_ids,
    conform,
    event_checks,
    parse_float_failed,
    parse_timestamps,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2011-01-02 03:04:05", datetime(2011, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2011-01-02T03:04:05.250", datetime(2011, 1, 2, 3, 4, 5, 250000, tzinfo=UTC)),
        ("2011-01-02T03:04:05Z", datetime(2011, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2011-01-02T03:04:05+02:00", datetime(2011, 1, 2, 1, 4, 5, tzinfo=UTC)),
        ("2011-01-02", datetime(2011, 1, 2, tzinfo=UTC)),
        ("2017.04.06 12:09:32", datetime(2017, 4, 6, 12, 9, 32, tzinfo=UTC)),
        ("881250949", datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC)),
        ("881250949000", datetime(1997, 12, 4, 15, 55, 49, tzinfo=UTC)),
        ("2011-13-45 00:00:00", None),
        ("yesterday", None),
        ("", None),
    ],
)
def test_parse_timestamps(text: str, expected: datetime | None) -> None:
    parsed = parse_timestamps(pl.Series("t", [text]))
    assert parsed.dtype == pl.Datetime("us", "UTC")
    assert parsed.item() == expected


def test_parse_timestamps_with_explicit_format_only_uses_it() -> None:
    parsed = parse_timestamps(pl.Series(["01/02/2020", "2020-01-02"]), ["%d/%m/%Y"])
    assert parsed.to_list() == [datetime(2020, 2, 1, tzinfo=UTC), None]


def test_parse_float_failed_flags_garbage_not_blanks() -> None:
    frame = pl.DataFrame({"p": ["1.5", " 2 ", "", None, "abc", "inf", "nan", "1e3"]})
    assert frame.select(parse_float_failed("p")).to_series().to_list() == [
        False, False, False, False, True, True, True, False
    ]  # fmt: skip


def _event(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "user_id": "u1",
        "item_id": "i1",
        "event_type": "view",
        "ts": datetime(2024, 1, 1, tzinfo=UTC),
        "_line": 1,
    }
    return base | values


def _events(*rows: dict[str, object]) -> pl.DataFrame:
    frame = pl.DataFrame(list(rows))
    return conform(frame, EVENTS_SCHEMA, keep=["_line"])


def test_event_checks_reject_each_problem_once() -> None:
    frame = _events(
        _event(),
        _event(event_type="Add To Cart", _line=2),
        _event(item_id=None, _line=3),
        _event(item_id=None, event_type="pageview", _line=4),
        _event(user_id=None, _line=5),
        _event(user_id=None, basket_id="b1", _line=6),
        _event(price=-1.0, ts=None, _line=7),
    )
    kept, rejects = split_rejects(frame, event_checks(), "events.csv")
    assert kept["_line"].to_list() == [1, 4, 6]
    assert rejects.select("line", "reason").rows() == [
        (2, "invalid event_type (lower-case letters, digits and _)"),
        (3, "missing item_id"),
        (5, "missing user_id (and no basket or session to attach the event to)"),
        (7, "missing timestamp"),
    ]


def test_event_ids_are_stable_and_keep_identical_rows_apart() -> None:
    frame = _events(_event(), _event(), _event(item_id="i2")).drop("_line")
    first = add_event_ids(frame)["event_id"].to_list()
    again = add_event_ids(frame)["event_id"].to_list()
    assert first == again
    assert len(set(first)) == 3
    assert all(e.isdigit() and int(e) < 2**128 for e in first)


PINNED_ID = "289775994494643390443832604543898861282"  # the id scheme's output for _event()


def test_event_id_scheme_does_not_drift() -> None:
    """Ids already in a lake must come out the same in every later version."""
    frame = _events(_event()).drop("_line")
    assert add_event_ids(frame)["event_id"].item() == PINNED_ID


def test_ids_do_not_depend_on_chunking() -> None:
    rows = [_event(item_id=f"i{i % 3}") for i in range(9)]  # each record three times
    frame = _events(*rows).drop("_line")
    whole = add_event_ids(frame)["event_id"].to_list()
    assigner = EventIdAssigner()
    parts = [assigner(frame.slice(start, 4))["event_id"] for start in (0, 4, 8)]
    assert [e for part in parts for e in part.to_list()] == whole
    assert len(set(whole)) == 9


def test_given_event_ids_are_kept() -> None:
    frame = _events(_event(event_id="abc")).drop("_line")
    assert add_event_ids(frame)["event_id"].to_list() == ["abc"]


@given(
    st.lists(
        st.tuples(st.sampled_from(["u1", "u2"]), st.sampled_from(["a", "b", "c"])),
        min_size=1,
        max_size=30,
    )
)
def test_event_ids_unique_and_order_independent_per_distinct_record(
    pairs: list[tuple[str, str]],
) -> None:
    frame = _events(*[_event(user_id=u, item_id=i) for u, i in pairs]).drop("_line")
    ids = add_event_ids(frame)["event_id"]
    assert ids.n_unique() == len(pairs)
    reversed_ids = add_event_ids(frame.reverse())["event_id"]
    assert set(reversed_ids) == set(ids)
