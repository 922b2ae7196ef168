"""The cross-cutting work every request goes through, as two ASGI middlewares:

- :class:`Guarded` bounds and guards a request before the app reads it: a body over
  ``MAX_BODY_BYTES`` is refused (413) whether its size is declared or it comes in chunks, a
  route that needs the API key is refused (401/403) before a byte of its body is read, and HTML
  pages get the security headers of :data:`~shoprec.serving.security.HTML_HEADERS`;
- :class:`Measured` counts every request's route, status and latency for ``/metrics`` and says
  in a ``Server-Timing`` header how long the server worked on it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoprec.serving.dependencies import require_key
from shoprec.serving.security import HTML_HEADERS
from shoprec.serving.service import Service

__all__ = ["MAX_BODY_BYTES", "Guarded", "Measured", "keyed_routes"]

MAX_BODY_BYTES = 8 * 1024 * 1024
_HTML_HEADERS = [(name.encode(), value.encode()) for name, value in HTML_HEADERS.items()]


def keyed_routes(routers: Iterable[APIRouter]) -> list[APIRoute]:
    """The routes of ``routers`` that depend on
    :func:`~shoprec.serving.dependencies.require_key`."""
    return [
        route
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute)
        and any(d.call is require_key for d in route.dependant.dependencies)
    ]


class BodyTooLargeError(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, f"request body is larger than {MAX_BODY_BYTES} bytes")


class Guarded:
    """Body limit, the API key before the body, security headers on pages."""

    def __init__(self, app: ASGIApp, service: Service, keyed: Sequence[APIRoute]) -> None:
        self.app = app
        self.service = service
        self.keyed = keyed

    def _refusal(self, scope: Scope) -> JSONResponse | None:
        """The answer to a request refused before it is read, else None."""
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > MAX_BODY_BYTES):
                return JSONResponse({"error": BodyTooLargeError().detail}, status_code=413)
        if not any(route.matches(scope)[0] is Match.FULL for route in self.keyed):
            return None
        keys = self.service.settings.api_keys
        given = next((v for n, v in scope["headers"] if n == b"x-api-key"), None)
        if not keys:
            problem = 403, "this server has no API keys configured (set SHOPREC_API_KEYS)"
        elif given is None:
            problem = 401, "this route needs an API key in the X-API-Key header"
        elif not self.service.key_valid(given.decode("latin-1")):
            problem = 403, "the X-API-Key is not valid"
        else:
            return None
        return JSONResponse({"error": problem[1]}, status_code=problem[0])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_BODY_BYTES:
                    raise BodyTooLargeError()
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                html = any(
                    n.lower() == b"content-type" and v.startswith(b"text/html") for n, v in headers
                )
                if html:
                    message = {**message, "headers": [*headers, *_HTML_HEADERS]}
            await send(message)

        await self.app(scope, bounded, sending)


class Measured:
    """Request counts and latencies by route for ``/metrics``; a ``Server-Timing`` header."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.service.latency.labels(route).observe(time.perf_counter() - started)
            self.service.requests.labels(scope["method"], route, str(status)).inc()
