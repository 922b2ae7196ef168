"""Events as the outside sends them (``POST /events``, the bus): checked and made lake rows.

Shared by the API, which accepts events, and the worker, which checks what it takes from the
bus, so both apply the same rules.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    Strict,
    StringConstraints,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from shoprec.data.schema import (
    CONTROL_CHARACTERS,
    EARLIEST_TS,
    ENTITY_TYPE_PATTERN,
    EVENT_TYPE_PATTERN,
    FUTURE_TOLERANCE,
    NON_ITEM_EVENT_TYPES,
    Bounds,
)

__all__ = [
    "BLANK_CLASS",
    "BUILTIN_EVENT_TYPES",
    "ID_PATTERN",
    "ITEM_MESSAGE",
    "MAX_ID_LENGTH",
    "EventIn",
    "Id",
    "ItemIn",
    "known_event_types",
    "printable_id",
]

MAX_ID_LENGTH = Bounds.ID_LENGTH
_CONTROL = re.compile(CONTROL_CHARACTERS)
# What an id may be as sent: surrounding blanks (which are stripped) around at least one
# character, none of them a control character (printable_id). The blanks (those of Unicode's
# White_Space below U+FFFF but the control characters \x1c-\x1f) are spelled out because regex
# dialects disagree on what \s means.
BLANK_CLASS = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
ID_PATTERN = rf"^[{BLANK_CLASS}]*[^\x00-\x1f\x7f{BLANK_CLASS}][^\x00-\x1f\x7f]*[{BLANK_CLASS}]*$"


def printable_id(value: str) -> str:
    """``value`` if it has no control characters (a NUL or a line break in an id breaks the
    files and logs it ends up in), else ValueError saying so."""
    found = _CONTROL.search(value)
    if found is not None:
        raise ValueError(
            f"must not contain control characters; found {found.group()!r} at {found.start()}"
        )
    return value


@dataclass(frozen=True)
class _SchemaPattern:
    """Documents in the JSON schema a ``pattern`` that a validator (not the regex) enforces,
    so that clients and fuzzers generating from the schema know the rule."""

    pattern: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["pattern"] = self.pattern
        return schema


# The ``kind`` of a bus message that carries a catalogue item instead of an event.
ITEM_MESSAGE = "item"
# Event types every shop may send, besides those its config weighs (event_weights).
BUILTIN_EVENT_TYPES = frozenset(
    {"view", "click", "add_to_cart", "remove_from_cart", "wishlist", "purchase", "rating"}
    | {"review", "impression", "return"}
    | NON_ITEM_EVENT_TYPES
)


def known_event_types(weights: Iterable[str]) -> frozenset[str]:
    """The event types a shop may send: the built-in ones and those its config weighs."""
    return BUILTIN_EVENT_TYPES | frozenset(weights)


# the characters of BLANK_CLASS, which an id loses at either end
_BLANK_CHARS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    map(chr, range(0x2000, 0x200B))
)


def _stripped(value: str) -> str:
    """``value`` without the blanks around it; ValueError if nothing else is left."""
    stripped = value.strip(_BLANK_CHARS)
    if not stripped:
        raise ValueError("must not be blank")
    return stripped


# The length is that of the id as sent, as the schema's maxLength says (not after stripping).
Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_LENGTH),
    AfterValidator(_stripped),
    AfterValidator(printable_id),
    _SchemaPattern(ID_PATTERN),
]
# Numbers are JSON numbers: ``false`` is not 0 (strict), and never NaN or infinite.
Number = Annotated[float, Strict(), AllowInfNan(False)]
TS_DESCRIPTION = (
    "When it happened (ISO 8601; UTC when no offset is given); the time the server receives "
    f"it when absent. Not before {EARLIEST_TS:%Y-%m-%d} and not more than "
    f"{FUTURE_TOLERANCE.days} day after the server's clock."
)
ContextValue = (
    Annotated[str, StringConstraints(max_length=Bounds.CONTEXT_VALUE_LENGTH)] | int | float | bool
)


class EventIn(BaseModel):
    """One event as a shop sends it; the server fills ``event_id`` and ``ts`` when absent."""

    model_config = ConfigDict(extra="forbid")

    event_id: Id | None = None
    user_id: Id
    item_id: Id | None = None
    event_type: Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)]
    ts: datetime | None = Field(default=None, description=TS_DESCRIPTION)
    value: Number | None = None
    price: Number | None = Field(default=None, ge=0)
    basket_id: Id | None = None
    session_id: Id | None = None
    context: dict[Annotated[str, StringConstraints(max_length=Bounds.KEY_LENGTH)], ContextValue] = (
        Field(default_factory=dict, max_length=Bounds.CONTEXT_ENTRIES)
    )
    recommendation_id: Id | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        """A time is ISO 8601 text (a number is not read as seconds since 1970)."""
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an ISO 8601 date and time, as text")
        return value

    @field_validator("ts")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        """A time no shop can have recorded is a mistake (a zeroed or misread date) that
        would stretch the data's time span; see TS_DESCRIPTION."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value > datetime.now(UTC) + FUTURE_TOLERANCE:
            raise ValueError(f"timestamp {value.isoformat()} is more than a day in the future")
        if value < EARLIEST_TS:
            raise ValueError(
                f"timestamp {value.isoformat()} is before {EARLIEST_TS:%Y-%m-%d}, "
                "the earliest accepted"
            )
        return value.astimezone(UTC)

    def needs_item(self) -> bool:
        return self.event_type not in NON_ITEM_EVENT_TYPES

    def problem(self, event_types: Collection[str] | None = None) -> str | None:
        """What the shop cannot accept in this well-formed event (``field: reason``), or None;
        ``event_types``: the types it accepts (None: any)."""
        if event_types is not None and self.event_type not in event_types:
            known = ", ".join(sorted(event_types))
            return (
                f"event_type: unknown event type {self.event_type!r}; known: {known} "
                "(more through event_weights in the config)"
            )
        if self.needs_item() and self.item_id is None:
            return f"item_id: a {self.event_type} event needs an item_id"
        return None

    def canonical(self, received: datetime) -> dict[str, Any]:
        """The event as a lake row (a JSON-ready dict), with its id and timestamp filled."""
        ts = self.ts or received
        record: dict[str, Any] = {
            "user_id": self.user_id,
            "item_id": self.item_id,
            "event_type": self.event_type,
            "ts": ts.isoformat(),
            "value": self.value,
            "price": self.price,
            "basket_id": self.basket_id,
            "session_id": self.session_id,
            "context": json.dumps(self.context, sort_keys=True) if self.context else None,
            "recommendation_id": self.recommendation_id,
        }
        if self.event_id is None:
            digest = hashlib.blake2b(
                json.dumps(record, sort_keys=True).encode(), digest_size=16
            ).hexdigest()
            event_id = f"api-{digest}"
        else:
            event_id = self.event_id
        return {"event_id": event_id, **record, "source": "api"}


AttributeValue = (
    Annotated[str, StringConstraints(max_length=Bounds.ATTRIBUTE_VALUE_LENGTH)]
    | int
    | float
    | bool
    | None
)


class ItemIn(BaseModel):
    """A catalogue item as a shop sends it between builds (``POST /items``, the bus): the
    worker stores it in the lake and embeds it, so it can be scored at once."""

    model_config = ConfigDict(extra="forbid")

    item_id: Id
    entity_type: Annotated[str, StringConstraints(pattern=ENTITY_TYPE_PATTERN)] = "item"
    title: Annotated[str, StringConstraints(max_length=Bounds.TITLE_LENGTH)] | None = None
    category: Annotated[str, StringConstraints(max_length=Bounds.CATEGORY_LENGTH)] | None = None
    price: Number | None = Field(default=None, ge=0)
    available: Annotated[bool, Strict()] = True
    attributes: dict[
        Annotated[str, StringConstraints(max_length=Bounds.KEY_LENGTH)], AttributeValue
    ] = Field(default_factory=dict, max_length=Bounds.ATTRIBUTES)
    text: Annotated[str, StringConstraints(max_length=Bounds.TEXT_LENGTH)] | None = None
    lat: Number | None = Field(default=None, ge=-90, le=90)
    lon: Number | None = Field(default=None, ge=-180, le=180)

    def message(self) -> dict[str, Any]:
        """The bus message that carries this item."""
        return {"kind": ITEM_MESSAGE, "item": self.model_dump(mode="json")}

    def row(self, received: datetime) -> dict[str, Any]:
        """The item as a lake row (``attributes`` as JSON text)."""
        record = self.model_dump(mode="json")
        record["attributes"] = (
            json.dumps(self.attributes, sort_keys=True) if self.attributes else None
        )
        record["created_at"] = received
        return record
