"""What an operator reads on ``/metrics`` about the served model and the real-time path, taken
at scrape time from the registry, the worker and the bus (nothing is counted twice).

- ``shoprec_model_info{run_id, model}`` (1 for the served run), ``shoprec_model_loads_total``,
  ``shoprec_model_load_failures_total`` and ``shoprec_model_reload_failing`` (1 while a newer
  published run fails to load and the old one keeps serving);
- ``shoprec_worker_events_total{outcome}``: events the worker thread took, by what became of
  them (``applied``, ``duplicate`` — already in the live state, ``dead_lettered``,
  ``lake_added``, ``acknowledged``), ``shoprec_worker_items_total{outcome}`` for catalogue
  items, ``shoprec_worker_errors_total`` (failed steps: a backend down), and
  ``shoprec_worker_waiting_events`` (applied, waiting for the lake write);
- ``shoprec_bus_up`` (0 when the bus does not answer within ``BUS_TIMEOUT`` seconds),
  ``shoprec_bus_pending`` (delivered, not acknowledged) and ``shoprec_bus_backlog`` (not yet
  delivered) of the whole consumer group. The bus is asked from a thread of the collector's
  own, one question at a time, so a Redis that hangs neither holds a scrape past the timeout
  nor piles up threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as Timeout
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from shoprec.serving.registry import Registry
    from shoprec.stream.protocols import EventBus
    from shoprec.stream.worker import Worker

__all__ = ["BUS_TIMEOUT", "LiveCollector", "Observed"]

BUS_TIMEOUT = 1.0  # seconds a scrape waits for the bus

log = logging.getLogger("shoprec.serving")


class Observed(Protocol):
    """What the collector reads (the serving :class:`~shoprec.serving.service.Service`)."""

    registry: Registry
    worker: Worker | None

    @property
    def bus(self) -> EventBus: ...


class LiveCollector(Collector):
    """The served model, the worker thread and the bus of ``service``, read at each scrape."""

    def __init__(self, service: Observed) -> None:
        self.service = service
        self._asking: ThreadPoolExecutor | None = None  # started by the first scrape
        self._question: Future[tuple[int, int]] | None = None
        self._lock = threading.Lock()  # scrapes may come at once

    def close(self) -> None:
        """Stop the thread that asks the bus (the server is stopping); a later scrape starts
        another."""
        with self._lock:
            if self._asking is not None:
                self._asking.shutdown(wait=False, cancel_futures=True)
            self._asking, self._question = None, None

    def collect(self) -> Iterator[Metric]:
        yield from self._model()
        yield from self._worker()
        yield from self._bus()

    def _model(self) -> Iterator[Metric]:
        registry = self.service.registry
        info = GaugeMetricFamily(
            "shoprec_model_info", "The served model run (1)", labels=["run_id", "model"]
        )
        engine = registry.current()
        if engine is not None:
            info.add_metric([engine.run_id, engine.model_name], 1)
        yield info
        yield CounterMetricFamily(
            "shoprec_model_loads", "Runs loaded since the server started", value=registry.loads
        )
        failing = engine is not None and registry.last_error is not None
        yield CounterMetricFamily(
            "shoprec_model_load_failures",
            "Attempts to load a published run that failed",
            value=registry.failed_loads,
        )
        yield GaugeMetricFamily(
            "shoprec_model_reload_failing",
            "1 while a newer published run cannot be loaded (the old one keeps serving)",
            value=int(failing),
        )

    def _worker(self) -> Iterator[Metric]:
        worker = self.service.worker
        if worker is None:  # shoprec serve --no-worker: a consume process does the work
            return
        stats = worker.stats
        events = CounterMetricFamily(
            "shoprec_worker_events", "Events the worker took, by outcome", labels=["outcome"]
        )
        for outcome, count in (
            ("applied", stats.applied),
            ("duplicate", stats.duplicates),
            ("dead_lettered", stats.dead_lettered),
            ("lake_added", stats.lake_added),
            ("acknowledged", stats.acknowledged),
        ):
            events.add_metric([outcome], count)
        yield events
        items = CounterMetricFamily(
            "shoprec_worker_items",
            "Catalogue items the worker took, by outcome",
            labels=["outcome"],
        )
        for outcome, count in (
            ("stored", stats.items_stored),
            ("embedded", stats.items_embedded),
            ("embedding_failed", stats.embedding_failures),
        ):
            items.add_metric([outcome], count)
        yield items
        yield CounterMetricFamily(
            "shoprec_worker_errors",
            "Worker steps that failed (a backend down; the step is tried again)",
            value=stats.failed_steps,
        )
        yield GaugeMetricFamily(
            "shoprec_worker_waiting_events",
            "Events applied and waiting for the lake write (unacknowledged meanwhile)",
            value=worker.waiting(),
        )

    def _bus(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("shoprec_bus_up", "1 when the event bus answers")
        try:
            pending, backlog = self._ask_bus()
        except Exception as exc:  # a scrape must answer whatever the bus does
            log.warning("metrics: the event bus did not answer: %s", exc or type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "shoprec_bus_pending", "Events delivered and not yet acknowledged", value=pending
        )
        yield GaugeMetricFamily(
            "shoprec_bus_backlog", "Events published and not yet delivered", value=backlog
        )

    def _ask_bus(self) -> tuple[int, int]:
        """The bus's pending and backlog counts, waited for at most ``BUS_TIMEOUT`` seconds
        (a question still unanswered from an earlier scrape is waited for, not asked again)."""
        with self._lock:
            if self._question is None or self._question.done():
                bus = self.service.bus
                if self._asking is None:
                    self._asking = ThreadPoolExecutor(1, thread_name_prefix="shoprec-metrics")
                self._question = self._asking.submit(lambda: (bus.pending(), bus.backlog()))
            question = self._question
        try:
            return question.result(timeout=BUS_TIMEOUT)
        except Timeout:
            raise TimeoutError(f"no answer within {BUS_TIMEOUT} s") from None
