"""The API's event and item models: plausible timestamps, JSON numbers, documented id rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from shoprec.data.schema import EARLIEST_TS
from shoprec.stream.events import ID_PATTERN, EventIn, Id, ItemIn, printable_id

EVENT = {"user_id": "u1", "item_id": "i1", "event_type": "view"}


def _error_fields(exc: ValidationError) -> list[str]:
    return [".".join(str(part) for part in error["loc"]) for error in exc.errors()]


@pytest.mark.parametrize(
    "ts",
    [
        "0001-01-01",
        "0001-01-01T00:00:00+01:00",  # would overflow if converted to UTC first
        "1989-12-31T23:59:59Z",
        (datetime.now(UTC) + timedelta(days=2)).isoformat(),
        "9999-12-31T23:59:59-05:00",
    ],
)
def test_implausible_timestamps_are_refused_naming_the_field(ts: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EventIn.model_validate({**EVENT, "ts": ts})
    assert _error_fields(caught.value) == ["ts"]
    assert "1990-01-01" in str(caught.value) or "future" in str(caught.value)


def test_plausible_timestamps_are_kept_in_utc() -> None:
    event = EventIn.model_validate({**EVENT, "ts": "1990-01-01T01:00:00+01:00"})
    assert event.ts == EARLIEST_TS
    assert EventIn.model_validate({**EVENT, "ts": "2024-05-01"}).ts == datetime(
        2024, 5, 1, tzinfo=UTC
    )


def test_the_schema_documents_the_timestamp_bounds() -> None:
    ts = EventIn.model_json_schema()["properties"]["ts"]
    assert "1990-01-01" in ts["description"]
    assert "1 day" in ts["description"]


@pytest.mark.parametrize(
    ("model", "body", "field"),
    [
        (ItemIn, {"item_id": "i1", "lon": False}, "lon"),
        (ItemIn, {"item_id": "i1", "lat": True}, "lat"),
        (ItemIn, {"item_id": "i1", "price": True}, "price"),
        (ItemIn, {"item_id": "i1", "price": "3.5"}, "price"),
        (EventIn, {**EVENT, "value": False}, "value"),
        (EventIn, {**EVENT, "price": True}, "price"),
    ],
)
def test_numbers_refuse_booleans_and_strings(
    model: type[ItemIn | EventIn], body: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    assert _error_fields(caught.value)[0].split(".")[0] == field


def test_numbers_take_integers_and_floats_and_are_documented_as_numbers() -> None:
    item = ItemIn.model_validate({"item_id": "i1", "lon": 12, "lat": -3.5, "price": 0})
    assert (item.lon, item.lat, item.price) == (12.0, -3.5, 0.0)
    assert EventIn.model_validate_json('{"user_id": "u", "event_type": "x", "value": 2}').value == 2
    properties = ItemIn.model_json_schema()["properties"]
    for name in ("lon", "lat", "price"):
        types = [option["type"] for option in properties[name]["anyOf"]]
        assert types == ["number", "null"], properties[name]


SAMPLES = [
    "u1",
    "ünïcode id",
    "a b",
    " padded ",
    "\tu1\n",
    "\r\nu1",
    "\xa0u1\u3000",
    "a\nb",
    "a\x00b",
    "\x1fu1",
    "u1\x7f",
    "\x1c",
    "",
    "   ",
    "\n",
    "\xa0",
    "a" * 200,
]


@pytest.mark.parametrize("value", SAMPLES)
def test_the_id_pattern_of_the_schema_agrees_with_the_validation(value: str) -> None:
    accepted = True
    try:
        TypeAdapter(Id).validate_python(value)
    except ValidationError:
        accepted = False
    assert bool(re.search(ID_PATTERN, value)) == accepted


def test_printable_id_and_the_pattern_agree_on_ids_without_blanks() -> None:
    for value in ("u1", "ünïcode", "a\nb", "a\x00", "\x7f", "x\x1fy"):
        try:
            printable_id(value)
            printable = True
        except ValueError:
            printable = False
        assert bool(re.search(ID_PATTERN, value)) == printable, value


def test_every_id_field_documents_the_pattern() -> None:
    for model, fields in (
        (EventIn, ["event_id", "user_id", "item_id", "basket_id", "session_id"]),
        (ItemIn, ["item_id"]),
    ):
        properties = model.model_json_schema()["properties"]
        for name in fields:
            schema = properties[name]
            options = schema.get("anyOf", [schema])
            patterns = [
                option.get("pattern") for option in options if option.get("type") == "string"
            ]
            assert patterns == [ID_PATTERN], (model.__name__, name, schema)
