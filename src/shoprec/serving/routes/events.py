"""``POST /events``: events onto the bus, applied to the live state at once (key needed)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI

from shoprec.data.schema import NON_ITEM_EVENT_TYPES
from shoprec.serving.dependencies import ServiceDep, batch, require_key
from shoprec.serving.schemas import MAX_BATCH_EVENTS, EventBatch, EventIn, EventsAccepted, errors

__all__ = ["document_event_types", "router"]

router = APIRouter(tags=["events"])


@router.post(
    "/events",
    status_code=202,
    dependencies=[Depends(require_key)],
    responses=errors(400, 401, 403, 413, 422, 503),
)
async def post_events(
    service: ServiceDep,
    events: Annotated[
        EventIn | EventBatch,
        Body(description=f"one event, or a list of at most {MAX_BATCH_EVENTS}"),
    ],
) -> EventsAccepted:
    ids = service.accept(batch(events, "events"))
    return EventsAccepted(accepted=len(ids), event_ids=ids)


def document_event_types(app: FastAPI, event_types: Collection[str]) -> None:
    """Write into ``app``'s OpenAPI document what an event's model cannot say itself, because
    it depends on the shop's settings: ``event_type`` is one of ``event_types`` (the built-in
    ones and those the config weighs), and an event of a type about an item needs an
    ``item_id``."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    document: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not document:
            document.update(generate())
            event = document["components"]["schemas"][EventIn.__name__]
            event["properties"]["event_type"]["enum"] = sorted(event_types)
            about_items = sorted(set(event_types) - NON_ITEM_EVENT_TYPES)
            event["if"] = {
                "properties": {"event_type": {"enum": about_items}},
                "required": ["event_type"],
            }
            event["then"] = {"required": ["item_id"], "properties": {"item_id": {"type": "string"}}}
        return document

    app.openapi = openapi  # type: ignore[method-assign]
