"""Soak: a mixed load on ``shoprec serve`` for a long time, checked for errors, a tail that
grows and memory that grows (issue 16, "Prove it" 2).

The server is ``shoprec serve`` in its own process on 127.0.0.1 (started here, or one already
running: ``--url`` and ``--pid``); this script is the load generator, in another process. Load
is open-loop: request ``i`` is sent at ``start + i / rate`` whether or not earlier ones have
answered. Each request is drawn, with a fixed seed, from a mix of the routes a shop calls:

======================================  ======  ================================================
route                                   share   what
======================================  ======  ================================================
``GET /users/{id}/recommendations``     50 %    k=10; 90 % users the model knows, 10 % new ones
``GET /items/{id}/similar``             15 %    k=10, a catalogue item
``POST /score``                         10 %    10 x 10 catalogue items, cosine
``GET /search?q=``                      10 %    a word of a catalogue title
``POST /events`` (API key)              15 %    a view or add-to-cart of a known user, own id
======================================  ======  ================================================

A warm-up (``--warmup`` seconds at the same rate and mix) comes first; its requests count for
errors but not for latency. Then ``--duration`` seconds are measured in windows of ``--window``
seconds (a minute by default), by the time each request was sent: per window and route the
count, p50, p99 and errors. The server's resident memory (``VmRSS`` of ``/proc/<pid>/status``,
summed over the server process and its children, so ``--workers N`` counts every worker) is read
when it is ready, at the end of the warm-up (the baseline), at the end of every window and at the
end.

Checks (exit status 1 and a ``FAIL`` line naming each one that fails):

- **zero errors**: no request, warm-up included, answered other than 2xx or failed to connect
  or to answer within 10 s;
- **tail**: the p99 of the last window (all routes together) is at most 1.5 x that of the first;
- **memory**: RSS at the end is at most 5 % above the baseline (after the warm-up: what the
  server allocates once, while its caches and pools fill, is not growth).

Every phase is bounded in time and count (``rate x seconds`` requests; a request gives up after
10 s). ``--workspace`` serves a prepared workspace, into whose lake the worker writes the
events the soak posts (use a copy); without it a small synthetic shop is generated, ingested and
built in ``--workdir`` with the serving benchmark's recipe (``_serving_shop.prepare_shop``).

Run from the repository root::

    .venv/bin/python benchmarks/soak.py --workspace /tmp/soak-ssf --rate 200   # 1 + 10 minutes
    .venv/bin/python benchmarks/soak.py --duration 60 --window 30 --warmup 20 --rate 40  # CI
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import numpy as np
import polars as pl

from _common import SHOPREC, clean_env
from _serving_shop import prepare_shop

API_KEY = "soak-key"
TIMEOUT_SECONDS = 10.0
TAIL_RATIO = 1.5
RSS_GROWTH = 0.05
MIX = {"recommendations": 50, "similar": 15, "score": 10, "search": 10, "events": 15}


@dataclass(frozen=True)
class Request:
    route: str
    method: str
    path: str
    body: bytes | None = None


@dataclass
class Answer:
    sent: float  # seconds after the measured part began (negative: warm-up)
    route: str
    ms: float
    status: int  # 0: no answer (connection error, timeout)
    problem: str = ""


@dataclass
class Soak:
    answers: list[Answer] = field(default_factory=list)
    rss_mb: dict[str, float] = field(default_factory=dict)
    late_ms: list[float] = field(default_factory=list)  # how late each request was sent


# -- the server's memory ----------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


def tree_rss_mb(pid: int) -> float:
    """``VmRSS`` of ``pid`` and all its descendants, in MiB (0 for one that has gone)."""
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
        todo += _children(current)
    return total_kb / 1024


# -- the requests ---------------------------------------------------------------------------------
def plan(
    workspace: Path, count: int, seed: int, tag: str, routes: Sequence[str] = tuple(MIX)
) -> list[Request]:
    """``count`` requests drawn from :data:`MIX` (only ``routes`` of it, in their shares) with a
    fixed seed; events get ids of their own (``soak-<tag>-<n>``)."""
    rng = np.random.default_rng(seed)
    users = pl.read_parquet(workspace / "lake" / "users.parquet", columns=["user_id"])
    items = pl.read_parquet(workspace / "lake" / "items.parquet", columns=["item_id", "title"])
    user_ids = users.get_column("user_id").to_numpy()
    item_ids = items.get_column("item_id").to_numpy()
    words = sorted(
        {
            word
            for title in items.get_column("title").drop_nulls().head(5000).to_list()
            for word in str(title).lower().split()
            if word.isalpha() and len(word) > 2
        }
    ) or ["a"]
    routes = [route for route in MIX if route in routes]
    shares = np.array([MIX[r] for r in routes], dtype=float)
    chosen = rng.choice(len(routes), size=count, p=shares / shares.sum())
    requests: list[Request] = []
    for number, index in enumerate(chosen):
        route = routes[index]
        user = str(user_ids[rng.integers(user_ids.size)])
        item = str(item_ids[rng.integers(item_ids.size)])
        if route == "recommendations":
            who = user if rng.random() < 0.9 else f"soak-visitor-{number}"
            requests.append(Request(route, "GET", f"/users/{quote(who)}/recommendations?k=10"))
        elif route == "similar":
            requests.append(Request(route, "GET", f"/items/{quote(item)}/similar?k=10"))
        elif route == "score":
            pair = item_ids[rng.integers(0, item_ids.size, size=20)].tolist()
            body = {"algo": "cosine-sim", "type": "item-item", "item": pair[:10]}
            body["items2"] = pair[10:]
            requests.append(Request(route, "POST", "/score", json.dumps(body).encode()))
        elif route == "search":
            word = words[rng.integers(len(words))]
            requests.append(Request(route, "GET", f"/search?q={quote(word)}&limit=10"))
        else:
            event = {
                "event_id": f"soak-{tag}-{number}",
                "user_id": user,
                "item_id": item,
                "event_type": "view" if rng.random() < 0.8 else "add_to_cart",
            }
            requests.append(Request(route, "POST", "/events", json.dumps(event).encode()))
    return requests


# -- sending --------------------------------------------------------------------------------------
Send = Callable[[Request], Awaitable[tuple[int, str]]]


async def open_client(url: str, connections: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    """A function that sends one request and returns (status, first bytes of an error body),
    and one that closes the client: aiohttp when installed (the serving benchmark's client,
    cheaper per request), else httpx."""
    headers = {"Content-Type": "application/json", "X-API-Key": API_KEY}
    try:
        import aiohttp
    except ImportError:
        client = httpx.AsyncClient(
            base_url=url,
            headers=headers,
            timeout=TIMEOUT_SECONDS,
            limits=httpx.Limits(max_connections=connections),
        )

        async def send_httpx(request: Request) -> tuple[int, str]:
            answer = await client.request(request.method, request.path, content=request.body)
            return answer.status_code, "" if answer.is_success else answer.text[:200]

        return send_httpx, client.aclose

    session = aiohttp.ClientSession(
        base_url=url,
        headers=headers,
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
    )

    async def send_aiohttp(request: Request) -> tuple[int, str]:
        async with session.request(request.method, request.path, data=request.body) as answer:
            body = await answer.read()
            ok = 200 <= answer.status < 300
            return answer.status, "" if ok else body[:200].decode("utf-8", "replace")

    return send_aiohttp, session.close


async def drive(
    url: str,
    requests: list[Request],
    *,
    rate: float,
    warmup: float,
    duration: float,
    window: float,
    rss: Callable[[], float],
) -> Soak:
    """Send ``requests`` on schedule at ``rate`` for ``warmup + duration`` seconds."""
    soak = Soak()
    send, close = await open_client(url, connections=256)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    measured_from = start + warmup
    count = int(rate * (warmup + duration))

    async def one(request: Request, due: float) -> None:
        sent = time.perf_counter()
        try:
            status, problem = await send(request)
        except Exception as exc:  # a connection error or a timeout: an error like a 5xx
            status, problem = 0, f"{type(exc).__name__}: {exc}"[:200]
        except asyncio.CancelledError:  # still unanswered when the soak ended
            status, problem = 0, "no answer by the end of the soak"
        soak.answers.append(
            Answer(
                due - measured_from,
                request.route,
                (time.perf_counter() - sent) * 1000,
                status,
                problem,
            )
        )

    async def watch_memory() -> None:
        soak.rss_mb["ready"] = rss()
        await asyncio.sleep(max(measured_from - loop.time(), 0))
        soak.rss_mb["baseline (after the warm-up)"] = rss()
        for number in range(1, int(duration / window) + 1):
            await asyncio.sleep(max(measured_from + number * window - loop.time(), 0))
            soak.rss_mb[f"window {number}"] = rss()

    memory = asyncio.create_task(watch_memory())
    tasks: set[asyncio.Task[None]] = set()
    try:
        for index in range(count):
            due = start + index / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            soak.late_ms.append(max(loop.time() - due, 0.0) * 1000)
            task = asyncio.create_task(one(requests[index % len(requests)], due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            _, unanswered = await asyncio.wait(tasks, timeout=TIMEOUT_SECONDS + 5)
            for task in unanswered:
                task.cancel()
            await asyncio.gather(*unanswered, return_exceptions=True)
        await asyncio.wait_for(memory, timeout=window + 5)
        soak.rss_mb["end"] = rss()
    finally:
        memory.cancel()
        await close()
    return soak


# -- the verdict ----------------------------------------------------------------------------------
def _percentiles(ms: list[float]) -> dict[str, float | None]:
    if not ms:
        return {"p50_ms": None, "p99_ms": None}
    values = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
    }


def summarise(soak: Soak, duration: float, window: float) -> dict[str, Any]:
    """Per window and route: requests, p50, p99, errors; the checks and their verdicts."""
    windows = int(duration / window)
    by_window: list[dict[str, Any]] = []
    for number in range(windows):
        inside = [a for a in soak.answers if number * window <= a.sent < (number + 1) * window]
        row: dict[str, Any] = {
            "window": number + 1,
            "from_s": number * window,
            "requests": len(inside),
            "errors": sum(not 200 <= a.status < 300 for a in inside),
            **_percentiles([a.ms for a in inside if 200 <= a.status < 300]),
            "routes": {},
        }
        for route in MIX:
            mine = [a for a in inside if a.route == route]
            ok = [a.ms for a in mine if 200 <= a.status < 300]
            row["routes"][route] = {
                "requests": len(mine),
                "errors": len(mine) - len(ok),
                **_percentiles(ok),
            }
        by_window.append(row)
    failed = [a for a in soak.answers if not 200 <= a.status < 300]
    first, last = by_window[0]["p99_ms"], by_window[-1]["p99_ms"]
    baseline = soak.rss_mb.get("baseline (after the warm-up)", 0.0)
    end = soak.rss_mb.get("end", 0.0)
    growth = (end - baseline) / baseline if baseline else float("inf")
    checks = {
        "zero errors": (not failed, f"{len(failed)} of {len(soak.answers)} requests failed"),
        "tail": (
            first is not None and last is not None and last <= TAIL_RATIO * first,
            f"p99 of the last window {last} ms, of the first {first} ms (at most {TAIL_RATIO} x)",
        ),
        "memory": (
            growth <= RSS_GROWTH,
            f"RSS {baseline:.0f} MiB after the warm-up, {end:.0f} MiB at the end "
            f"({growth:+.1%}; at most {RSS_GROWTH:+.0%})",
        ),
    }
    statuses: dict[str, int] = {}
    for answer in failed:
        key = f"{answer.route} {answer.status or 'no answer'}"
        statuses[key] = statuses.get(key, 0) + 1
    late = np.asarray(soak.late_ms or [0.0])  # how late the generator sent, all requests
    return {
        "requests": len(soak.answers),
        "errors": len(failed),
        "errors_by_route_and_status": statuses,
        "first_errors": [f"{a.route} {a.status}: {a.problem}" for a in failed[:5]],
        "generator_late_ms": {
            "p99": round(float(np.percentile(late, 99)), 2),
            "max": round(float(late.max()), 2),
        },
        "rss_mb": {name: round(mb, 1) for name, mb in soak.rss_mb.items()},
        "rss_growth": round(growth, 4),
        "windows": by_window,
        "checks": {name: {"passed": ok, "detail": detail} for name, (ok, detail) in checks.items()},
        "passed": all(ok for ok, _ in checks.values()),
    }


def print_summary(summary: dict[str, Any]) -> None:
    header = (
        f"{'window':>6} {'from s':>7} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7}"
    )
    print(header + "".join(f"  {route[:8]:>8} p50/p99" for route in MIX))
    for row in summary["windows"]:
        line = (
            f"{row['window']:>6} {row['from_s']:>7.0f} {row['requests']:>8} {row['errors']:>6} "
            f"{row['p50_ms'] or '-':>7} {row['p99_ms'] or '-':>7}"
        )
        for route in MIX:
            part = row["routes"][route]
            line += f"  {part['p50_ms'] or '-':>7}/{part['p99_ms'] or '-':<8}"
        print(line)
    print("RSS MiB: " + ", ".join(f"{k} {v}" for k, v in summary["rss_mb"].items()))
    late = summary["generator_late_ms"]
    print(f"the generator sent p99 {late['p99']} ms late (max {late['max']} ms)")
    for name, check in summary["checks"].items():
        print(f"{name}: {'PASS' if check['passed'] else 'FAIL'} ({check['detail']})")
    for problem in summary["first_errors"]:
        print(f"  error: {problem}")


# -- the server -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, server: subprocess.Popen[bytes] | None, timeout: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server was not ready after {timeout:.0f} s")


def start_server(
    args: argparse.Namespace, workspace: Path, log: Path, extra: Sequence[str] = ()
) -> tuple[str, Any]:
    """``shoprec serve`` of ``workspace`` on a free loopback port (``args.workers``,
    ``args.bus``, ``args.state``, then ``extra`` arguments), its output appended to ``log``."""
    port = free_port()
    command = [
        SHOPREC,
        *("serve", "-w", str(workspace), "--host", "127.0.0.1", "--port", str(port)),
        *("--workers", str(args.workers)),
        *(("--bus", args.bus) if args.bus else ()),
        *(("--state", args.state) if args.state else ()),
        *extra,
    ]
    with log.open("ab") as output:
        server = subprocess.Popen(
            command, env=clean_env(SHOPREC_API_KEYS=API_KEY), stdout=output, stderr=output
        )
    return f"http://127.0.0.1:{port}", server


def stop_server(server: subprocess.Popen[bytes]) -> int:
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, help="a built workspace (its lake gets events)")
    parser.add_argument("--workdir", type=Path, help="where the small shop goes (default: temp)")
    parser.add_argument("--events", type=int, default=20_000, help="the small shop's events")
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--url", help="drive this running server instead (loopback only)")
    parser.add_argument("--pid", type=int, help="the running server's process id (its RSS)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=600.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=60.0, help="seconds per window")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bus", help="event bus URL for the server (several workers: redis://)")
    parser.add_argument("--state", help="live state URL for the server")
    parser.add_argument(
        "--routes",
        nargs="+",
        choices=list(MIX),
        default=list(MIX),
        help="only these routes of the mix, in their shares (memory growth by route)",
    )
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = parser.parse_args()
    if args.duration < 2 * args.window:
        parser.error("--duration must hold at least two windows (first and last are compared)")
    if args.rate <= 0 or args.rate * (args.warmup + args.duration) > 2_000_000:
        parser.error("--rate must be positive and the soak at most 2,000,000 requests")
    if args.url and (urlsplit(args.url).hostname not in {"127.0.0.1", "localhost", "::1"}):
        parser.error("--url must be a loopback address: the soak drives a local server only")
    if args.url and not (args.pid and args.workspace):
        parser.error("--url needs --pid (for its memory) and --workspace (for its ids)")

    temporary = None
    if args.workspace is None:
        temporary = tempfile.TemporaryDirectory(prefix="soak-", dir=args.workdir)
        args.workspace = Path(temporary.name) / "shop"
        started = time.monotonic()
        prepare_shop(
            args.workspace, events=args.events, seed=args.seed, users=args.users, items=args.items
        )
        print(f"built a shop of {args.events:,} events in {time.monotonic() - started:.0f} s")
    log = args.workspace / "logs" / "soak-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    server = None
    try:
        if args.url:
            url, pid = args.url.rstrip("/"), args.pid
        else:
            url, server = start_server(args, args.workspace, log)
            pid = server.pid
        wait_ready(url, server, timeout=600)
        count = int(args.rate * (args.warmup + args.duration))
        tag = f"{os.getpid()}-{int(time.time())}"
        requests = plan(args.workspace, count, args.seed, tag=tag, routes=args.routes)
        gc.collect()
        gc.freeze()  # the plan's objects are never collected: no generator pauses over them
        print(
            f"soak: {url}, {args.rate:g} requests/s, {args.warmup:g} s warm-up + "
            f"{args.duration:g} s in {args.window:g} s windows ({count:,} requests)",
            flush=True,
        )
        load = drive(
            url,
            requests,
            rate=args.rate,
            warmup=args.warmup,
            duration=args.duration,
            window=args.window,
            rss=lambda: tree_rss_mb(pid),
        )
        try:  # uvloop (with uvicorn[standard]): less of the measured time is the generator's
            import uvloop

            soak = uvloop.run(load)
        except ImportError:
            soak = asyncio.run(load)
    finally:
        exit_code = stop_server(server) if server is not None else None
        if server is not None and exit_code not in (0, -signal.SIGTERM):
            print(f"the server exited with {exit_code}; the end of its log:")
            print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))
        if temporary is not None:
            temporary.cleanup()
    summary = summarise(soak, args.duration, args.window)
    summary["settings"] = {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"
    }
    summary["server_exit_code"] = exit_code
    print_summary(summary)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"soak: {'PASS' if summary['passed'] else 'FAIL'}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
