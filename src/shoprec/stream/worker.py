"""The worker: applies events from the bus to the live state exactly once, and to the lake.

For each batch taken from the bus, in order:

1. malformed messages (not JSON, missing ids, unknown shape) go to the dead-letter stream with
   the reason — never retried forever, never dropped;
2. every event is applied to the live state (atomic and deduplicated by ``event_id``, so an event
   delivered twice after a crash counts once);
3. for each user touched, their full recent history is folded into fresh vectors (the
   collaborative factors and the content preference of the served model's generators), stored
   with the history they fold in (their basis); the session's co-purchase candidates need no
   refresh: a request scores them from the user's recent items;
   Catalogue items sent between builds (``POST /items``) are stored in the lake and embedded
   in the served run's vector space, their vectors kept in the live state for scoring;
4. the events are appended to the lake (idempotent by ``event_id``), in writes of up to
   ``flush_events`` events or ``flush_seconds`` after the oldest waiting one;
5. only then are the messages acknowledged. A worker killed anywhere before step 5 leaves them
   pending; the bus delivers them again and steps 2 and 4 skip what was already done.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl
from pydantic import ValidationError

from shoprec.data.lake import EventIdCache, Lake
from shoprec.data.schema import EVENTS_SCHEMA, ITEMS_SCHEMA, conform
from shoprec.exceptions import ShoprecError, describe_validation_error
from shoprec.stream.events import ITEM_MESSAGE, EventIn, ItemIn, known_event_types
from shoprec.stream.protocols import Delivery, EventBus, LiveState

if TYPE_CHECKING:
    from shoprec.config import Settings
    from shoprec.serving.engine import Engine

__all__ = ["Worker", "WorkerStats", "check_event"]

log = logging.getLogger("shoprec.stream")

RETRY_CAP = 10.0  # seconds at most between a failing worker's tries


@dataclass
class WorkerStats:
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    items_stored: int = 0
    items_embedded: int = 0
    embedding_failures: int = 0
    lake_added: int = 0
    acknowledged: int = 0
    batches: int = 0
    failed_steps: int = 0
    errors: list[str] = field(default_factory=list)  # the latest failures' messages


def check_item(delivery: Delivery) -> tuple[ItemIn | None, str | None]:
    """The catalogue item of an item message, or why it cannot be stored."""
    assert delivery.event is not None
    try:
        return ItemIn.model_validate(delivery.event.get("item")), None
    except ValidationError as exc:
        return None, "item: " + describe_validation_error(exc)


def check_event(
    delivery: Delivery, event_types: Collection[str] | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """The event of a delivery in lake form, or why it cannot be applied (``event_types``:
    the types the shop accepts; None accepts any well-formed type)."""
    if delivery.event is None:
        return None, delivery.error or "the message is not a JSON object"
    event = dict(delivery.event)
    event_id = event.pop("event_id", None)
    event.pop("source", None)
    if not isinstance(event_id, str) or not event_id:
        return None, "event_id: missing"
    if event.get("context") is None:
        event.pop("context", None)
    elif isinstance(event["context"], str):  # the lake form: a JSON object as text
        try:
            event["context"] = json.loads(event["context"])
        except json.JSONDecodeError:
            return None, "context: not a JSON object"
    try:
        checked = EventIn.model_validate({"event_id": event_id, **event})
    except ValidationError as exc:
        return None, describe_validation_error(exc)
    problem = checked.problem(event_types)
    if problem is not None:
        return None, problem
    received = datetime.now(UTC)
    return {**checked.canonical(received), "source": delivery.event.get("source") or "api"}, None


class Worker:
    """Consumes ``bus`` as ``consumer`` and applies to ``state`` and the lake of ``lake``.

    ``engine`` returns the served engine (or None), whose generators turn a user's recent
    history into fresh vectors; without one the vectors are not computed. With
    ``refresh_vectors`` false they are not stored either: the worker thread of a server with a
    ``memory://`` state leaves the fold-in to the requests, which compute the same vectors from
    the same history and would otherwise wait for the GIL while the worker repeats the work.
    ``linger_ms`` makes it wait that long after the first message of a batch for more (the
    server's worker thread does, so its work does not compete with the next request).

    Applied events wait for the lake in memory, unacknowledged, until ``flush_events`` of them
    or ``flush_seconds`` after the first of them, however idle the bus is meanwhile (sparse
    traffic would otherwise write a lake file per event). The wait is kept under half the bus's
    ``idle_ms``, after which the bus would deliver the waiting events again; ``clock`` is the
    time in seconds those intervals are measured on.
    """

    def __init__(
        self,
        bus: EventBus,
        state: LiveState,
        lake: Lake | None,
        *,
        engine: Callable[[], Engine | None] = lambda: None,
        consumer: str = "worker",
        batch: int = 500,
        block_ms: int = 50,
        flush_events: int = 5000,
        flush_seconds: float = 2.0,
        event_types: Collection[str] | None = None,
        refresh_vectors: bool = True,
        linger_ms: int = 0,
        clock: Callable[[], float] = time.monotonic,
        retry_seconds: float = 1.0,
    ) -> None:
        self.bus = bus
        self.state = state
        self.lake = lake
        self.engine = engine
        self.consumer = consumer
        self.batch = batch
        self.block_ms = block_ms
        self.flush_events = flush_events
        redelivery = bus.idle_ms / 2000
        if flush_seconds > redelivery:
            log.warning(
                "lake writes every %.1f s would leave events unacknowledged past the bus's "
                "re-delivery time (%d ms): writing every %.1f s instead",
                flush_seconds,
                bus.idle_ms,
                redelivery,
            )
        self.flush_seconds = min(flush_seconds, redelivery)
        self.event_types = event_types
        self.refresh_vectors = refresh_vectors
        self.linger_ms = linger_ms
        self.stats = WorkerStats()
        self._unflushed: list[dict[str, Any]] = []
        self._unacked: list[str] = []
        self._clock = clock
        self.retry_seconds = retry_seconds
        self._waiting_since = 0.0  # when the oldest event waiting for the lake was applied
        self._known = EventIdCache()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_shop(
        cls,
        settings: Settings,
        bus: EventBus,
        state: LiveState,
        engine: Callable[[], Engine | None],
        *,
        consumer: str,
        in_server: bool = False,
    ) -> Worker:
        """The worker of a shop's settings: its lake, its event types and its lake interval.
        ``in_server``: the thread inside ``shoprec serve``, which lingers 50 ms on a batch's
        first message and, over a ``memory://`` state (its own process's), leaves the vectors
        to the requests."""
        serving = settings.serving
        return cls(
            bus,
            state,
            Lake(settings.workspace),
            engine=engine,
            consumer=consumer,
            event_types=known_event_types(settings.event_weights.weights),
            flush_seconds=serving.lake_flush_seconds,
            refresh_vectors=not (in_server and serving.state.startswith("memory:")),
            linger_ms=50 if in_server else 0,
            block_ms=20 if in_server else 50,
        )

    # -- one step --------------------------------------------------------------------------------
    def step(self) -> int:
        """Take one batch from the bus and apply it; returns how many messages it took."""
        deliveries = self.bus.consume(self.consumer, count=self.batch, block_ms=self.block_ms)
        if deliveries and self.linger_ms > 0 and len(deliveries) < self.batch:
            # Wait a little for more, so that a burst is one batch and the work does not run
            # beside the request that follows a click (the API has applied the click already).
            self._stop.wait(self.linger_ms / 1000)
            more = self.batch - len(deliveries)
            deliveries += self.bus.consume(self.consumer, count=more, block_ms=0)
        good: list[tuple[Delivery, dict[str, Any]]] = []
        items: list[tuple[Delivery, ItemIn]] = []
        for delivery in deliveries:
            if delivery.event is not None and delivery.event.get("kind") == ITEM_MESSAGE:
                item, problem = check_item(delivery)
                if item is not None:
                    items.append((delivery, item))
                    continue
                event = None
            else:
                event, problem = check_event(delivery, self.event_types)
            if event is None:
                self.bus.dead_letter(delivery, problem or "invalid")
                self.stats.dead_lettered += 1
                log.warning("dead-lettered %s: %s", delivery.message_id, problem)
            else:
                good.append((delivery, event))
        events = [event for _, event in good]
        flags = self.state.apply_each(events) if events else []
        fresh = [event for event, new in zip(events, flags, strict=True) if new]
        self.stats.applied += len(fresh)
        self.stats.duplicates += len(events) - len(fresh)
        if self.refresh_vectors:  # also for events the API applied already (see Service.accept)
            self._refresh_vectors({e["user_id"] for e in events if e.get("item_id")})
        self._store_items([item for _, item in items])
        if events and not self._unflushed:
            self._waiting_since = self._clock()
        self._unflushed.extend(events)
        self._unacked.extend(d.message_id for d, _ in good)
        self._unacked.extend(d.message_id for d, _ in items)
        # with nothing waiting for the lake, what was taken is acknowledged at once
        if len(self._unflushed) >= self.flush_events or self._due() or not self._unflushed:
            self.flush()
        self.stats.batches += 1
        return len(deliveries)

    def waiting(self) -> int:
        """Events applied and waiting for the lake write (unacknowledged until then)."""
        return len(self._unflushed)

    def _due(self) -> bool:
        """Whether the lake's next write is due: ``flush_seconds`` after the oldest event
        waiting for it."""
        return bool(self._unflushed) and (self._clock() - self._waiting_since >= self.flush_seconds)

    def _store_items(self, items: list[ItemIn]) -> None:
        """Upsert items into the lake now (the catalogue of the next build) and embed them in
        the served run's space. An embedding that fails is logged and counted, not retried:
        the item is in the lake, and the next ``shoprec enrich`` or build embeds it."""
        if not items:
            return
        received = datetime.now(UTC)
        frame = conform(pl.DataFrame([item.row(received) for item in items]), ITEMS_SCHEMA)
        if self.lake is not None:
            self.lake.append(items=frame)
        self.stats.items_stored += len(items)
        engine = self.engine()
        if engine is None:
            return
        try:
            vectors = engine.embed_items(frame)
        except ShoprecError as exc:
            self.stats.embedding_failures += len(items)
            log.error("could not embed %d new items: %s", len(items), exc)
            return
        self.state.set_item_vectors(
            engine.embedding_space,
            [
                (item.entity_type, item.item_id, vector)
                for item, vector in zip(items, vectors, strict=True)
            ],
        )
        self.stats.items_embedded += len(items)

    def flush(self) -> None:
        """Append the applied events to the lake, then acknowledge them."""
        if self._unflushed and self.lake is not None:
            frame = conform(
                pl.DataFrame(self._unflushed, infer_schema_length=None).with_columns(
                    pl.col("ts").str.to_datetime(time_zone="UTC", time_unit="us")
                ),
                EVENTS_SCHEMA,
            )
            self.stats.lake_added += self.lake.append(frame, known=self._known).events_added
        if self._unacked:
            self.bus.ack(self._unacked)
            self.stats.acknowledged += len(self._unacked)
        self._unflushed, self._unacked = [], []

    def _refresh_vectors(self, users: Iterable[str]) -> None:
        """Fold each user's full recent history into fresh vectors of the served model."""
        engine = self.engine()
        if engine is None:
            return
        histories = self.state.recent_many(list(users))
        self.state.set_vectors(
            [
                (user, name, vector)
                for user, vectors in engine.live_vectors_many(histories).items()
                for name, vector in vectors.items()
            ],
            histories,  # their basis: a request whose history has moved on folds in itself
        )

    # -- running ---------------------------------------------------------------------------------
    def run(self, *, until_idle: bool = False, max_seconds: float | None = None) -> WorkerStats:
        """Consume until stopped (or, with ``until_idle``, until the bus has nothing left).

        A step that fails (a backend down) is tried again after ``retry_seconds``, then twice
        as long each time, at most ``RETRY_CAP`` seconds apart; each failure is counted, the
        first and then about one a minute are logged, and the recovery with their count.
        """
        started = time.monotonic()
        failures = 0
        while not self._stop.is_set():
            if max_seconds is not None and time.monotonic() - started > max_seconds:
                break
            try:
                taken = self.step()
            except Exception as exc:  # a broken backend: say so, wait, try again
                failures += 1
                self.stats.failed_steps += 1
                self.stats.errors.append(f"{type(exc).__name__}: {exc}")
                del self.stats.errors[:-100]  # the latest only, while a backend stays down
                wait = min(self.retry_seconds * 2.0 ** (failures - 1), RETRY_CAP)
                if failures == 1 or failures % int(60 / RETRY_CAP) == 0:
                    log.error(
                        "worker step failed (%d in a row; next try in %.0f s): %s",
                        failures,
                        wait,
                        exc,
                    )
                self._stop.wait(wait)
                continue
            if failures:
                log.warning("worker recovered after %d failed steps", failures)
                failures = 0
            # step() writes the lake when it is due, idle bus or not; a consumer that stops
            # on an idle bus writes what it has first, and stops once nothing is pending in the
            # group (including events other consumers hold for their next lake write)
            if taken == 0 and until_idle:
                if self._unflushed or self._unacked:
                    self.flush()
                elif self.bus.pending() == 0 and self.bus.backlog() == 0:
                    break
        try:
            self.flush()
        except Exception as exc:  # the bus closed under us: the events stay pending
            self.stats.errors.append(f"{type(exc).__name__}: {exc}")
            log.error("final flush failed (unacknowledged events stay pending): %s", exc)
        return self.stats

    def start(self) -> None:
        """Run in a daemon thread (the embedded default inside ``shoprec serve``)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="shoprec-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                log.warning("the worker did not stop within %.0f s", timeout)
            self._thread = None
