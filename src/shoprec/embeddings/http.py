"""The ``http`` embedding provider: a remote enrichment service, texts in, vectors out.

Such a service is slow, costs money per call and fails in every way a network can, so each batch
of texts is one *call* that may take several *attempts*:

- timeouts, connection errors, 408, 429 and 5xx answers are retried with exponential backoff
  (``Retry-After`` honoured on 429 and 503), and so is an answer that cannot be used (not JSON,
  the wrong number of vectors, the wrong dimension, non-numeric values): a flaky proxy can garble
  one answer;
- other 4xx answers mean the request itself is wrong and are not retried;
- a call that still fails raises :class:`HttpEmbeddingError` naming the url, the reason and the
  attempts made.

A circuit breaker protects the service and the caller: after ``circuit_failures`` consecutive
failed calls it opens and every call fails fast (:class:`CircuitOpenError`) until
``circuit_cooldown_seconds`` have passed; then one trial attempt is let through, and its success
closes the circuit again while its failure re-opens it for another cooldown. A 4xx answer other
than 429 shows the service is up: it resets the count like a success.

``embed`` sends batches of ``batch_size`` texts concurrently; one semaphore per provider bounds
the requests in flight to ``max_concurrency`` across every thread sharing it (a batch job and a
real-time worker together stay within the limit). The enrichment layer calls ``embed`` once per
batch from up to ``max_concurrency`` threads, so a failing batch fails alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from shoprec.exceptions import CircuitOpenError, ConfigError, EmbeddingError, HttpEmbeddingError

__all__ = ["CircuitOpenError", "HttpEmbeddingError", "HttpProvider", "HttpProviderConfig"]

log = logging.getLogger("shoprec.embeddings")

_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)
_PATH_PART = re.compile(r"(?P<key>[^.\[\]]*)(?P<each>\[\])?")


class HttpProviderConfig(BaseModel):
    """How to reach an enrichment service and read its answers.

    The secret for the auth header never appears here: ``auth_env`` names the environment
    variable that holds it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="the endpoint that embeds texts (POST, JSON in and out)")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="static headers sent with every request (no credentials: use auth_env)",
    )
    auth_header: str | None = Field(
        default=None, description="the header that carries the secret, e.g. Authorization"
    )
    auth_env: str | None = Field(
        default=None, description="the environment variable holding the secret for auth_header"
    )
    auth_prefix: str = Field(
        default="", description="written before the secret in auth_header, e.g. 'Bearer '"
    )
    input_field: str = Field(
        default="input", min_length=1, description="the request's JSON field holding the texts"
    )
    body: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="static fields added to every request body, e.g. {'model': 'embed-v3'}",
    )
    vectors_path: str = Field(
        default="embeddings",
        description=(
            "where the answer holds the vectors: dotted field names, '[]' marking a list whose "
            "elements each hold one vector ('embeddings' for {'embeddings': [[...]]}, "
            "'data[].embedding' for {'data': [{'embedding': [...]}]}, '' for a bare list)"
        ),
    )
    batch_size: int = Field(default=64, ge=1, le=10_000, description="texts per request")
    max_concurrency: int = Field(
        default=4, ge=1, le=64, description="requests in flight at once, across all callers"
    )
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="limit on connecting, sending and each read of an answer"
    )
    max_retries: int = Field(
        default=3, ge=0, le=20, description="attempts after the first one for a failed call"
    )
    backoff_base_seconds: float = Field(
        default=0.5, gt=0, description="wait before the first retry; doubles for each next one"
    )
    backoff_max_seconds: float = Field(
        default=30.0, gt=0, description="the longest wait between two attempts"
    )
    backoff_jitter: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="up to this fraction of each wait is taken off at random (spreads retries)",
    )
    max_retry_after_seconds: float = Field(
        default=60.0,
        ge=0,
        description="a longer Retry-After than this ends the call instead of waiting",
    )
    circuit_failures: int = Field(
        default=5, ge=1, description="consecutive failed calls that open the circuit breaker"
    )
    circuit_cooldown_seconds: float = Field(
        default=30.0, gt=0, description="how long an open circuit fails calls fast"
    )
    dim: int | None = Field(
        default=None, ge=1, description="the vectors' dimension; learned from the first answer"
    )
    model_version: str = Field(
        default="1",
        min_length=1,
        description="the remote model's version; change it when the service's model changes",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from exc
        if parsed.scheme not in {"http", "https"} or not parsed.host:
            raise ValueError("must be an http:// or https:// URL with a host")
        return url

    @field_validator("headers")
    @classmethod
    def _no_credentials(cls, headers: dict[str, str]) -> dict[str, str]:
        for name in headers:
            if name.lower() in _CREDENTIAL_HEADERS:
                raise ValueError(
                    f"{name} carries a credential: put the secret in an environment variable "
                    "and set auth_header and auth_env"
                )
        return headers

    @field_validator("vectors_path")
    @classmethod
    def _valid_path(cls, path: str) -> str:
        _parse_path(path)
        return path

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.auth_header is None) != (self.auth_env is None):
            raise ValueError("auth_header and auth_env go together: set both or neither")
        if self.input_field in self.body:
            raise ValueError(f"body must not set {self.input_field!r}: the texts go there")
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise ValueError("backoff_max_seconds is smaller than backoff_base_seconds")
        return self


class HttpProvider:
    """Embeds texts through a remote enrichment service (see the module docstring).

    ``client`` is an ``httpx.Client`` to use instead of a new one (the caller then closes it);
    ``transport`` is handed to the new client (tests pass an ``httpx.MockTransport``). The
    auth secret is read from ``config.auth_env`` here, so a missing variable fails at once.

    ``calls``, ``retries`` and ``failures`` count batch calls, extra attempts and calls that
    finally failed (circuit-open fast failures included).
    """

    def __init__(
        self,
        config: HttpProviderConfig,
        client: httpx.Client | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.batch_size = config.batch_size
        self.max_concurrency = config.max_concurrency
        self.calls = 0
        self.retries = 0
        self.failures = 0
        self._headers = {**config.headers, **_auth_header(config)}
        self._path = _parse_path(config.vectors_path)
        self._version = _version(config)
        self._dim = config.dim
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self._breaker = _Breaker(
            config.url, config.circuit_failures, config.circuit_cooldown_seconds
        )
        self._closed = threading.Event()
        self._owns_client = client is None
        self._client = client or httpx.Client(
            transport=transport,
            timeout=config.timeout_seconds,
            limits=httpx.Limits(
                max_connections=config.max_concurrency,
                max_keepalive_connections=config.max_concurrency,
            ),
        )

    @property
    def name(self) -> str:
        return "http"

    @property
    def version(self) -> str:
        """``model_version`` and a digest of the url and the request and response mapping."""
        return self._version

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise EmbeddingError(
                f"http embedding: the dimension of {self.config.url} is not known before its "
                "first answer; set dim in the provider's config"
            )
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(len(texts), dim)`` float32 array; batches of ``batch_size`` are sent
        concurrently, and the first batch that finally fails raises its error."""
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one string")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._dim or 0), np.float32)
        size = self.batch_size
        batches = [texts[start : start + size] for start in range(0, len(texts), size)]
        if len(batches) == 1:
            return self._call(batches[0], "")
        workers = min(self.max_concurrency, len(batches))
        with ThreadPoolExecutor(workers, thread_name_prefix="shoprec-http-embed") as pool:
            futures = [
                pool.submit(self._call, batch, f"batch {number} of {len(batches)}, ")
                for number, batch in enumerate(batches, 1)
            ]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((future for future in futures if _failed(future)), None)
            if failed is not None:
                for future in futures:
                    future.cancel()
                failed.result()
        return np.vstack([future.result() for future in futures])

    def close(self) -> None:
        """Stop retrying and close the HTTP client (if this provider created it)."""
        self._closed.set()
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, batch: list[str], label: str) -> np.ndarray:
        """One batch: attempts until an answer is usable, retries run out or the circuit opens."""
        url = self.config.url
        with self._lock:
            self.calls += 1
        attempts = 0
        while True:
            if self._closed.is_set():
                self._count_failure()
                raise EmbeddingError(f"http embedding: the provider for {url} is closed")
            try:
                trial = self._breaker.admit()
            except _OpenCircuitError as exc:
                self._count_failure()
                raise exc.error(url) from None
            attempts += 1
            try:
                outcome = self._attempt(batch, attempts)
            except BaseException:
                if trial:
                    self._breaker.failed("an unexpected error", trial=True)
                raise
            if isinstance(outcome, np.ndarray):
                self._breaker.answered()
                return outcome
            if not outcome.retryable:
                self._breaker.answered()
                raise self._give_up(batch, label, outcome, attempts, " (not retried)")
            if trial:
                until = self._breaker.failed(outcome.reason, trial=True)
                note = (
                    f"; it was the trial call after the circuit's cooldown, so the circuit is "
                    f"open again until {_iso(until)}"
                )
                raise self._give_up(batch, label, outcome, attempts, note)
            delay = self._backoff(attempts)
            retry_after = outcome.retry_after
            if retry_after is not None and retry_after > self.config.max_retry_after_seconds:
                self._breaker.failed(outcome.reason, trial=False)
                note = (
                    f" (Retry-After {retry_after:g} s is longer than "
                    f"max_retry_after_seconds={self.config.max_retry_after_seconds:g})"
                )
                raise self._give_up(batch, label, outcome, attempts, note)
            if attempts > self.config.max_retries:
                self._breaker.failed(outcome.reason, trial=False)
                raise self._give_up(batch, label, outcome, attempts, "")
            with self._lock:
                self.retries += 1
            delay = max(delay, retry_after or 0.0)
            log.info("POST %s: %s; retrying in %.2f s", url, outcome.reason, delay)
            self._closed.wait(delay)

    def _give_up(
        self, batch: list[str], label: str, failure: _Failure, attempts: int, note: str
    ) -> HttpEmbeddingError:
        self._count_failure()
        url = self.config.url
        tried = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        return HttpEmbeddingError(
            f"http embedding: POST {url} failed for {label}{len(batch)} texts after {tried}: "
            f"{failure.reason}{note}",
            url=url,
            status=failure.status,
            reason=failure.reason,
            attempts=attempts,
        )

    def _attempt(self, batch: list[str], attempt: int) -> np.ndarray | _Failure:
        """Send one request and read its answer (the semaphore is held only while sending)."""
        config = self.config
        body = {**config.body, config.input_field: batch}
        outcome: np.ndarray | _Failure
        with self._slots:
            started = time.perf_counter()
            try:
                response = self._client.post(
                    config.url, json=body, headers=self._headers, timeout=config.timeout_seconds
                )
            except httpx.TimeoutException as exc:
                response = None
                outcome = _Failure(
                    f"no answer within {config.timeout_seconds:g} s ({type(exc).__name__})"
                )
            except httpx.TransportError as exc:
                response = None
                outcome = _Failure(f"connection failed ({type(exc).__name__}: {exc})")
            latency_ms = (time.perf_counter() - started) * 1000
        if response is not None:
            outcome = self._read(response, len(batch))
        log.debug(
            "POST %s: %d texts, attempt %d/%d, %s in %.1f ms",
            config.url,
            len(batch),
            attempt,
            config.max_retries + 1,
            "ok" if isinstance(outcome, np.ndarray) else outcome.reason,
            latency_ms,
        )
        return outcome

    def _read(self, response: httpx.Response, expected: int) -> np.ndarray | _Failure:
        status = response.status_code
        if not response.is_success:
            reason = f"HTTP {status} {response.reason_phrase}".rstrip()
            if status in {408, 429} or status >= 500:
                retry_after = None
                if status in {429, 503}:
                    retry_after = _retry_after(response.headers.get("Retry-After"))
                return _Failure(reason, status=status, retry_after=retry_after)
            excerpt = " ".join(response.text.split())[:200]
            return _Failure(f"{reason}: {excerpt}" if excerpt else reason, status, retryable=False)
        try:
            matrix = _matrix(_find(response.json(), self._path, ""), expected)
        except _BadAnswerError as exc:
            return _Failure(f"unusable answer: {exc}", status)
        except ValueError as exc:
            return _Failure(f"unusable answer: not JSON ({exc})", status)
        with self._lock:
            if self._dim is None:
                self._dim = matrix.shape[1]
                log.info("%s answers vectors of dimension %d", self.config.url, self._dim)
            dim = self._dim
        if matrix.shape[1] != dim:
            source = "config dim" if self.config.dim is not None else "the first answer"
            return _Failure(
                f"unusable answer: vectors of dimension {matrix.shape[1]}, expected {dim} "
                f"(from {source})",
                status,
            )
        return matrix

    def _backoff(self, attempts: int) -> float:
        config = self.config
        delay = min(config.backoff_max_seconds, config.backoff_base_seconds * 2.0 ** (attempts - 1))
        return delay * (1 - config.backoff_jitter * random.random())

    def _count_failure(self) -> None:
        with self._lock:
            self.failures += 1


@dataclass(frozen=True)
class _Failure:
    """Why one attempt failed; ``retryable`` failures also count against the circuit."""

    reason: str
    status: int | None = None
    retryable: bool = True
    retry_after: float | None = None


class _BadAnswerError(Exception):
    """An answer that parsed as JSON but holds no usable vectors."""


class _OpenCircuitError(Exception):
    def __init__(self, reason: str, failures: int, until: float | None) -> None:
        self.reason = reason
        self.failures = failures
        self.until = until

    def error(self, url: str) -> CircuitOpenError:
        if self.until is None:
            return CircuitOpenError(
                f"http embedding: circuit half-open for {url}: a trial call is in flight, "
                "other calls fail fast until it succeeds",
                url=url,
                reason=self.reason,
                until=None,
            )
        until = _wall(self.until)
        return CircuitOpenError(
            f"http embedding: circuit open for {url} after {self.failures} consecutive failed "
            f"calls (last: {self.reason}); calls fail fast until {_iso(self.until)} "
            f"(in {max(0.0, self.until - time.monotonic()):.1f} s)",
            url=url,
            reason=self.reason,
            until=until,
        )


class _Breaker:
    """Closed → (``threshold`` consecutive failed calls) → open → (cooldown) → half-open: one
    trial attempt, which closes the circuit on success and re-opens it on failure."""

    def __init__(self, url: str, threshold: int, cooldown: float) -> None:
        self._url = url
        self._threshold = threshold
        self._cooldown = cooldown
        self._lock = threading.Lock()
        self._failures = 0
        self._reason = ""
        self._open_until: float | None = None
        self._trial = False

    def admit(self) -> bool:
        """Whether this attempt is the half-open trial; raises :class:`_OpenCircuitError` to
        fail fast."""
        with self._lock:
            if self._open_until is None:
                return False
            if self._trial:
                raise _OpenCircuitError(self._reason, self._failures, None)
            if time.monotonic() < self._open_until:
                raise _OpenCircuitError(self._reason, self._failures, self._open_until)
            self._trial = True
            return True

    def answered(self) -> None:
        with self._lock:
            self._failures = 0
            self._open_until = None
            self._trial = False

    def failed(self, reason: str, *, trial: bool) -> float:
        """Record a failed call (or trial attempt); the monotonic time the circuit stays open
        until, if it is open."""
        with self._lock:
            self._reason = reason
            self._failures += 1
            if trial or (self._open_until is None and self._failures >= self._threshold):
                self._open_until = time.monotonic() + self._cooldown
                self._trial = False
                log.warning(
                    "circuit open for %s after %d consecutive failed calls (last: %s)",
                    self._url,
                    self._failures,
                    reason,
                )
            return self._open_until if self._open_until is not None else time.monotonic()


def _auth_header(config: HttpProviderConfig) -> dict[str, str]:
    if config.auth_header is None or config.auth_env is None:
        return {}
    secret = os.environ.get(config.auth_env)
    if not secret:
        raise ConfigError(
            f"http embedding provider for {config.url}: environment variable {config.auth_env} "
            f"(auth_env) is not set; it must hold the secret for the {config.auth_header} header"
        )
    return {config.auth_header: config.auth_prefix + secret}


def _version(config: HttpProviderConfig) -> str:
    """Changes with anything that changes the vectors: the url, the mapping, the model."""
    mapping = {
        "url": config.url,
        "input_field": config.input_field,
        "body": config.body,
        "vectors_path": config.vectors_path,
    }
    digest = hashlib.blake2b(
        json.dumps(mapping, sort_keys=True).encode("utf-8"), digest_size=6
    ).hexdigest()
    return f"{config.model_version}+{digest}"


def _parse_path(path: str) -> tuple[tuple[str, bool], ...]:
    """``'data[].embedding'`` → ``(('data', True), ('embedding', False))``."""
    if path == "":
        return ()
    parts = []
    for part in path.split("."):
        match = _PATH_PART.fullmatch(part)
        if match is None or not (match["key"] or match["each"]):
            raise ValueError(f"{part!r} in {path!r} is neither a field name nor name[]")
        parts.append((match["key"], match["each"] is not None))
    if sum(each for _, each in parts) > 1:
        raise ValueError(f"{path!r} has more than one []")
    return tuple(parts)


def _find(value: Any, path: tuple[tuple[str, bool], ...], where: str) -> Any:
    for index, (key, each) in enumerate(path):
        if key:
            if not isinstance(value, dict):
                raise _BadAnswerError(f"{where or 'the answer'} is not a JSON object")
            where = f"{where}.{key}" if where else key
            if key not in value:
                raise _BadAnswerError(f"no field {where!r}")
            value = value[key]
        if each:
            if not isinstance(value, list):
                raise _BadAnswerError(f"{where or 'the answer'} is not a list")
            rest = path[index + 1 :]
            return [_find(element, rest, f"{where}[{i}]") for i, element in enumerate(value)]
    return value


def _matrix(vectors: Any, expected: int) -> np.ndarray:
    """The vectors as a float32 matrix, or :class:`_BadAnswerError` saying what is wrong."""
    if not isinstance(vectors, list):
        raise _BadAnswerError(f"the vectors are a {type(vectors).__name__}, not a list")
    if len(vectors) != expected:
        raise _BadAnswerError(f"{len(vectors)} vectors for {expected} texts")
    for row, vector in enumerate(vectors):
        if not isinstance(vector, list):
            raise _BadAnswerError(
                f"vector {row} is a {type(vector).__name__}, not a list of numbers"
            )
    lengths = sorted({len(vector) for vector in vectors})
    if len(lengths) > 1:
        raise _BadAnswerError(f"vectors of different dimensions {lengths}")
    if lengths[0] == 0:
        raise _BadAnswerError("empty vectors")
    values = np.array(vectors)
    if values.ndim != 2 or values.dtype.kind not in "iuf":
        bad = next(
            (
                f"vector {row} holds {value!r} at {column}, not a number"
                for row, vector in enumerate(vectors)
                for column, value in enumerate(vector)
                if isinstance(value, bool) or not isinstance(value, int | float)
            ),
            "values out of the range of a float",
        )
        raise _BadAnswerError(bad)
    matrix = values.astype(np.float32)
    if not np.isfinite(matrix).all():
        row = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise _BadAnswerError(f"vector {row} holds a value that is not a finite float32")
    return matrix


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _wall(monotonic: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=monotonic - time.monotonic())


def _iso(monotonic: float) -> str:
    return _wall(monotonic).isoformat(timespec="seconds")


def _failed(future: Future[np.ndarray]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is not None
