"""The storefront pages, through FastAPI's test client."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from fastapi.testclient import TestClient

from shoprec.config import Settings, load_settings
from shoprec.data.lake import Lake
from shoprec.serving.app import create_app
from shoprec.serving.catalogue import SearchQuery
from shoprec.serving.engine import Engine
from shoprec.serving.service import Service
from shoprec.serving.storefront import COOKIE

ITEM_LINK = re.compile(r'href="/shop/items/([^"]+)"')
CARD = re.compile(
    r'<li class="card">.*?href="/shop/items/([^"]+)".*?(?:<span class="reason">(.*?)</span>|</li>)',
    re.S,
)


@pytest.fixture
def client(shop: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(shop)) as client:
        yield client


def _service(client: TestClient) -> Service:
    service: Service = client.app.state.service  # type: ignore[attr-defined]
    return service


def _engine(client: TestClient) -> Engine:
    return _service(client).engine


def _section(html: str, section_id: str) -> str:
    start = html.index(f'id="{section_id}"')
    end = html.find("</section>", start)
    return html[start:end]


def _listed(html: str, section_id: str = "recommendations") -> list[str]:
    return ITEM_LINK.findall(_section(html, section_id))


def _cards(html: str) -> list[tuple[str, str | None]]:
    """(item id, reason) of each recommendation on a home page."""
    return [
        (item, reason or None) for item, reason in CARD.findall(_section(html, "recommendations"))
    ]


def _sign_in(client: TestClient, login: str) -> None:
    response = client.post("/shop/login", data={"login": login}, follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"


def _new_user(engine: Engine) -> str:
    """A user of the directory the model has never seen (a cold start when signed in)."""
    users = sorted(engine.users.profiles)
    known = engine.model.user_ids_.to_index(users)
    return next(u for u, index in zip(users, known, strict=True) if index < 0)


def test_home_for_a_visitor_is_a_cold_start_list_with_links(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert 'data-cold-start="yes"' in html
    assert "Cold start" in html
    assert "you are not signed in" in html
    assert "Demo sign-in" in html  # the demo login is marked as such on every page
    items = _listed(html)
    assert len(items) == 12
    expected = _engine(client).recommend("", 12)
    assert items == [r.item_id for r in expected.items]
    assert expected.items[0].reason in html
    assert client.get(f"/shop/items/{items[0]}").status_code == 200
    assert client.get("/shop/static/style.css").headers["content-type"].startswith("text/css")


def test_sign_in_by_id_shows_personal_recommendations(client: TestClient) -> None:
    _sign_in(client, "U0000001")
    assert _service(client).signed_in(client.cookies.get(COOKIE)) == "U0000001"
    html = client.get("/").text
    assert "Signed in as <strong>U0000001</strong>" in html
    assert "demo login" in html
    assert "user1@example.com" in html  # the signed-in user sees their own e-mail
    assert 'data-cold-start="no"' in html
    engine = _engine(client)
    expected = engine.recommend("U0000001", 12)
    assert _listed(html) == [r.item_id for r in expected.items]
    for reason in {r.reason for r in expected.items}:
        assert reason in html
    # The API shows the e-mail to the signed-in user, and to no other.
    assert client.get("/users/U0000001").json()["email"] == "user1@example.com"
    assert client.get("/users/U0000002").status_code == 401


def test_sign_in_by_email_ignores_case_and_spaces(client: TestClient) -> None:
    _sign_in(client, "  User2@Example.com ")
    assert _service(client).signed_in(client.cookies.get(COOKIE)) == "U0000002"
    assert "Signed in as <strong>U0000002</strong>" in client.get("/").text


@pytest.mark.parametrize(
    ("login", "status", "message"),
    [
        ("nobody@example.com", 404, "No shopper has the e-mail address or user id"),
        ("   ", 400, "Type an e-mail address or a user id"),
        ("x" * 400, 400, "at most 320"),
        ("<b>U1</b>", 404, "&lt;b&gt;U1&lt;/b&gt;"),
    ],
)
def test_a_bad_login_is_a_4xx_page_with_a_message(
    client: TestClient, login: str, status: int, message: str
) -> None:
    response = client.post("/shop/login", data={"login": login}, follow_redirects=False)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert message in response.text
    assert "<b>U1</b>" not in response.text
    assert client.cookies.get(COOKIE) is None


def test_sign_out_clears_the_cookie(client: TestClient) -> None:
    _sign_in(client, "U0000001")
    response = client.post("/shop/logout", follow_redirects=False)
    assert response.status_code == 303
    assert client.cookies.get(COOKIE) is None
    assert "Signed in as" not in client.get("/").text


@pytest.mark.parametrize("forged", ["not-a-user", "U0000001", "U0000001.9999999999.abc"])
def test_a_cookie_this_server_did_not_sign_is_a_visitor(client: TestClient, forged: str) -> None:
    client.cookies.set(COOKIE, forged)
    html = client.get("/").text
    assert "Signed in as" not in html
    assert 'data-cold-start="yes"' in html
    client.get("/shop/items/P000001")  # no view recorded for anyone
    assert _service(client).history("U0000001") == []
    assert client.get("/users/U0000001").status_code == 401


def test_a_signed_cookie_for_another_user_cannot_be_edited(client: TestClient) -> None:
    _sign_in(client, "U0000001")
    signed = client.cookies.get(COOKIE)
    assert signed is not None
    name, expiry, signature = signed.split(".")
    other = _service(client).sessions.sign("U0000002").split(".")[0]
    for edited in (f"{other}.{expiry}.{signature}", f"{name}.{int(expiry) + 9}.{signature}"):
        client.cookies.clear()
        client.cookies.set(COOKIE, edited)
        assert "Signed in as" not in client.get("/").text


def test_sign_in_disabled_by_the_settings(shop: Settings) -> None:
    settings = shop.model_copy(
        update={"serving": shop.serving.model_copy(update={"demo_login": False})}
    )
    with TestClient(create_app(settings)) as client:
        assert "Sign-in is disabled" in client.get("/shop/login").text
        response = client.post("/shop/login", data={"login": "U0000001"}, follow_redirects=False)
        assert response.status_code == 403
        assert "Sign-in is disabled" in response.text
        # a signed cookie from before is not honoured
        client.cookies.set(COOKIE, _service(client).sessions.sign("U0000001"))
        html = client.get("/").text
        assert "Signed in as" not in html
        assert "Demo sign-in" not in html
        client.get("/shop/items/P000001")
        assert _service(client).history("U0000001") == []


def test_search_text_and_filters(client: TestClient) -> None:
    engine = _engine(client)
    brand = str(engine.catalogue.attributes[0]["brand"])
    category = engine.catalogue.categories[0]
    response = client.get(
        "/shop/search",
        params={"q": "phone", "min_price": "10", "max_price": "900", "brand": brand},
    )
    assert response.status_code == 200
    total, ids = engine.catalogue.search(
        SearchQuery(text="phone", min_price=10, max_price=900, attributes={"brand": brand}), 24
    )
    assert total > 0
    assert f"{total} item" in response.text
    assert ITEM_LINK.findall(response.text) == ids
    assert f'<option value="{brand}" selected>' in response.text  # the form keeps the filter
    by_category = client.get("/shop/search", params={"category": category}).text
    total, ids = engine.catalogue.search(SearchQuery(category=category), 24)
    assert ITEM_LINK.findall(by_category) == ids
    assert "Brand" in by_category  # the catalogue has brands: a brand filter
    assert "Fuel" not in by_category
    assert "Year from" not in by_category


def test_search_pages_through_the_catalogue(client: TestClient) -> None:
    first = client.get("/shop/search").text
    assert "500 items found · page 1 of 21" in first
    assert 'href="/shop/search?page=2" rel="next"' in first
    last = client.get("/shop/search", params={"page": "21"}).text
    assert len(ITEM_LINK.findall(last)) == 500 - 20 * 24
    assert 'rel="next"' not in last
    nothing = client.get("/shop/search", params={"q": "zzzz-no-such-thing"}).text
    assert "0 items found" in nothing
    assert "No item matches" in nothing


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_price": "cheap"}, "min price &#39;cheap&#39; is not a number"),
        ({"max_price": "-3"}, "max price must be a number of 0 or more"),
        ({"max_price": "nan"}, "max price must be a number of 0 or more"),
        ({"min_price": "50", "max_price": "5"}, "the min price 50 is above the max price 5"),
        ({"year_min": "1066"}, "year from must be a whole number from 1800 to 2200"),
        ({"page": "0"}, "page must be a whole number"),
        ({"q": "x" * 300}, "the search text is 300 characters long"),
    ],
)
def test_bad_search_input_is_a_400_page(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    response = client.get("/shop/search", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert message in response.text
    assert '<form class="filters"' in response.text  # the form is there to correct it


def test_search_text_is_escaped(client: TestClient) -> None:
    html = client.get("/shop/search", params={"q": "<script>alert(1)</script>"}).text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def test_hostile_catalogue_text_is_escaped_on_every_page(shop: Settings, tmp_path: Path) -> None:
    """A shop's own catalogue is user-controlled text too (a marketplace's sellers type it):
    every title, category and brand carries markup, and no page renders it as markup."""
    workspace = tmp_path / "ws"
    shutil.copytree(shop.workspace, workspace, ignore=shutil.ignore_patterns("source", "stream"))
    lake = Lake(workspace)
    items = lake.items()
    hostile = items.with_columns(
        title=pl.lit(HOSTILE) + pl.col("item_id"),
        category=pl.lit(HOSTILE) + pl.col("category"),
    )
    hostile.write_parquet(lake.items_path)
    item_id = str(items.item(1, "item_id"))
    settings = load_settings(workspace=workspace)
    with TestClient(create_app(settings)) as client:
        pages = {
            "home": client.get("/"),
            "item": client.get(f"/shop/items/{item_id}"),
            "search": client.get("/shop/search", params={"q": "alert"}),
            "category": client.get("/shop/search", params={"category": HOSTILE + "x"}),
            "operator": client.get("/operator"),
        }
        assert client.get(f"/items/{item_id}").json()["title"] == HOSTILE + item_id  # kept as is
    for name, page in pages.items():
        assert page.status_code in (200, 400), (name, page.status_code)
        html = page.text
        assert "<script" not in html.lower(), name
        assert "<img src=x" not in html, name
        assert "script-src 'none'" in page.headers["content-security-policy"], name
    for name in ("home", "item", "search"):
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[name].text, name
    assert f"&lt;img src=x onerror=alert(2)&gt;{item_id}" in pages["item"].text


def test_item_page_shows_details_and_related_lists(client: TestClient) -> None:
    engine = _engine(client)
    item_id = "P000002"
    together = engine.similar(item_id, 8, "copurchase").items
    assert together  # the synthetic shop has baskets with this item
    html = client.get(f"/shop/items/{item_id}").text
    detail = engine.catalogue.detail(item_id)
    assert detail is not None
    assert f"<h1>{detail['title']}</h1>" in html
    assert str(detail["attributes"]["brand"]) in html
    assert f"{detail['price']:,.2f}" in html
    assert _listed(html, "related-copurchase") == [r.item_id for r in together]
    assert together[0].reason in html
    similar = engine.similar(item_id, 8, "content").items
    assert _listed(html, "related-content") == [r.item_id for r in similar]
    assert "Similar items" in html
    assert "Bought together" in html
    assert "related-collaborative" in html
    assert "Your view of this item was recorded" not in html  # a visitor records nothing
    assert _service(client).state.applied_count() == 0


def test_an_unknown_item_is_a_friendly_404(client: TestClient) -> None:
    response = client.get("/shop/items/<i>nope</i>")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "is not in the catalogue" in response.text
    assert "<i>nope</i>" not in response.text
    assert client.get(f"/shop/items/{'x' * 500}").status_code == 404


def test_viewing_an_item_turns_a_cold_start_into_recommendations(client: TestClient) -> None:
    service = _service(client)
    user = _new_user(service.engine)
    _sign_in(client, user)
    before = client.get("/").text
    assert 'data-cold-start="yes"' in before
    assert "we know nothing of your taste yet" in before
    assert 'id="recent"' not in before
    viewed = "P000001"
    page = client.get(f"/shop/items/{viewed}").text
    assert "Your view of this item was recorded" in page
    assert service.history(user) == [(viewed, "view")]
    lake = Lake(service.workspace)
    deadline = time.monotonic() + 10
    logged = lake.events().filter(pl.col("user_id") == user)
    while logged.height == 0 and time.monotonic() < deadline:  # the worker flushes each second
        time.sleep(0.05)
        logged = lake.events().filter(pl.col("user_id") == user)
    assert logged.select("item_id", "event_type", "source").rows() == [(viewed, "view", "api")]
    after = client.get("/").text
    assert 'data-cold-start="no"' in after
    assert "Cold start" not in after
    expected = service.recommendations(service.engine, user, 12)
    assert _cards(after) == [(r.item_id, r.reason) for r in expected.items]
    assert _cards(after) != _cards(before)
    assert all(reason and reason.startswith("cold start") for _, reason in _cards(before))
    assert not any(reason and reason.startswith("cold start") for _, reason in _cards(after))
    assert _listed(after, "recent") == [viewed]


def test_a_known_users_home_reflects_the_view(client: TestClient) -> None:
    service = _service(client)
    _sign_in(client, "U0000005")
    before = _cards(client.get("/").text)
    assert before == [(r.item_id, r.reason) for r in service.engine.recommend("U0000005", 12).items]
    client.get("/shop/items/P000259")
    after = client.get("/").text
    # What the view changes depends on the model; the page shows the list with it folded in.
    expected = service.recommendations(service.engine, "U0000005", 12)
    assert service.history("U0000005") == [("P000259", "view")]
    assert _cards(after) == [(r.item_id, r.reason) for r in expected.items]
    assert _listed(after, "recent") == ["P000259"]


def test_operator_page_shows_the_run_and_the_runs(client: TestClient) -> None:
    engine = _engine(client)
    response = client.get("/operator")
    assert response.status_code == 200
    html = response.text
    assert f"Serving run <code>{engine.run_id}</code>" in html
    assert engine.model_name in html
    assert f"{engine.manifest['data']['events']:,}" in html
    assert "This run has no metrics" in html  # the shop was built without an evaluation
    runs = _section(html, "runs")
    assert runs.count("published") == 1
    assert f"<td>{engine.manifest['n_items']:,}</td>" in runs
    assert f"<td>{engine.manifest['n_users']:,}</td>" in runs
    assert "not evaluated" in runs
    report = client.get("/operator/report")
    assert report.status_code == 404
    assert "has no evaluation report" in report.text


def _evaluated_copy(shop: Settings, workspace: Path) -> tuple[Settings, str]:
    """A copy of the shop whose run has metrics and a report, as an evaluated build writes."""
    shutil.copytree(shop.workspace, workspace, ignore=shutil.ignore_patterns("source", "stream"))
    run_id = (workspace / "models" / "CURRENT").read_text().strip()
    manifest_path = workspace / "models" / run_id / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["metrics"] = {
        "two_stage": {"precision@10": 0.1234, "ndcg@10": 0.3456, "coverage@10": 0.5},
        "popular": {"precision@10": 0.0456, "ndcg@10": 0.1111, "coverage@10": 0.02},
    }
    manifest["evaluation"] = {"split": "time", "k": 10, "test_users": 321}
    manifest_path.write_text(json.dumps(manifest))
    report = workspace / "models" / run_id / "report"
    report.mkdir()
    (report / "report.html").write_text("<html><body><h1>the run report</h1></body></html>")
    return load_settings(workspace=workspace), run_id


def test_operator_page_shows_metrics_and_serves_the_report(shop: Settings, tmp_path: Path) -> None:
    settings, run_id = _evaluated_copy(shop, tmp_path / "ws")
    with TestClient(create_app(settings)) as client:
        html = client.get("/operator").text
        table = html[html.index('<table class="metrics">') : html.index("</table>")]
        assert "<th>ndcg@10</th>" in table
        assert "0.3456" in table
        assert "0.0456" in table
        assert '<tr class="served"><th>two_stage</th>' in table
        assert "321 test users" in html
        assert 'src="/operator/report"' in html
        runs = _section(html, "runs")
        assert "ndcg@10 0.3456" in runs
        assert "precision@10 0.1234" in runs
        assert f'href="/operator/runs/{run_id}/report"' in runs
        for url in ("/operator/report", f"/operator/runs/{run_id}/report"):
            response = client.get(url)
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/html")
            assert "the run report" in response.text
        for bad in ("no-such-run", "%2E%2E", "..%2F..%2Flake", "x" * 300):
            assert client.get(f"/operator/runs/{bad}/report").status_code == 404


def test_without_a_published_run_the_pages_say_so(tmp_path: Path) -> None:
    settings = load_settings(workspace=tmp_path / "empty")
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"demo_login": True})}
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/ready").status_code == 503
        for url in ("/", "/shop/search", "/shop/items/P000001"):
            response = client.get(url)
            assert response.status_code == 503, url
            assert response.headers["content-type"].startswith("text/html")
            assert "The shop is not open yet" in response.text
        operator = client.get("/operator")
        assert operator.status_code == 200
        assert "No run is published" in operator.text
        assert "No runs in this workspace yet" in operator.text
        assert client.get("/operator/report").status_code == 404
        assert client.get("/shop/login").status_code == 200
        response = client.post("/shop/login", data={"login": "U0000001"})
        assert response.status_code == 503
        assert "The shop is not open yet" in response.text
