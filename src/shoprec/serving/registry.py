"""The published run, loaded once and swapped atomically when ``models/CURRENT`` changes.

A request takes :attr:`Registry.engine` once and uses that engine to the end, so a swap never
fails a request in flight: the new run is loaded completely beside the old one, then one
reference assignment makes it current. A watcher thread polls ``CURRENT``. A run is checked
whole before it is loaded (:func:`~shoprec.pipeline.build.verify_run`: every file its build
recorded, by size and SHA-256); a run that is not, or that fails to load, is reported in
:attr:`Registry.last_error` and the log while the old one keeps serving, and the watcher tries
that run again only every ``RETRY_FAILED_SECONDS`` (not at every poll: loading a large run costs
seconds of CPU each time), sooner when ``CURRENT`` changes or when asked to
(``refresh(force=True)``: the admin routes).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from pathlib import Path

from shoprec.config import Settings
from shoprec.exceptions import ShoprecError
from shoprec.pipeline.build import verify_run
from shoprec.serving.engine import Engine

__all__ = ["NotReadyError", "Registry"]

log = logging.getLogger("shoprec.serving")

RETRY_FAILED_SECONDS = 60.0


class NotReadyError(ShoprecError):
    """No run is published (or none could be loaded) yet."""


class Registry:
    """Holds the engine of the published run of ``workspace``."""

    def __init__(
        self, workspace: Path, *, poll_seconds: float = 1.0, settings: Settings | None = None
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.poll_seconds = poll_seconds
        self._engine: Engine | None = None
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.loads = 0
        self.failed_loads = 0
        self._failed: tuple[str, float] | None = None  # a run that failed, and when to retry it

    @property
    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise NotReadyError(
                self.last_error
                or f"{self.workspace}: no published model run; run 'shoprec build' first"
            )
        return engine

    @property
    def ready(self) -> bool:
        return self._engine is not None

    def current(self) -> Engine | None:
        """The served engine, or None before the first run is loaded (one read: a reload
        cannot swap it between a readiness check and its use)."""
        return self._engine

    def _pointer(self) -> str | None:
        try:
            return (self.workspace / "models" / "CURRENT").read_text().strip() or None
        except OSError:
            return None

    def refresh(self, *, force: bool = False) -> bool:
        """Load the published run if it is not the one being served; True if it swapped. A
        run that failed to load is tried again after ``RETRY_FAILED_SECONDS``, or now with
        ``force``."""
        with self._load_lock:
            pointed = self._pointer()
            if pointed is None:
                return False
            if self._engine is not None and self._engine.run_id == pointed:
                self.last_error = None  # published again (a rollback): nothing fails to load
                self._failed = None
                return False
            if (
                not force
                and self._failed is not None
                and self._failed[0] == pointed
                and time.monotonic() < self._failed[1]
            ):
                return False
            started = time.perf_counter()
            try:
                manifest = verify_run(self.workspace, pointed)
                engine = Engine(self.workspace, pointed, manifest, settings=self.settings)
            except Exception as exc:  # keep serving the old run; say why the new one failed
                self.last_error = f"cannot load run {pointed}: {exc}"
                self.failed_loads += 1
                self._failed = (pointed, time.monotonic() + RETRY_FAILED_SECONDS)
                log.error("%s (tried again in %.0f s)", self.last_error, RETRY_FAILED_SECONDS)
                return False
            previous = self._engine.run_id if self._engine is not None else None
            self._engine = engine
            # The run's millions of long-lived objects need no cycle collection: moved out of
            # the collector's sight, they stop making each full collection a latency spike.
            gc.collect()
            gc.freeze()
            self.last_error = None
            self._failed = None
            self.loads += 1
            log.info(
                "serving run %s (was %s), loaded in %.2f s",
                pointed,
                previous,
                time.perf_counter() - started,
            )
            return True

    def start(self) -> None:
        """Load the current run and watch for new ones."""
        self.refresh()
        if self._thread is None and self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._watch, name="shoprec-reload", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
