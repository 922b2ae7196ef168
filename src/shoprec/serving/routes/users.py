"""``/users``: a user's recommendations (public) and profile (the user themself or a key)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from shoprec.serving.dependencies import IdPath, Keyed, Served, ServiceDep
from shoprec.serving.lists import recommendations_response
from shoprec.serving.schemas import ListQuery, RecommendationResponse, UserProfile, errors
from shoprec.serving.storefront import COOKIE

__all__ = ["router"]

router = APIRouter(prefix="/users", tags=["users"])


@router.get(
    "/{user_id}/recommendations",
    tags=["recommendations"],
    response_model=RecommendationResponse,
    responses=errors(422, 503),
)
async def user_recommendations(
    service: ServiceDep, served: Served, user_id: IdPath, query: Annotated[ListQuery, Query()]
) -> Response:
    """Personalised items; an unknown user gets cold-start items from their context."""
    return recommendations_response(service, served, user_id, query)


@router.get("/{user_id}", responses=errors(401, 403, 404, 422, 503))
def user(
    service: ServiceDep, served: Served, request: Request, user_id: IdPath, key: Keyed = None
) -> UserProfile:
    """A user's profile and live activity: personal data, so only for an API key holder or the
    user themself, signed in to the storefront (401 otherwise)."""
    if key is not None and not service.key_valid(key):
        raise HTTPException(403, "the X-API-Key is not valid")
    if key is None and service.signed_in(request.cookies.get(COOKIE)) != user_id:
        raise HTTPException(
            401, "a user's profile needs an API key or that user's storefront sign-in"
        )
    profile = served.users.profile(user_id, private=True)
    recent = service.history(user_id)
    known = bool((served.model.user_ids_.to_index([user_id]) >= 0).any())
    if profile is None and not recent and not known:
        raise HTTPException(404, f"user {user_id!r} is unknown")
    answer: dict[str, Any] = {
        **(profile or {"user_id": user_id}),
        "in_model": known,
        "recent": [{"item_id": i, "event_type": t} for i, t in recent],
    }
    return UserProfile.model_validate(answer)
