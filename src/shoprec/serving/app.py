"""The HTTP API (DESIGN §5 and §8): thin FastAPI routes over the served :class:`Engine`.

Every route takes the engine once (:class:`Registry` swaps it when a run is published), every
input is bounded, and every bad request gets a 4xx JSON body ``{"error": …}`` naming the field
or id at fault. Writes and admin routes need an ``X-API-Key`` from the settings.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import re
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

import numpy as np
from fastapi import Body, Depends, FastAPI, Header, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import to_json as _to_json
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoprec.config import Settings
from shoprec.exceptions import ShoprecError
from shoprec.pipeline.build import list_runs, publish
from shoprec.serving.catalogue import SearchQuery
from shoprec.serving.engine import (
    Engine,
    LiveItemVectors,
    PairScores,
    RecommendationList,
    SimilarMethod,
)
from shoprec.serving.monitoring import LiveCollector
from shoprec.serving.registry import NotReadyError, Registry
from shoprec.serving.schemas import (
    MAX_BATCH_EVENTS,
    MAX_ID_LENGTH,
    MAX_K,
    ErrorBody,
    EventIn,
    EventsAccepted,
    ItemDetail,
    ItemIn,
    ItemsAccepted,
    ListQuery,
    RecommendationResponse,
    ScoreRequest,
    ScoreResponse,
)
from shoprec.stream.bus import open_bus
from shoprec.stream.events import known_event_types, printable_id
from shoprec.stream.protocols import EventBus, LiveState
from shoprec.stream.state import StateError, open_state
from shoprec.stream.worker import Worker

__all__ = ["Service", "create_app", "decode_logged_scores", "score_batch"]

MAX_BODY_BYTES = 8 * 1024 * 1024
score_log = logging.getLogger("shoprec.score")
log = logging.getLogger("shoprec.serving")
T = TypeVar("T")
# how long a server leaves a live state that failed alone before it reads it again
STATE_RETRY_SECONDS = 5.0
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 422, 503)
}


def to_json(value: Any) -> bytes:
    """``value`` as JSON bytes; NaN and infinities become ``null`` (valid JSON, as the response
    models write them)."""
    return _to_json(value, inf_nan_mode="null")


_LIST_PATH = re.compile(r"/users/([^/]+)/recommendations")
_LIST_ROUTE = "/users/{user_id}/recommendations"


class Measured:
    """ASGI middleware: refuses bodies over the limit (413), counts every request's route,
    status and latency for ``/metrics``, and says in a ``Server-Timing`` header how long the
    server worked on the request.

    It also answers the hottest request, a well-formed ``GET /users/{id}/recommendations``,
    itself: the same function as the route, without the router and the per-parameter
    validation around it (about half a millisecond a request on a 2-core machine). Anything
    else about such a request (a bad or repeated parameter, an error, a server not ready)
    goes the whole way, so its answer is the route's.
    """

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    def _shortcut(self, scope: Scope) -> Response | None:
        """The answer to a well-formed recommendations request, else None."""
        if scope["method"] != "GET":
            return None
        match = _LIST_PATH.fullmatch(scope["path"])
        if match is None:
            return None
        pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        query = dict(pairs)
        if len(query) != len(pairs) or not query.keys() <= ListQuery.model_fields.keys():
            return None
        try:
            return recommendations_response(
                self.service, self.service.engine, match[1], ListQuery.model_validate(query)
            )
        except (HTTPException, NotReadyError, ShoprecError, ValidationError):
            return None  # the route answers it, with its own error handling

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > MAX_BODY_BYTES):
                refusal = JSONResponse(
                    {"error": f"request body is larger than {MAX_BODY_BYTES} bytes"},
                    status_code=413,
                )
                await refusal(scope, receive, send)
                return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # How long the server worked on the request (a client subtracts it from what
                # it saw to tell the network and queueing apart from the work).
                # A route may have timed its own parts (``recommend;dur=``): they follow.
                spent = (time.perf_counter() - started) * 1000
                timing = b"app;dur=%.3f" % spent
                headers = []
                for name, value in message.get("headers", []):
                    if name.lower() == b"server-timing":
                        timing += b", " + value
                    else:
                        headers.append((name, value))
                headers.append((b"server-timing", timing))
                message = {**message, "headers": headers}
            await send(message)

        shortcut = self._shortcut(scope)
        try:
            if shortcut is not None:
                await shortcut(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            if shortcut is not None:
                route = _LIST_ROUTE
            self.service.latency.labels(route).observe(time.perf_counter() - started)
            self.service.requests.labels(scope["method"], route, str(status)).inc()


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


# The request routes that only compute (recommendations, similar items, scores), the key check
# and POST /events (a check and one append to the bus) are async: they run on the event loop
# one at a time instead of crowding the thread pool, where threads would only fight over the
# GIL, and a hand-over to a pool thread costs more than the work.
async def _engine(request: Request) -> Engine:
    return _service(request).engine


async def require_key(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> None:
    """Writes and admin routes: a valid ``X-API-Key`` (401 without one, 403 if wrong)."""
    service = _service(request)
    if not service.settings.api_keys:
        raise HTTPException(403, "this server has no API keys configured (set SHOPREC_API_KEYS)")
    if x_api_key is None:
        raise HTTPException(401, "this route needs an API key in the X-API-Key header")
    if not service.key_valid(x_api_key):
        raise HTTPException(403, "the X-API-Key is not valid")


Served = Annotated[Engine, Depends(_engine)]
K = Annotated[int, Query(ge=1, le=MAX_K, description="how many items")]
IdPath = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(printable_id)]


def _describe(errors: list[Any]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


class Service:
    """What the routes share: settings, the registry and the live event state."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.workspace = settings.workspace
        self.registry = registry or Registry(
            settings.workspace, poll_seconds=settings.serving.reload_seconds, settings=settings
        )
        self.event_types = known_event_types(settings.event_weights.weights)
        # The bus, the live state and the worker open when the app starts (its lifespan).
        self._bus: EventBus | None = None
        self._state: LiveState | None = None
        self.worker: Worker | None = None
        self.metrics = CollectorRegistry()
        self.requests = Counter(
            "shoprec_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.metrics,
        )
        self.latency = Histogram(
            "shoprec_request_seconds",
            "Request latency by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.metrics,
        )
        self.events_accepted = Counter(
            "shoprec_events_accepted", "Events accepted by POST /events", registry=self.metrics
        )
        self.live_state_errors = Counter(
            "shoprec_live_state_errors",
            "Reads of the live state that failed (the request was served without live data)",
            registry=self.metrics,
        )
        self.live_state_skipped = Counter(
            "shoprec_live_state_skipped",
            "Requests served without live data while the live state is left alone after a failure",
            registry=self.metrics,
        )
        self._state_retry_at = 0.0
        self.collector = LiveCollector(self)
        self.metrics.register(self.collector)

    @property
    def engine(self) -> Engine:
        return self.registry.engine

    def key_valid(self, key: str | None) -> bool:
        return key is not None and any(
            secrets.compare_digest(key, known) for known in self.settings.api_keys
        )

    def accept(self, events: list[EventIn]) -> list[str]:
        """Check events, publish them to the bus and apply them to the live state; returns
        their ids (HTTP 422 on a bad one).

        Applying here makes the caller's next read reflect its click at once, whichever
        process runs the worker; the state applies each event once by id, so the worker's own
        application of the same events from the bus is a no-op, and it still folds them into
        the users' vectors, appends them to the lake and acknowledges them. Should the state
        refuse here (see :meth:`live`), the worker applies them from the bus as usual."""
        received = datetime.now(UTC)
        rows = []
        for position, event in enumerate(events):
            problem = event.problem(self.event_types)
            if problem is not None:
                raise HTTPException(422, f"events[{position}].{problem}")
            rows.append(event.canonical(received))
        try:
            self.bus.publish(rows)
        except ShoprecError as exc:
            raise HTTPException(503, f"the event bus cannot take events now: {exc}") from None
        self.events_accepted.inc(len(rows))
        refused: list[bool] = []
        self.live(self.state.apply_each, refused, rows)  # if it cannot, the worker applies them
        return [row["event_id"] for row in rows]

    def history(self, user_id: str) -> list[tuple[str, str]]:
        """The user's live ``(item_id, event_type)`` events, oldest first (none while the
        live state cannot be read: see :meth:`live`)."""
        return self.live(self.state.recent, [], user_id)

    def live(self, read: Callable[..., T], fallback: T, *args: Any) -> T:
        """``read(*args)`` from the live state, or ``fallback`` when the state cannot answer:
        a request is then served without live data instead of failing. After a failure the
        state is left alone for ``STATE_RETRY_SECONDS`` (a Redis that is down would otherwise
        cost every request its connection attempts); each failure is logged and counted."""
        if time.monotonic() < self._state_retry_at:
            self.live_state_skipped.inc()
            return fallback
        try:
            return read(*args)
        except StateError as exc:
            self._state_retry_at = time.monotonic() + STATE_RETRY_SECONDS
            self.live_state_errors.inc()
            log.warning("serving without live data for %.0f s: %s", STATE_RETRY_SECONDS, exc)
            return fallback

    def item_vectors(self, space: str, keys: Sequence[tuple[str, str]]) -> list[np.ndarray | None]:
        """Embeddings of items posted since the build (none while the state cannot answer)."""
        return self.live(self.state.item_vectors, [None] * len(keys), space, keys)

    def recommendations(
        self,
        engine: Engine,
        user_id: str,
        k: int,
        **options: Any,
    ) -> RecommendationList:
        # the vectors the worker folded in from exactly this history (one read): one that
        # misses an event accepted since is left out, and the engine folds the history in
        nothing: tuple[list[tuple[str, str]], dict[str, np.ndarray]] = ([], {})
        history, vectors = self.live(self.state.live_user, nothing, user_id, engine.vector_names())
        answer = engine.recommend(user_id, k, history=history, vectors=vectors, **options)
        return dataclasses.replace(answer, live_events=len(history))

    @property
    def bus(self) -> EventBus:
        if self._bus is None:
            raise NotReadyError("the event bus is not open: the server is starting or stopping")
        return self._bus

    @property
    def state(self) -> LiveState:
        if self._state is None:
            raise NotReadyError("the live state is not open: the server is starting or stopping")
        return self._state

    def start(self) -> None:
        """Open the bus and the live state, load the published run, start the worker."""
        serving = self.settings.serving
        self._bus = open_bus(serving.bus, folder=self.workspace / "stream" / "bus")
        self._state = open_state(serving.state, recent=serving.recent_events)
        self.registry.start()
        if serving.worker:
            self.worker = Worker.for_shop(
                self.settings,
                self._bus,
                self._state,
                lambda: self.registry.engine if self.registry.ready else None,
                consumer=f"api-{socket.gethostname()}-{os.getpid()}",
                in_server=True,
            )
            self.worker.start()

    def stop(self) -> None:
        self.collector.close()
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self.registry.stop()
        if self._bus is not None:
            self._bus.close()
            self._bus = None
        if self._state is not None:
            self._state.close()
            self._state = None


def recommendations_response(
    service: Service, engine: Engine, user_id: str, query: ListQuery
) -> Response:
    """``GET /users/{user_id}/recommendations``, whichever way the request came in (the
    route, or :class:`Measured`'s shortcut)."""
    _check_id("user_id", user_id)
    min_price, max_price = query.min_price, query.max_price
    if min_price is not None and max_price is not None and min_price > max_price:
        raise HTTPException(422, f"min_price {min_price} is above max_price {max_price}")
    context = {
        key: value
        for key, value in (
            ("country", query.country),
            ("platform", query.platform),
            ("device", query.device),
            ("category", query.category),
        )
        if value
    }
    started = time.perf_counter()
    answer = service.recommendations(
        engine,
        user_id,
        query.k,
        exclude_seen=query.exclude_seen,
        category=query.category,
        min_price=min_price,
        max_price=max_price,
        context=context or None,
    )
    spent = (time.perf_counter() - started) * 1000
    response = list_response(engine, answer, user_id=user_id)
    # the live state's reads and the engine, apart from the whole request (app;dur)
    response.headers["server-timing"] = f"recommend;dur={spent:.3f}"
    return response


def list_response(
    engine: Engine,
    answer: RecommendationList,
    *,
    user_id: str | None = None,
    item_id: str | None = None,
) -> Response:
    """A list as JSON in the shape of :class:`RecommendationResponse` (the route's documented
    model), written straight from the engine's own values: no model is built or validated per
    item on the hot path (a test holds the two to the same shape)."""
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


def create_app(settings: Settings, *, service: Service | None = None, web: bool = True) -> FastAPI:
    """The API app for ``settings`` (and the storefront pages unless ``web`` is false)."""
    service = service or Service(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        service.stop()

    app = FastAPI(
        title="shoprec",
        summary="Recommendations, similar items, pairwise scores and events for a shop.",
        version="0.1.0",
        lifespan=lifespan,
        responses=_ERRORS,
    )
    app.state.service = service

    # -- errors: always a JSON body that says what was wrong ----------------------------------
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"error": _describe(errors), "detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(NotReadyError)
    async def not_ready(_: Request, exc: NotReadyError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)

    @app.exception_handler(StateError)
    async def state_failed(_: Request, exc: StateError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=503)

    @app.exception_handler(ShoprecError)
    async def bad_request(_: Request, exc: ShoprecError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    app.add_middleware(Measured, service=service)

    # -- health ---------------------------------------------------------------------------------
    @app.get("/health", tags=["operations"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"])
    def ready() -> JSONResponse:
        if not service.registry.ready:
            reason = service.registry.last_error or "no published run yet"
            return JSONResponse({"ready": False, "reason": reason}, status_code=503)
        current = service.engine
        return JSONResponse({"ready": True, "run_id": current.run_id, "model": current.model_name})

    @app.get("/metrics", tags=["operations"])
    def metrics() -> Response:
        # The service's own metrics, then the process-wide ones (the process, the embedding
        # provider calls the worker makes).
        body = generate_latest(service.metrics) + generate_latest(REGISTRY)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # -- recommendations ------------------------------------------------------------------------
    @app.get(
        "/users/{user_id}/recommendations",
        tags=["recommendations"],
        response_model=RecommendationResponse,
    )
    async def user_recommendations(
        served: Served, user_id: IdPath, query: Annotated[ListQuery, Query()]
    ) -> Response:
        """Personalised items; an unknown user gets cold-start items from their context."""
        return recommendations_response(service, served, user_id, query)

    @app.get(
        "/items/{item_id}/similar", tags=["recommendations"], response_model=RecommendationResponse
    )
    async def similar_items(
        served: Served,
        item_id: IdPath,
        k: K = 10,
        method: SimilarMethod = "auto",
    ) -> Response:
        """Items like this one; an unknown item answers with ``found: false`` and no items."""
        _check_id("item_id", item_id)
        return list_response(served, served.similar(item_id, k, method), item_id=item_id)

    # -- pairwise scoring -----------------------------------------------------------------------
    @app.post("/score", tags=["scoring"], response_model=ScoreResponse)
    async def score(served: Served, request: ScoreRequest) -> Response:
        """Scores between two lists of entities, by their embeddings, in one computation."""
        body = score_batch(served, request, live=service.item_vectors)
        return Response(body, media_type="application/json")

    # -- events ---------------------------------------------------------------------------------
    @app.post(
        "/events",
        status_code=202,
        tags=["events"],
        dependencies=[Depends(require_key)],
    )
    async def post_events(
        events: Annotated[
            EventIn | list[EventIn],
            Body(description=f"one event, or a list of at most {MAX_BATCH_EVENTS}"),
        ],
    ) -> EventsAccepted:
        ids = service.accept(_batch(events, "events"))
        return EventsAccepted(accepted=len(ids), event_ids=ids)

    @app.post(
        "/items",
        status_code=202,
        tags=["catalogue"],
        dependencies=[Depends(require_key)],
    )
    def post_items(
        items: Annotated[
            ItemIn | list[ItemIn],
            Body(description=f"one item, or a list of at most {MAX_BATCH_EVENTS}"),
        ],
        wait: Annotated[
            float, Query(ge=0, le=10, description="seconds to wait until they can be scored")
        ] = 0.0,
    ) -> ItemsAccepted:
        """New or changed catalogue items between builds: the worker stores them in the lake
        and embeds them, so ``POST /score`` can score them before the next build does."""
        batch = _batch(items, "items")
        try:
            service.bus.publish([item.message() for item in batch])
        except ShoprecError as exc:
            raise HTTPException(503, f"the event bus cannot take items now: {exc}") from None
        keys = [(item.entity_type, item.item_id) for item in batch]
        deadline = time.monotonic() + wait
        embedded = 0
        while True:
            engine = service.registry.current()
            space = engine.embedding_space if engine is not None else ""
            embedded = sum(v is not None for v in service.state.item_vectors(space, keys))
            if embedded == len(keys) or time.monotonic() >= deadline:
                break
            time.sleep(0.005)
        return ItemsAccepted(
            accepted=len(batch), item_ids=[i.item_id for i in batch], embedded=embedded
        )

    # -- catalogue and users --------------------------------------------------------------------
    @app.get("/items", tags=["catalogue"])
    def items(
        served: Served,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_K)] = 50,
        category: Annotated[str | None, Query(max_length=200)] = None,
        entity_type: Annotated[str | None, Query(max_length=40)] = None,
    ) -> dict[str, Any]:
        total, ids = served.catalogue.search(
            SearchQuery(category=category, entity_type=entity_type), limit, offset
        )
        return {"total": total, "offset": offset, "items": [_card(served, i) for i in ids]}

    @app.get("/items/{item_id}", tags=["catalogue"])
    def item(served: Served, item_id: IdPath) -> ItemDetail:
        _check_id("item_id", item_id)
        detail = served.catalogue.detail(item_id)
        if detail is None:
            raise HTTPException(404, f"item {item_id!r} is not in the catalogue")
        return ItemDetail.model_validate(detail)

    @app.get("/search", tags=["catalogue"])
    def search(
        served: Served,
        q: Annotated[str, Query(max_length=200, description="words of the title")] = "",
        category: Annotated[str | None, Query(max_length=200)] = None,
        entity_type: Annotated[str | None, Query(max_length=40)] = None,
        min_price: Annotated[float | None, Query(ge=0)] = None,
        max_price: Annotated[float | None, Query(ge=0)] = None,
        brand: Annotated[str | None, Query(max_length=100)] = None,
        fuel: Annotated[str | None, Query(max_length=40)] = None,
        year_min: Annotated[int | None, Query(ge=1800, le=2200)] = None,
        year_max: Annotated[int | None, Query(ge=1800, le=2200)] = None,
        attr: Annotated[
            list[str] | None,
            Query(max_length=20, description="more attribute filters, each key=value"),
        ] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
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
        return {
            "query": q,
            "total": total,
            "offset": offset,
            "items": [_card(served, i) for i in ids],
        }

    @app.get("/users/{user_id}", tags=["users"])
    def user(
        served: Served,
        request: Request,
        user_id: IdPath,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """A user's profile and live activity; the e-mail only for the user themself (signed
        in to the storefront) or an API key holder."""
        _check_id("user_id", user_id)
        private = service.key_valid(x_api_key) or request.cookies.get("shoprec_user") == user_id
        profile = served.users.profile(user_id, private=private)
        recent = service.history(user_id)
        known = bool((served.model.user_ids_.to_index([user_id]) >= 0).any())
        if profile is None and not recent and not known:
            raise HTTPException(404, f"user {user_id!r} is unknown")
        return {
            **(profile or {"user_id": user_id}),
            "in_model": known,
            "recent": [{"item_id": i, "event_type": t} for i, t in recent],
        }

    # -- registry (admin) -----------------------------------------------------------------------
    @app.get("/runs", tags=["registry"])
    def runs() -> dict[str, Any]:
        current = service.registry.engine.run_id if service.registry.ready else None
        return {"current": current, "runs": list_runs(service.workspace)}

    @app.post("/admin/reload", tags=["registry"], dependencies=[Depends(require_key)])
    def reload() -> dict[str, Any]:
        swapped = service.registry.refresh(force=True)
        if not service.registry.ready:
            raise NotReadyError(service.registry.last_error or "no published run")
        return {"reloaded": swapped, "run_id": service.engine.run_id}

    @app.post("/admin/publish/{run_id}", tags=["registry"], dependencies=[Depends(require_key)])
    def publish_run(run_id: IdPath) -> dict[str, Any]:
        if "/" in run_id or run_id.startswith("."):
            raise HTTPException(422, f"path.run_id: {run_id!r} is not a run id")
        try:
            publish(service.workspace, run_id)
        except ShoprecError as exc:
            raise HTTPException(404, str(exc)) from None
        service.registry.refresh(force=True)
        if service.registry.last_error:
            raise HTTPException(409, service.registry.last_error)
        return {"published": run_id, "run_id": service.engine.run_id}

    if web:
        from shoprec.serving.web import add_storefront

        add_storefront(app, service)
    return app


def _json(body: BaseModel) -> Response:
    """A validated response model as JSON, serialised once (the route's ``response_model``
    documents it; FastAPI would otherwise validate it a second time)."""
    return Response(body.model_dump_json(), media_type="application/json")


def _batch(body: T | list[T], what: str) -> list[T]:
    """A write's body as a list: one record or a non-empty list of at most
    ``MAX_BATCH_EVENTS`` (422 / 413 otherwise)."""
    batch = body if isinstance(body, list) else [body]
    if not batch:
        raise HTTPException(422, f"body: the list of {what} is empty")
    if len(batch) > MAX_BATCH_EVENTS:
        raise HTTPException(
            413, f"body: {len(batch)} {what} in one request; at most {MAX_BATCH_EVENTS}"
        )
    return batch


def _check_id(field: str, value: str) -> None:
    if len(value) > MAX_ID_LENGTH or not value.strip():
        raise HTTPException(
            422, f"path.{field}: must be 1 to {MAX_ID_LENGTH} characters, not {len(value)}"
        )
    try:
        printable_id(value)
    except ValueError as exc:
        raise HTTPException(422, f"path.{field}: {exc}") from None


def _card(engine: Engine, item_id: str) -> dict[str, Any]:
    return {"item_id": item_id, **engine.catalogue.summary(item_id)}


def score_batch(
    engine: Engine, request: ScoreRequest, *, live: LiveItemVectors | None = None
) -> bytes:
    """``POST /score`` (and ``shoprec score``): one matrix for the whole batch, answered as
    the JSON of a :class:`ScoreResponse`; every request and its results logged as one JSON
    line with a request id. ``live`` finds embeddings of items that arrived after the run was
    built (the live state's)."""
    left_type, right_type = request.type.split("-", 1)
    left = [str(i) for i in request.item]
    right = [str(i) for i in request.items2]
    started = time.perf_counter()
    pairs = engine.pair_scores(request.algo, left_type, right_type, left, right, live)
    created = datetime.now(UTC).isoformat()
    matched = [request.items2[i] for i in pairs.right]
    unmatched = [
        {"entity": request.items2[i], "status": status} for i, status in pairs.right_status.items()
    ]
    request_id = uuid.uuid4().hex
    body = _score_json(
        request, pairs, left_type, right_type, matched, unmatched, created, request_id
    )
    if score_log.isEnabledFor(logging.INFO):
        # The whole result, compactly: the score matrix (scored rows × matched entities) as
        # base64 of little-endian float32, row-major; see decode_logged_scores.
        matrix = np.ascontiguousarray(pairs.scores, dtype="<f4")
        record = {
            "event": "score",
            "request_id": request_id,
            "at": created,
            "run_id": engine.run_id,
            "type": request.type,
            "algo": request.algo,
            "items": request.item,
            "items2": request.items2,
            "ms": round((time.perf_counter() - started) * 1000, 3),
            "scored": [request.item[i] for i in pairs.left],
            "matched": matched,
            "shape": list(matrix.shape),
            "scores_f32": base64.b64encode(matrix.tobytes()).decode("ascii"),
            "not_scored": [
                {"entity": request.item[i], "status": status}
                for i, status in pairs.left_status.items()
            ],
            "unmatched": unmatched,
        }
        score_log.info(to_json(record).decode())
    return body


def _score_json(
    request: ScoreRequest,
    pairs: PairScores,
    left_type: str,
    right_type: str,
    matched: list[int | str],
    unmatched: list[dict[str, Any]],
    created: str,
    request_id: str,
) -> bytes:
    """The JSON of the :class:`ScoreResponse` (the route's documented model; a test holds the
    two to the same shape), written from the checked values. Every scored row lists the same
    matched entities, so their JSON is written once and repeated; scores are rounded to six
    decimals as float64, so they print short."""
    rows = dict(zip(pairs.left, np.round(pairs.scores.astype(np.float64), 6).tolist(), strict=True))
    scored_tail = b"".join(
        [
            b',"match_entity_type":',
            to_json(right_type),
            b',"matched_entities":',
            to_json(matched),
            b',"created_at":',
            to_json(created),
            b"}",
        ]
    )
    missing_tail = b"".join(
        [
            b',"match_entity_type":',
            to_json(right_type),
            b',"matched_entities":[],"created_at":',
            to_json(created),
            b"}",
        ]
    )
    left_json = to_json(left_type)
    results: list[bytes] = []
    for position, entity in enumerate(request.item):
        row = rows.get(position)
        status = "ok" if row is not None else pairs.left_status[position]
        results.append(
            b"".join(
                [
                    b'{"entity":',
                    to_json(entity),
                    b',"entity_type":',
                    left_json,
                    b',"status":',
                    to_json(status),
                    b',"scores":',
                    to_json(row if row is not None else []),
                    scored_tail if row is not None else missing_tail,
                ]
            )
        )
    head = {
        "status": "success" if not unmatched and not pairs.left_status else "partial",
        "type": request.type,
        "algo": request.algo,
        "request_id": request_id,
    }
    return b"".join(
        [
            to_json(head)[:-1],  # the head's fields, then the results and the unmatched ones
            b',"results":[',
            b",".join(results),
            b'],"unmatched":',
            to_json(unmatched),
            b"}",
        ]
    )


def decode_logged_scores(line: dict[str, Any]) -> np.ndarray:
    """The score matrix of one ``score.jsonl`` line (rows: ``scored``, columns: ``matched``)."""
    raw = base64.b64decode(line["scores_f32"])
    return np.frombuffer(raw, dtype="<f4").reshape(line["shape"])
