"""Serving latency and throughput over HTTP (issue: serving; targets at 200 requests/s:
recommendations p50 <= 5 ms and p99 <= 25 ms, POST /score with 2 x 100 entities p99 <= 25 ms).

The shop (100,000 items, 100,000 users, built with the full two-stage model) comes from
``_serving_shop.prepare_shop`` (about 11 minutes the first time; reused afterwards). The server
is ``shoprec serve`` in its own process on 127.0.0.1; this script is the load generator, in
another process. Load is open-loop: request ``i`` is sent at ``start + i / rate`` whether or not
earlier ones have answered, so a slow server cannot slow the offered load down. Latency is
measured from the moment a request is sent to the end of its response; how late the generator
itself was (``send_lag``) is reported beside it. Every phase is bounded in time and count.

Each phase also reports what could hold requests up outside the server's own time: the slowest
requests and when they were sent, the generator's garbage collections (off during a phase unless
``--generator-gc``), the times its loop woke over 40 ms late, and the CPU time the host took from
the machine (steal, per 50 ms).

Phases: warm-up (``--warmup`` seconds at 100/s, not recorded);
``GET /users/{id}/recommendations?k=10`` at ``--rate`` (90 % users the model
knows, 10 % new visitors); ``POST /score`` (100 × 100 items, cosine) at ``--rate``; then
recommendations at rising rates until p99 exceeds 25 ms or the achieved rate falls below 97 % of
the offered one: the highest rate that held is the maximum sustainable throughput.

Run from the repository root::

    .venv/bin/python benchmarks/serving.py [--workspace /tmp/serving-shop] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import polars as pl
import uvloop

from _common import server_timing, shoprec_process
from _serving_shop import EVENTS, ITEMS, USERS, prepare_shop

P50_TARGET_MS = 5.0
P99_TARGET_MS = 25.0


@dataclass
class Phase:
    name: str
    offered_rate: float
    sent: int
    ok: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    lag_ms: list[float]
    server_ms: list[float]  # the server's own time per request (its Server-Timing header)
    recommend_ms: list[float]  # of which the live state and the engine (recommendations only)
    slow: list[tuple[float, float, float]]  # (sent, s into the phase; latency; server time) > 25 ms
    generator_gc_ms: list[float]  # the generator's own garbage collections during the phase
    steal_ms: list[tuple[float, float]]  # (s into the phase, CPU time the host took in 50 ms)
    generator_late_ms: list[tuple[float, float]]  # (s into the phase, how late its loop woke)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        lag = np.asarray(self.lag_ms) if self.lag_ms else np.array([np.nan])
        server = np.asarray(self.server_ms) if self.server_ms else np.array([np.nan])
        return {
            "phase": self.name,
            "offered_rate": self.offered_rate,
            "achieved_rate": round(self.ok / self.seconds, 1) if self.seconds else 0.0,
            "requests": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p90_ms": round(float(np.percentile(lat, 90)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "max_ms": round(float(lat.max()), 3),
            "send_lag_p99_ms": round(float(np.percentile(lag, 99)), 3),
            "server_p50_ms": round(float(np.percentile(server, 50)), 3),
            "server_p99_ms": round(float(np.percentile(server, 99)), 3),
            # when the slow requests were sent: one stall of the machine or many slow answers
            "generator_gc": {
                "collections": len(self.generator_gc_ms),
                "max_ms": round(max(self.generator_gc_ms, default=0.0), 3),
            },
            # time the virtual machine's CPUs waited for the host (steal, /proc/stat), per 50 ms,
            # summed over the CPUs, in the kernel's 10 ms ticks
            "steal": {
                "total_ms": round(sum(ms for _, ms in self.steal_ms), 1),
                "worst_windows": [
                    {"at_s": round(at, 2), "ms": round(ms, 1)}
                    for at, ms in sorted(self.steal_ms, key=lambda row: -row[1])[:5]
                ],
            },
            "generator_late": [  # the 10 latest of its wake-ups, by how late
                {"at_s": round(at, 2), "ms": round(ms, 1)}
                for at, ms in sorted(self.generator_late_ms, key=lambda row: -row[1])[:10]
            ],
            "slow_requests": len(self.slow),
            "slowest": [
                {"sent_s": round(at, 3), "ms": round(ms, 3), "server_ms": round(server, 3)}
                for at, ms, server in sorted(self.slow, key=lambda row: -row[1])[:10]
            ],
            **(
                {
                    "recommend_p50_ms": round(float(np.percentile(self.recommend_ms, 50)), 3),
                    "recommend_p99_ms": round(float(np.percentile(self.recommend_ms, 99)), 3),
                }
                if self.recommend_ms
                else {}
            ),
        }


def _steal_ms() -> float:
    """CPU time the host has taken from this machine's CPUs since boot (steal), in ms."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = stat.readline().split()
    return int(fields[8]) * 1000 / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


async def stolen_time(
    windows: list[tuple[float, float]], late: list[tuple[float, float]], every: float = 0.05
) -> None:
    """Record the steal of each ``every`` seconds into ``windows``, and into ``late`` each time
    this loop woke more than 40 ms late (the generator itself held up), until cancelled."""
    last, woke = _steal_ms(), time.perf_counter()
    while True:
        await asyncio.sleep(every)
        now, previous = _steal_ms(), woke
        woke = time.perf_counter()
        if now > last:
            windows.append((woke, now - last))
        if woke - previous - every > 0.04:
            late.append((previous, (woke - previous - every) * 1000))
        last = now


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def open_loop(
    session: aiohttp.ClientSession,
    url: str,
    name: str,
    requests: list[tuple[str, str, bytes | None]],
    rate: float,
    seconds: float,
    collect_garbage: bool = False,
) -> Phase:
    """Send ``rate * seconds`` requests on schedule (cycling through ``requests``, prepared
    beforehand so the generator spends nothing on them); gather each one's latency."""
    count = int(rate * seconds)
    latencies: list[float] = []
    lags: list[float] = []
    in_server: list[float] = []
    in_engine: list[float] = []
    slow: list[tuple[float, float, float]] = []
    errors = 0
    loop = asyncio.get_running_loop()
    headers = {"Content-Type": "application/json"}

    async def one(method: str, path: str, body: bytes | None) -> None:
        nonlocal errors
        sent = time.perf_counter()
        timing = ""
        try:
            async with session.request(method, url + path, data=body, headers=headers) as answer:
                await answer.read()
                ok = answer.status == 200
                timing = answer.headers.get("server-timing", "")
        except aiohttp.ClientError:
            ok = False
        if ok:
            latency = (time.perf_counter() - sent) * 1000
            latencies.append(latency)
            parts = server_timing(timing)
            if "app" in parts:
                in_server.append(parts["app"])
            if "recommend" in parts:
                in_engine.append(parts["recommend"])
            if latency > P99_TARGET_MS:
                slow.append((sent - began, latency, parts.get("app", float("nan"))))
        else:
            errors += 1

    # The generator's own garbage collections would stamp every answer that arrives during one
    # as late (a burst of slow requests the server never saw): the collector is off during a
    # phase unless asked for, and what it paused is reported either way.
    pauses: list[float] = []
    collecting: dict[str, float] = {}
    steal_windows: list[tuple[float, float]] = []
    late_windows: list[tuple[float, float]] = []

    def timed_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting["since"] = time.perf_counter()
        elif "since" in collecting:
            pauses.append((time.perf_counter() - collecting.pop("since")) * 1000)

    steal = asyncio.create_task(stolen_time(steal_windows, late_windows))
    gc.collect()
    if not collect_garbage:
        gc.disable()
    gc.callbacks.append(timed_collection)
    began = time.perf_counter()
    start = loop.time() + 0.05
    tasks = []
    try:
        for index in range(count):
            due = start + index / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(max(0.0, loop.time() - due) * 1000)
            tasks.append(asyncio.create_task(one(*requests[index % len(requests)])))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    finally:
        gc.callbacks.remove(timed_collection)
        gc.enable()
        steal.cancel()
    return Phase(
        name,
        rate,
        count,
        len(latencies),
        errors,
        time.perf_counter() - began,
        latencies,
        lags,
        in_server,
        in_engine,
        slow,
        pauses,
        [(at - began, ms) for at, ms in steal_windows],
        [(at - began, ms) for at, ms in late_windows],
    )


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server was not ready after {timeout:.0f} s")


async def run_load(url: str, args: argparse.Namespace, workspace: Path) -> dict[str, Any]:
    users = pl.read_parquet(workspace / "lake" / "users.parquet", columns=["user_id"])
    items = pl.read_parquet(workspace / "lake" / "items.parquet", columns=["item_id"])
    rng = np.random.default_rng(0)
    known = rng.choice(users.get_column("user_id").to_numpy(), size=5000).tolist()
    recommendations: list[tuple[str, str, bytes | None]] = [
        (
            "GET",
            f"/users/{u if rng.random() < 0.9 else f'new-visitor-{n}'}/recommendations?k=10",
            None,
        )
        for n, u in enumerate(known)
    ]
    item_ids = items.get_column("item_id").to_numpy()
    scoring: list[tuple[str, str, bytes | None]] = []
    for _ in range(500):
        chosen = item_ids[rng.integers(0, item_ids.size, size=200)].tolist()
        body = {"algo": "cosine-sim", "type": "item-item", "item": chosen[:100]}
        scoring.append(("POST", "/score", json.dumps({**body, "items2": chosen[100:]}).encode()))

    phases: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=128)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Warm-up, not recorded: every worker process has loaded the run (a worker that is
        # still loading accepts nothing, and the others take its share meanwhile).
        await open_loop(session, url, "warm-up", recommendations[-1000:], 100, args.warmup)
        await open_loop(session, url, "warm-up", scoring[-100:], 50, 4)
        for name, requests in (("recommendations", recommendations), ("score 100x100", scoring)):
            phase = await open_loop(
                session, url, name, requests, args.rate, args.seconds, args.generator_gc
            )
            phases.append(phase.summary())
            print(json.dumps(phases[-1]), flush=True)
        sustained = None
        for rate in args.steps:
            step = await open_loop(
                session, url, "step", recommendations, rate, 10, args.generator_gc
            )
            phase = step.summary()
            phase["phase"] = f"step {rate}/s"
            phases.append(phase)
            print(json.dumps(phase), flush=True)
            held = (
                phase["errors"] == 0
                and phase["p99_ms"] <= P99_TARGET_MS
                and phase["achieved_rate"] >= 0.97 * rate
            )
            if not held:
                break
            sustained = rate
    return {"phases": phases, "max_sustainable_rate": sustained}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/serving-shop"))
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--users", type=int, default=USERS, help="(smaller for a smoke run)")
    parser.add_argument("--items", type=int, default=ITEMS, help="(smaller for a smoke run)")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of warm-up load")
    parser.add_argument("--bus", help="event bus URL for the server (several workers: redis://)")
    parser.add_argument("--state", help="live state URL for the server (several workers: redis://)")
    parser.add_argument(
        "--steps", type=int, nargs="*", default=[200, 300, 400, 500, 600, 800, 1000]
    )
    parser.add_argument(
        "--generator-gc",
        action="store_true",
        help="leave the generator's garbage collector on during the phases (off by default)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/serving-results.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    prepare_shop(
        args.workspace, events=args.events, seed=args.seed, users=args.users, items=args.items
    )
    prepare_seconds = time.perf_counter() - started
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        *("serve", "-w", str(args.workspace)),
        *("--port", str(port), "--workers", str(args.workers)),
        *(("--bus", args.bus) if args.bus else ()),
        *(("--state", args.state) if args.state else ()),
    ]
    with shoprec_process(command) as server:
        ready_seconds = wait_ready(url, server, timeout=600)
        # uvloop (installed with uvicorn[standard]) for the generator too: less of the measured
        # time is the generator's own event loop.
        result = uvloop.run(run_load(url, args, args.workspace))
    stamp = json.loads((args.workspace / "serving-shop.json").read_text())
    recs, score = result["phases"][0], result["phases"][1]
    checks = {
        "recommendations p50": recs["p50_ms"] <= P50_TARGET_MS,
        "recommendations p99": recs["p99_ms"] <= P99_TARGET_MS,
        "recommendations without errors": recs["errors"] == 0,
        "score p99": score["p99_ms"] <= P99_TARGET_MS,
        "score without errors": score["errors"] == 0,
    }
    summary = {
        "date": datetime.now(UTC).isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "shop": stamp,
        "prepare_seconds": round(prepare_seconds, 1),
        "server_ready_seconds": round(ready_seconds, 1),
        "workers": args.workers,
        "bus": args.bus or "memory://",
        "state": args.state or "memory://",
        **result,
        "checks": checks,
        "passed": all(checks.values()),
    }
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    for name, ok in checks.items():
        print(f"{name}: {'PASS' if ok else 'FAIL'}")
    print(
        f"max sustainable rate: {result['max_sustainable_rate']}/s; server ready in "
        f"{ready_seconds:.1f} s; results in {args.out}"
    )
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
