"""SIGTERM (a container's stop) drains the requests in flight before the server exits."""

from __future__ import annotations

import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .conftest import KEY, serving

SLOW_SECONDS = 3.0


def _slow(url: str, number: int) -> tuple[int, dict[str, object], float]:
    """``POST /items?wait=…`` that waits the whole time (no worker embeds the item)."""
    item = {"item_id": f"drain-{number}", "title": f"slow item {number}"}
    answer = httpx.post(
        f"{url}/items",
        params={"wait": SLOW_SECONDS},
        json=item,
        headers=KEY,
        timeout=60,
    )
    return answer.status_code, answer.json(), time.monotonic()


def _list(url: str, user: str) -> tuple[int, float]:
    answer = httpx.get(f"{url}/users/{user}/recommendations", timeout=60)
    return answer.status_code, time.monotonic()


def test_sigterm_drains_requests_in_flight(shop: Path) -> None:
    with serving(shop, "--no-worker") as server, ThreadPoolExecutor(8) as pool:
        slow = [pool.submit(_slow, server.url, number) for number in range(4)]
        time.sleep(1.0)  # the slow requests are in the server now
        lists = [pool.submit(_list, server.url, f"U{n:07d}") for n in range(1, 5)]
        for done in lists:
            assert done.result(timeout=60)[0] == 200
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        answers = [done.result(timeout=60) for done in slow]
        try:
            exit_code = server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            exit_code = None
        stopped = time.monotonic()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/health", timeout=5)
        log = server.output()
    for status, body, finished in answers:
        assert status == 202, body
        assert body["accepted"] == 1
        assert finished > signalled  # in flight when the signal came, answered after it
    assert stopped - signalled < 15
    # uvicorn drains, runs the app's shutdown, then raises the signal again: 'shoprec serve'
    # turns it into a normal exit
    assert exit_code == 0, log
    assert "Application shutdown complete" in log, log
