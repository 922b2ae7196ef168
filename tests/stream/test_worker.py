"""The worker: exactly-once application, dead letters, and a consumer killed part-way."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shoprec.config import load_settings
from shoprec.data.lake import Lake
from shoprec.stream.bus import MemoryBus, open_bus
from shoprec.stream.protocols import LiveState
from shoprec.stream.state import MemoryLiveState, open_state
from shoprec.stream.worker import Worker

START = datetime(2025, 3, 1, tzinfo=UTC)


def make_events(count: int, *, users: int = 1000, items: int = 5000) -> list[dict[str, Any]]:
    """Canonical events over three days, ids ``e0`` …"""
    step = timedelta(days=3) / count
    return [
        {
            "event_id": f"e{n}",
            "user_id": f"u{n % users}",
            "item_id": f"i{(n * 7919) % items}",
            "event_type": "view" if n % 5 else "purchase",
            "ts": (START + n * step).isoformat(),
            "source": "test",
        }
        for n in range(count)
    ]


def test_worker_applies_once_dead_letters_and_fills_the_lake(tmp_path: Path) -> None:
    bus = MemoryBus(folder=tmp_path / "bus", idle_ms=200)
    state = MemoryLiveState()
    events = make_events(300)
    bus.publish(events)
    bus.publish(events[:50])  # published twice: applied once
    bus.publish_raw(["{not json", '{"user_id": "u1"}', '["a list"]'])
    bus.publish([{**events[0], "event_id": "bad-ts", "ts": "2999-01-01T00:00:00+00:00"}])
    bus.publish([{**events[0], "event_id": "bad-type", "event_type": "teleport"}])
    worker = Worker(bus, state, Lake(tmp_path / "ws"), batch=64, event_types={"view", "purchase"})
    stats = worker.run(until_idle=True, max_seconds=30)
    assert stats.applied == 300
    assert stats.duplicates == 50
    assert stats.dead_lettered == 5
    assert state.applied_count() == 300
    assert sum(state.user_counters(f"u{n}").get("view", 0) for n in range(1000)) == 240
    assert state.recent("u1") == [(events[1]["item_id"], "view")]
    reasons = [d["reason"] for d in bus.dead_letters()]
    assert any("JSON" in r or "json" in r for r in reasons)
    assert any("event_id" in r for r in reasons)
    assert any("future" in r for r in reasons)
    assert any(r.startswith("event_type: unknown event type 'teleport'") for r in reasons)
    lake = Lake(tmp_path / "ws").events()
    assert lake.height == 300
    assert lake.get_column("event_id").n_unique() == 300
    assert bus.pending() == 0
    assert bus.backlog() == 0
    bus.close()


def test_a_lingering_worker_takes_a_burst_as_one_batch() -> None:
    bus = MemoryBus()
    state = MemoryLiveState()
    events = make_events(30)
    worker = Worker(bus, state, None, batch=100, linger_ms=1000)
    bus.publish(events[:1])
    # the rest of the burst arrives while the worker lingers on the first event
    later = threading.Timer(0.05, bus.publish, args=(events[1:],))
    later.start()
    assert worker.step() == 30
    later.join()
    assert state.applied_count() == 30
    eager = Worker(bus, MemoryLiveState(), None, batch=100)
    bus.publish([{**events[0], "event_id": "x1"}])
    assert eager.step() == 1
    bus.close()


def test_sparse_events_reach_the_lake_in_one_write_per_flush_interval(tmp_path: Path) -> None:
    bus = MemoryBus(folder=tmp_path / "bus")
    state = MemoryLiveState()
    lake = Lake(tmp_path / "ws")
    now = [100.0]
    worker = Worker(bus, state, lake, block_ms=0, flush_seconds=5.0, clock=lambda: now[0])

    def writes() -> int:  # lake files are named part-<write>-<n>
        return len({path.name.rsplit("-", 1)[0] for path in lake.event_files()})

    events = make_events(8)
    for event in events[:4]:  # one a second, the bus idle in between
        bus.publish([event])
        assert worker.step() == 1
        assert worker.step() == 0
        now[0] += 1.0
    assert state.applied_count() == 4  # applied at once
    assert writes() == 0  # the lake write waits for its interval
    assert bus.pending() == 4  # and the bus keeps them meanwhile
    now[0] = 104.9  # 4.9 s after the first
    worker.step()
    assert writes() == 0
    now[0] = 105.0
    worker.step()
    assert writes() == 1
    assert bus.pending() == 0
    # after a long quiet spell, a burst is still one write, due 5 s after its first event
    now[0] = 500.0
    for event in events[4:]:
        bus.publish([event])
        worker.step()
        now[0] += 1.0
    assert writes() == 1
    now[0] = 505.0
    worker.step()
    assert writes() == 2
    assert lake.events().get_column("event_id").sort().to_list() == sorted(
        e["event_id"] for e in events
    )
    assert bus.pending() == 0
    bus.close()


def test_lake_writes_wait_less_than_the_bus_takes_to_deliver_again() -> None:
    bus = MemoryBus(idle_ms=4000)
    assert Worker(bus, MemoryLiveState(), None, flush_seconds=10.0).flush_seconds == 2.0
    assert Worker(bus, MemoryLiveState(), None, flush_seconds=1.0).flush_seconds == 1.0
    bus.close()


def test_a_failing_backend_is_tried_again_less_and_less_often_until_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = MemoryBus(idle_ms=20)  # what a failed step took is delivered again soon
    bus.publish(make_events(2))
    tries: list[float] = []

    class Flaky(MemoryLiveState):
        def apply_each(self, events: Any) -> list[bool]:
            tries.append(time.monotonic())
            if len(tries) <= 3:
                raise ConnectionError("redis is down")
            return super().apply_each(events)

    worker = Worker(bus, Flaky(), None, retry_seconds=0.1)
    with caplog.at_level("WARNING", logger="shoprec.stream"):
        stats = worker.run(max_seconds=3.0)
    assert stats.failed_steps == 3
    assert stats.errors == ["ConnectionError: redis is down"] * 3
    assert stats.applied == 2  # then it recovered, and nothing was lost
    gaps = [later - earlier for earlier, later in itertools.pairwise(tries[:4])]
    assert gaps[0] >= 0.1
    assert gaps[1] >= 0.2
    assert gaps[2] >= 0.4  # twice as long each time
    messages = [record.getMessage() for record in caplog.records]
    assert sum("worker step failed" in m for m in messages) == 1  # the first failure
    assert any("recovered after 3 failed steps" in m for m in messages)
    bus.close()


def test_the_server_s_worker_and_a_consumer_process_are_set_up_from_the_settings(
    tmp_path: Path,
) -> None:
    settings = load_settings(workspace=tmp_path)
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"lake_flush_seconds": 4.0})}
    )
    bus = MemoryBus()
    state = MemoryLiveState()
    thread = Worker.for_shop(settings, bus, state, lambda: None, consumer="api", in_server=True)
    process = Worker.for_shop(settings, bus, state, lambda: None, consumer="worker-1")
    assert (thread.linger_ms, thread.block_ms, thread.refresh_vectors) == (50, 20, False)
    assert (process.linger_ms, process.block_ms, process.refresh_vectors) == (0, 50, True)
    for worker in (thread, process):
        assert worker.flush_seconds == 4.0
        assert worker.lake is not None
        assert worker.lake.root == Lake(tmp_path).root
        assert worker.event_types is not None
        assert {"view", "purchase"} <= set(worker.event_types)
    shared = settings.serving.model_copy(update={"state": "redis://127.0.0.1:6379/0"})
    over_redis = settings.model_copy(update={"serving": shared})
    threaded = Worker.for_shop(over_redis, bus, state, lambda: None, consumer="a", in_server=True)
    assert threaded.refresh_vectors  # other replicas read the vectors it stores
    bus.close()


def test_a_restarted_memory_bus_loses_nothing_accepted(tmp_path: Path) -> None:
    first = MemoryBus(folder=tmp_path / "bus")
    first.publish(make_events(100))
    taken = first.consume("c", count=40)
    first.ack([d.message_id for d in taken])
    first.close()  # the demo stops with 60 events accepted and not applied
    second = MemoryBus(folder=tmp_path / "bus")
    state = MemoryLiveState()
    Worker(second, state, None).run(until_idle=True, max_seconds=30)
    assert state.applied_count() == 60
    assert not state.was_applied("e0")
    assert state.was_applied("e99")
    second.close()


def _consumer(
    bus: str, state: str, workspace: Path, name: str, *extra: str
) -> subprocess.Popen[bytes]:
    shoprec = str(Path(sys.executable).parent / "shoprec")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPREC_")}
    command = [shoprec, "consume", "--bus", bus, "--state", state, "-w", str(workspace)]
    return subprocess.Popen(
        [*command, "--consumer", name, *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _state_url(redis_url: str) -> str:
    """A live state URL beside the test's bus stream (its keys go with the stream's)."""
    base, _, query = redis_url.partition("?")
    stream = dict(part.split("=", 1) for part in query.split("&"))["stream"]
    return f"{base}?prefix={stream.removesuffix(':events')}:state:"


def _wait_applied(consumer: subprocess.Popen[bytes], state: LiveState, count: int) -> None:
    """Until the consumer process has applied ``count`` events (fails if it exits first)."""
    deadline = time.monotonic() + 120
    while state.applied_count() < count:
        assert consumer.poll() is None, consumer.stderr.read() if consumer.stderr else ""
        assert time.monotonic() < deadline, "the consumer applied too little in 120 s"
        time.sleep(0.05)


def test_a_killed_consumer_loses_and_repeats_nothing(redis_url: str, tmp_path: Path) -> None:
    """100 000 events on Redis; the consumer process is SIGKILLed part-way; a new one finishes:
    every event applied exactly once, no duplicate in the lake, nothing pending."""
    bus_url = f"{redis_url}&idle_ms=1000"
    state_url = _state_url(redis_url)
    bus = open_bus(bus_url)
    state = open_state(state_url)
    events = make_events(100_000)
    for start in range(0, len(events), 5000):
        bus.publish(events[start : start + 5000])
    workspace = tmp_path / "ws"
    first = _consumer(bus_url, state_url, workspace, "first")
    _wait_applied(first, state, 30_000)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    if first.stderr is not None:
        first.stderr.close()
    killed_at = state.applied_count()
    assert killed_at < 100_000, "the consumer finished before it could be killed"
    second = _consumer(bus_url, state_url, workspace, "second", "--until-idle")
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr.decode()
    assert state.applied_count() == 100_000
    users = {e["user_id"] for e in events}
    counted = sum(sum(state.user_counters(u).values()) for u in users)
    assert counted == 100_000
    lake = Lake(workspace).events()
    assert lake.height == 100_000
    assert lake.get_column("event_id").n_unique() == 100_000
    assert set(lake.get_column("event_id").to_list()) == {e["event_id"] for e in events}
    assert bus.pending() == 0
    assert bus.backlog() == 0
    assert bus.dead_letters() == []
    bus.close()


def test_a_consumer_stopped_by_sigterm_writes_and_acknowledges_what_it_applied(
    redis_url: str, tmp_path: Path
) -> None:
    state_url = _state_url(redis_url)
    bus = open_bus(redis_url)  # re-delivery after 30 s; the lake written every 10 s
    state = open_state(state_url)
    events = make_events(50)
    bus.publish(events)
    workspace = tmp_path / "ws"
    consumer = _consumer(redis_url, state_url, workspace, "stopped")
    _wait_applied(consumer, state, 50)
    assert bus.pending() == 50  # applied, waiting for the lake write
    consumer.send_signal(signal.SIGTERM)
    _, stderr = consumer.communicate(timeout=60)
    assert consumer.returncode == 0, stderr.decode()
    assert bus.pending() == 0
    lake = Lake(workspace).events()
    assert sorted(lake.get_column("event_id").to_list()) == sorted(e["event_id"] for e in events)
    bus.close()
