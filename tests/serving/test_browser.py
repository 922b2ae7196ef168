"""The storefront in a real headless Chromium: sign in, search, open an item, come back home.

The app runs under uvicorn in a background thread on a free loopback port; Playwright's sync
API drives Debian's ``/usr/bin/chromium`` (never a downloaded browser). Each page is saved as a
screenshot in ``test-artifacts/browser/`` at the repository root. Under ``CI=true`` a missing
Chromium fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shoprec.config import Settings
from shoprec.serving.app import create_app
from shoprec.serving.service import Service
from tests.serving.conftest import running_server

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@dataclass
class Running:
    url: str
    service: Service


@pytest.fixture
def server(shop: Settings) -> Iterator[Running]:
    """The app with its storefront, served by uvicorn on a free port in a thread."""
    service = Service(shop)
    with running_server(create_app(shop, service=service)) as url:
        yield Running(url, service)


def _new_user(service: Service) -> str:
    """A shopper of the user file whom the model has never seen: a cold start until they
    browse."""
    engine = service.engine
    users = sorted(engine.users.profiles)
    known = engine.model.user_ids_.to_index(users)
    return next(u for u, index in zip(users, known, strict=True) if index < 0)


def test_sign_in_search_view_and_see_the_home_page_change(chromium: Path, server: Running) -> None:
    from playwright.sync_api import Page, expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    user = _new_user(server.service)
    email = server.service.engine.users.profiles[user]["email"]

    def shot(page: Page, name: str) -> None:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def cards(page: Page) -> list[str]:
        return [text.strip() for text in page.locator("#recommendations li.card").all_inner_texts()]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.set_default_timeout(20_000)

            page.goto(server.url + "/")
            expect(page.locator(".notice.cold")).to_contain_text("you are not signed in")
            expect(page.locator(".banner")).to_contain_text("Demo sign-in")
            shot(page, "1-home-visitor")

            page.get_by_role("link", name="Sign in demo").click()
            expect(page.locator("h1")).to_have_text("Sign in (demo)")
            page.get_by_label("E-mail or user id").fill("nobody@example.com")
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("alert")).to_contain_text("No shopper has")
            shot(page, "2-login-unknown")
            page.get_by_label("E-mail or user id").fill(email)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(server.url + "/")
            expect(page.locator(".signed-in")).to_contain_text(f"Signed in as {user}")
            expect(page.locator(".notice.cold")).to_contain_text("we know nothing of your taste")
            before = cards(page)
            assert len(before) == 12
            shot(page, "3-home-signed-in")

            page.get_by_role("link", name="Search", exact=True).click()
            page.locator(".filters input[name=q]").fill("phone")
            page.locator(".filters select[name=category]").select_option("electronics/phones")
            page.locator(".filters input[name=max_price]").fill("1000")
            page.locator(".filters button").click()
            expect(page.locator(".count")).to_contain_text("found")
            results = page.locator(".grid li.card a")
            assert results.count() > 0
            shot(page, "4-search")

            title = results.first.inner_text().strip()
            results.first.click()
            expect(page.locator("h1")).to_have_text(title)
            expect(page.locator("#related-copurchase h2")).to_have_text("Bought together")
            expect(page.locator("#related-content h2")).to_have_text("Similar items")
            expect(page.get_by_text("Your view of this item was recorded")).to_be_visible()
            item_id = page.url.rsplit("/", 1)[-1]
            shot(page, "5-item")

            page.get_by_role("link", name="Home").click()
            expect(page.locator("#recommendations")).to_have_attribute("data-cold-start", "no")
            expect(page.locator("#recent")).to_contain_text(title)
            after = cards(page)
            assert after != before  # the view changed the recommendations
            assert not any("cold start" in card for card in after)
            assert server.service.history(user) == [(item_id, "view")]
            shot(page, "6-home-after-view")

            page.goto(server.url + "/shop/search?min_price=cheap")
            expect(page.get_by_role("alert")).to_contain_text("is not a number")
            shot(page, "7-search-bad-price")

            page.get_by_role("link", name="Operator").click()
            expect(page.locator("#current h2")).to_contain_text(server.service.engine.run_id)
            shot(page, "8-operator")

            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("link", name="Sign in demo")).to_be_visible()
        finally:
            browser.close()
    saved = {path.name for path in ARTIFACTS.glob("*.png")}
    assert {"1-home-visitor.png", "5-item.png", "8-operator.png"} <= saved
