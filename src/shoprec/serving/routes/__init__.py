"""The API's routes, one module a resource; :func:`include_routes` adds them all to an app."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from shoprec.serving.routes import admin, events, items, score, users

__all__ = ["ROUTERS", "include_routes"]

ROUTERS: tuple[APIRouter, ...] = tuple(m.router for m in (admin, users, items, score, events))


def include_routes(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router)
