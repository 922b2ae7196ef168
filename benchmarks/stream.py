"""Real time: click-to-updated-recommendations latency and sustained consumption (issue: real
time; targets: click p99 <= 10 ms with memory://, <= 50 ms with Redis with the API and the worker
as separate processes; consumption >= 5,000 events/s with Redis).

On the serving benchmark's shop (100,000 items and users, ``_serving_shop.prepare_shop``):

1. ``memory://``: ``shoprec serve`` with its worker thread. Each trial posts a ``view`` of a
   random item for a random known user, then asks for that user's recommendations until the
   answer has folded the new event in (``live_events``); the latency is from sending the event
   to the end of that answer.
2. Redis: ``shoprec serve --no-worker`` and ``shoprec consume`` as two processes sharing a Redis
   bus and live state; the same trials.
3. Consumption: the consumer is stopped, ``--events`` events are published to the Redis bus,
   and a fresh ``shoprec consume --until-idle`` applies them (live state, users' vectors from
   the served model, lake appends, acknowledgements); the rate counts from its first applied
   event to its last.

Every loop is bounded in count and time; servers listen on 127.0.0.1 only.

    .venv/bin/python benchmarks/stream.py [--workspace /tmp/ssf] [--trials 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import redis

from _common import clean_env, server_timing, shoprec_process
from _serving_shop import EVENTS, prepare_shop
from serving import free_port, wait_ready
from shoprec.stream.bus import open_bus
from shoprec.stream.state import open_state

KEY = "bench-key"


def process(args: list[str]) -> Any:
    return shoprec_process(args, clean_env(SHOPREC_API_KEYS=KEY))


def server_ms(response: httpx.Response) -> float:
    """The server's own time on a request, from its Server-Timing header."""
    return server_timing(response.headers["server-timing"])["app"]


def click_trials(url: str, users: list[str], items: list[str], trials: int) -> dict[str, Any]:
    """Post a view, then read recommendations until they fold it in; per-trial latency."""
    rng = np.random.default_rng(1)
    latencies: list[float] = []
    in_server: list[float] = []  # server time of the post and of the reads, per trial
    reads: list[int] = []
    failures = 0
    with httpx.Client(base_url=url, timeout=10) as client:
        for trial in range(trials):
            user = str(users[int(rng.integers(len(users)))])
            path = f"/users/{user}/recommendations?k=10"
            seen = client.get(path).json()["live_events"]
            event = {
                "user_id": user,
                "item_id": str(items[int(rng.integers(len(items)))]),
                "event_type": "view",
                "event_id": f"bench-{uuid.uuid4().hex}",
            }
            started = time.perf_counter()
            posted = client.post("/events", json=event, headers={"X-API-Key": KEY})
            if posted.status_code != 202:
                failures += 1
                continue
            count, deadline = 0, started + 2.0
            spent = server_ms(posted)
            while time.perf_counter() < deadline:
                count += 1
                read = client.get(path)
                spent += server_ms(read)
                if read.json()["live_events"] > seen:
                    latencies.append((time.perf_counter() - started) * 1000)
                    in_server.append(spent)
                    reads.append(count)
                    break
            else:
                failures += 1
            if trial % 250 == 249:
                print(f"  {trial + 1} trials", flush=True)
    values = np.asarray(latencies) if latencies else np.array([np.nan])
    server = np.asarray(in_server) if in_server else np.array([np.nan])
    return {
        "trials": trials,
        "updated": len(latencies),
        "failures": failures,
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p90_ms": round(float(np.percentile(values, 90)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "max_ms": round(float(values.max()), 3),
        "reads_median": float(np.median(reads)) if reads else None,
        "server_p50_ms": round(float(np.percentile(server, 50)), 3),
        "server_p99_ms": round(float(np.percentile(server, 99)), 3),
        "slowest": [
            {"ms": round(latencies[i], 3), "server_ms": round(in_server[i], 3)}
            for i in np.argsort(latencies)[-5:][::-1].tolist()
        ],
    }


def consumption(
    workspace: Path, bus_url: str, state_url: str, users: list[str], items: list[str], count: int
) -> dict[str, Any]:
    """Publish ``count`` events, then time a fresh consumer applying them."""
    bus = open_bus(bus_url)
    state = open_state(state_url)
    rng = np.random.default_rng(2)
    stamp = datetime.now(UTC).isoformat()
    events = [
        {
            "event_id": f"load-{uuid.uuid4().hex}",
            "user_id": str(users[int(rng.integers(len(users)))]),
            "item_id": str(items[int(rng.integers(len(items)))]),
            "event_type": "view",
            "ts": stamp,
            "source": "bench",
        }
        for _ in range(count)
    ]
    for start in range(0, count, 5000):
        bus.publish(events[start : start + 5000])
    before = state.applied_count()
    args = ["consume", "-w", str(workspace), "--bus", bus_url, "--state", state_url]
    first = last = None
    with process([*args, "--until-idle", "--consumer", "load"]) as consumer:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            applied = state.applied_count() - before
            now = time.perf_counter()
            if applied > 0 and first is None:
                first = now
            if applied >= count:
                last = now
                break
            if consumer.poll() is not None and applied < count:
                break
            time.sleep(0.01)
        consumer.wait(timeout=120)
    applied = state.applied_count() - before
    seconds = (last - first) if first is not None and last is not None else None
    bus.close()
    return {
        "events": count,
        "applied": applied,
        "seconds_first_to_last": round(seconds, 3) if seconds else None,
        "events_per_second": round(count / seconds, 1) if seconds else None,
        "pending_after": open_bus(bus_url).pending(),
    }


def redis_phases(
    args: argparse.Namespace,
    result: dict[str, Any],
    workspace: str,
    bus_url: str,
    state_url: str,
    users: list[str],
    items: list[str],
) -> None:
    """Click latency with the API and the worker as separate processes, then consumption."""
    print("redis:// (API and worker as separate processes)", flush=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = ["serve", "-w", workspace, "--port", str(port), "--no-worker"]
    wiring = ["--bus", bus_url, "--state", state_url]
    consume = ["consume", "-w", workspace, *wiring, "--consumer", "click"]
    with process([*serve, *wiring]) as server, process(consume):
        wait_ready(url, server, timeout=600)
        time.sleep(15)  # the consumer loads the run too (for users' vectors)
        result["click_redis"] = click_trials(url, users, items, args.trials)
    print(json.dumps(result["click_redis"]), flush=True)
    print(f"consumption of {args.load:,} events with Redis", flush=True)
    result["consumption_redis"] = consumption(
        args.workspace, bus_url, state_url, users, items, args.load
    )
    print(json.dumps(result["consumption_redis"]), flush=True)


def forget(redis_url: str, prefix: str) -> None:
    """Delete every key of this run (its stream, consumer group and live state)."""
    client = redis.Redis.from_url(redis_url)
    batch = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.delete(*batch)
            batch = []
    if batch:
        client.delete(*batch)
    client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/serving-shop"))
    parser.add_argument("--events", type=int, default=EVENTS, help="of the shop")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--trials", type=int, default=1000, help="per phase (a p99 of 200 is their 2nd worst)"
    )
    parser.add_argument("--load", type=int, default=100_000, help="events to consume")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/stream-results.json"))
    args = parser.parse_args()
    prepare_shop(args.workspace, events=args.events, seed=args.seed)
    users = pl.read_parquet(args.workspace / "lake" / "users.parquet")["user_id"].to_list()
    items = pl.read_parquet(args.workspace / "lake" / "items.parquet")["item_id"].to_list()
    token = uuid.uuid4().hex[:8]
    bus_url = f"{args.redis}?stream=bench-{token}:events&idle_ms=5000"
    state_url = f"{args.redis}?prefix=bench-{token}:"
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    workspace = str(args.workspace)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    print("memory:// (API with its worker thread)", flush=True)
    with process(["serve", "-w", workspace, "--port", str(port)]) as server:
        wait_ready(url, server, timeout=600)
        result["click_memory"] = click_trials(url, users, items, args.trials)
    print(json.dumps(result["click_memory"]), flush=True)
    try:
        redis_phases(args, result, workspace, bus_url, state_url, users, items)
    finally:  # the run's stream and state: 100,000+ events' worth of keys otherwise left behind
        forget(args.redis, f"bench-{token}:")
    checks = {
        "click p99 memory <= 10 ms": result["click_memory"]["p99_ms"] <= 10,
        "click p99 redis <= 50 ms": result["click_redis"]["p99_ms"] <= 50,
        "consumption >= 5000/s": (result["consumption_redis"]["events_per_second"] or 0) >= 5000,
    }
    result["checks"] = checks
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, ok in checks.items():
        print(f"{name}: {'PASS' if ok else 'FAIL'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
