"""Capacity under a mixed load: the highest offered rate ``shoprec serve`` answers with a p99
of at most 25 ms and no errors, from 32 concurrent clients (issue 16, finding 9).

The load is the soak's mix (``soak.plan``: 50 % recommendations, 15 % similar items, 10 %
``POST /score`` 10 x 10, 10 % search, 15 % ``POST /events`` with the API key), sent by
``--clients`` concurrent clients (32: at most 32 requests in flight, each on a connection of
its own, kept alive). The offered rate is stepped up (``--rates``), each step ``--step-seconds``
long: request ``i`` of a step is due at ``start + i / rate``; a client free at that moment sends
it, else it waits for the first client to come free. **Latency is from the moment a request was
due** to the end of its answer, so the time it waited for a free client counts: once the server
answers slower than the rate, the queue and the latencies grow, as a shop's visitors would see.

Per step: offered and achieved rate (2xx answers over the time from the step's start to its
last answer), p50/p90/p99/max overall and p50/p99 per route, errors (any status other than
2xx, a refused connection, no answer within 10 s), the server's CPU (user + system time of the
server process and its children over the step, in cores), the generator's own CPU, the CPU the
host took from the machine (steal) and the load average when the step began.

**Capacity** is the highest offered rate whose step held: no error, p99 at most ``--p99-ms``
(25), and achieved at least 97 % of offered. Stepping stops after ``--past`` steps in a row
that did not hold (2: the table shows the climb past saturation); the steps' planned time is
at most ``--max-seconds``; every step is bounded in count (``rate x step-seconds``) and time (a
request gives up after 10 s, a step's stragglers after 15 s).

The server is ``shoprec serve`` in its own process on 127.0.0.1, started here (``--workers``,
``--bus``, ``--state``, and any ``--serve-arg``), or one already running (``--url`` on a loopback
address and ``--pid``). Events go into the served workspace's lake: use a copy.

Run from the repository root::

    .venv/bin/python benchmarks/capacity.py --workspace /tmp/cap-ssf --workers 2 \\
        --bus 'redis://127.0.0.1:6379/14?stream=cap:events' \\
        --state 'redis://127.0.0.1:6379/14?prefix=cap:'
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from _common import git
from soak import (
    MIX,
    TIMEOUT_SECONDS,
    Request,
    Send,
    open_client,
    plan,
    start_server,
    stop_server,
    tree_rss_mb,
    wait_ready,
)

P99_TARGET_MS = 25.0
HELD_SHARE = 0.97
DEFAULT_RATES = [50, 100, 150, 200, 250, 300, 350, 400, 500, 600, 800]
MAX_REQUESTS = 500_000


# -- what the machine did -------------------------------------------------------------------------
def _ticks_to_s(ticks: int) -> float:
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (0 for one that has gone)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
            children = [
                int(child)
                for task in Path(f"/proc/{current}/task").glob("*/children")
                for child in task.read_text().split()
            ]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += _ticks_to_s(int(fields[11]) + int(fields[12]))  # utime, stime
        todo += children
    return total


def steal_seconds() -> float:
    """CPU time the host has taken from this machine since boot (all CPUs)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = stat.readline().split()
    return _ticks_to_s(int(fields[8])) if len(fields) > 8 else 0.0


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- one step -------------------------------------------------------------------------------------
@dataclass
class Step:
    rate: float
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: {r: [] for r in MIX})
    errors: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    answered: int = 0  # 2xx answers
    wall: float = 0.0
    server_cpu: float = 0.0
    own_cpu: float = 0.0
    steal: float = 0.0
    load: float = 0.0
    rss_mb: float = 0.0

    def summary(self, p99_target: float) -> dict[str, Any]:
        every = [ms for values in self.latencies.values() for ms in values]
        errors = sum(self.errors.values())
        achieved = self.answered / self.wall if self.wall else 0.0
        overall = _percentiles(every, (50, 90, 99, 100))
        held = (
            errors == 0
            and overall["p99_ms"] is not None
            and overall["p99_ms"] <= p99_target
            and achieved >= HELD_SHARE * self.rate
        )
        return {
            "offered_rate": self.rate,
            "achieved_rate": round(achieved, 1),
            "requests": int(self.rate * self.seconds),
            "answered": self.answered,
            "errors": errors,
            "errors_by_route_and_status": dict(sorted(self.errors.items())),
            "first_errors": self.first_errors,
            **overall,
            "routes": {
                route: {"requests": len(values), **_percentiles(values, (50, 99))}
                for route, values in self.latencies.items()
            },
            "server_cpu_cores": round(self.server_cpu / self.wall, 2) if self.wall else None,
            "generator_cpu_cores": round(self.own_cpu / self.wall, 2) if self.wall else None,
            "steal_share": round(self.steal / (self.wall * (os.cpu_count() or 1)), 3)
            if self.wall
            else None,
            "load_average_at_start": self.load,
            "server_rss_mb": round(self.rss_mb, 1),
            "held": held,
        }


def _percentiles(ms: list[float], which: tuple[int, ...]) -> dict[str, float | None]:
    names = {100: "max_ms"}
    if not ms:
        return {names.get(q, f"p{q}_ms"): None for q in which}
    values = np.asarray(ms)
    return {names.get(q, f"p{q}_ms"): round(float(np.percentile(values, q)), 2) for q in which}


async def run_step(
    send: Send,
    requests: list[Request],
    *,
    rate: float,
    seconds: float,
    clients: int,
    pid: int,
) -> Step:
    """``rate x seconds`` requests of ``requests``, each due at ``start + i / rate`` and sent by
    the first of ``clients`` clients free at or after that moment."""
    step = Step(rate, seconds, load=round(os.getloadavg()[0], 2))
    loop = asyncio.get_running_loop()
    free = asyncio.Semaphore(clients)
    count = int(rate * seconds)

    async def one(request: Request, due: float) -> None:
        try:
            async with free:
                status, problem = await send(request)
        except Exception as exc:  # a refused connection or a timeout: an error like a 5xx
            status, problem = 0, f"{type(exc).__name__}: {exc}"[:200]
        except asyncio.CancelledError:  # waiting for a client or an answer when the step ended
            status, problem = 0, "no answer by the end of the step"
        if 200 <= status < 300:
            step.answered += 1
            # perf_counter, not loop.time(): uvloop's clock counts whole milliseconds
            step.latencies[request.route].append((time.perf_counter() - due) * 1000)
        else:
            key = f"{request.route} {status or 'no answer'}"
            step.errors[key] = step.errors.get(key, 0) + 1
            if len(step.first_errors) < 5:
                step.first_errors.append(f"{key}: {problem}")

    cpu, own, stolen = tree_cpu_seconds(pid), own_cpu_seconds(), steal_seconds()
    gc.collect()
    gc.disable()  # the generator's collections would stamp the answers they delay as late
    start = loop.time() + 0.05
    start_clock = time.perf_counter() + (start - loop.time())
    tasks: set[asyncio.Task[None]] = set()
    try:
        for index in range(count):
            due = start + index / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(requests[index], start_clock + index / rate))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            _, unanswered = await asyncio.wait(set(tasks), timeout=TIMEOUT_SECONDS + 5)
            for task in unanswered:
                task.cancel()
            await asyncio.gather(*unanswered, return_exceptions=True)
    finally:
        gc.enable()
    step.wall = time.perf_counter() - start_clock
    step.server_cpu = tree_cpu_seconds(pid) - cpu
    step.own_cpu = own_cpu_seconds() - own
    step.steal = steal_seconds() - stolen
    step.rss_mb = tree_rss_mb(pid)
    return step


async def climb(url: str, requests: list[Request], args: argparse.Namespace, pid: int) -> Any:
    """The warm-up, then each rate of ``args.rates`` in turn until ``args.past`` steps did not
    hold; the steps' summaries."""
    send, close = await open_client(url, connections=args.clients)
    steps: list[dict[str, Any]] = []
    used = 0
    try:
        if args.warmup > 0:
            rate = args.rates[0]
            count = int(rate * args.warmup)
            await run_step(
                send,
                requests[used : used + count],
                rate=rate,
                seconds=args.warmup,
                clients=args.clients,
                pid=pid,
            )
            used += count
            print(f"warm-up: {args.warmup:g} s at {rate:g}/s", flush=True)
        missed = 0
        for rate in args.rates:
            count = int(rate * args.step_seconds)
            step = await run_step(
                send,
                requests[used : used + count],
                rate=rate,
                seconds=args.step_seconds,
                clients=args.clients,
                pid=pid,
            )
            used += count
            steps.append(step.summary(args.p99_ms))
            print_step(steps[-1])
            missed = 0 if steps[-1]["held"] else missed + 1
            if missed >= args.past:
                break
            await asyncio.sleep(args.pause)
    finally:
        await close()
    return steps


# -- the report -----------------------------------------------------------------------------------
def print_step(row: dict[str, Any]) -> None:
    routes = "  ".join(
        f"{route[:5]} {part['p50_ms']}/{part['p99_ms']}" for route, part in row["routes"].items()
    )
    print(
        f"{row['offered_rate']:>6g}/s -> {row['achieved_rate']:>6.1f}/s  "
        f"p50 {row['p50_ms']} p90 {row['p90_ms']} p99 {row['p99_ms']} max {row['max_ms']} ms  "
        f"errors {row['errors']}  server {row['server_cpu_cores']} cores, generator "
        f"{row['generator_cpu_cores']}, steal {row['steal_share']:.1%}, "
        f"load {row['load_average_at_start']}"
        f"  {'held' if row['held'] else 'NOT held'}\n    {routes}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True, help="a built workspace (copy)")
    parser.add_argument("--url", help="drive this running server instead (loopback only)")
    parser.add_argument("--pid", type=int, help="the running server's process id (its CPU)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bus", help="event bus URL for the server (several workers: redis://)")
    parser.add_argument("--state", help="live state URL for the server")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="one more argument for 'shoprec serve' (repeat: --serve-arg=--http --serve-arg=h11)",
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--rates", type=float, nargs="+", default=DEFAULT_RATES)
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds at the first rate")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between steps")
    parser.add_argument("--p99-ms", type=float, default=P99_TARGET_MS)
    parser.add_argument("--past", type=int, default=2, help="failed steps in a row before stopping")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="planned steps at most")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--label", default="", help="a note kept in the results")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if args.url and urlsplit(args.url).hostname not in {"127.0.0.1", "localhost", "::1"}:
        parser.error("--url must be a loopback address: the benchmark drives a local server only")
    if args.url and not args.pid:
        parser.error("--url needs --pid (the server's CPU and memory)")
    if not 1 <= args.clients <= 1024 or args.past < 1 or args.step_seconds <= 0:
        parser.error("--clients 1..1024, --past at least 1, --step-seconds positive")
    if sorted(args.rates) != args.rates or args.rates[0] <= 0:
        parser.error("--rates must be positive and rising")
    planned = args.warmup + len(args.rates) * (args.step_seconds + args.pause)
    if planned > args.max_seconds:
        parser.error(f"the steps plan {planned:.0f} s, over --max-seconds {args.max_seconds:g}")
    count = int(args.rates[0] * args.warmup) + sum(int(r * args.step_seconds) for r in args.rates)
    if count > MAX_REQUESTS:
        parser.error(f"{count:,} requests planned; at most {MAX_REQUESTS:,}")

    log = args.workspace / "logs" / "capacity-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    server = None
    started = datetime.now(UTC)
    try:
        if args.url:
            url, pid, ready_s = args.url.rstrip("/"), args.pid, None
        else:
            url, server = start_server(args, args.workspace, log, extra=args.serve_arg)
            pid, begun = server.pid, time.monotonic()
            wait_ready(url, server, timeout=600)
            ready_s = round(time.monotonic() - begun, 1)
        requests = plan(
            args.workspace, count, args.seed, tag=f"cap-{os.getpid()}-{int(time.time())}"
        )
        gc.collect()
        gc.freeze()  # the plan's objects are never collected
        print(
            f"capacity: {url}, {args.clients} clients, steps of {args.step_seconds:g} s at "
            f"{', '.join(f'{r:g}' for r in args.rates)}/s (p99 <= {args.p99_ms:g} ms, no errors)",
            flush=True,
        )
        load = climb(url, requests, args, pid)
        try:  # uvloop (with uvicorn[standard]): less of the measured time is the generator's
            import uvloop

            steps = uvloop.run(load)
        except ImportError:
            steps = asyncio.run(load)
    finally:
        exit_code = stop_server(server) if server is not None else None
        if server is not None and exit_code not in (0, -signal.SIGTERM):
            print(f"the server exited with {exit_code}; the end of its log:")
            print("\n".join(log.read_text(errors="replace").splitlines()[-30:]))
    held = [row["offered_rate"] for row in steps if row["held"]]
    capacity = max(held) if held else None
    result = {
        "date": started.isoformat(timespec="seconds"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "label": args.label,
        "settings": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "out"
        },
        "server_ready_seconds": ready_s,
        "server_exit_code": exit_code,
        "mix": MIX,
        "capacity_rate": capacity,
        "steps": steps,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"capacity: {capacity}/s (p99 <= {args.p99_ms:g} ms, no errors, >= 97 % achieved)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
