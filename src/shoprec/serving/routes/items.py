"""``/items`` and ``/search``: the catalogue, similar items, and new items between builds."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response
from pydantic import StringConstraints
from starlette.concurrency import run_in_threadpool

from shoprec.exceptions import ShoprecError
from shoprec.serving.catalogue import SearchQuery
from shoprec.serving.dependencies import IdPath, K, Served, ServiceDep, batch, require_key
from shoprec.serving.engine import Engine, SimilarMethod
from shoprec.serving.lists import list_response
from shoprec.serving.schemas import (
    MAX_BATCH_EVENTS,
    MAX_K,
    ItemBatch,
    ItemDetail,
    ItemIn,
    ItemsAccepted,
    RecommendationResponse,
    errors,
)
from shoprec.serving.service import Service
from shoprec.stream.events import BLANK_CLASS

__all__ = ["router"]

router = APIRouter(tags=["catalogue"])
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Text = Annotated[str | None, Query(max_length=200)]
EntityType = Annotated[str | None, Query(max_length=40)]
# key=value, the key not blank and starting with no control character (blanks spelled out:
# Python's regex and pydantic's disagree on what \s means)
AttributePair = Annotated[
    str,
    StringConstraints(
        max_length=200, pattern=rf"^[{BLANK_CLASS}]*[^=\x00-\x1f\x7f{BLANK_CLASS}][^=]*="
    ),
]
Attribute = Annotated[
    list[AttributePair] | None,
    Query(max_length=20, description="more attribute filters, each key=value"),
]


def _card(engine: Engine, item_id: str) -> dict[str, Any]:
    return {"item_id": item_id, **engine.catalogue.summary(item_id)}


@router.get(
    "/items/{item_id}/similar",
    tags=["recommendations"],
    response_model=RecommendationResponse,
    responses=errors(400, 422, 503),
)
async def similar_items(
    served: Served, item_id: IdPath, k: K = 10, method: SimilarMethod = "auto"
) -> Response:
    """Items like this one; an unknown item answers with ``found: false`` and no items."""
    return list_response(served, served.similar(item_id, k, method), item_id=item_id)


@router.get("/items", responses=errors(422, 503))
def items(
    served: Served,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_K)] = 50,
    category: Text = None,
    entity_type: EntityType = None,
) -> dict[str, Any]:
    total, ids = served.catalogue.search(
        SearchQuery(category=category, entity_type=entity_type), limit, offset
    )
    return {"total": total, "offset": offset, "items": [_card(served, i) for i in ids]}


@router.get("/items/{item_id}", responses=errors(404, 422, 503))
def item(served: Served, item_id: IdPath) -> ItemDetail:
    detail = served.catalogue.detail(item_id)
    if detail is None:
        raise HTTPException(404, f"item {item_id!r} is not in the catalogue")
    return ItemDetail.model_validate(detail)


@router.get("/search", responses=errors(422, 503))
def search(
    served: Served,
    q: Annotated[str, Query(max_length=200, description="words of the title")] = "",
    category: Text = None,
    entity_type: EntityType = None,
    min_price: Annotated[float | None, Query(ge=0)] = None,
    max_price: Annotated[float | None, Query(ge=0)] = None,
    brand: Annotated[str | None, Query(max_length=100)] = None,
    fuel: EntityType = None,
    year_min: Annotated[int | None, Query(ge=1800, le=2200)] = None,
    year_max: Annotated[int | None, Query(ge=1800, le=2200)] = None,
    attr: Attribute = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
) -> dict[str, Any]:
    """Items whose title, category or attributes contain every word of ``q``."""
    attributes: dict[str, str] = {}
    for position, pair in enumerate(attr or []):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise HTTPException(422, f"query.attr[{position}]: {pair!r} is not key=value")
        attributes[key.strip()] = value.strip()
    if brand:
        attributes["brand"] = brand
    if fuel:
        attributes["fuel"] = fuel
    query = SearchQuery(
        text=q,
        category=category,
        entity_type=entity_type,
        min_price=min_price,
        max_price=max_price,
        year_min=year_min,
        year_max=year_max,
        attributes=attributes,
    )
    total, ids = served.catalogue.search(query, limit, offset)
    return {"query": q, "total": total, "offset": offset, "items": [_card(served, i) for i in ids]}


@router.post(
    "/items",
    status_code=202,
    dependencies=[Depends(require_key)],
    responses=errors(400, 401, 403, 413, 422, 503),
)
async def post_items(
    service: ServiceDep,
    body: Annotated[
        ItemIn | ItemBatch,
        Body(description=f"one item, or a list of at most {MAX_BATCH_EVENTS}"),
    ],
    wait: Annotated[
        float, Query(ge=0, le=10, description="seconds to wait until they can be scored")
    ] = 0.0,
) -> ItemsAccepted:
    """New or changed catalogue items between builds: the worker stores them in the lake
    and embeds them, so ``POST /score`` can score them before the next build does."""
    new = batch(body, "items")
    try:
        service.bus.publish([item.message() for item in new])
    except ShoprecError as exc:
        raise HTTPException(503, f"the event bus cannot take items now: {exc}") from None
    keys = [(item.entity_type, item.item_id) for item in new]
    embedded = await run_in_threadpool(_wait_embedded, service, keys, wait)
    return ItemsAccepted(accepted=len(new), item_ids=[i.item_id for i in new], embedded=embedded)


def _wait_embedded(service: Service, keys: list[tuple[str, str]], wait: float) -> int:
    """How many of ``keys`` have a live embedding, waiting up to ``wait`` seconds for all."""
    deadline = time.monotonic() + wait
    while True:
        engine = service.registry.current()
        space = engine.embedding_space if engine is not None else ""
        embedded = sum(v is not None for v in service.item_vectors(space, keys))
        if embedded == len(keys) or time.monotonic() >= deadline:
            return embedded
        time.sleep(0.005)
