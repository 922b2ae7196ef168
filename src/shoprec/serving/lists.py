"""The JSON of a list of items (recommendations, similar items), written straight from the
engine's values in the shape of :class:`~shoprec.serving.schemas.RecommendationResponse`: no
model is built or validated per item on the hot path (a test holds the two to the same shape)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import Response
from pydantic_core import to_json as _to_json

from shoprec.serving.engine import Engine, RecommendationList
from shoprec.serving.schemas import ListQuery
from shoprec.serving.service import Service

__all__ = ["list_response", "recommendations_response", "to_json"]

_CONTEXT_FIELDS = ("country", "platform", "device", "category")


def to_json(value: Any) -> bytes:
    """``value`` as JSON bytes; NaN and infinities become ``null`` (valid JSON, as the response
    models write them)."""
    return _to_json(value, inf_nan_mode="null")


def recommendations_response(
    service: Service, engine: Engine, user_id: str, query: ListQuery
) -> Response:
    """``GET /users/{user_id}/recommendations``: the list, with the time the live state's reads
    and the engine took in a ``Server-Timing`` entry (``recommend;dur=``)."""
    context = {key: value for key in _CONTEXT_FIELDS if (value := getattr(query, key))}
    started = time.perf_counter()
    answer = service.recommendations(
        engine,
        user_id,
        query.k,
        exclude_seen=query.exclude_seen,
        category=query.category,
        min_price=query.min_price,
        max_price=query.max_price,
        context=context or None,
    )
    spent = (time.perf_counter() - started) * 1000
    response = list_response(engine, answer, user_id=user_id)
    response.headers["server-timing"] = f"recommend;dur={spent:.3f}"
    return response


def list_response(
    engine: Engine,
    answer: RecommendationList,
    *,
    user_id: str | None = None,
    item_id: str | None = None,
) -> Response:
    """A list as JSON in the shape of :class:`RecommendationResponse`."""
    catalogue = engine.catalogue
    body = {
        "recommendation_id": uuid.uuid4().hex,
        "run_id": engine.run_id,
        "variant": engine.model_name,
        "user_id": user_id,
        "item_id": item_id,
        "found": answer.found,
        "cold_start": answer.cold_start,
        "method": answer.method,
        "live_events": answer.live_events,
        "items": [
            {
                "item_id": r.item_id,
                "score": r.score,
                "reason": r.reason,
                **catalogue.summary(r.item_id),
            }
            for r in answer.items
        ],
    }
    return Response(to_json(body), media_type="application/json")
