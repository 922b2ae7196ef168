"""Request and response bodies of the API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from shoprec.stream.events import BUILTIN_EVENT_TYPES, MAX_ID_LENGTH, EventIn, Id, ItemIn

__all__ = [
    "BUILTIN_EVENT_TYPES",
    "ERROR_STATUSES",
    "MAX_BATCH_EVENTS",
    "MAX_ID_LENGTH",
    "MAX_K",
    "MAX_SCORE_IDS",
    "ErrorBody",
    "EventBatch",
    "EventIn",
    "EventsAccepted",
    "ItemBatch",
    "ItemDetail",
    "ItemIn",
    "ItemsAccepted",
    "ListItem",
    "ListQuery",
    "Readiness",
    "RecommendationResponse",
    "ScoreRequest",
    "ScoreResponse",
    "ScoreResult",
    "UserProfile",
    "errors",
]

MAX_K = 1000
# at most a million pairs a request: about 19 MB of JSON, under a second of work
MAX_SCORE_IDS = 1000
MAX_BATCH_EVENTS = 1000


def _integral(value: Any) -> Any:
    """``2067.0`` as 2067: JSON does not tell the two apart, and JSON Schema's ``integer``
    takes both (a float with a fraction stays a float, and is refused)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# an integer id stays an integer and a string id a string ("007" is not 7)
EntityId = Annotated[Annotated[int, Field(ge=0, strict=True)] | Id, BeforeValidator(_integral)]

# A write's body is one record or a list of them: the list is not empty (422) and holds at most
# MAX_BATCH_EVENTS (413). The route checks both itself (dependencies.batch), to name the
# problem plainly and to answer 413, not 422; the schema says so.
_BATCH = Field(json_schema_extra={"minItems": 1, "maxItems": MAX_BATCH_EVENTS})
EventBatch = Annotated[list[EventIn], _BATCH]
ItemBatch = Annotated[list[ItemIn], _BATCH]

# What each error status of the API means; a route documents those it can answer.
ERROR_STATUSES: dict[int, str] = {
    400: "the body is not JSON text, or the served run cannot answer this (e.g. a similarity "
    "method it does not have)",
    401: "no X-API-Key header",
    403: "the X-API-Key is not valid, or the server has no keys configured",
    404: "no such id",
    409: "the run is damaged or cannot be loaded",
    413: "the body is over 8 MB, or holds more than 1,000 records",
    422: "a parameter or the body is invalid; the error names it",
    503: "no run is served yet, or the event bus or live state cannot answer now",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that answers ``statuses`` with an :class:`ErrorBody`."""
    return {
        status: {"model": ErrorBody, "description": ERROR_STATUSES[status]} for status in statuses
    }


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong, and where")
    detail: list[dict[str, Any]] = Field(default_factory=list)


class ListQuery(BaseModel):
    """The query of ``GET /users/{user_id}/recommendations``, validated in one step."""

    model_config = ConfigDict(extra="ignore")

    k: int = Field(default=10, ge=1, le=MAX_K, description="how many items")
    category: str | None = Field(default=None, max_length=200)
    exclude_seen: bool | None = Field(default=None, description="default: the model decides")
    min_price: float | None = Field(
        default=None, ge=0, description="above max_price, no item qualifies (an empty list)"
    )
    max_price: float | None = Field(default=None, ge=0)
    country: str | None = Field(default=None, max_length=64)
    platform: str | None = Field(default=None, max_length=64)
    device: str | None = Field(default=None, max_length=64)


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


class UserActivity(BaseModel):
    item_id: str
    event_type: str


class UserProfile(BaseModel):
    user_id: str
    attributes: dict[str, Any] = Field(default_factory=dict)
    lat: float | None = None
    lon: float | None = None
    email: str | None = None
    in_model: bool = Field(description="whether the served model learned from this user")
    recent: list[UserActivity] = Field(description="live events since the build, oldest first")


class Readiness(BaseModel):
    ready: bool
    run_id: str | None = Field(default=None, description="the run served")
    model: str | None = Field(default=None, description="the model of the run served")
    reason: str | None = Field(default=None, description="why no run is served (503)")
    reload_error: str | None = Field(
        default=None,
        description="why the published run could not be loaded; the run above keeps serving",
    )


class EventsAccepted(BaseModel):
    accepted: int
    event_ids: list[str]


class ItemsAccepted(BaseModel):
    accepted: int
    item_ids: list[str]
    embedded: int = Field(description="how many could already be scored when answered")


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
