"""Request and response bodies of the API (they make the OpenAPI document)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from shoprec.data.schema import EVENT_TYPE_PATTERN, NON_ITEM_EVENT_TYPES

__all__ = [
    "BUILTIN_EVENT_TYPES",
    "MAX_BATCH_EVENTS",
    "MAX_K",
    "MAX_SCORE_IDS",
    "ErrorBody",
    "EventIn",
    "EventsAccepted",
    "ItemDetail",
    "ListItem",
    "RecommendationResponse",
    "ScoreRequest",
    "ScoreResponse",
    "ScoreResult",
]

MAX_K = 1000
MAX_SCORE_IDS = 10_000
MAX_BATCH_EVENTS = 1000
MAX_ID_LENGTH = 200
FUTURE_TOLERANCE = timedelta(days=1)
# Event types every shop may send, besides those its config weighs (event_weights).
BUILTIN_EVENT_TYPES = frozenset(
    {"view", "click", "add_to_cart", "remove_from_cart", "wishlist", "purchase", "rating"}
    | {"review", "impression", "return"}
    | NON_ITEM_EVENT_TYPES
)

Id = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH, strip_whitespace=True)
]
EntityId = Annotated[int, Field(ge=0)] | Id
ContextValue = Annotated[str, StringConstraints(max_length=200)] | int | float | bool


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong, and where")
    detail: list[dict[str, Any]] = Field(default_factory=list)


class ListItem(BaseModel):
    item_id: str
    score: float | None
    reason: str
    title: str | None = None
    category: str | None = None
    price: float | None = None


class RecommendationResponse(BaseModel):
    recommendation_id: str
    run_id: str
    variant: str
    user_id: str | None = None
    item_id: str | None = None
    found: bool
    cold_start: bool
    method: str | None = None
    live_events: int = Field(
        default=0, description="the user's live events (not yet in the model) folded in"
    )
    items: list[ListItem]


class ItemDetail(BaseModel):
    item_id: str
    entity_type: str
    title: str | None
    category: str | None
    price: float | None
    available: bool
    created_at: str | None
    attributes: dict[str, Any]
    text: str | None = None
    lat: float | None = None
    lon: float | None = None


class EventIn(_Body):
    """One event as a shop sends it; the server fills ``event_id`` and ``ts`` when absent."""

    event_id: Id | None = None
    user_id: Id
    item_id: Id | None = None
    event_type: Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)]
    ts: datetime | None = None
    value: float | None = Field(default=None, allow_inf_nan=False)
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    basket_id: Id | None = None
    session_id: Id | None = None
    context: dict[Annotated[str, StringConstraints(max_length=64)], ContextValue] = Field(
        default_factory=dict, max_length=32
    )
    recommendation_id: Id | None = None

    @field_validator("ts")
    @classmethod
    def _not_in_future(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        if value > datetime.now(UTC) + FUTURE_TOLERANCE:
            raise ValueError(f"timestamp {value.isoformat()} is more than a day in the future")
        return value.astimezone(UTC)

    def needs_item(self) -> bool:
        return self.event_type not in NON_ITEM_EVENT_TYPES

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


class EventsAccepted(BaseModel):
    accepted: int
    event_ids: list[str]


class ScoreRequest(_Body):
    algo: Literal["cosine-sim", "euclidean"]
    type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,40}-[A-Za-z0-9_]{1,40}$")] = (
        Field(description="<left entity type>-<right entity type>, e.g. listing-candidate")
    )
    item: list[EntityId] = Field(min_length=1, max_length=MAX_SCORE_IDS)
    items2: list[EntityId] = Field(min_length=1, max_length=MAX_SCORE_IDS)


class ScoreResult(BaseModel):
    entity: int | str
    entity_type: str
    status: str = Field(description="ok, not_found or wrong_type: …")
    scores: list[float]
    match_entity_type: str
    matched_entities: list[int | str]
    created_at: str


class ScoreResponse(BaseModel):
    status: Literal["success", "partial"]
    type: str
    algo: str
    request_id: str
    results: list[ScoreResult]
    unmatched: list[dict[str, Any]] = Field(
        default_factory=list, description="ids of items2 that could not be scored, and why"
    )
