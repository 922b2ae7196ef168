"""``POST /events``: events onto the bus, applied to the live state at once (key needed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends

from shoprec.serving.dependencies import ServiceDep, batch, require_key
from shoprec.serving.schemas import MAX_BATCH_EVENTS, EventIn, EventsAccepted

__all__ = ["router"]

router = APIRouter(tags=["events"])


@router.post("/events", status_code=202, dependencies=[Depends(require_key)])
async def post_events(
    service: ServiceDep,
    events: Annotated[
        EventIn | list[EventIn],
        Body(description=f"one event, or a list of at most {MAX_BATCH_EVENTS}"),
    ],
) -> EventsAccepted:
    ids = service.accept(batch(events, "events"))
    return EventsAccepted(accepted=len(ids), event_ids=ids)
