"""Every error the API answers is a JSON body ``{"error": …}`` that says what was wrong and
where, with a 4xx status (503 while no run is served or the live state is down), and never
shows the server's folders: the workspace and the install prefix are written as
``<workspace>`` and ``<server>``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from shoprec.exceptions import ShoprecError
from shoprec.serving.registry import NotReadyError
from shoprec.stream.state import StateError

__all__ = ["add_error_handlers", "allowed_methods", "describe", "public_message"]


def public_message(message: str, workspace: Path) -> str:
    """``message`` without the server's folder names."""
    folders = {str(workspace.resolve()): "<workspace>", str(workspace): "<workspace>"}
    folders.update({sys.prefix: "<server>", os.getcwd(): "<server>"})
    for folder in sorted(folders, key=len, reverse=True):
        if len(folder) > 1:
            message = message.replace(folder, folders[folder])
    return message


def describe(errors: list[Any]) -> str:
    """The first few validation errors as ``where: what`` (``query.k: …; body.item: …``)."""
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """The ``Allow`` header of a 405: every method some route takes at the request's path
    (Starlette names only those of the first route it matched: ``GET`` for ``/items``, whose
    ``POST`` is another route). Static files (a mount takes any method) are left out."""
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


def add_error_handlers(app: FastAPI, workspace: Path) -> None:
    def answer(status: int, message: str, headers: Any = None) -> JSONResponse:
        return JSONResponse(
            {"error": public_message(message, workspace)}, status_code=status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse({"error": describe(errors), "detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = exc.headers
        if exc.status_code == 405 and (allowed := allowed_methods(request)):
            headers = {**(headers or {}), "Allow": allowed}
        return answer(exc.status_code, str(exc.detail), headers)

    @app.exception_handler(NotReadyError)
    async def not_ready(_: Request, exc: NotReadyError) -> JSONResponse:
        return answer(503, str(exc))

    @app.exception_handler(StateError)
    async def state_failed(_: Request, exc: StateError) -> JSONResponse:
        return answer(503, str(exc))

    @app.exception_handler(ShoprecError)
    async def bad_request(_: Request, exc: ShoprecError) -> JSONResponse:
        return answer(400, str(exc))
