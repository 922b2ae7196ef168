"""The event bus: one contract over memory:// and redis://, then what each adds."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from shoprec.exceptions import ConfigError, DataError, ShoprecError
from shoprec.stream.bus import (
    DEFAULT_GROUP,
    DEFAULT_MAXLEN,
    DEFAULT_STREAM,
    BacklogFullError,
    BusError,
    BusUnavailableError,
    MemoryBus,
    RedisBus,
    open_bus,
    parse_redis_url,
)
from shoprec.stream.protocols import Delivery, EventBus

IDLE_MS = 300
IDLE_S = IDLE_MS / 1000


def event(number: int, user: str = "u1") -> dict[str, Any]:
    return {
        "event_id": f"e{number}",
        "user_id": user,
        "item_id": f"i{number % 7}",
        "event_type": "view",
        "ts": "2024-05-01T10:00:00+00:00",
        "price": 9.5,
        "note": "café ☕",
    }


def with_query(url: str, **query: Any) -> str:
    extra = "&".join(f"{name}={value}" for name, value in query.items())
    return f"{url}{'&' if urlsplit(url).query else '?'}{extra}" if extra else url


def drain(
    bus: EventBus, consumer: str = "c", *, want: int, timeout: float = 10.0
) -> list[Delivery]:
    """Consume (and ack) until ``want`` deliveries came, or fail after ``timeout`` seconds."""
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(got) < want:
        assert time.monotonic() < deadline, f"only {len(got)} of {want} deliveries arrived"
        batch = bus.consume(consumer, count=500, block_ms=50)
        bus.ack([d.message_id for d in batch])
        got += batch
    return got


@dataclass
class Harness:
    """Opens buses of one kind and puts raw messages on them the way the transport allows."""

    kind: str
    open: Callable[..., MemoryBus | RedisBus]
    opened: list[MemoryBus | RedisBus] = field(default_factory=list)
    url: str | None = None

    def inject(self, bus: MemoryBus | RedisBus, fields: dict[str, str]) -> str:
        """A message written around the bus: XADD for Redis, ``publish_raw`` for memory."""
        if isinstance(bus, RedisBus):
            assert self.url is not None
            client = redis.Redis.from_url(self.url.split("?", 1)[0], decode_responses=True)
            try:
                return str(client.xadd(bus.stream, fields))  # type: ignore[arg-type]
            finally:
                client.close()
        return bus.publish_raw([fields["event"]])[0]


@pytest.fixture(params=["memory", "redis"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")

        def open_redis(**options: Any) -> RedisBus:
            bus = open_bus(with_query(url, **options))
            assert isinstance(bus, RedisBus)
            return bus

        made = Harness("redis", open_redis, url=url)
    else:

        def open_memory(**options: Any) -> MemoryBus:
            return MemoryBus(tmp_path / f"bus{len(made.opened)}", **options)

        made = Harness("memory", open_memory)
    opener = made.open

    def tracked(**options: Any) -> MemoryBus | RedisBus:
        bus = opener(**options)
        made.opened.append(bus)
        return bus

    made.open = tracked
    yield made
    for bus in made.opened:
        bus.close()


# -- the contract -------------------------------------------------------------------------------


def test_round_trip_preserves_events_and_order(harness: Harness) -> None:
    bus = harness.open(idle_ms=IDLE_MS)
    first = bus.publish([event(1), event(2)])
    second = bus.publish([event(3), event(4), event(5)])
    assert len(set(first + second)) == 5
    got = bus.consume("c", count=100, block_ms=200)
    assert [d.message_id for d in got] == first + second
    assert [d.event for d in got] == [event(n) for n in range(1, 6)]
    assert all(d.error is None and d.attempts == 1 for d in got)
    assert json.loads(got[0].raw) == event(1)
    bus.ack([d.message_id for d in got])
    assert bus.consume("c", block_ms=0) == []
    assert (bus.pending(), bus.backlog()) == (0, 0)


def test_publishing_nothing_returns_no_ids(harness: Harness) -> None:
    bus = harness.open()
    assert bus.publish([]) == []
    assert bus.backlog() == 0


def test_a_batch_with_an_event_that_is_not_json_is_refused_whole(harness: Harness) -> None:
    bus = harness.open()
    with pytest.raises(DataError, match="event 1"):
        bus.publish([event(1), {"ts": object()}])
    with pytest.raises(DataError, match="event 0"):
        bus.publish([{"price": float("nan")}])
    assert bus.backlog() == 0


def test_unacknowledged_delivery_goes_to_another_consumer_after_idle(harness: Harness) -> None:
    bus = harness.open(idle_ms=IDLE_MS)
    [message_id] = bus.publish([event(1)])
    [first] = bus.consume("a", block_ms=200)
    assert (first.message_id, first.attempts) == (message_id, 1)
    assert bus.consume("b", block_ms=0) == []  # not idle yet
    time.sleep(IDLE_S * 2)
    [again] = bus.consume("b", block_ms=0)
    assert (again.message_id, again.event, again.attempts) == (message_id, event(1), 2)
    assert bus.pending() == 1
    bus.ack([message_id])
    time.sleep(IDLE_S * 2)
    assert bus.consume("a", block_ms=0) == []
    assert bus.pending() == 0


def test_idle_deliveries_come_before_new_ones(harness: Harness) -> None:
    bus = harness.open(idle_ms=IDLE_MS)
    [old] = bus.publish([event(1)])
    bus.consume("a", block_ms=200)
    [new] = bus.publish([event(2)])
    time.sleep(IDLE_S * 2)
    got = bus.consume("b", count=10, block_ms=0)
    assert [(d.message_id, d.attempts) for d in got] == [(old, 2), (new, 1)]


def test_acknowledged_messages_never_come_back(harness: Harness) -> None:
    bus = harness.open(idle_ms=IDLE_MS)
    bus.publish([event(n) for n in range(3)])
    got = bus.consume("a", block_ms=200)
    bus.ack([d.message_id for d in got])
    bus.ack([d.message_id for d in got])  # twice is harmless
    time.sleep(IDLE_S * 2)
    assert bus.consume("a", block_ms=0) == []
    assert bus.consume("b", block_ms=0) == []


def test_pending_and_backlog_count_the_stages(harness: Harness) -> None:
    bus = harness.open(idle_ms=IDLE_MS)
    bus.publish([event(n) for n in range(4)])
    assert (bus.pending(), bus.backlog()) == (0, 4)
    got = bus.consume("a", count=3, block_ms=200)
    assert len(got) == 3
    assert (bus.pending(), bus.backlog()) == (3, 1)
    bus.ack([got[0].message_id, got[1].message_id])
    assert (bus.pending(), bus.backlog()) == (1, 1)
    assert len(bus.consume("b", block_ms=200)) == 1
    assert (bus.pending(), bus.backlog()) == (2, 0)


def test_consume_waits_for_a_publish(harness: Harness) -> None:
    bus = harness.open()
    timer = threading.Timer(0.1, lambda: bus.publish([event(1)]))
    timer.start()
    try:
        started = time.monotonic()
        got = bus.consume("a", block_ms=3000)
        assert [d.event for d in got] == [event(1)]
        assert time.monotonic() - started < 2.5
    finally:
        timer.join()


def test_dead_letter_keeps_the_message_and_reason_and_acks_it(harness: Harness) -> None:
    bus = harness.open(idle_ms=IDLE_MS)
    [message_id] = bus.publish([event(1)])
    [delivery] = bus.consume("a", block_ms=200)
    bus.dead_letter(delivery, "unknown item i1")
    assert bus.dead_letters() == [
        {"message_id": message_id, "raw": delivery.raw, "reason": "unknown item i1"}
    ]
    assert bus.pending() == 0
    time.sleep(IDLE_S * 2)
    assert bus.consume("b", block_ms=0) == []


def test_malformed_messages_come_back_with_an_error(harness: Harness) -> None:
    bus = harness.open(idle_ms=IDLE_MS)
    broken = harness.inject(bus, {"event": "not json {"})
    listed = harness.inject(bus, {"event": "[1, 2]"})
    [good] = bus.publish([event(1)])
    got = bus.consume("a", count=10, block_ms=200)
    assert [d.message_id for d in got] == [broken, listed, good]
    assert got[0].event is None
    assert got[0].raw == "not json {"
    assert got[0].error is not None
    assert "JSON" in got[0].error
    assert got[1].event is None
    assert got[1].raw == "[1, 2]"
    assert got[1].error is not None
    assert "object" in got[1].error
    assert (got[2].event, got[2].error) == (event(1), None)
    for delivery in got[:2]:
        bus.dead_letter(delivery, delivery.error or "")
    bus.ack([good])
    assert [d["raw"] for d in bus.dead_letters()] == ["not json {", "[1, 2]"]
    assert bus.pending() == 0


def test_many_publishers_lose_nothing(harness: Harness) -> None:
    bus = harness.open()
    publishers, batches, size = 6, 10, 4
    errors: list[BaseException] = []

    def publish(worker: int) -> None:
        try:
            for batch in range(batches):
                start = batch * size
                bus.publish([event(n, user=f"p{worker}") for n in range(start, start + size)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(w,)) for w in range(publishers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    got = drain(bus, want=publishers * batches * size)
    seen = [(d.event or {})["user_id"] + "/" + (d.event or {})["event_id"] for d in got]
    assert len(seen) == len(set(seen)) == publishers * batches * size
    for worker in range(publishers):  # each publisher's events arrive in its order
        own = [int(s.split("/e")[1]) for s in seen if s.startswith(f"p{worker}/")]
        assert own == sorted(own)
    assert bus.consume("c", block_ms=0) == []


def test_concurrent_consumers_share_the_work(harness: Harness) -> None:
    bus = harness.open()
    total = 200
    bus.publish([event(n) for n in range(total)])
    got: list[Delivery] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while True:
            batch = bus.consume(name, count=7, block_ms=50)
            if not batch:
                return
            bus.ack([d.message_id for d in batch])
            with lock:
                got.extend(batch)

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(d.message_id for d in got) == sorted({d.message_id for d in got})
    assert len(got) == total
    assert (bus.pending(), bus.backlog()) == (0, 0)


def test_buses_satisfy_the_protocol(harness: Harness) -> None:
    bus: EventBus = harness.open()
    assert bus.publish([event(1)])


# -- memory:// ---------------------------------------------------------------------------------


def test_restart_redelivers_unacknowledged_and_nothing_acknowledged(tmp_path: Path) -> None:
    folder = tmp_path / "stream" / "bus"
    bus = MemoryBus(folder, idle_ms=60_000)
    ids = bus.publish([event(n) for n in range(5)])
    bus.publish_raw(["{broken"])
    got = bus.consume("a", count=3, block_ms=0)
    bus.ack([got[0].message_id, got[1].message_id])
    [dead] = [d for d in bus.consume("a", count=10, block_ms=0) if d.error]
    bus.dead_letter(dead, "malformed")
    bus.close()  # the demo stops: ids[2:] delivered, not acknowledged

    again = MemoryBus(folder, idle_ms=60_000)
    try:
        assert (again.pending(), again.backlog()) == (0, 3)
        redelivered = again.consume("b", count=10, block_ms=0)
        assert [d.message_id for d in redelivered] == ids[2:]
        assert [d.event for d in redelivered] == [event(n) for n in range(2, 5)]
        assert [d.attempts for d in redelivered] == [2, 2, 2]
        assert again.dead_letters() == [
            {"message_id": dead.message_id, "raw": "{broken", "reason": "malformed"}
        ]
        [newer] = again.publish([event(9)])
        assert newer > max(ids)
        assert len(newer) == len(ids[0])
    finally:
        again.close()


def test_restart_counts_backlog_of_undelivered_events(tmp_path: Path) -> None:
    with MemoryBus(tmp_path) as bus:
        bus.publish([event(n) for n in range(3)])
    with MemoryBus(tmp_path) as again:
        assert (again.pending(), again.backlog()) == (0, 3)
        got = again.consume("b", block_ms=0)
        assert [d.attempts for d in got] == [1, 1, 1]


def test_logs_are_compacted_when_everything_is_acknowledged(tmp_path: Path) -> None:
    with MemoryBus(tmp_path) as bus:
        ids = bus.publish([event(n) for n in range(10)])
        drain(bus, want=10)
        assert len((tmp_path / "events.jsonl").read_text().splitlines()) == 1  # last id only
        assert (tmp_path / "acks.jsonl").read_text() == ""
    with MemoryBus(tmp_path) as again:
        assert (again.pending(), again.backlog()) == (0, 0)
        assert again.publish([event(1)])[0] > ids[-1]


def test_logs_are_compacted_when_mostly_acknowledged(tmp_path: Path) -> None:
    with MemoryBus(tmp_path, compact_after=10) as bus:
        bus.publish([event(n) for n in range(20)])
        got = bus.consume("a", count=15, block_ms=0)
        bus.ack([d.message_id for d in got])
        lines = (tmp_path / "events.jsonl").read_text().splitlines()
        assert len(lines) == 1 + 5
    with MemoryBus(tmp_path) as again:
        assert [d.event for d in again.consume("b", block_ms=0)] == [
            event(n) for n in range(15, 20)
        ]


def test_a_torn_log_line_is_skipped(tmp_path: Path) -> None:
    with MemoryBus(tmp_path) as bus:
        bus.publish([event(1), event(2)])
    with (tmp_path / "events.jsonl").open("a") as handle:
        handle.write('{"id": "99-0", "raw": "{\\"event_')  # a crash mid-write
    with MemoryBus(tmp_path) as again:
        assert [d.event for d in again.consume("b", block_ms=0)] == [event(1), event(2)]


def test_backlog_bound_refuses_the_whole_batch(tmp_path: Path) -> None:
    bus = MemoryBus(tmp_path, max_backlog=3)
    try:
        bus.publish([event(1), event(2)])
        with pytest.raises(BacklogFullError, match="at most 3") as raised:
            bus.publish([event(3), event(4)])
        assert isinstance(raised.value, BusUnavailableError)
        assert isinstance(raised.value, ShoprecError)
        assert bus.backlog() == 2
        bus.publish([event(3)])
        drain(bus, want=3)
        bus.publish([event(4), event(5), event(6)])
    finally:
        bus.close()
    with MemoryBus(tmp_path) as again:
        assert again.backlog() == 3  # refused events were never logged


def test_one_bus_per_folder(tmp_path: Path) -> None:
    with MemoryBus(tmp_path), pytest.raises(BusError, match="open in another"):
        MemoryBus(tmp_path)
    MemoryBus(tmp_path).close()  # released on close


def test_memory_without_folder_keeps_nothing(tmp_path: Path) -> None:
    with MemoryBus() as bus:
        bus.publish([event(1)])
        assert bus.folder is None
    assert list(tmp_path.iterdir()) == []


def test_closed_memory_bus_refuses_work_and_wakes_consumers() -> None:
    bus = MemoryBus()
    result: list[list[Delivery]] = []
    waiter = threading.Thread(target=lambda: result.append(bus.consume("a", block_ms=5000)))
    waiter.start()
    time.sleep(0.05)
    bus.close()
    waiter.join(timeout=2)
    assert result == [[]]
    with pytest.raises(BusError, match="closed"):
        bus.publish([event(1)])


def test_blocked_memory_consumer_wakes_when_a_delivery_turns_idle() -> None:
    with MemoryBus(idle_ms=IDLE_MS) as bus:
        bus.publish([event(1)])
        bus.consume("a", block_ms=0)
        started = time.monotonic()
        [again] = bus.consume("b", block_ms=3000)
        assert again.attempts == 2
        assert time.monotonic() - started < 1.5


# -- open_bus ----------------------------------------------------------------------------------


def test_open_memory_bus_with_and_without_folder(tmp_path: Path) -> None:
    bus = open_bus("memory://")
    assert isinstance(bus, MemoryBus)
    assert bus.folder is None
    bus.close()
    durable = open_bus("memory://?max_backlog=1&idle_ms=50", folder=tmp_path / "bus")
    assert isinstance(durable, MemoryBus)
    assert durable.folder == tmp_path / "bus"
    durable.publish([event(1)])
    with pytest.raises(BacklogFullError):
        durable.publish([event(2)])
    durable.close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("kafka://broker:9092", "unknown scheme 'kafka'.*memory://.*redis://"),
        ("events", "unknown scheme ''"),
        ("memory://somewhere", "no host or path"),
        ("memory://?colour=red", "unknown option.*colour.*idle_ms, max_backlog"),
        ("memory://?idle_ms=0", "idle_ms must be a positive integer"),
        ("memory://?max_backlog=lots", "max_backlog must be a positive integer"),
        ("memory://?idle_ms=1&idle_ms=2", "given twice"),
        ("redis://localhost:6379/0?maxlen=-5", "maxlen must be a positive integer"),
        ("redis://localhost:6379/0?stream=", "stream must be a non-empty name"),
        ("redis://localhost:6379/0?colour=red", "unknown option.*colour.*stream"),
        ("redis://localhost:6379/zero", "database must be a number"),
        ("redis://localhost:port/0", "port"),
        ("redis://localhost:99999/0", "port"),
        ("redis:///0", "no host"),
        ("redis://[::1", "IPv6"),
        ("redis://localhost:6379/0?db=1", "unknown option.*db"),
        ("redis://localhost:6379/0?socket_timeout=1&socket_timeout=2", "given twice"),
        ("redis://localhost:6379/0?socket_timeout=soon", "socket_timeout"),
    ],
)
def test_bad_urls_raise_config_errors(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as raised:
        open_bus(url)
    message = str(raised.value)
    assert message.startswith(f"event bus URL {url!r}: ")
    assert "supported: memory:// (options idle_ms, max_backlog) and redis://" in message


@pytest.mark.parametrize(
    "url", ["redis://user:s3cret@localhost:6379/0?colour=red", "memory://user:s3cret@localhost"]
)
def test_config_errors_hide_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        open_bus(url)
    assert "s3cret" not in str(raised.value)
    assert "user:***@localhost" in str(raised.value)


def test_redis_url_options_and_defaults() -> None:
    options = parse_redis_url("redis://localhost:6379/2")
    assert (options.stream, options.group, options.maxlen) == (
        DEFAULT_STREAM,
        DEFAULT_GROUP,
        DEFAULT_MAXLEN,
    )
    custom = parse_redis_url(
        "rediss://h:6380/3?stream=s1&group=g1&maxlen=500&idle_ms=20&socket_timeout=2"
    )
    assert (custom.stream, custom.group, custom.maxlen, custom.idle_ms) == ("s1", "g1", 500, 20)
    assert custom.connection_url == "rediss://h:6380/3?socket_timeout=2"


def test_unreachable_redis_is_unavailable_not_a_crash() -> None:
    with pytest.raises(BusUnavailableError, match="unreachable"):
        open_bus("redis://127.0.0.1:1/0?socket_connect_timeout=1")


# -- redis:// ----------------------------------------------------------------------------------


@pytest.fixture
def redis_bus(redis_url: str) -> Iterator[RedisBus]:
    bus = open_bus(with_query(redis_url, idle_ms=IDLE_MS))
    assert isinstance(bus, RedisBus)
    yield bus
    bus.close()


@pytest.fixture
def raw_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url.split("?", 1)[0], decode_responses=True)
    yield client
    client.close()


def test_redis_bus_creates_stream_and_group(redis_bus: RedisBus, raw_client: redis.Redis) -> None:
    [group] = raw_client.xinfo_groups(redis_bus.stream)
    assert group["name"] == DEFAULT_GROUP
    [message_id] = redis_bus.publish([event(1)])
    [(stored_id, fields)] = raw_client.xrange(redis_bus.stream)
    assert stored_id == message_id
    assert json.loads(fields["event"]) == event(1)


def test_redis_buses_on_one_stream_share_the_group(redis_url: str, redis_bus: RedisBus) -> None:
    other = open_bus(redis_url)
    try:
        redis_bus.publish([event(1)])
        [delivery] = other.consume("elsewhere", block_ms=200)
        assert delivery.event == event(1)
        assert redis_bus.pending() == 1
    finally:
        other.close()


def test_redis_message_without_event_field(redis_bus: RedisBus, raw_client: redis.Redis) -> None:
    raw_client.xadd(redis_bus.stream, {"payload": "x"})
    [delivery] = redis_bus.consume("a", block_ms=200)
    assert delivery.event is None
    assert delivery.error == "message has no 'event' field"
    assert json.loads(delivery.raw) == {"payload": "x"}


def test_redis_dead_letter_stream(redis_bus: RedisBus, raw_client: redis.Redis) -> None:
    [message_id] = redis_bus.publish([event(1)])
    [delivery] = redis_bus.consume("a", block_ms=200)
    redis_bus.dead_letter(delivery, "bad")
    [(_, fields)] = raw_client.xrange(f"{redis_bus.stream}:dead")
    assert fields == {"raw": delivery.raw, "reason": "bad", "message_id": message_id}


def test_redis_bus_recovers_a_deleted_stream(redis_bus: RedisBus, raw_client: redis.Redis) -> None:
    raw_client.delete(redis_bus.stream)
    assert redis_bus.consume("a", block_ms=0) == []
    redis_bus.publish([event(1)])
    assert (redis_bus.pending(), redis_bus.backlog()) == (0, 1)
    assert [d.event for d in redis_bus.consume("a", block_ms=200)] == [event(1)]


def test_redis_backlog_is_counted_without_lag(redis_bus: RedisBus) -> None:
    redis_bus.publish([event(n) for n in range(3)])
    redis_bus.consume("a", count=1, block_ms=200)
    assert redis_bus.backlog() == 2
    last = redis_bus.consume("a", count=1, block_ms=200)[0].message_id
    assert redis_bus._count_after(last) == 1  # the fallback when XINFO has no lag


def test_redis_maxlen_trims_approximately(redis_url: str, raw_client: redis.Redis) -> None:
    bus = open_bus(with_query(redis_url, maxlen=10))
    try:
        for start in range(0, 500, 50):
            bus.publish([event(n) for n in range(start, start + 50)])
        assert 10 <= raw_client.xlen(bus.stream) < 500
    finally:
        bus.close()
