"""The storefront's pages and the operator page (HTML, left out of the OpenAPI schema): each a
thin call into :class:`~shoprec.serving.storefront.Storefront`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from shoprec.serving.storefront import HERE, Storefront

__all__ = ["add_storefront", "router"]

router = APIRouter(include_in_schema=False)
Page = HTMLResponse


def get_storefront(request: Request) -> Storefront:
    shop: Storefront = request.app.state.storefront
    return shop


Shop = Annotated[Storefront, Depends(get_storefront)]


@router.get("/", response_class=Page)
def home(shop: Shop, request: Request) -> Page:
    return shop.home(request)


@router.get("/shop/login", response_class=Page)
def login_form(shop: Shop, request: Request) -> Page:
    return shop.login_form(request)


@router.post("/shop/login")
def login(shop: Shop, request: Request, login: Annotated[str, Form()] = "") -> Response:
    return shop.login(request, login)


@router.api_route("/shop/logout", methods=["GET", "POST"])
def logout(shop: Shop) -> Response:
    return shop.logout()


@router.get("/shop/search", response_class=Page)
def search(shop: Shop, request: Request) -> Page:
    return shop.search(request)


@router.get("/shop/items/{item_id:path}", response_class=Page)
def item(shop: Shop, request: Request, item_id: str) -> Page:
    return shop.item(request, item_id)


@router.get("/operator", response_class=Page)
def operator(shop: Shop, request: Request) -> Page:
    return shop.operator(request)


@router.get("/operator/report")
def current_report(shop: Shop, request: Request) -> Response:
    return shop.report(request, None)


@router.get("/operator/runs/{run_id}/report")
def run_report(shop: Shop, request: Request, run_id: str) -> Response:
    return shop.report(request, run_id)


def add_storefront(app: FastAPI) -> None:
    """Add the pages and their static files to ``app`` (whose service they show)."""
    app.state.storefront = Storefront(app.state.service)
    app.mount("/shop/static", StaticFiles(directory=HERE / "static"), name="shop-static")
    app.include_router(router)
