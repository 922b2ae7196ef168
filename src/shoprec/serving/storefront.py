"""The storefront (issue 5): server-rendered pages over the served :class:`Engine`.

Jinja2 templates (autoescaped) and a little CSS, no JavaScript. A shopper signs in with a demo
login (an e-mail or a user id, no password; only when ``serving.demo_login`` is on), which puts
the user id in the ``shoprec_user`` cookie. The home page shows their recommendations with
reasons, the search page filters the catalogue, and an item page shows its details and related
items; viewing an item while signed in records a ``view`` event through
:meth:`Service.accept`, so the next home page reflects it. The operator page shows the
published run, its metrics and report, and every run.

The API's error handlers answer in JSON, so these routes never raise: bad input, unknown ids
and a missing run each get an HTML page with a 4xx (or 503) status and a message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from shoprec.pipeline.build import list_runs
from shoprec.serving.catalogue import SearchQuery
from shoprec.serving.engine import Engine, RecommendationList, SimilarMethod
from shoprec.serving.registry import NotReadyError
from shoprec.serving.schemas import MAX_ID_LENGTH, EventIn
from shoprec.serving.security import SESSION_SECONDS
from shoprec.serving.service import Service

__all__ = ["COOKIE", "HERE", "BadInputError", "Storefront"]

COOKIE = "shoprec_user"
HERE = Path(__file__).parent
HOME_K = 12
RELATED_K = 8
PAGE_SIZE = 24
MAX_LOGIN = 320
MAX_TEXT = 200
MAX_PAGE = 10_000
RECENT_SHOWN = 6
KEY_METRICS = ("ndcg", "recall", "precision", "map", "coverage")
FACETS = ("brand", "fuel")
RELATED: tuple[tuple[str, SimilarMethod], ...] = (
    ("Bought together", "copurchase"),
    ("Similar items", "content"),
    ("Shoppers who chose this also chose", "collaborative"),
)


class BadInputError(ValueError):
    """A query parameter of a page that cannot be used; the message says which and why."""


# -- formatting ---------------------------------------------------------------------------------
def _money(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "price on request"
    return f"{float(value):,.2f}"


def _metric(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "–" if value is None else str(value)
    return f"{value:,.4f}" if isinstance(value, float) else f"{value:,}"


def _path_part(value: Any) -> str:
    return quote(str(value), safe="")


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["money"] = _money
    environment.filters["metric"] = _metric
    environment.filters["path_part"] = _path_part
    return environment


# -- parsing page input -------------------------------------------------------------------------
def _text(name: str, value: str | None, limit: int = MAX_TEXT) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > limit:
        raise BadInputError(f"{name} is {len(value)} characters long; at most {limit}")
    return value.strip()


def _price(name: str, value: str | None) -> float | None:
    text = _text(name, value, 40)
    if text is None:
        return None
    try:
        price = float(text)
    except ValueError:
        raise BadInputError(f"{name} {text!r} is not a number") from None
    if not math.isfinite(price) or price < 0:
        raise BadInputError(f"{name} must be a number of 0 or more, not {text!r}")
    return price


def _whole(name: str, value: str | None, low: int, high: int) -> int | None:
    text = _text(name, value, 12)
    if text is None:
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadInputError(f"{name} must be a whole number from {low} to {high}, not {text!r}")
    return int(text)


@dataclass(frozen=True)
class SearchForm:
    """The search page's filters as typed (for the form) and as a :class:`SearchQuery`."""

    values: dict[str, str]
    query: SearchQuery
    page: int

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> SearchForm:
        values = {key: params.get(key, "") for key in _SEARCH_FIELDS}
        min_price = _price("min price", params.get("min_price"))
        max_price = _price("max price", params.get("max_price"))
        if min_price is not None and max_price is not None and min_price > max_price:
            raise BadInputError(f"the min price {min_price:g} is above the max price {max_price:g}")
        year_min = _whole("year from", params.get("year_min"), 1800, 2200)
        year_max = _whole("year to", params.get("year_max"), 1800, 2200)
        attributes = {
            facet: value
            for facet in FACETS
            if (value := _text(facet, params.get(facet), 100)) is not None
        }
        query = SearchQuery(
            text=_text("the search text", params.get("q")) or "",
            category=_text("category", params.get("category")),
            min_price=min_price,
            max_price=max_price,
            year_min=year_min,
            year_max=year_max,
            attributes=attributes,
        )
        page = _whole("page", params.get("page"), 1, MAX_PAGE) or 1
        return cls(values, query, page)

    def link(self, page: int) -> str:
        """The URL of another page of the same search."""
        kept = {key: value for key, value in self.values.items() if value and key != "page"}
        return "/shop/search?" + urlencode({**kept, "page": page})


_SEARCH_FIELDS = (
    "q",
    "category",
    "min_price",
    "max_price",
    "year_min",
    "year_max",
    "page",
    *FACETS,
)


# -- what the pages show ------------------------------------------------------------------------
def _cards(engine: Engine, answer: RecommendationList) -> list[dict[str, Any]]:
    return [
        {"item_id": r.item_id, "reason": r.reason, **engine.catalogue.summary(r.item_id)}
        for r in answer.items
    ]


def _plain_cards(engine: Engine, item_ids: list[str]) -> list[dict[str, Any]]:
    return [{"item_id": i, "reason": None, **engine.catalogue.summary(i)} for i in item_ids]


class Facets:
    """Distinct brand and fuel values, and whether items have a year, per served run."""

    def __init__(self) -> None:
        self._run: str | None = None
        self._values: dict[str, list[str]] = {}
        self._has_year = False

    def of(self, engine: Engine) -> tuple[dict[str, list[str]], bool]:
        if self._run != engine.run_id:
            attributes = engine.catalogue.attributes
            self._values = {
                facet: sorted({str(a[facet]) for a in attributes if a.get(facet) is not None})
                for facet in FACETS
            }
            self._has_year = any(a.get("year") is not None for a in attributes)
            self._run = engine.run_id
        return {k: v for k, v in self._values.items() if v}, self._has_year


def _metrics_table(metrics: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[Any]]:
    """The metric columns (in first-seen order) and one row per model."""
    columns: list[str] = []
    for values in metrics.values():
        columns.extend(name for name in values if name not in columns)
    rows = [(model, [values.get(c) for c in columns]) for model, values in metrics.items()]
    return columns, rows


def _key_metrics(run: Mapping[str, Any]) -> dict[str, Any]:
    """A few headline metrics of a run's default model (or its first evaluated model)."""
    metrics: Mapping[str, Mapping[str, Any]] = run.get("metrics") or {}
    chosen = metrics.get(str(run.get("default_model"))) or next(iter(metrics.values()), {})
    return {
        name: value
        for name, value in chosen.items()
        if name.split("@", 1)[0] in KEY_METRICS and not isinstance(value, dict | list)
    }


def _report_path(
    workspace: Path, run_id: str, runs: list[dict[str, Any]] | None = None
) -> Path | None:
    """A run's report.html, for a run id that the workspace lists (never a path)."""
    listed = list_runs(workspace) if runs is None else runs
    if run_id not in {str(run["run_id"]) for run in listed}:
        return None
    path = workspace / "models" / run_id / "report" / "report.html"
    return path if path.is_file() else None


def _login_problem(typed: str) -> str:
    if not typed:
        return "Type an e-mail address or a user id."
    if len(typed) > MAX_LOGIN:
        return f"That is {len(typed)} characters; at most {MAX_LOGIN}."
    return f"No shopper has the e-mail address or user id {typed!r}."


# -- the pages ----------------------------------------------------------------------------------
class Storefront:
    """The page handlers, sharing the service, the templates and the facet cache."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.templates = _environment()
        self.facets = Facets()

    # helpers
    @property
    def demo_login(self) -> bool:
        return bool(self.service.settings.serving.demo_login)

    def engine(self) -> Engine | None:
        try:
            return self.service.engine
        except NotReadyError:
            return None

    def not_ready(self) -> str:
        return self.service.registry.last_error or "no model run is published yet"

    def user(self, request: Request, engine: Engine | None) -> str | None:
        """The signed-in user id: the one the cookie names, if this server signed it, demo
        sign-in is on and the user is known."""
        if not self.demo_login or engine is None:
            return None
        value = self.service.signed_in(request.cookies.get(COOKIE))
        return value if value is not None and engine.users.resolve(value) == value else None

    def render(
        self,
        request: Request,
        template: str,
        *,
        status: int = 200,
        engine: Engine | None = None,
        **context: Any,
    ) -> HTMLResponse:
        page = self.templates.get_template(template).render(
            path=request.url.path,
            user=self.user(request, engine),
            demo_login=self.demo_login,
            **context,
        )
        return HTMLResponse(page, status_code=status)

    def error(
        self,
        request: Request,
        status: int,
        title: str,
        message: str,
        engine: Engine | None = None,
    ) -> HTMLResponse:
        return self.render(
            request, "error.html", status=status, engine=engine, title=title, message=message
        )

    def closed(self, request: Request) -> HTMLResponse:
        return self.error(
            request,
            503,
            "The shop is not open yet",
            f"No recommendation model is being served: {self.not_ready()}. "
            "An operator can build and publish a run; see the operator page.",
        )

    # pages
    def home(self, request: Request) -> HTMLResponse:
        engine = self.engine()
        if engine is None:
            return self.closed(request)
        user = self.user(request, engine)
        profile = engine.users.profile(user, private=True) if user else None
        context: dict[str, str] = {}
        country = (profile or {}).get("attributes", {}).get("country")
        if isinstance(country, str) and country:
            context["country"] = country
        answer = self.service.recommendations(engine, user or "", HOME_K, context=context or None)
        recent: list[str] = []
        for item_id, _ in reversed(self.service.history(user) if user else []):
            if item_id not in recent and item_id in engine.catalogue:
                recent.append(item_id)
        return self.render(
            request,
            "home.html",
            engine=engine,
            title="Recommended for you" if user else "Popular in the shop",
            profile=profile,
            cold_start=answer.cold_start,
            items=_cards(engine, answer),
            recent=_plain_cards(engine, recent[:RECENT_SHOWN]),
        )

    def login_form(self, request: Request) -> HTMLResponse:
        return self.render(request, "login.html", engine=self.engine(), title="Sign in (demo)")

    def login(self, request: Request, login: str) -> Response:
        if not self.demo_login:
            return self.render(
                request,
                "login.html",
                status=403,
                title="Sign-in is disabled",
                error="Sign-in is disabled on this server.",
            )
        engine = self.engine()
        if engine is None:
            return self.closed(request)
        typed = login.strip()
        user = engine.users.resolve(typed) if 0 < len(typed) <= MAX_LOGIN else None
        if user is None:
            return self.render(
                request,
                "login.html",
                status=400 if not typed or len(typed) > MAX_LOGIN else 404,
                engine=engine,
                title="Sign in (demo)",
                error=_login_problem(typed),
                login=typed[:MAX_LOGIN],
            )
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            COOKIE,
            self.service.sessions.sign(user),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="lax",
            path="/",
        )
        return response

    def logout(self) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    def search(self, request: Request) -> HTMLResponse:
        engine = self.engine()
        if engine is None:
            return self.closed(request)
        facets, has_year = self.facets.of(engine)
        params = dict(request.query_params)
        page_context: dict[str, Any] = {
            "title": "Search",
            "categories": engine.catalogue.categories_list,
            "facets": facets,
            "has_year": has_year,
            "values": {key: params.get(key, "") for key in _SEARCH_FIELDS},
        }
        try:
            form = SearchForm.parse(params)
        except BadInputError as exc:
            return self.render(
                request, "search.html", status=400, engine=engine, error=str(exc), **page_context
            )
        offset = (form.page - 1) * PAGE_SIZE
        total, ids = engine.catalogue.search(form.query, PAGE_SIZE, offset)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        return self.render(
            request,
            "search.html",
            engine=engine,
            total=total,
            items=_plain_cards(engine, ids),
            page=form.page,
            pages=pages,
            previous=form.link(form.page - 1) if form.page > 1 else None,
            next=form.link(form.page + 1) if form.page < pages else None,
            **page_context,
        )

    def item(self, request: Request, item_id: str) -> HTMLResponse:
        engine = self.engine()
        if engine is None:
            return self.closed(request)
        detail = engine.catalogue.detail(item_id) if len(item_id) <= MAX_ID_LENGTH else None
        if detail is None:
            return self.error(
                request,
                404,
                "No such item",
                f"The item {item_id[:MAX_ID_LENGTH]!r} is not in the catalogue.",
                engine,
            )
        user = self.user(request, engine)
        recorded = user is not None and self.record_view(user, item_id)
        methods = engine.similar_methods
        related = [
            (heading, method, _cards(engine, engine.similar(item_id, RELATED_K, method)))
            for heading, method in RELATED
            if method in methods
        ]
        return self.render(
            request,
            "item.html",
            engine=engine,
            title=detail["title"] or item_id,
            item=detail,
            related=related,
            recorded=recorded,
        )

    def record_view(self, user: str, item_id: str) -> bool:
        """Record that ``user`` viewed ``item_id`` (as ``POST /events`` would)."""
        try:
            event = EventIn(
                user_id=user,
                item_id=item_id,
                event_type="view",
                context={"source": "storefront"},
            )
        except ValidationError:  # an id the event schema cannot carry: nothing recorded
            return False
        self.service.accept([event])
        return True

    def operator(self, request: Request) -> HTMLResponse:
        engine = self.engine()
        workspace = self.service.workspace
        runs = [{**run, "key_metrics": _key_metrics(run)} for run in list_runs(workspace)]
        current: dict[str, Any] | None = None
        if engine is not None:
            manifest = engine.manifest
            columns, rows = _metrics_table(manifest.get("metrics") or {})
            current = {
                "run_id": engine.run_id,
                "model": engine.model_name,
                "created_at": manifest.get("created_at"),
                "source": manifest.get("source"),
                "data": manifest.get("data") or {},
                "n_users": manifest.get("n_users"),
                "n_items": manifest.get("n_items"),
                "catalogue": len(engine.catalogue),
                "directory": len(engine.users),
                "models": manifest.get("models") or {},
                "evaluation": manifest.get("evaluation"),
                "columns": columns,
                "rows": rows,
                "report": _report_path(workspace, engine.run_id, runs) is not None,
            }
        return self.render(
            request,
            "operator.html",
            engine=engine,
            title="Operator",
            current=current,
            not_ready=None if engine is not None else self.not_ready(),
            runs=runs,
            reports={
                run["run_id"] for run in runs if _report_path(workspace, str(run["run_id"]), runs)
            },
        )

    def report(self, request: Request, run_id: str | None) -> Response:
        if run_id is None:
            engine = self.engine()
            if engine is None:
                return self.error(
                    request, 404, "No report", f"No run is served: {self.not_ready()}"
                )
            run_id = engine.run_id
        path = _report_path(self.service.workspace, run_id) if len(run_id) <= 100 else None
        if path is None:
            return self.error(
                request,
                404,
                "No report",
                f"Run {run_id[:100]!r} has no evaluation report (a run has one when it was "
                "built with an evaluation, as 'shoprec demo' does).",
                self.engine(),
            )
        return FileResponse(path, media_type="text/html")
