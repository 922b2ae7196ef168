"""The API's guards, each as a probe from outside would find it (SECURITY.md lists them)."""

from __future__ import annotations

import json
import logging
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import polars as pl
import pytest
from fastapi.testclient import TestClient

from shoprec.config import ServingSettings, Settings
from shoprec.serving.app import create_app
from shoprec.serving.middleware import MAX_BODY_BYTES
from shoprec.serving.schemas import MAX_SCORE_IDS
from shoprec.serving.scoring import MAX_LOGGED_SCORES
from shoprec.serving.security import HTML_HEADERS, SessionSigner, key_matches, session_secret
from tests.serving.conftest import API_KEY, running_server

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def url(shop: Settings) -> Iterator[str]:
    """The app behind a real HTTP server (a test client would read a body whole before
    sending it)."""
    with running_server(create_app(shop)) as base:
        yield base


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def item_ids(shop: Settings) -> list[str]:
    items = pl.read_parquet(shop.workspace / "lake" / "items.parquet", columns=["item_id"])
    return items.get_column("item_id").to_list()


@pytest.fixture(scope="module")
def emails(shop: Settings) -> list[str]:
    users = pl.read_parquet(shop.workspace / "lake" / "users.parquet")
    return [e for e in users.get_column("email").to_list() if e]


def _status(response: object, status: int) -> str:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    return str(response.json()["error"])  # type: ignore[attr-defined]


# -- keys ----------------------------------------------------------------------------------------
def test_keys_are_compared_whatever_their_bytes() -> None:
    assert key_matches("k1", ["k0", "k1"])
    assert not key_matches("k1 ", ["k1"])
    assert not key_matches("caf\xe9", ["cafe"])
    assert not key_matches(None, ["k1"])
    assert key_matches("caf\xe9", ["caf\xe9"])


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/admin/reload"), ("get", "/users/U0000001"), ("post", "/events")],
)
def test_a_non_ascii_key_is_refused_not_a_server_error(
    client: httpx.Client, method: str, path: str
) -> None:
    response = client.request(method, path, headers={"X-API-Key": b"caf\xe9"}, json={})
    assert _status(response, 403) == "the X-API-Key is not valid"


def _chunked(
    url: str, path: str, chunks: Iterator[bytes], headers: dict[str, str]
) -> tuple[int, str]:
    """POST ``chunks`` with chunked transfer encoding, stopping when the server stops taking
    them (it may answer before the body ends); its status and the start of its body. Every
    socket step is bounded in time."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Transfer-Encoding: chunked"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        connection.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for chunk in chunks:
            try:
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:  # refused part-way: the server stopped reading or closed
                break
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                part = connection.recv(65536)
                if not part:
                    break
                answer += part
        except OSError:
            pass
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part, "the server did not answer"
    return int(head_part.split(b" ", 2)[1]), body.decode("utf-8", "replace")


def _megabytes(count: int) -> Iterator[bytes]:
    yield b"[" + b" " * 999_999
    for _ in range(count - 1):
        yield b" " * 1_000_000


def test_the_key_is_checked_before_the_body_is_read(client: httpx.Client, url: str) -> None:
    # malformed JSON without a key: refused for the key, not parsed
    response = client.post("/events", content=b"{not json", headers={"content-type": "x"})
    assert "API key" in _status(response, 401)
    # 20 MB, chunked (no length declared): refused before it is read
    status, body = _chunked(url, "/events", _megabytes(20), {})
    assert status == 401, body
    assert "API key" in body


def test_a_chunked_body_over_the_limit_is_refused_part_way(client: httpx.Client, url: str) -> None:
    status, body = _chunked(url, "/events", _megabytes(20), KEY)
    assert status == 413, body
    # a declared length over the limit: refused before a byte of the body is sent
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(
            f"POST /score HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
        )
        assert connection.recv(65536).startswith(b"HTTP/1.1 413 ")


# -- the storefront's sign-in --------------------------------------------------------------------
def test_a_session_is_signed_and_expires(tmp_path: Path) -> None:
    signer = SessionSigner(session_secret(tmp_path))
    token = signer.sign("U0000001", now=1000.0)
    assert signer.user(token, now=1001.0) == "U0000001"
    assert signer.user(token, now=1000.0 + signer.seconds + 1) is None
    assert signer.user(token.replace(".", "x.", 1), now=1001.0) is None
    assert signer.user("U0000001", now=1001.0) is None
    assert signer.user("a.1.\xe9", now=1001.0) is None
    # another workspace has another secret; the same one keeps it
    assert SessionSigner(session_secret(tmp_path / "other")).user(token, now=1001.0) is None
    assert SessionSigner(session_secret(tmp_path)).user(token, now=1001.0) == "U0000001"
    secret = tmp_path / "secrets" / "session.key"
    assert secret.stat().st_mode & 0o077 == 0


def test_demo_sign_in_is_off_unless_asked_for(shop: Settings, tmp_path: Path) -> None:
    assert not ServingSettings().demo_login
    workspace = tmp_path / "copy"
    shutil.copytree(shop.workspace, workspace, ignore=shutil.ignore_patterns("stream"))
    serving = shop.serving.model_copy(update={"demo_login": False})
    off = shop.model_copy(update={"workspace": workspace, "serving": serving})
    with TestClient(create_app(off)) as client:
        response = client.post("/shop/login", data={"login": "U0000001"}, follow_redirects=False)
        assert response.status_code == 403
        assert "Sign-in is disabled" in client.get("/shop/login").text


# -- bounds on one request -----------------------------------------------------------------------
def test_score_lists_are_bounded(client: httpx.Client, item_ids: list[str]) -> None:
    body = {"algo": "cosine-sim", "type": "item-item", "item": item_ids[:1]}
    too_many = [f"x{n}" for n in range(MAX_SCORE_IDS + 1)]
    assert "items2" in _status(client.post("/score", json={**body, "items2": too_many}), 422)
    assert "item" in _status(client.post("/score", json={**body, "item": too_many}), 422)


def test_a_large_score_request_is_logged_without_its_matrix(
    client: httpx.Client, item_ids: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    side = min(len(item_ids), MAX_SCORE_IDS)
    assert side * side > MAX_LOGGED_SCORES
    body = {"algo": "cosine-sim", "type": "item-item", "item": item_ids[:side]}
    with caplog.at_level(logging.INFO, logger="shoprec.score"):
        response = client.post("/score", json={**body, "items2": item_ids[:side]})
    assert response.status_code == 200
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "shoprec.score"]
    assert len(lines) == 1
    assert lines[0]["scores_logged"] is False
    assert lines[0]["scores_f32"] == ""
    assert len(caplog.records[-1].getMessage()) < 200 * side


def test_a_long_digit_string_stays_a_string_id(client: httpx.Client) -> None:
    body = {"algo": "cosine-sim", "type": "item-item", "item": ["007"], "items2": ["0" * 201]}
    assert "items2" in _status(client.post("/score", json=body), 422)
    answer = client.post("/score", json={**body, "items2": ["007"]}).json()
    assert answer["results"][0]["entity"] == "007"


# -- what leaves the server ----------------------------------------------------------------------
def test_html_pages_carry_security_headers_and_cors_is_closed(client: httpx.Client) -> None:
    for path in ("/", "/shop/search?q=x", "/operator", "/shop/login"):
        page = client.get(path)
        assert page.headers["content-type"].startswith("text/html")
        for name, value in HTML_HEADERS.items():
            assert page.headers[name] == value, (path, name)
    cross = client.get("/health", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in cross.headers
    preflight = client.options(
        "/events",
        headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.headers["allow"] == "POST"


def test_no_personal_data_in_lists_scores_search_or_metrics(
    client: httpx.Client,
    shop: Settings,
    emails: list[str],
    item_ids: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert emails
    with caplog.at_level(logging.DEBUG):
        bodies = [
            client.get("/users/U0000001/recommendations", params={"k": 50}).text,
            client.get(f"/items/{item_ids[0]}/similar", params={"k": 50}).text,
            client.get("/search", params={"q": "", "limit": 100}).text,
            client.get("/items", params={"limit": 100}).text,
            client.post(
                "/score",
                json={
                    "algo": "euclidean",
                    "type": "item-item",
                    "item": item_ids[:5],
                    "items2": item_ids[:50],
                },
            ).text,
            client.get("/metrics").text,
            client.get("/runs").text,
            client.get("/", headers=KEY).text,
        ]
        client.post("/admin/reload", headers=KEY)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in [*bodies, logged]:
        assert not any(email in text for email in emails)
        assert "@example.com" not in text
        assert API_KEY not in text


def test_errors_do_not_show_the_servers_folders(client: httpx.Client, shop: Settings) -> None:
    folder = str(shop.workspace.resolve())
    responses = [
        client.post("/admin/publish/20990101T000000-none", headers=KEY),
        client.get("/operator/runs/nope/report"),
        client.get("/items/nope"),
    ]
    for response in responses:
        assert 400 <= response.status_code < 500
        assert folder not in response.text
        assert str(shop.workspace) not in response.text
