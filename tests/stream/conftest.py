"""Fixtures of the real-time tests: a Redis to test against, or a clear reason why not."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis

REDIS_URL_VARIABLE = "SHOPREC_TEST_REDIS_URL"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def _base_redis_url() -> str:
    """``$SHOPREC_TEST_REDIS_URL``, checked to answer PING.

    Unset: skipped, except under CI where it fails; set but unreachable: always fails (a Redis
    the tests were pointed at must not be skipped silently).
    """
    url = os.environ.get(REDIS_URL_VARIABLE, "").strip()
    if not url:
        if _in_ci():
            pytest.fail(f"{REDIS_URL_VARIABLE} is not set; CI must run the Redis tests")
        pytest.skip(f"{REDIS_URL_VARIABLE} is not set (e.g. redis://127.0.0.1:6379/15)")
    client = redis.Redis.from_url(url.split("?", 1)[0], socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"{REDIS_URL_VARIABLE}={url} cannot be reached: {exc}")
    finally:
        client.close()
    return url


def delete_keys(url: str, prefix: str) -> None:
    """SCAN + DEL every key starting with ``prefix`` (glob characters taken literally)."""
    literal = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix)
    client = redis.Redis.from_url(url.split("?", 1)[0])
    try:
        keys = list(client.scan_iter(match=literal + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """``$SHOPREC_TEST_REDIS_URL`` with a stream name unique to the test.

    Yields e.g. ``redis://127.0.0.1:6379/15?stream=shoprec-test-<hex>:events``; afterwards every
    key starting with ``shoprec-test-<hex>`` (the stream, its ``:dead`` stream, and anything else
    a test puts under that name) is deleted.
    """
    base = _base_redis_url()
    token = f"shoprec-test-{uuid.uuid4().hex}"
    separator = "&" if urlsplit(base).query else "?"
    yield f"{base}{separator}stream={token}:events"
    delete_keys(base, token)
