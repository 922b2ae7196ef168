"""The event bus (DESIGN §6): events in, delivered to a consumer group, acknowledged once applied.

Two implementations of :class:`~shoprec.stream.protocols.EventBus`, opened by URL with
:func:`open_bus`:

``memory://``
    :class:`MemoryBus`, the embedded default for one process: an in-process queue backed by a
    local append-only log (JSON Lines) so that a restart of the demo loses nothing already
    accepted. Options: ``idle_ms`` and ``max_backlog`` (``memory://?max_backlog=50000``).

``redis://host:port/db`` (or ``rediss://``)
    :class:`RedisBus`, for several API replicas and workers sharing one Redis: a Redis Stream
    read through a consumer group. Options: ``stream`` (default ``shoprec:events``), ``group``
    (``shoprec-workers``), ``maxlen`` (1,000,000), ``idle_ms`` (30,000) and redis-py's own
    connection options (``socket_timeout``, ``health_check_interval``, ...). Needs Redis 6.2 or
    later (``XAUTOCLAIM``); :meth:`RedisBus.backlog` is exact from 7.0 on (``lag``), and the
    ``redis`` extra (``pip install 'shoprec[redis]'``).

Both deliver at least once: a delivery that is not acknowledged within ``idle_ms`` is delivered
again (to any consumer) with ``attempts`` one higher, so the consumer must apply events
idempotently (the live state does, by ``event_id``) and dead-letter what it cannot apply. A
message whose text is not a JSON object comes back as a :class:`Delivery` with ``event=None``
and ``error`` set, never as an exception.

Both also offer ``publish_raw(texts)`` besides the Protocol: it appends message texts exactly as
given, for tools and tests that need to put a malformed message on the bus.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from shoprec.exceptions import (
    BacklogFullError,
    BusError,
    BusUnavailableError,
    ConfigError,
    DataError,
)
from shoprec.files import replaced_atomically
from shoprec.stream.protocols import Delivery, EventBus
from shoprec.stream.urls import UrlSyntax, redact_url

try:  # the redis extra; a redis:// URL without it fails when parsed (shoprec.compat.require)
    import redis
except ImportError:  # pragma: no cover - the test install has every extra
    redis = None  # type: ignore[assignment]

try:  # POSIX: one process owns a memory bus folder at a time
    import fcntl
except ImportError:  # pragma: no cover - Windows runs without the folder lock
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_IDLE_MS",
    "DEFAULT_MAXLEN",
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_STREAM",
    "BacklogFullError",
    "BusError",
    "BusUnavailableError",
    "MemoryBus",
    "RedisBus",
    "RedisBusOptions",
    "open_bus",
    "parse_redis_url",
    "redact_url",
]

log = logging.getLogger("shoprec.stream")

DEFAULT_STREAM = "shoprec:events"
DEFAULT_GROUP = "shoprec-workers"
DEFAULT_IDLE_MS = 30_000
DEFAULT_MAXLEN = 1_000_000
DEFAULT_MAX_BACKLOG = 100_000


# --------------------------------------------------------------------------- shared helpers


def _encode(events: Sequence[dict[str, Any]]) -> list[str]:
    """Each event as compact JSON text; the whole batch is refused if one is not JSON-ready."""
    texts = []
    for position, event in enumerate(events):
        if not isinstance(event, dict):
            raise DataError(f"event {position} is a {type(event).__name__}, not a dict")
        try:
            text = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DataError(f"event {position} is not JSON-ready: {exc}") from exc
        texts.append(text)
    return texts


def _decode(message_id: str, raw: str, attempts: int) -> Delivery:
    """A delivery of ``raw``; a text that is not a JSON object gives ``event=None`` and why."""
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return Delivery(message_id, None, raw, f"not valid JSON: {exc}", attempts)
    if not isinstance(event, dict):
        return Delivery(
            message_id, None, raw, f"not a JSON object: {type(event).__name__}", attempts
        )
    return Delivery(message_id, event, raw, None, attempts)


def _check_raw(texts: Sequence[str]) -> list[str]:
    bad = [position for position, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise DataError(f"raw messages must be str; positions {bad} are not")
    return list(texts)


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


# --------------------------------------------------------------------------- memory://


@dataclass
class _Pending:
    consumer: str
    since: float  # time.monotonic() of the last delivery


@dataclass
class _Recovered:
    """What a bus folder's logs say: unacknowledged messages in order, and more."""

    messages: dict[str, str] = field(default_factory=dict)  # id -> raw text
    attempts: dict[str, int] = field(default_factory=dict)  # id -> deliveries so far
    dead: list[dict[str, Any]] = field(default_factory=list)
    last_id: tuple[int, int] = (0, 0)


def _parse_id(message_id: str) -> tuple[int, int]:
    millis, _, seq = message_id.partition("-")
    return int(millis), int(seq or 0)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a log, skipping (and logging) lines a crash left torn."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                yield record
            else:
                log.warning("%s:%d: skipped an unreadable log line", path, number)


class _BusLog:
    """The files of a durable :class:`MemoryBus` in one folder.

    ``events.jsonl``
        every accepted message, ``{"id", "raw"}``; after a compaction it starts with
        ``{"last_id"}`` so message ids keep increasing.
    ``acks.jsonl``
        ``{"delivered": [ids]}`` and ``{"acked": [ids]}`` in the order they happened (a
        compaction folds deliveries into ``{"attempts": {id: n}}``), so a restart re-delivers
        exactly the unacknowledged messages with their attempt counts.
    ``dead.jsonl``
        dead letters, ``{"message_id", "raw", "reason"}``; never compacted.
    ``bus.lock``
        held (``flock``) while a bus has the folder open: one process per folder.

    Every record is written with one ``write`` and flushed to the OS, which survives a crash of
    the process; ``fsync=True`` also survives a crash of the machine, at a cost per publish.
    """

    def __init__(self, folder: Path, *, fsync: bool) -> None:
        self.folder = folder
        self._fsync = fsync
        folder.mkdir(parents=True, exist_ok=True)
        self._lock_handle = self._take_folder_lock()
        self._events: IO[str] | None = None
        self._acks: IO[str] | None = None
        self._dead: IO[str] | None = None
        self.lines = 0  # records in events.jsonl and acks.jsonl since the last compaction

    @property
    def events_path(self) -> Path:
        return self.folder / "events.jsonl"

    @property
    def acks_path(self) -> Path:
        return self.folder / "acks.jsonl"

    @property
    def dead_path(self) -> Path:
        return self.folder / "dead.jsonl"

    def _take_folder_lock(self) -> IO[str]:
        handle = (self.folder / "bus.lock").open("a", encoding="utf-8")
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                handle.close()
                raise BusError(
                    f"{self.folder}: the event bus log is open in another bus or process; "
                    "use redis:// to share a bus between processes"
                ) from exc
        return handle

    def recover(self) -> _Recovered:
        """Read the logs, then compact them to what is still unacknowledged."""
        state = _Recovered()
        for record in _read_jsonl(self.events_path):
            if "last_id" in record:
                state.last_id = max(state.last_id, _parse_id(str(record["last_id"])))
            elif isinstance(record.get("id"), str) and isinstance(record.get("raw"), str):
                state.messages[record["id"]] = record["raw"]
                state.last_id = max(state.last_id, _parse_id(record["id"]))
        for record in _read_jsonl(self.acks_path):
            _replay_ack_record(state, record)
        state.dead = [
            {"message_id": r.get("message_id"), "raw": r.get("raw"), "reason": r.get("reason")}
            for r in _read_jsonl(self.dead_path)
        ]
        self.compact(state.last_id, state.messages, state.attempts)
        self._dead = self.dead_path.open("a", encoding="utf-8")
        return state

    def compact(
        self, last_id: tuple[int, int], messages: Mapping[str, str], attempts: Mapping[str, int]
    ) -> None:
        """Rewrite the logs with only the unacknowledged messages.

        events.jsonl is replaced before acks.jsonl: a crash in between leaves acknowledgements
        of messages that are gone, which replay ignores, never an acknowledged message back.
        """
        self._close_logs()
        head = json.dumps({"last_id": f"{last_id[0]}-{last_id[1]}"})
        lines = [head] + [json.dumps({"id": i, "raw": raw}) for i, raw in messages.items()]
        self._replace(self.events_path, lines)
        delivered = {i: n for i, n in attempts.items() if i in messages and n > 0}
        self._replace(self.acks_path, [json.dumps({"attempts": delivered})] if delivered else [])
        self._events = self.events_path.open("a", encoding="utf-8")
        self._acks = self.acks_path.open("a", encoding="utf-8")
        self.lines = 0

    def _replace(self, path: Path, lines: list[str]) -> None:
        with (
            replaced_atomically(path) as temporary,
            temporary.open("w", encoding="utf-8") as handle,
        ):
            handle.write("".join(line + "\n" for line in lines))
            handle.flush()
            if self._fsync:
                os.fsync(handle.fileno())

    def _write(self, handle: IO[str] | None, records: Sequence[Mapping[str, Any]]) -> None:
        if handle is None:
            raise BusError(f"{self.folder}: the event bus log is closed")
        try:
            handle.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            handle.flush()
            if self._fsync:
                os.fsync(handle.fileno())
        except OSError as exc:
            raise BusUnavailableError(f"{self.folder}: cannot write the bus log: {exc}") from exc

    def published(self, messages: Sequence[tuple[str, str]]) -> None:
        self._write(self._events, [{"id": i, "raw": raw} for i, raw in messages])
        self.lines += len(messages)

    def delivered(self, message_ids: Sequence[str]) -> None:
        self._write(self._acks, [{"delivered": list(message_ids)}])
        self.lines += 1

    def acked(self, message_ids: Sequence[str]) -> None:
        self._write(self._acks, [{"acked": list(message_ids)}])
        self.lines += 1

    def dead_lettered(self, record: Mapping[str, Any]) -> None:
        self._write(self._dead, [record])

    def _close_logs(self) -> None:
        for handle in (self._events, self._acks):
            if handle is not None:
                handle.close()
        self._events = self._acks = None

    def close(self) -> None:
        self._close_logs()
        if self._dead is not None:
            self._dead.close()
            self._dead = None
        self._lock_handle.close()  # releases the flock


def _replay_ack_record(state: _Recovered, record: Mapping[str, Any]) -> None:
    if isinstance(record.get("attempts"), dict):
        for message_id, count in record["attempts"].items():
            if message_id in state.messages and isinstance(count, int):
                state.attempts[message_id] = count
    for message_id in record.get("delivered") or ():
        if message_id in state.messages:
            state.attempts[message_id] = state.attempts.get(message_id, 0) + 1
    for message_id in record.get("acked") or ():
        state.messages.pop(message_id, None)
        state.attempts.pop(message_id, None)


class MemoryBus:
    """An in-process :class:`~shoprec.stream.protocols.EventBus`, durable through a local log.

    With a ``folder`` every accepted message, delivery and acknowledgement is appended to the
    logs described in :class:`_BusLog` before it takes effect, and a new bus over the same folder
    delivers again every message that was published but not acknowledged (with its attempt
    count carried on); the logs are compacted on open, when everything is acknowledged, and when
    most of what they hold is acknowledged. Without a folder nothing is kept (tests).

    Thread-safe: publishers may be request threads, consumers worker threads. ``max_backlog``
    bounds the unacknowledged messages held (delivered or not); beyond it :meth:`publish` raises
    :class:`BacklogFullError` and accepts nothing of the batch. Message ids look like Redis
    stream ids (``<ms>-<seq>``) and increase across restarts.

    ``fsync=True`` makes every log record survive a crash of the machine, not only of the
    process; ``compact_after`` is how many log records may pile up before the logs are rewritten
    while at least half of the messages they hold are acknowledged. One bus at a time may have a
    folder open (:class:`BusError` otherwise): share a bus between processes with ``redis://``.
    """

    def __init__(
        self,
        folder: Path | None = None,
        *,
        idle_ms: int = DEFAULT_IDLE_MS,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        fsync: bool = False,
        compact_after: int = 10_000,
    ) -> None:
        self.idle_ms = _positive("idle_ms", idle_ms)
        self._idle_s = self.idle_ms / 1000
        self._max_backlog = _positive("max_backlog", max_backlog)
        self._compact_after = _positive("compact_after", compact_after)
        self._cond = threading.Condition(threading.RLock())
        self._raw: dict[str, str] = {}  # unacknowledged messages, in id order
        self._ready: deque[str] = deque()  # not delivered since this bus opened
        self._pending: dict[str, _Pending] = {}  # delivered, oldest delivery first
        self._attempts: dict[str, int] = {}
        self._dead: list[dict[str, Any]] = []
        self._last_id = (0, 0)
        self._closed = False
        self._log = _BusLog(Path(folder), fsync=fsync) if folder is not None else None
        if self._log is not None:
            self._restore(self._log)

    def _restore(self, bus_log: _BusLog) -> None:
        try:
            state = bus_log.recover()
        except BaseException:
            bus_log.close()
            raise
        self._raw = state.messages
        self._ready.extend(state.messages)
        self._attempts = state.attempts
        self._dead = state.dead
        self._last_id = state.last_id
        if state.messages:
            log.info(
                "%s: %d unacknowledged events to deliver again", bus_log.folder, len(self._raw)
            )

    # -- publishing

    def publish(self, events: Sequence[dict[str, Any]]) -> list[str]:
        """Append events (all or none); their message ids."""
        return self.publish_raw(_encode(events))

    def publish_raw(self, texts: Sequence[str]) -> list[str]:
        """Append message texts exactly as given (a malformed one is delivered with ``error``)."""
        texts = _check_raw(texts)
        if not texts:
            return []
        with self._cond:
            self._check_open()
            if len(self._raw) + len(texts) > self._max_backlog:
                raise BacklogFullError(
                    f"the event bus holds {len(self._raw)} unacknowledged events and takes at "
                    f"most {self._max_backlog}; {len(texts)} more refused, try again later"
                )
            messages = [(self._next_id(), text) for text in texts]
            if self._log is not None:
                self._log.published(messages)
            for message_id, text in messages:
                self._raw[message_id] = text
                self._ready.append(message_id)
            self._cond.notify_all()
        return [message_id for message_id, _ in messages]

    def _next_id(self) -> str:
        millis = int(time.time() * 1000)
        last_millis, last_seq = self._last_id
        self._last_id = (millis, 0) if millis > last_millis else (last_millis, last_seq + 1)
        return f"{self._last_id[0]}-{self._last_id[1]}"

    # -- consuming

    def consume(self, consumer: str, count: int = 100, block_ms: int = 100) -> list[Delivery]:
        """Up to ``count`` deliveries: idle pending ones first, then new ones; waits up to
        ``block_ms`` when there is nothing (returns empty if the bus is closed meanwhile)."""
        if count <= 0:
            return []
        deadline = time.monotonic() + max(block_ms, 0) / 1000
        with self._cond:
            self._check_open()
            while not self._closed:
                now = time.monotonic()
                deliveries = self._take(consumer, count, now)
                if deliveries:
                    if self._log is not None:
                        self._log.delivered([d.message_id for d in deliveries])
                    return deliveries
                if now >= deadline:
                    break
                self._cond.wait(min(deadline - now, self._until_idle(now)))
        return []

    def _take(self, consumer: str, count: int, now: float) -> list[Delivery]:
        chosen: list[str] = []
        for message_id, pending in self._pending.items():  # oldest delivery first
            if len(chosen) >= count or now - pending.since < self._idle_s:
                break
            chosen.append(message_id)
        while len(chosen) < count and self._ready:
            chosen.append(self._ready.popleft())
        deliveries = []
        for message_id in chosen:
            self._pending.pop(message_id, None)  # re-inserted last: newest delivery
            self._pending[message_id] = _Pending(consumer, now)
            attempts = self._attempts.get(message_id, 0) + 1
            self._attempts[message_id] = attempts
            deliveries.append(_decode(message_id, self._raw[message_id], attempts))
        return deliveries

    def _until_idle(self, now: float) -> float:
        """Seconds until the oldest pending delivery becomes idle (a long wait if none)."""
        oldest = next(iter(self._pending.values()), None)
        if oldest is None:
            return 3600.0
        return max(oldest.since + self._idle_s - now, 0.001)

    def ack(self, message_ids: Sequence[str]) -> None:
        """Forget delivered messages for good (ids not pending are ignored, as in Redis)."""
        with self._cond:
            self._check_open()
            acked = [i for i in dict.fromkeys(message_ids) if i in self._pending]
            if not acked:
                return
            if self._log is not None:
                self._log.acked(acked)
            for message_id in acked:
                del self._pending[message_id]
                del self._raw[message_id]
                self._attempts.pop(message_id, None)
            self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self._log is None or self._log.lines == 0:
            return
        if not self._raw or (
            self._log.lines >= self._compact_after and len(self._raw) <= self._log.lines // 2
        ):
            self._log.compact(self._last_id, self._raw, self._attempts)

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Record the message with ``reason`` in the dead letters, then acknowledge it."""
        with self._cond:
            self._check_open()
            raw = self._raw.get(delivery.message_id, delivery.raw)
            record = {"message_id": delivery.message_id, "raw": raw, "reason": reason}
            if self._log is not None:
                self._log.dead_lettered(record)
            self._dead.append(record)
            self.ack([delivery.message_id])

    def dead_letters(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(record) for record in self._dead]

    # -- counts and life cycle

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def backlog(self) -> int:
        with self._cond:
            return len(self._ready)

    @property
    def folder(self) -> Path | None:
        """Where the logs are (None: nothing is kept)."""
        return self._log.folder if self._log is not None else None

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("the event bus is closed")

    def close(self) -> None:
        """Close the logs and release the folder; blocked consumers return empty."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            if self._log is not None:
                self._log.close()
            self._cond.notify_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- redis://


@contextlib.contextmanager
def _redis_errors(where: str) -> Iterator[None]:
    """redis-py's errors as :class:`BusError` (unreachable: :class:`BusUnavailableError`)."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BusUnavailableError(f"{where}: Redis is unreachable: {exc}") from exc
    except redis.RedisError as exc:
        raise BusError(f"{where}: {exc}") from exc


def _entries(reply: Any) -> list[tuple[str, dict[str, str] | None]]:
    """``[(id, fields), ...]`` from an XREADGROUP/XAUTOCLAIM/XRANGE entry list."""
    return [(str(entry[0]), entry[1]) for entry in reply or ()]


class RedisBus:
    """An :class:`~shoprec.stream.protocols.EventBus` on a Redis Stream and a consumer group.

    Each message holds one field, ``event``, with the event's JSON text. :meth:`consume` first
    claims (``XAUTOCLAIM``) pending deliveries idle longer than ``idle_ms`` — a consumer that
    died — and then reads new ones (``XREADGROUP >``); :meth:`ack` is ``XACK``. Dead letters go to
    the stream ``<stream>:dead`` as ``{raw, reason, message_id}``, added and the original
    acknowledged in one ``MULTI``.

    The stream is trimmed with ``XADD … MAXLEN ~ maxlen``. Trimming does not look at the
    consumer group: when more than ``maxlen`` messages are published while an old one is still
    unacknowledged (or not yet read), that one is lost. So the bound is large (default
    1,000,000: some hundreds of MB of Redis memory for typical events) — big enough that only a
    backlog many hours deep could reach it, small enough that Redis cannot grow without end.
    Acknowledged messages are not deleted, only trimmed, so recent history stays readable.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        stream: str = DEFAULT_STREAM,
        group: str = DEFAULT_GROUP,
        maxlen: int = DEFAULT_MAXLEN,
        idle_ms: int = DEFAULT_IDLE_MS,
        where: str = "redis",
    ) -> None:
        self._client = client
        self.stream = stream
        self.group = group
        self.dead_stream = f"{stream}:dead"
        self._maxlen = _positive("maxlen", maxlen)
        self.idle_ms = _positive("idle_ms", idle_ms)
        self._where = f"{where} stream {stream!r}"
        timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        # a blocking read must come back before the socket gives up on it
        self._max_block_ms = max(int(timeout * 1000) - 1000, 1) if timeout else None
        self._ensure_group()

    def _ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing; reads start at the beginning."""
        with _redis_errors(self._where):
            try:
                self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _group_call(self, call: Callable[[], Any]) -> Any:
        """Run ``call``; if the stream or group was deleted meanwhile, recreate them and retry."""
        with _redis_errors(self._where):
            try:
                return call()
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
            self._ensure_group()
            return call()

    # -- publishing

    def publish(self, events: Sequence[dict[str, Any]]) -> list[str]:
        """Append events in one ``MULTI`` (all or none); their message ids."""
        return self.publish_raw(_encode(events))

    def publish_raw(self, texts: Sequence[str]) -> list[str]:
        """Append message texts exactly as given (a malformed one is delivered with ``error``)."""
        texts = _check_raw(texts)
        if not texts:
            return []
        with _redis_errors(self._where), self._client.pipeline(transaction=True) as pipe:
            for text in texts:
                pipe.xadd(self.stream, {"event": text}, maxlen=self._maxlen, approximate=True)
            ids = pipe.execute()
        return [str(message_id) for message_id in ids]

    # -- consuming

    def consume(self, consumer: str, count: int = 100, block_ms: int = 100) -> list[Delivery]:
        """Up to ``count`` deliveries: idle pending ones (claimed), then new ones; waits up to
        ``block_ms`` (capped below the socket timeout) when there is nothing."""
        if count <= 0:
            return []
        deliveries = self._claim_idle(consumer, count)
        if len(deliveries) < count:
            block: int | None = None
            if not deliveries and block_ms > 0:
                block = min(block_ms, self._max_block_ms or block_ms)
            deliveries += self._read_new(consumer, count - len(deliveries), block)
        return deliveries

    def _claim_idle(self, consumer: str, count: int) -> list[Delivery]:
        reply = self._group_call(
            lambda: self._client.xautoclaim(
                self.stream,
                self.group,
                consumer,
                min_idle_time=self.idle_ms,
                start_id="0-0",
                count=count,
            )
        )
        if len(reply) > 2 and reply[2]:
            log.warning("%s: %d pending messages were trimmed away", self._where, len(reply[2]))
        claimed = [(i, fields) for i, fields in _entries(reply[1]) if fields is not None]
        if not claimed:
            return []
        attempts = self._delivery_counts([i for i, _ in claimed])
        return [self._delivery(i, fields, attempts.get(i, 2)) for i, fields in claimed]

    def _delivery_counts(self, message_ids: Sequence[str]) -> dict[str, int]:
        """How often each message was delivered (``XPENDING``), one round trip for all."""
        with _redis_errors(self._where), self._client.pipeline(transaction=False) as pipe:
            for message_id in message_ids:
                pipe.xpending_range(self.stream, self.group, message_id, message_id, 1)
            replies = pipe.execute()
        return {
            str(row["message_id"]): int(row["times_delivered"]) for rows in replies for row in rows
        }

    def _read_new(self, consumer: str, count: int, block: int | None) -> list[Delivery]:
        reply = self._group_call(
            lambda: self._client.xreadgroup(
                self.group, consumer, {self.stream: ">"}, count=count, block=block
            )
        )
        return [
            self._delivery(message_id, fields, 1)
            for _, entries in reply or ()
            for message_id, fields in _entries(entries)
            if fields is not None
        ]

    @staticmethod
    def _delivery(message_id: str, fields: Mapping[str, str], attempts: int) -> Delivery:
        raw = fields.get("event")
        if raw is None:
            text = json.dumps(dict(fields), ensure_ascii=False)
            return Delivery(message_id, None, text, "message has no 'event' field", attempts)
        return _decode(message_id, raw, attempts)

    def ack(self, message_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(message_ids))
        if ids:
            self._group_call(lambda: self._client.xack(self.stream, self.group, *ids))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """``XADD <stream>:dead {raw, reason, message_id}`` and ``XACK`` in one ``MULTI``."""
        record = {"raw": delivery.raw, "reason": reason, "message_id": delivery.message_id}
        with _redis_errors(self._where), self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_stream, record)  # type: ignore[arg-type]
            pipe.xack(self.stream, self.group, delivery.message_id)
            pipe.execute()

    def dead_letters(self) -> list[dict[str, Any]]:
        with _redis_errors(self._where):
            reply = self._client.xrange(self.dead_stream, "-", "+")
        return [
            {"message_id": f.get("message_id"), "raw": f.get("raw"), "reason": f.get("reason")}
            for _, f in _entries(reply)
            if f is not None
        ]

    # -- counts and life cycle

    def pending(self) -> int:
        summary = self._group_call(lambda: self._client.xpending(self.stream, self.group))
        return int(summary["pending"])

    def backlog(self) -> int:
        """Messages not yet delivered to the group: ``lag`` of XINFO GROUPS, else counted."""
        groups = self._group_call(lambda: self._client.xinfo_groups(self.stream))
        info = next((g for g in groups if g["name"] == self.group), None)
        if info is None:
            return 0
        if isinstance(info.get("lag"), int):
            return int(info["lag"])
        return self._count_after(str(info["last-delivered-id"]))

    def _count_after(self, last_id: str) -> int:
        """Entries after ``last_id``, counted page by page (Redis < 7 or an unknown lag)."""
        total, start = 0, f"({last_id}"
        with _redis_errors(self._where):
            while True:
                page = _entries(self._client.xrange(self.stream, start, "+", count=1000))
                total += len(page)
                if len(page) < 1000:
                    return total
                start = f"({page[-1][0]}"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --------------------------------------------------------------------------- open_bus


@dataclass(frozen=True)
class RedisBusOptions:
    """A ``redis://`` bus URL taken apart: the connection URL and the bus's own options."""

    connection_url: str
    stream: str = DEFAULT_STREAM
    group: str = DEFAULT_GROUP
    maxlen: int = DEFAULT_MAXLEN
    idle_ms: int = DEFAULT_IDLE_MS


_URLS = UrlSyntax(
    "event bus",
    memory={"idle_ms": int, "max_backlog": int},
    redis={"stream": str, "group": str, "maxlen": int, "idle_ms": int},
)


def parse_redis_url(url: str) -> RedisBusOptions:
    """Split a ``redis://`` bus URL into the connection URL and the bus options."""
    parsed = _URLS.parse(url)
    if parsed.backend != "redis":
        raise _URLS.error(url, "not a redis:// URL")
    return RedisBusOptions(parsed.connection_url, **parsed.options)


def _open_redis(url: str, options: RedisBusOptions) -> RedisBus:
    try:
        client = redis.Redis.from_url(
            options.connection_url,
            decode_responses=True,
            socket_connect_timeout=5.0,
            socket_timeout=10.0,
        )
    except ValueError as exc:
        raise _URLS.error(url, str(exc)) from exc
    try:
        return RedisBus(
            client,
            stream=options.stream,
            group=options.group,
            maxlen=options.maxlen,
            idle_ms=options.idle_ms,
            where=redact_url(url.partition("?")[0]),
        )
    except BaseException:
        client.close()
        raise


def open_bus(url: str, *, folder: Path | None = None) -> EventBus:
    """The event bus a URL names.

    ``memory://`` keeps its log in ``folder`` (e.g. ``<workspace>/stream/bus``; None: nothing is
    kept, for tests); ``redis://host:port/db?stream=…&group=…&maxlen=…&idle_ms=…`` connects and
    creates the stream and consumer group if missing (:class:`BusUnavailableError` if Redis
    cannot be reached). An unknown scheme or option raises :class:`ConfigError`.
    """
    parsed = _URLS.parse(url)
    if parsed.backend == "memory":
        return MemoryBus(folder, **parsed.options)
    return _open_redis(url, RedisBusOptions(parsed.connection_url, **parsed.options))
