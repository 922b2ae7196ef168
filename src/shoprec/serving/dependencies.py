"""What a route asks FastAPI for: the service, the served engine, the caller's rights, and the
bounded path and query parameters every route shares."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Path, Query, Request, Security
from fastapi.security import APIKeyHeader
from pydantic import AfterValidator

from shoprec.serving.engine import Engine
from shoprec.serving.schemas import MAX_BATCH_EVENTS, MAX_ID_LENGTH, MAX_K
from shoprec.serving.service import Service
from shoprec.stream.events import BLANK_CLASS, printable_id

__all__ = [
    "API_KEY",
    "PATH_ID_PATTERN",
    "RUN_ID_PATTERN",
    "IdPath",
    "K",
    "Keyed",
    "RunIdPath",
    "Served",
    "ServiceDep",
    "batch",
    "get_engine",
    "get_service",
    "require_key",
]

T = TypeVar("T")
API_KEY = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="one of the server's API keys (SHOPREC_API_KEYS)",
)


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


# The request routes that only compute (lists, scores) and their dependencies are async: they
# run on the event loop one at a time instead of crowding the thread pool, where threads would
# only fight over the GIL, and a hand-over to a pool thread costs more than the work.
async def get_engine(request: Request) -> Engine:
    return get_service(request).engine


async def _service(request: Request) -> Service:
    # (as a plain ``def``, FastAPI would call it in the thread pool: a thread hand-over on
    # every request that asks for the service)
    return get_service(request)


ServiceDep = Annotated[Service, Depends(_service)]
Served = Annotated[Engine, Depends(get_engine)]
Keyed = Annotated[str | None, Security(API_KEY)]


async def require_key(request: Request, key: Keyed = None) -> None:
    """Writes and admin routes: a valid ``X-API-Key`` (401 without one, 403 if wrong).

    :class:`~shoprec.serving.middleware.Guarded` checks the same before a byte of the body is
    read; this dependency documents the key in the OpenAPI schema and keeps the check with the
    route for callers that build the app without the middleware."""
    service = get_service(request)
    if not service.settings.api_keys:
        raise HTTPException(403, "this server has no API keys configured (set SHOPREC_API_KEYS)")
    if key is None:
        raise HTTPException(401, "this route needs an API key in the X-API-Key header")
    if not service.key_valid(key):
        raise HTTPException(403, "the X-API-Key is not valid")


def _path_id(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return printable_id(value)


K = Annotated[int, Query(ge=1, le=MAX_K, description="how many items")]
# The rule of _path_id, written in the schema for clients and fuzzers (the validator says
# what is wrong more plainly than a pattern mismatch would). A path id is not stripped: unlike
# an id in a body, it has no control character anywhere, not even a tab around it.
PATH_ID_PATTERN = rf"^[^\x00-\x1f\x7f]*[^\x00-\x1f\x7f{BLANK_CLASS}][^\x00-\x1f\x7f]*$"
IdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        json_schema_extra={"pattern": PATH_ID_PATTERN},
        description="no control characters, not blank",
    ),
    AfterValidator(_path_id),
]
# A run id is one plain folder name of models/: no dot or blank first, no slash, backslash or
# control character (the same in Python's regex dialect and pydantic's).
RUN_ID_PATTERN = r"^[^.\s\\/\x00-\x1f\x7f][^\\/\x00-\x1f\x7f]*$"
RunIdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, pattern=RUN_ID_PATTERN)]


def batch(body: T | list[T], what: str) -> list[T]:
    """A write's body as a list: one record or a non-empty list of at most
    ``MAX_BATCH_EVENTS`` (422 / 413 otherwise)."""
    records = body if isinstance(body, list) else [body]
    if not records:
        raise HTTPException(422, f"body: the list of {what} is empty")
    if len(records) > MAX_BATCH_EVENTS:
        raise HTTPException(
            413, f"body: {len(records)} {what} in one request; at most {MAX_BATCH_EVENTS}"
        )
    return records
