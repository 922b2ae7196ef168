"""Every API route through the ASGI client, with every 4xx path."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from shoprec.config import Settings, load_settings
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.exceptions import ShoprecError
from shoprec.pipeline.build import build, current_run
from shoprec.serving import monitoring
from shoprec.serving.app import create_app
from shoprec.serving.schemas import (
    ListItem,
    ListQuery,
    RecommendationResponse,
    ScoreResponse,
    ScoreResult,
)
from shoprec.serving.scoring import decode_logged_scores
from shoprec.stream.bus import MemoryBus
from shoprec.stream.state import MemoryLiveState
from shoprec.stream.worker import Worker
from tests.serving.conftest import API_KEY

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def client(shop: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(shop, web=False)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def lake(shop: Settings) -> Lake:
    return Lake(shop.workspace)


@pytest.fixture(scope="module")
def buyer(lake: Lake) -> str:
    """A user with several purchases."""
    counts = (
        lake.events()
        .filter(pl.col("event_type") == "purchase")
        .group_by("user_id")
        .len()
        .sort("len", "user_id", descending=[True, False])
    )
    return str(counts.item(0, "user_id"))


@pytest.fixture(scope="module")
def browser_user(lake: Lake) -> str:
    """A user with a short history (a few views), whom one visit can redirect."""
    counts = lake.events().group_by("user_id").len().filter(pl.col("len") >= 3)
    return str(counts.sort("len", "user_id").item(0, "user_id"))


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except (KeyError, ValueError):
            pass
        time.sleep(0.02)
    return False


def _error(response: object, status: int) -> str:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert isinstance(body["error"], str)
    assert body["error"]
    return str(body["error"])


# -- operations ----------------------------------------------------------------------------------
def test_health_ready_metrics_docs(client: TestClient, shop: Settings) -> None:
    health = client.get("/health")
    assert health.json() == {"status": "ok"}
    name, duration = health.headers["server-timing"].split(";dur=")
    assert name == "app"
    assert 0 <= float(duration) < 10_000
    ready = client.get("/ready").json()
    assert ready["ready"] is True
    assert ready["run_id"] == current_run(shop.workspace)[0]
    listed = client.get("/users/nobody/recommendations")
    timing = dict(
        part.split(";dur=") for part in listed.headers["server-timing"].split(", ")
    )  # the whole request first, then the route's own part
    assert list(timing) == ["app", "recommend"]
    assert 0 <= float(timing["recommend"]) <= float(timing["app"]) < 10_000
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'route="/users/{user_id}/recommendations"' in metrics.text
    assert "shoprec_request_seconds_bucket" in metrics.text
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for route in (
        "/users/{user_id}/recommendations",
        "/items/{item_id}/similar",
        "/score",
        "/events",
        "/items",
        "/items/{item_id}",
        "/search",
        "/users/{user_id}",
        "/health",
        "/ready",
        "/metrics",
        "/runs",
        "/admin/reload",
        "/admin/publish/{run_id}",
    ):
        assert route in paths, route
    _error(client.get("/no/such/route"), 404)


def _copy_of(shop: Settings, folder: Path, *, worker: bool = True) -> Settings:
    """A copy of the shop in ``folder``, with its own bus log (the module's client holds the
    shop's); ``worker=False`` serves it without a worker thread."""
    workspace = folder / "copy"
    shutil.copytree(shop.workspace, workspace, ignore=shutil.ignore_patterns("stream"))
    serving = shop.serving.model_copy(update={"worker": worker})
    return shop.model_copy(update={"workspace": workspace, "serving": serving})


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as ``{(sample name, labels): value}``."""
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_tell_an_operator_the_model_the_worker_and_the_bus(
    shop: Settings, buyer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _copy_of(shop, tmp_path)
    # no lake write while the test reads: waiting events stay waiting (and pending)
    quiet = settings.serving.model_copy(update={"lake_flush_seconds": 600.0})
    settings = settings.model_copy(update={"serving": quiet})
    with TestClient(create_app(settings, web=False)) as alone:
        service = alone.app.state.service  # type: ignore[attr-defined]
        before = _samples(alone)
        run_id = current_run(settings.workspace)[0]
        model = service.engine.model_name
        assert before["shoprec_model_info", (("model", model), ("run_id", run_id))] == 1
        assert before["shoprec_model_loads_total", ()] == 1
        assert before["shoprec_model_reload_failing", ()] == 0
        assert before["shoprec_bus_up", ()] == 1
        assert before["shoprec_worker_events_total", (("outcome", "applied"),)] == 0

        events = [
            {"user_id": buyer, "item_id": f"P00000{n}", "event_type": "view"} for n in (1, 2, 3)
        ]
        assert alone.post("/events", json=events, headers=KEY).status_code == 202
        service.bus.publish_raw(["{not json"])
        worker = service.worker
        assert wait_for(lambda: worker.stats.duplicates == 3 and worker.stats.dead_lettered == 1)
        after = _samples(alone)
        # the API applied the three when it accepted them: the worker found them applied
        assert after["shoprec_worker_events_total", (("outcome", "duplicate"),)] == 3
        assert after["shoprec_worker_events_total", (("outcome", "dead_lettered"),)] == 1
        assert after["shoprec_worker_waiting_events", ()] == 3
        assert after["shoprec_worker_events_total", (("outcome", "lake_added"),)] == 0
        assert after["shoprec_bus_pending", ()] == 3  # held until the lake write
        assert after["shoprec_bus_backlog", ()] == 0
        assert after["shoprec_worker_errors_total", ()] == 0

        def broken() -> int:
            raise ShoprecError("redis is down")

        monkeypatch.setattr(service.bus, "pending", broken)
        down = _samples(alone)  # the scrape still answers
        assert down["shoprec_bus_up", ()] == 0
        assert ("shoprec_bus_pending", ()) not in down

        # a bus that hangs: the scrape does not wait for it, nor ask it again meanwhile
        asked: list[float] = []

        def hanging() -> int:
            asked.append(time.monotonic())
            time.sleep(3.0)
            return 0

        monkeypatch.setattr(monitoring, "BUS_TIMEOUT", 0.05)
        monkeypatch.setattr(service.bus, "pending", hanging)
        assert _samples(alone)["shoprec_bus_up", ()] == 0
        assert _samples(alone)["shoprec_bus_up", ()] == 0
        assert len(asked) == 1


def test_a_live_state_that_is_down_leaves_requests_served_without_live_data(
    shop: Settings, buyer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _copy_of(shop, tmp_path, worker=False)
    down = "redis://127.0.0.1:1/0?prefix=t:&socket_connect_timeout=0.5"  # nothing listens
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"state": down})}
    )
    with TestClient(create_app(settings, web=True)) as alone:
        engine = alone.app.state.service.engine  # type: ignore[attr-defined]
        path = f"/users/{buyer}/recommendations"
        answer = alone.get(path, params={"k": 5})
        assert answer.status_code == 200
        assert answer.json()["live_events"] == 0
        expected = engine.recommend(buyer, 5)
        assert [i["item_id"] for i in answer.json()["items"]] == [r.item_id for r in expected.items]
        metrics = _samples(alone)
        assert metrics["shoprec_live_state_errors_total", ()] == 1
        # left alone for a while: the next requests do not try it (nor wait for it) again
        assert alone.get(path, params={"k": 5}).status_code == 200
        assert alone.get(f"/users/{buyer}", headers=KEY).status_code == 200
        assert alone.get("/").status_code == 200  # the storefront too
        # an item the run does not know is looked for among those posted since the build
        score = {"algo": "cosine-sim", "type": "item-item", "item": ["P000001"]}
        scored = alone.post("/score", json={**score, "items2": ["P000002", "NEW-1"]})
        assert scored.status_code == 200
        assert "NEW-1" not in scored.json()["results"][0]["matched_entities"]
        event = {"user_id": buyer, "item_id": "P000003", "event_type": "view"}
        assert alone.post("/events", json=event, headers=KEY).status_code == 202  # on the bus
        metrics = _samples(alone)
        assert metrics["shoprec_live_state_errors_total", ()] == 1
        # skipped: the list, the profile, the storefront's list, the new item's embedding and
        # the event's application
        assert metrics["shoprec_live_state_skipped_total", ()] == 5
        # once the time is up it is read again (and still failing, counted again)
        service = alone.app.state.service  # type: ignore[attr-defined]
        monkeypatch.setattr(service, "_state_retry_at", 0.0)
        assert alone.get(path).status_code == 200
        assert _samples(alone)["shoprec_live_state_errors_total", ()] == 2


def test_a_run_that_fails_to_load_is_reported_until_a_good_one_is_published(
    shop: Settings, tmp_path: Path
) -> None:
    settings = _copy_of(shop, tmp_path, worker=False)
    good = current_run(settings.workspace)[0]
    models = settings.workspace / "models"
    broken = "20990101T000000-broken"
    shutil.copytree(models / good, models / broken)
    for pickled in (models / broken).glob("*.pkl"):
        pickled.write_bytes(b"not a model")
    with TestClient(create_app(settings, web=False)) as alone:
        registry = alone.app.state.service.registry  # type: ignore[attr-defined]
        # publishing it is refused: the run is not the one its build wrote
        refused = alone.post(f"/admin/publish/{broken}", headers=KEY)
        assert "is refused" in _error(refused, 409)
        assert current_run(settings.workspace)[0] == good
        assert "no such run" in _error(alone.post("/admin/publish/nope", headers=KEY), 404)
        # a CURRENT that names it anyway (written by hand) is refused at load
        (models / "CURRENT").write_text(broken)
        registry.refresh()
        failing = _samples(alone)
        assert failing["shoprec_model_reload_failing", ()] == 1
        assert failing["shoprec_model_loads_total", ()] == 1
        assert failing["shoprec_model_load_failures_total", ()] == 1
        ready = alone.get("/ready")  # the good run keeps serving, and /ready says why
        assert ready.status_code == 200
        assert ready.json()["run_id"] == good
        assert ready.json()["reload_error"].startswith(f"cannot load run {broken}: ")
        assert str(settings.workspace) not in ready.text
        # the watcher does not load the broken run again at every poll ...
        assert not registry.refresh()
        time.sleep(3 * settings.serving.reload_seconds)
        assert registry.failed_loads == 1
        # ... but an operator's reload tries it now
        assert alone.post("/admin/reload", headers=KEY).json()["reloaded"] is False
        assert registry.failed_loads == 2
        # publishing the served run again (a rollback) clears the failure
        rolled_back = alone.post(f"/admin/publish/{good}", headers=KEY)
        assert rolled_back.status_code == 200, rolled_back.text
        assert _samples(alone)["shoprec_model_reload_failing", ()] == 0
        assert alone.get("/ready").json()["reload_error"] is None


def test_not_ready_without_a_published_run(tmp_path: Path) -> None:
    settings = load_settings(workspace=tmp_path, api_keys=[API_KEY])
    with TestClient(create_app(settings, web=False)) as empty:
        assert empty.get("/health").status_code == 200
        assert empty.get("/ready").status_code == 503
        assert "no published model run" in _error(empty.get("/users/u1/recommendations"), 503)
        assert "no published" in _error(empty.post("/admin/reload", headers=KEY), 503)
        assert empty.get("/runs").json() == {"current": None, "runs": []}


# -- recommendations -----------------------------------------------------------------------------
def test_user_recommendations(client: TestClient, buyer: str, lake: Lake) -> None:
    body = client.get(f"/users/{buyer}/recommendations", params={"k": 7}).json()
    assert body["user_id"] == buyer
    assert body["found"] is True
    assert body["cold_start"] is False
    assert len(body["items"]) == 7
    assert len({i["item_id"] for i in body["items"]}) == 7
    assert body["recommendation_id"]
    assert body["run_id"]
    assert body["variant"] == "two_stage"
    catalogue = lake.items()
    titles = dict(zip(catalogue["item_id"], catalogue["title"], strict=True))
    for item in body["items"]:
        assert item["reason"]
        assert not item["reason"].startswith("cold start")
        assert item["title"] == titles[item["item_id"]]
        assert "email" not in item
    scores = [i["score"] for i in body["items"] if i["score"] is not None]
    assert scores == sorted(scores, reverse=True)
    other = client.get(f"/users/{buyer}/recommendations", params={"k": 7}).json()
    assert other["recommendation_id"] != body["recommendation_id"]
    assert [i["item_id"] for i in other["items"]] == [i["item_id"] for i in body["items"]]


def test_list_answers_have_exactly_the_documented_shape(client: TestClient, buyer: str) -> None:
    """The lists are written as JSON straight from the engine's values: the documented
    response model must describe them field for field."""
    answers = [
        client.get(f"/users/{buyer}/recommendations", params={"k": 3}).json(),
        client.get("/users/new-visitor/recommendations", params={"k": 3}).json(),
    ]
    item = answers[0]["items"][0]["item_id"]
    answers.append(client.get(f"/items/{item}/similar", params={"k": 3}).json())
    for body in answers:
        assert set(body) == set(RecommendationResponse.model_fields)
        assert body["items"]
        for listed in body["items"]:
            assert set(listed) == set(ListItem.model_fields)
        assert RecommendationResponse.model_validate(body).model_dump(mode="json") == body
    documented = client.get("/openapi.json").json()["paths"]["/users/{user_id}/recommendations"]
    names = {p["name"] for p in documented["get"]["parameters"] if p["in"] == "query"}
    assert names == set(ListQuery.model_fields)


@pytest.mark.parametrize(
    "query",
    [
        {"k": 4},
        {"k": 6, "exclude_seen": "false", "min_price": 1, "max_price": 80},
        {"k": 3, "country": "DE", "platform": "web"},
        {"k": 2, "unknown": "ignored"},  # not a parameter: ignored
    ],
)
def test_the_documented_route_answers_recommendations(
    client: TestClient, buyer: str, query: dict[str, object]
) -> None:
    engine = client.app.state.service.engine  # type: ignore[attr-defined]
    for user in (buyer, "someone-new"):
        response = client.get(f"/users/{user}/recommendations", params=query)
        assert response.status_code == 200
        assert "recommend;dur=" in response.headers["server-timing"]
        assert [i["item_id"] for i in response.json()["items"]] == [
            r.item_id
            for r in engine.recommend(
                user,
                int(str(query["k"])),
                exclude_seen=False if "exclude_seen" in query else None,
                min_price=query.get("min_price"),
                max_price=query.get("max_price"),
                context={k: query[k] for k in ("country", "platform") if k in query} or None,
            ).items
        ]
    counted = _samples(client)
    route = ("method", "GET"), ("route", "/users/{user_id}/recommendations"), ("status", "200")
    assert counted["shoprec_requests_total", route] >= 2


def test_bad_recommendation_requests(client: TestClient) -> None:
    for query, field in (("k=5&k=6", None), ("k=0", "k"), ("k=abc", "k")):
        response = client.get(f"/users/u1/recommendations?{query}")
        if field is None:  # a repeated parameter: FastAPI takes the last
            assert response.status_code == 200
            assert len(response.json()["items"]) == 6
        else:
            assert field in _error(response, 422)
    assert "user_id" in _error(client.get("/users/%20/recommendations"), 422)
    # a price range no item can be in: the schema allows it, the list is empty
    empty = client.get("/users/u1/recommendations?min_price=9&max_price=1")
    assert empty.status_code == 200
    assert empty.json()["items"] == []


def test_recommendation_filters(client: TestClient, buyer: str) -> None:
    first = client.get(f"/users/{buyer}/recommendations", params={"k": 20}).json()["items"]
    category = first[0]["category"]
    narrowed = client.get(
        f"/users/{buyer}/recommendations", params={"k": 5, "category": category}
    ).json()["items"]
    assert narrowed
    assert all(i["category"] == category for i in narrowed)
    cheap = client.get(
        f"/users/{buyer}/recommendations", params={"k": 10, "min_price": 5, "max_price": 30}
    ).json()["items"]
    assert cheap
    assert all(5 <= i["price"] <= 30 for i in cheap)
    kept = client.get(
        f"/users/{buyer}/recommendations", params={"k": 10, "exclude_seen": "false"}
    ).json()["items"]
    assert len(kept) == 10


def test_unknown_user_gets_cold_start_from_context(client: TestClient) -> None:
    body = client.get(
        "/users/brand-new-visitor/recommendations", params={"k": 5, "country": "DE"}
    ).json()
    assert body["found"] is False
    assert body["cold_start"] is True
    assert len(body["items"]) == 5
    assert all(i["reason"] == "cold start: popular in DE" for i in body["items"])
    plain = client.get("/users/another-visitor/recommendations", params={"k": 3}).json()
    assert all(i["reason"].startswith("cold start") for i in plain["items"])


@pytest.mark.parametrize(
    "path",
    [
        "/users/a%00b/recommendations",
        "/users/a%0Ab/recommendations?k=3&k=4",  # the shortcut's way and the route's
        "/items/a%01/similar",
        "/items/x%7F",
        "/users/a%1Bb",
    ],
)
def test_ids_with_control_characters_are_refused(client: TestClient, path: str) -> None:
    message = _error(client.get(path), 422)
    assert message.startswith("path.")
    assert "must not contain control characters" in message


def test_a_run_id_with_a_control_character_is_refused(client: TestClient) -> None:
    message = _error(client.post("/admin/publish/run%00x", headers=KEY), 422)
    assert message.startswith("path.run_id")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"k": 0}, "k"),
        ({"k": 1001}, "k"),
        ({"k": "ten"}, "k"),
        ({"min_price": -1}, "min_price"),
        ({"exclude_seen": "maybe"}, "exclude_seen"),
        ({"category": "x" * 201}, "category"),
    ],
)
def test_recommendation_bad_queries(
    client: TestClient, query: dict[str, object], field: str
) -> None:
    assert field in _error(client.get("/users/u1/recommendations", params=query), 422)


def test_overlong_user_id(client: TestClient) -> None:
    assert "user_id" in _error(client.get(f"/users/{'u' * 201}/recommendations"), 422)


# -- similar items -------------------------------------------------------------------------------
def test_similar_items_by_method(client: TestClient, buyer: str) -> None:
    item = client.get(f"/users/{buyer}/recommendations", params={"k": 1}).json()["items"][0]
    for method in ("copurchase", "content", "collaborative", "auto"):
        body = client.get(
            f"/items/{item['item_id']}/similar", params={"k": 4, "method": method}
        ).json()
        assert body["found"] is True
        assert body["item_id"] == item["item_id"]
        assert body["method"] in ("copurchase", "content", "collaborative")
        if method != "auto":
            assert body["method"] == method
        ids = [i["item_id"] for i in body["items"]]
        assert item["item_id"] not in ids
        assert len(ids) == len(set(ids)) <= 4
        assert all(i["reason"] for i in body["items"])
    content = client.get(f"/items/{item['item_id']}/similar", params={"method": "content"})
    assert len(content.json()["items"]) == 10
    assert all("similar to" in i["reason"] for i in content.json()["items"])


def test_similar_unknown_item_and_bad_queries(client: TestClient) -> None:
    body = client.get("/items/no-such-item/similar").json()
    assert body["found"] is False
    assert body["items"] == []
    assert "method" in _error(client.get("/items/x/similar", params={"method": "magic"}), 422)
    assert "k" in _error(client.get("/items/x/similar", params={"k": 5000}), 422)


# -- catalogue, search, users --------------------------------------------------------------------
def test_items_and_item_detail(client: TestClient, lake: Lake) -> None:
    listing = client.get("/items", params={"limit": 5, "offset": 2}).json()
    assert listing["total"] == lake.items().height
    assert len(listing["items"]) == 5
    category = listing["items"][0]["category"]
    same = client.get("/items", params={"category": category, "limit": 1000}).json()
    assert same["total"] == lake.items().filter(pl.col("category") == category).height
    assert all(i["category"] == category for i in same["items"])
    item_id = listing["items"][0]["item_id"]
    detail = client.get(f"/items/{item_id}").json()
    assert detail["item_id"] == item_id
    assert detail["attributes"]["brand"]
    assert "not in the catalogue" in _error(client.get("/items/nope"), 404)
    assert "limit" in _error(client.get("/items", params={"limit": 0}), 422)
    assert "offset" in _error(client.get("/items", params={"offset": -1}), 422)


def test_search(client: TestClient, lake: Lake) -> None:
    items = lake.items()
    title = str(items.item(0, "title"))
    word = title.split()[-2]  # e.g. "Smartphone"
    body = client.get("/search", params={"q": word.lower(), "limit": 1000}).json()
    expected = items.filter(
        pl.concat_str(["title", "category", "attributes", "text"], ignore_nulls=True)
        .str.to_lowercase()
        .str.contains(word.lower(), literal=True)
    ).height
    assert body["total"] == expected > 0
    brand = json.loads(str(items.item(0, "attributes")))["brand"]
    branded = client.get("/search", params={"brand": brand, "max_price": 1e9, "limit": 100})
    assert branded.json()["total"] >= 1
    assert all(i["title"].startswith(brand) for i in branded.json()["items"])
    by_attr = client.get("/search", params={"attr": f"brand={brand}", "limit": 100}).json()
    assert by_attr["total"] == branded.json()["total"]
    assert client.get("/search", params={"q": "zzzqqq-nothing"}).json()["total"] == 0
    assert "attr" in _error(client.get("/search", params={"attr": "no-equals"}), 422)
    assert "year_min" in _error(client.get("/search", params={"year_min": 10}), 422)
    assert "q" in _error(client.get("/search", params={"q": "x" * 201}), 422)


def test_a_user_profile_needs_the_key_or_the_users_sign_in(client: TestClient, buyer: str) -> None:
    # personal data (e-mail, city, coordinates, activity): nothing without the key
    assert "API key" in _error(client.get(f"/users/{buyer}"), 401)
    assert "not valid" in _error(client.get(f"/users/{buyer}", headers={"X-API-Key": "wrong"}), 403)
    # a cookie that only names the user is not a sign-in
    client.cookies.set("shoprec_user", buyer)
    assert "API key" in _error(client.get(f"/users/{buyer}"), 401)
    client.cookies.clear()
    private = client.get(f"/users/{buyer}", headers=KEY).json()
    assert private["user_id"] == buyer
    assert private["in_model"] is True
    assert private["email"].endswith("@example.com")
    assert "unknown" in _error(client.get("/users/nobody-at-all", headers=KEY), 404)


# -- events --------------------------------------------------------------------------------------
def test_events_need_a_valid_key(client: TestClient) -> None:
    event = {"user_id": "u1", "item_id": "P000001", "event_type": "view"}
    assert "X-API-Key" in _error(client.post("/events", json=event), 401)
    assert "not valid" in _error(
        client.post("/events", json=event, headers={"X-API-Key": "x"}), 403
    )


def test_events_refused_when_no_keys_are_configured(tmp_path: Path) -> None:
    settings = load_settings(workspace=tmp_path)
    with TestClient(create_app(settings, web=False)) as keyless:
        event = {"user_id": "u1", "item_id": "i1", "event_type": "view"}
        assert "SHOPREC_API_KEYS" in _error(keyless.post("/events", json=event, headers=KEY), 403)


def test_a_view_changes_the_next_recommendations(
    client: TestClient, shop: Settings, browser_user: str
) -> None:
    user = browser_user
    before = client.get(f"/users/{user}/recommendations", params={"k": 10}).json()["items"]
    shown = {i["category"] for i in before}
    elsewhere = client.get("/items", params={"limit": 1000}).json()["items"]
    viewed = next(i["item_id"] for i in elsewhere if i["category"] not in shown)
    response = client.post(
        "/events",
        json={"user_id": user, "item_id": viewed, "event_type": "view", "context": {"a": 1}},
        headers=KEY,
    )
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["accepted"] == 1
    assert accepted["event_ids"][0].startswith("api-")
    applied = wait_for(
        lambda: (
            {"item_id": viewed, "event_type": "view"}
            in client.get(f"/users/{user}", headers=KEY).json()["recent"]
        )
    )
    assert applied, "the worker did not apply the event within 10 s"
    after = client.get(f"/users/{user}/recommendations", params={"k": 10}).json()["items"]
    assert [i["item_id"] for i in after] != [i["item_id"] for i in before]
    # Nothing accepted is lost: the worker appended it to the lake, once, on its schedule.
    worker = client.app.state.service.worker  # type: ignore[attr-defined]
    assert worker.flush_seconds == shop.serving.lake_flush_seconds == 0.5
    event_id = accepted["event_ids"][0]
    assert wait_for(
        lambda: Lake(shop.workspace).events().filter(pl.col("event_id") == event_id).height == 1
    ), "the event did not reach the lake within 10 s"


def test_the_next_read_reflects_a_click_without_waiting_for_the_worker(
    shop: Settings, buyer: str, tmp_path: Path
) -> None:
    # No worker at all: the API applies what it accepts to the live state itself, and the
    # event still waits on the bus for a worker (vectors, lake, acknowledgement).
    with TestClient(create_app(_copy_of(shop, tmp_path, worker=False), web=False)) as alone:
        before = alone.get(f"/users/{buyer}/recommendations").json()["live_events"]
        event = {"user_id": buyer, "item_id": "P000002", "event_type": "view"}
        assert alone.post("/events", json=event, headers=KEY).status_code == 202
        after = alone.get(f"/users/{buyer}/recommendations").json()
        assert after["live_events"] == before + 1
        service = alone.app.state.service  # type: ignore[attr-defined]
        assert service.bus.backlog() + service.bus.pending() >= 1


def test_a_stored_vector_that_misses_a_click_is_not_used(
    shop: Settings, buyer: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deployment whose worker runs elsewhere: the worker stored the user's vectors folded in
    # from their history then; a click accepted since must count in the collaborative and
    # content generators too, before the worker folds it in.
    with TestClient(create_app(_copy_of(shop, tmp_path, worker=False), web=False)) as alone:
        service = alone.app.state.service  # type: ignore[attr-defined]
        engine = service.engine
        given: list[dict[str, np.ndarray]] = []
        recommend = engine.recommend

        def spy(*args: Any, **options: Any) -> Any:
            given.append(dict(options.get("vectors") or {}))
            return recommend(*args, **options)

        monkeypatch.setattr(engine, "recommend", spy)
        path = f"/users/{buyer}/recommendations"
        first = {"user_id": buyer, "item_id": "P000002", "event_type": "view"}
        assert alone.post("/events", json=first, headers=KEY).status_code == 202
        then = service.state.recent(buyer)
        stale = engine.live_vectors(buyer, then)
        assert stale, "the model has generators with live vectors"
        service.state.set_vectors(
            [(buyer, name, vector) for name, vector in stale.items()], {buyer: then}
        )
        # while the history is the one they were folded in from, the stored vectors serve
        assert alone.get(path).status_code == 200
        assert given[-1].keys() == stale.keys()
        for name, vector in stale.items():
            np.testing.assert_array_equal(given[-1][name], vector)

        second = {"user_id": buyer, "item_id": "P000007", "event_type": "purchase"}
        assert alone.post("/events", json=second, headers=KEY).status_code == 202
        now = service.state.recent(buyer)
        fresh = engine.live_vectors(buyer, now)
        assert any(not np.allclose(fresh[name], stale[name]) for name in stale)
        answer = alone.get(path).json()
        assert answer["live_events"] == len(now)
        assert given[-1] == {}  # the engine folds the whole history in itself
        expected = recommend(buyer, 10, history=now, vectors=fresh)
        assert [i["item_id"] for i in answer["items"]] == [r.item_id for r in expected.items]
        scores = [i["score"] for i in answer["items"]]
        assert scores == pytest.approx([r.score for r in expected.items], rel=1e-5)


def test_the_worker_stores_vectors_based_on_the_history_it_folded_in(
    client: TestClient, buyer: str
) -> None:
    engine = client.app.state.service.engine  # type: ignore[attr-defined]
    bus, state = MemoryBus(), MemoryLiveState()
    worker = Worker(bus, state, None, engine=lambda: engine)  # refreshes vectors by default
    events = [
        {"event_id": f"w{n}", "user_id": buyer, "item_id": item, "event_type": "view"}
        for n, item in enumerate(["P000003", "P000005"])
    ]
    bus.publish([{**e, "ts": datetime.now(UTC).isoformat()} for e in events])
    worker.run(until_idle=True, max_seconds=30)
    history, vectors = state.live_user(buyer, engine.vector_names())
    assert history == [("P000003", "view"), ("P000005", "view")]
    expected = engine.live_vectors(buyer, history)
    assert expected
    assert vectors.keys() == expected.keys()
    for name, vector in expected.items():
        np.testing.assert_allclose(vectors[name], vector, rtol=1e-6)
    bus.close()


def test_a_new_user_becomes_warm_after_events(client: TestClient, buyer: str) -> None:
    history = client.get(f"/users/{buyer}/recommendations", params={"k": 3}).json()["items"]
    batch = [
        {"user_id": "fresh-shopper", "item_id": i["item_id"], "event_type": "purchase"}
        for i in history
    ]
    assert client.post("/events", json=batch, headers=KEY).json()["accepted"] == 3
    assert wait_for(
        lambda: len(client.get("/users/fresh-shopper", headers=KEY).json()["recent"]) == 3
    )
    body = client.get("/users/fresh-shopper/recommendations", params={"k": 5}).json()
    assert body["found"] is True
    assert body["cold_start"] is False
    assert len(body["items"]) == 5
    assert not any(i["reason"].startswith("cold start") for i in body["items"])


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"item_id": "P1", "event_type": "view"}, "user_id"),
        ({"user_id": "u", "item_id": "P1", "event_type": "Bad Type!"}, "event_type"),
        ({"user_id": "u", "item_id": "P1", "event_type": "teleport"}, "unknown event type"),
        ({"user_id": "u", "event_type": "view"}, "item_id"),
        ({"user_id": "", "item_id": "P1", "event_type": "view"}, "user_id"),
        ({"user_id": "u\x00v", "item_id": "P1", "event_type": "view"}, "user_id"),
        ({"user_id": "u", "item_id": "P\n1", "event_type": "view"}, "item_id"),
        ({"user_id": "u", "item_id": "P1", "event_type": "view", "price": -3}, "price"),
        ({"user_id": "u", "item_id": "P1", "event_type": "view", "colour": "red"}, "colour"),
        ({"user_id": "u", "item_id": "P1", "event_type": "view", "ts": "yesterday"}, "ts"),
        (
            {
                "user_id": "u",
                "item_id": "P1",
                "event_type": "view",
                "ts": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            },
            "ts",
        ),
        (
            {
                "user_id": "u",
                "item_id": "P1",
                "event_type": "view",
                "context": {f"k{i}": i for i in range(40)},
            },
            "context",
        ),
    ],
)
def test_bad_events_are_rejected_naming_the_field(
    client: TestClient, event: dict[str, object], field: str
) -> None:
    assert field in _error(client.post("/events", json=event, headers=KEY), 422)


def test_event_batches_are_bounded(client: TestClient) -> None:
    one = {"user_id": "u", "item_id": "P000001", "event_type": "view"}
    assert "at most 1000" in _error(client.post("/events", json=[one] * 1001, headers=KEY), 413)
    assert "empty" in _error(client.post("/events", json=[], headers=KEY), 422)
    huge = b'{"user_id": "' + b"u" * (9 * 1024 * 1024) + b'"}'
    headers = {**KEY, "Content-Type": "application/json"}
    assert "larger than" in _error(client.post("/events", content=huge, headers=headers), 413)
    broken = client.post("/events", content=b"{not json", headers=headers)
    assert "JSON" in _error(broken, 422)


# -- registry ------------------------------------------------------------------------------------
def test_runs_reload_and_publish(client: TestClient, shop: Settings) -> None:
    listed = client.get("/runs").json()
    assert listed["current"] == current_run(shop.workspace)[0]
    assert [r["run_id"] for r in listed["runs"] if r["current"]] == [listed["current"]]
    assert "X-API-Key" in _error(client.post("/admin/reload"), 401)
    assert client.post("/admin/reload", headers=KEY).json() == {
        "reloaded": False,
        "run_id": listed["current"],
    }
    assert "no such run" in _error(client.post("/admin/publish/nope", headers=KEY), 404)
    assert "run_id" in _error(client.post("/admin/publish/.hidden", headers=KEY), 422)
    again = client.post(f"/admin/publish/{listed['current']}", headers=KEY).json()
    assert again["run_id"] == listed["current"]


# -- pairwise scoring ----------------------------------------------------------------------------
MARKET_ITEMS = [
    ("L1", "listing", "Senior Python developer, data platform", "jobs"),
    ("L2", "listing", "Pastry chef for a busy bakery", "jobs"),
    ("L3", "listing", "Python backend engineer, APIs and data", "jobs"),
    ("C1", "candidate", "Python developer with data engineering experience", "people"),
    ("C2", "candidate", "Baker and pastry chef, ten years in bakeries", "people"),
    ("C3", "candidate", "Backend engineer: Python APIs, PostgreSQL, data", "people"),
]


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A marketplace with listings and candidates, and a content model for embeddings."""
    workspace = tmp_path_factory.mktemp("market")
    items = pl.DataFrame(
        MARKET_ITEMS, schema=["item_id", "entity_type", "title", "category"], orient="row"
    )
    items.write_csv(workspace / "items.csv")
    events = pl.DataFrame(
        {
            "user_id": [f"u{n % 4}" for n in range(24)],
            "item_id": [MARKET_ITEMS[n % 6][0] for n in range(24)],
            "event_type": ["view"] * 24,
            "ts": [f"2025-01-{1 + n % 20:02d}T10:00:00Z" for n in range(24)],
        }
    )
    events.write_csv(workspace / "events.csv")
    ingest([workspace / "items.csv"], "csv", workspace=workspace)
    ingest([workspace / "events.csv"], "csv", workspace=workspace)
    settings = load_settings(
        workspace=workspace,
        models={"popular": {"kind": "popular"}, "content": {"kind": "content"}},
        default_model="popular",
        api_keys=[API_KEY],
    )
    lake = Lake(workspace)
    build(lake.events(), settings, items=lake.items())
    with TestClient(create_app(settings, web=False)) as test_client:
        yield test_client


def test_score_cosine_between_entity_types(
    market: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    request = {
        "algo": "cosine-sim",
        "type": "listing-candidate",
        "item": ["L1", "L2"],
        "items2": ["C1", "C2", "C3"],
    }
    with caplog.at_level(logging.INFO, logger="shoprec.score"):
        body = market.post("/score", json=request).json()
    assert body["status"] == "success"
    assert body["type"] == "listing-candidate"
    assert body["algo"] == "cosine-sim"
    assert [r["entity"] for r in body["results"]] == ["L1", "L2"]
    first, second = body["results"]
    assert first["entity_type"] == "listing"
    assert first["match_entity_type"] == "candidate"
    assert first["matched_entities"] == ["C1", "C2", "C3"]
    assert datetime.fromisoformat(first["created_at"]).tzinfo is not None
    # The Python listing is closest to a Python candidate, the bakery to the baker.
    assert int(np.argmax(first["scores"])) in (0, 2)
    assert int(np.argmax(second["scores"])) == 1
    assert all(-1.0 - 1e-6 <= s <= 1.0 + 1e-6 for s in first["scores"] + second["scores"])
    logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "shoprec.score"]
    assert logged[-1]["request_id"] == body["request_id"]
    assert logged[-1]["items"] == ["L1", "L2"]
    assert logged[-1]["matched"] == ["C1", "C2", "C3"]
    matrix = decode_logged_scores(logged[-1])
    assert matrix.shape == (2, 3)
    np.testing.assert_allclose(matrix[0], first["scores"], atol=1e-5)
    np.testing.assert_allclose(matrix[1], second["scores"], atol=1e-5)


def test_score_euclidean_and_self_similarity(market: TestClient) -> None:
    same = market.post(
        "/score",
        json={"algo": "cosine-sim", "type": "listing-listing", "item": ["L1"], "items2": ["L1"]},
    ).json()
    assert same["results"][0]["scores"] == [pytest.approx(1.0, abs=1e-5)]
    distance = market.post(
        "/score",
        json={
            "algo": "euclidean",
            "type": "candidate-candidate",
            "item": ["C1"],
            "items2": ["C1", "C2", "C3"],
        },
    ).json()["results"][0]["scores"]
    assert distance[0] == pytest.approx(0.0, abs=1e-3)
    assert distance[1] > distance[2] > 0  # the baker is further from C1 than the engineer


def test_score_reports_unknown_and_mistyped_ids_per_entity(market: TestClient) -> None:
    body = market.post(
        "/score",
        json={
            "algo": "cosine-sim",
            "type": "listing-candidate",
            "item": ["L1", "nope", "C1", 42],
            "items2": ["C1", "missing", "L2"],
        },
    ).json()
    assert body["status"] == "partial"
    status = {r["entity"]: r["status"] for r in body["results"]}
    assert status == {
        "L1": "ok",
        "nope": "not_found",
        "C1": "wrong_type: is a candidate",
        42: "not_found",
    }
    assert body["results"][0]["matched_entities"] == ["C1"]
    assert len(body["results"][0]["scores"]) == 1
    assert body["unmatched"] == [
        {"entity": "missing", "status": "not_found"},
        {"entity": "L2", "status": "wrong_type: is a listing"},
    ]
    # written as JSON straight from the scores: exactly the documented model's shape
    assert list(body) == list(ScoreResponse.model_fields)
    for result in body["results"]:
        assert list(result) == list(ScoreResult.model_fields)
    assert ScoreResponse.model_validate(body).model_dump(mode="json") == body
    assert body["results"][1]["scores"] == body["results"][1]["matched_entities"] == []


def _python_scores(market: TestClient, listing: str) -> list[float]:
    body = market.post(
        "/score",
        json={
            "algo": "cosine-sim",
            "type": "listing-candidate",
            "item": [listing],
            "items2": ["C1", "C2", "C3"],
        },
    ).json()
    assert body["results"][0]["status"] == "ok", body
    scores: list[float] = body["results"][0]["scores"]
    return scores


def test_items_posted_between_builds_are_scored_at_once(market: TestClient) -> None:
    new = {
        "item_id": "L9",
        "entity_type": "listing",
        "title": "Pastry chef and baker for a bakery",
        "category": "jobs",
    }
    assert "X-API-Key" in _error(market.post("/items", json=new), 401)
    answer = market.post("/items?wait=5", json=new, headers=KEY)
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 1, "item_ids": ["L9"], "embedded": 1}
    scores = _python_scores(market, "L9")
    assert int(np.argmax(scores)) == 1  # the baker
    # the worker's provider call is counted on /metrics
    assert (
        'shoprec_embedding_calls_total{outcome="ok",provider="tfidf"}'
        in market.get("/metrics").text
    )
    # A changed item is scored by its new content, before any rebuild.
    before = _python_scores(market, "L2")
    changed = {**new, "item_id": "L2", "title": "Senior Python developer, data platform"}
    assert market.post("/items?wait=5", json=[changed], headers=KEY).json()["embedded"] == 1
    after = _python_scores(market, "L2")
    assert int(np.argmax(before)) == 1
    assert int(np.argmax(after)) in (0, 2)
    # the worker also stored both in the lake: the next build sees them
    workspace = market.app.state.service.workspace  # type: ignore[attr-defined]
    titles = dict(Lake(workspace).items().select("item_id", "title").iter_rows())
    assert titles["L9"] == new["title"]
    assert titles["L2"] == changed["title"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"entity_type": "listing"}, "item_id"),
        ({"item_id": "x", "price": -1}, "price"),
        ({"item_id": "x", "entity_type": "bad type"}, "entity_type"),
        ({"item_id": "x", "colour": "red"}, "colour"),
        ([], "empty"),
    ],
)
def test_bad_items_are_rejected_naming_the_field(
    market: TestClient, body: object, field: str
) -> None:
    assert field in _error(market.post("/items", json=body, headers=KEY), 422)


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        ({"algo": "dot", "type": "a-b", "item": ["x"], "items2": ["y"]}, "algo"),
        ({"algo": "euclidean", "type": "listing", "item": ["x"], "items2": ["y"]}, "type"),
        ({"algo": "euclidean", "type": "a-b", "item": [], "items2": ["y"]}, "item"),
        ({"algo": "euclidean", "type": "a-b", "item": ["x"]}, "items2"),
        ({"algo": "euclidean", "type": "a-b", "item": ["x"] * 10_001, "items2": ["y"]}, "item"),
        ({"algo": "euclidean", "type": "a-b", "item": [-1], "items2": ["y"]}, "item"),
        ({"algo": "euclidean", "type": "a-b", "item": ["x"], "items2": ["y"], "k": 1}, "k"),
    ],
)
def test_score_bad_requests(
    market: TestClient, request_body: dict[str, object], field: str
) -> None:
    assert field in _error(market.post("/score", json=request_body), 422)


def test_json_answers_write_nan_and_infinity_as_null() -> None:
    from shoprec.serving.lists import to_json

    assert to_json({"a": float("nan"), "b": [float("inf"), 1.5]}) == b'{"a":null,"b":[null,1.5]}'
