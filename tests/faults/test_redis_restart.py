"""Redis crashes and comes back under load: the API keeps answering from its local fallbacks,
refuses events with a 503 while the bus is down, and the worker resumes, so every event the API
accepted is applied exactly once (to the live state and to the lake)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import polars as pl
import pytest
import redis

from shoprec.stream.state import open_state

from .conftest import KEY, PrivateRedis, serving

STREAM = "faults:events"
GROUP = "shoprec-workers"
OUTAGE_SECONDS = 8.0


@dataclass
class Outcome:
    sent: float  # time.monotonic()
    kind: str  # "recommendations", "event", "user"
    status: int  # 0: no answer
    ms: float
    error: str = ""
    event_id: str = ""
    user_id: str = ""


@dataclass
class Load:
    """Requests in a thread, one after another, until stopped (at most ``limit`` seconds):
    a user's recommendations, an event of theirs, their profile, the next user."""

    url: str
    users: list[str]
    items: list[str]
    limit: float = 120.0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)
        assert not self._thread.is_alive(), "the load did not stop"

    def _one(self, client: httpx.Client, kind: str, request: httpx.Request, **ids: str) -> None:
        sent = time.monotonic()
        try:
            answer = client.send(request)
            status = answer.status_code
            error = "" if answer.is_success else answer.text[:300]
        except httpx.HTTPError as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"
        ms = (time.monotonic() - sent) * 1000
        self.outcomes.append(Outcome(sent, kind, status, ms, error, **ids))

    def _run(self) -> None:
        began = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=30) as client:
            number = 0
            while not self._stop.is_set() and time.monotonic() - began < self.limit:
                user = self.users[number % len(self.users)]
                item = self.items[number % len(self.items)]
                event_id = f"fault-{number}"
                self._one(
                    client,
                    "recommendations",
                    client.build_request("GET", f"/users/{user}/recommendations", params={"k": 5}),
                )
                event = {
                    "event_id": event_id,
                    "user_id": user,
                    "item_id": item,
                    "event_type": "view",
                }
                self._one(
                    client,
                    "event",
                    client.build_request("POST", "/events", json=event, headers=KEY),
                    event_id=event_id,
                    user_id=user,
                )
                self._one(
                    client, "user", client.build_request("GET", f"/users/{user}", headers=KEY)
                )
                number += 1
                time.sleep(0.01)

    def count(self, kind: str, status: int, since: float = 0.0) -> int:
        return sum(o.kind == kind and o.status == status and o.sent >= since for o in self.outcomes)


def _wait_for(check: object, seconds: float, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {seconds:.0f} s: {what}")
        time.sleep(0.1)


def _lake_ids(workspace: Path) -> Counter[str]:
    files = sorted((workspace / "lake" / "events").rglob("*.parquet"))
    if not files:
        return Counter()
    ids = pl.read_parquet(files, columns=["event_id"]).get_column("event_id")
    return Counter(i for i in ids.to_list() if i.startswith("fault-"))


def _group(url: str) -> tuple[int, int]:
    """(pending, lag) of the consumer group: unacknowledged and not yet delivered."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        pending = int(client.xpending(STREAM, GROUP)["pending"])
        info = next(g for g in client.xinfo_groups(STREAM) if g["name"] == GROUP)
        return pending, int(info["lag"] or 0)
    finally:
        client.close()


def test_redis_crashes_and_comes_back_under_load(shop: Path, private_redis: PrivateRedis) -> None:
    bus = f"{private_redis.url}?stream={STREAM}&idle_ms=2000"
    state = f"{private_redis.url}?prefix=faults:"
    users = pl.read_parquet(shop / "lake" / "users.parquet").get_column("user_id").to_list()
    items = pl.read_parquet(shop / "lake" / "items.parquet").get_column("item_id").to_list()
    with serving(shop, "--bus", bus, "--state", state) as server:
        load = Load(server.url, users[:40], items[:100])
        load.start()
        try:
            _wait_for(lambda: load.count("event", 202) >= 30, 30, "30 events accepted")
            private_redis.crash()
            crashed = time.monotonic()
            _wait_for(
                lambda: (
                    load.count("event", 503, crashed) >= 5
                    and load.count("recommendations", 200, crashed) >= 20
                ),
                60,
                "events refused and recommendations served while Redis is down",
            )
            # down long enough for the worker to back off (1, 2, 4 s between its tries)
            time.sleep(max(crashed + OUTAGE_SECONDS - time.monotonic(), 0))
            private_redis.start()
            restarted = time.monotonic()
            _wait_for(
                lambda: load.count("event", 202, restarted) >= 30, 60, "events accepted again"
            )
        finally:
            load.stop()
        accepted = {o.event_id: o.user_id for o in load.outcomes if o.status == 202}
        refused = {o.event_id for o in load.outcomes if o.kind == "event" and o.status == 503}
        # the worker catches up: everything accepted reaches the lake and is acknowledged
        _wait_for(
            lambda: set(_lake_ids(shop)) >= set(accepted) and _group(private_redis.url) == (0, 0),
            60,
            "every accepted event in the lake and acknowledged",
        )
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text

    outcomes = load.outcomes
    during = [o for o in outcomes if crashed <= o.sent < restarted]
    # the API kept answering: lists and profiles from the model alone, events refused clearly
    assert all(o.status == 200 for o in outcomes if o.kind != "event"), [
        (o.kind, o.status, o.error) for o in outcomes if o.kind != "event" and o.status != 200
    ][:5]
    assert {o.status for o in outcomes if o.kind == "event"} <= {202, 503}
    assert all("event bus" in o.error for o in outcomes if o.status == 503)
    assert any(o.kind == "event" and o.status == 503 for o in during)
    slowest = max(o.ms for o in during if o.kind == "recommendations")
    assert slowest < 10_000, f"a list took {slowest:.0f} ms while Redis was down"
    # exactly once: each accepted event once in the lake, once in the live state's counters
    lake = _lake_ids(shop)
    assert all(lake[event_id] == 1 for event_id in accepted)
    assert set(lake) <= set(accepted) | refused  # nothing the API did not take
    # (an event whose 503 came after Redis had stored it, a crash between the two, counts too)
    applied = set(accepted) | (refused & set(lake))
    owner = {o.event_id: o.user_id for o in outcomes if o.kind == "event"}
    expected = Counter(owner[event_id] for event_id in applied)
    live = open_state(state)
    try:
        assert all(live.was_applied(event_id) for event_id in applied)
        counted = {user: live.user_counters(user).get("view", 0) for user in set(owner.values())}
    finally:
        live.close()
    assert counted == {user: expected.get(user, 0) for user in counted}
    worker_errors = next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("shoprec_worker_errors_total ")
    )
    assert worker_errors > 0  # the worker saw the outage, and resumed
