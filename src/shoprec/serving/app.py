"""The HTTP API (DESIGN §5 and §8), assembled: the service, its error handlers, the two
middlewares and the routes of :mod:`shoprec.serving.routes` (and the storefront's pages).

Every input is bounded, every bad request gets a 4xx JSON body ``{"error": …}`` naming the
field or id at fault, and writes, admin routes and personal data need an ``X-API-Key`` (or, for
a user's own profile, their signed storefront sign-in).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shoprec.config import Settings
from shoprec.serving.errors import add_error_handlers
from shoprec.serving.middleware import Guarded, Measured, keyed_routes
from shoprec.serving.routes import ROUTERS, include_routes
from shoprec.serving.routes.events import document_event_types
from shoprec.serving.routes.storefront import add_storefront
from shoprec.serving.schemas import errors
from shoprec.serving.service import Service

__all__ = ["create_app"]


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
        # a body over the limit is refused on any route; each route documents its other errors
        responses=errors(413),
    )
    app.state.service = service
    add_error_handlers(app, settings.workspace)
    include_routes(app)
    document_event_types(app, service.event_types)
    if web:
        add_storefront(app)
    # the last added runs first: a request is measured, then guarded, then routed
    app.add_middleware(Guarded, service=service, keyed=keyed_routes(ROUTERS))
    app.add_middleware(Measured, service=service)
    return app
