"""The service behind the routes: the served engine (through the :class:`Registry`), the event
bus, the live state, the event worker and the request metrics, started and stopped with the app.

Routes reach it through the dependencies in :mod:`shoprec.serving.dependencies`; it knows
nothing of HTTP beyond raising ``HTTPException`` for a bad event or a bus that cannot take one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter, Histogram

from shoprec.config import Settings
from shoprec.exceptions import ShoprecError
from shoprec.serving.engine import Engine, RecommendationList
from shoprec.serving.monitoring import LiveCollector
from shoprec.serving.registry import NotReadyError, Registry
from shoprec.serving.security import SessionSigner, key_matches, session_secret
from shoprec.stream.bus import open_bus
from shoprec.stream.events import EventIn, known_event_types
from shoprec.stream.protocols import EventBus, LiveState
from shoprec.stream.state import StateError, open_state
from shoprec.stream.worker import Worker

__all__ = ["STATE_RETRY_SECONDS", "Service"]

log = logging.getLogger("shoprec.serving")
T = TypeVar("T")
# how long a server leaves a live state that failed alone before it reads it again
STATE_RETRY_SECONDS = 5.0


class Service:
    """What the routes share: settings, the registry and the live event state."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.workspace = settings.workspace
        self.registry = registry or Registry(
            settings.workspace, poll_seconds=settings.serving.reload_seconds, settings=settings
        )
        self.event_types = known_event_types(settings.event_weights.weights)
        # The bus, the live state and the worker open when the app starts (its lifespan).
        self._bus: EventBus | None = None
        self._state: LiveState | None = None
        self.worker: Worker | None = None
        self.metrics = CollectorRegistry()
        self.requests = Counter(
            "shoprec_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.metrics,
        )
        self.latency = Histogram(
            "shoprec_request_seconds",
            "Request latency by route",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.metrics,
        )
        self.events_accepted = Counter(
            "shoprec_events_accepted", "Events accepted by POST /events", registry=self.metrics
        )
        self.live_state_errors = Counter(
            "shoprec_live_state_errors",
            "Reads of the live state that failed (the request was served without live data)",
            registry=self.metrics,
        )
        self.live_state_skipped = Counter(
            "shoprec_live_state_skipped",
            "Requests served without live data while the live state is left alone after a failure",
            registry=self.metrics,
        )
        self._state_retry_at = 0.0
        self.sessions = SessionSigner(session_secret(settings.workspace))
        self.collector = LiveCollector(self)
        self.metrics.register(self.collector)

    @property
    def engine(self) -> Engine:
        return self.registry.engine

    def key_valid(self, key: str | None) -> bool:
        return key_matches(key, self.settings.api_keys)

    def signed_in(self, cookie: str | None) -> str | None:
        """The user a storefront sign-in cookie names, if this server signed it."""
        return self.sessions.user(cookie)

    def accept(self, events: list[EventIn]) -> list[str]:
        """Check events, publish them to the bus and apply them to the live state; returns
        their ids (HTTP 422 on a bad one).

        Applying here makes the caller's next read reflect its click at once, whichever
        process runs the worker; the state applies each event once by id, so the worker's own
        application of the same events from the bus is a no-op, and it still folds them into
        the users' vectors, appends them to the lake and acknowledges them. Should the state
        refuse here (see :meth:`live`), the worker applies them from the bus as usual."""
        received = datetime.now(UTC)
        rows = []
        for position, event in enumerate(events):
            problem = event.problem(self.event_types)
            if problem is not None:
                raise HTTPException(422, f"events[{position}].{problem}")
            rows.append(event.canonical(received))
        try:
            self.bus.publish(rows)
        except ShoprecError as exc:
            raise HTTPException(503, f"the event bus cannot take events now: {exc}") from None
        self.events_accepted.inc(len(rows))
        refused: list[bool] = []
        self.live(self.state.apply_each, refused, rows)  # if it cannot, the worker applies them
        return [row["event_id"] for row in rows]

    def history(self, user_id: str) -> list[tuple[str, str]]:
        """The user's live ``(item_id, event_type)`` events, oldest first (none while the
        live state cannot be read: see :meth:`live`)."""
        return self.live(self.state.recent, [], user_id)

    def live(self, read: Callable[..., T], fallback: T, *args: Any) -> T:
        """``read(*args)`` from the live state, or ``fallback`` when the state cannot answer:
        a request is then served without live data instead of failing. After a failure the
        state is left alone for ``STATE_RETRY_SECONDS`` (a Redis that is down would otherwise
        cost every request its connection attempts); each failure is logged and counted."""
        if time.monotonic() < self._state_retry_at:
            self.live_state_skipped.inc()
            return fallback
        try:
            return read(*args)
        except StateError as exc:
            self._state_retry_at = time.monotonic() + STATE_RETRY_SECONDS
            self.live_state_errors.inc()
            log.warning("serving without live data for %.0f s: %s", STATE_RETRY_SECONDS, exc)
            return fallback

    def item_vectors(self, space: str, keys: Sequence[tuple[str, str]]) -> list[np.ndarray | None]:
        """Embeddings of items posted since the build (none while the state cannot answer)."""
        return self.live(self.state.item_vectors, [None] * len(keys), space, keys)

    def recommendations(
        self,
        engine: Engine,
        user_id: str,
        k: int,
        **options: Any,
    ) -> RecommendationList:
        # the vectors the worker folded in from exactly this history (one read): one that
        # misses an event accepted since is left out, and the engine folds the history in
        nothing: tuple[list[tuple[str, str]], dict[str, np.ndarray]] = ([], {})
        history, vectors = self.live(self.state.live_user, nothing, user_id, engine.vector_names())
        answer = engine.recommend(user_id, k, history=history, vectors=vectors, **options)
        return dataclasses.replace(answer, live_events=len(history))

    @property
    def bus(self) -> EventBus:
        if self._bus is None:
            raise NotReadyError("the event bus is not open: the server is starting or stopping")
        return self._bus

    @property
    def state(self) -> LiveState:
        if self._state is None:
            raise NotReadyError("the live state is not open: the server is starting or stopping")
        return self._state

    def start(self) -> None:
        """Open the bus and the live state, load the published run, start the worker."""
        serving = self.settings.serving
        self._bus = open_bus(serving.bus, folder=self.workspace / "stream" / "bus")
        self._state = open_state(serving.state, recent=serving.recent_events)
        self.registry.start()
        if serving.worker:
            self.worker = Worker.for_shop(
                self.settings,
                self._bus,
                self._state,
                lambda: self.registry.engine if self.registry.ready else None,
                consumer=f"api-{socket.gethostname()}-{os.getpid()}",
                in_server=True,
            )
            self.worker.start()

    def stop(self) -> None:
        self.collector.close()
        if self.worker is not None:
            self.worker.stop()
            self.worker = None
        self.registry.stop()
        if self._bus is not None:
            self._bus.close()
            self._bus = None
        if self._state is not None:
            self._state.close()
            self._state = None
