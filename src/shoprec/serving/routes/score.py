"""``POST /score``: pairwise scores between two lists of entities, by their embeddings."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from shoprec.serving.dependencies import Served, ServiceDep
from shoprec.serving.schemas import ScoreRequest, ScoreResponse, errors
from shoprec.serving.scoring import score_batch

__all__ = ["INLINE_PAIRS", "router"]

router = APIRouter(tags=["scoring"])
# A request of up to this many pairs is scored on the event loop (faster than handing it to a
# thread); a larger one in the thread pool, so it never holds up the requests behind it.
INLINE_PAIRS = 20_000


@router.post("/score", response_model=ScoreResponse, responses=errors(400, 422, 503))
async def score(service: ServiceDep, served: Served, request: ScoreRequest) -> Response:
    """Scores between two lists of entities, by their embeddings, in one computation."""
    if len(request.item) * len(request.items2) <= INLINE_PAIRS:
        body = score_batch(served, request, live=service.item_vectors)
    else:
        body = await run_in_threadpool(score_batch, served, request, live=service.item_vectors)
    return Response(body, media_type="application/json")
