"""A fake enrichment service for the ``http`` embedding provider's tests.

It listens on 127.0.0.1 on a free port, in a background thread, and answers ``POST`` requests
whose JSON body holds a list of texts in ``input_field`` with one deterministic vector per text
(the same text always gets the same vector, so a retried answer equals the first one). It
records every request and the most requests it had in flight at once.

Faults are scripted, first match wins:

- ``on_call(n, fault)``: the ``n``-th request (1-based, counted as they arrive);
- ``script(*faults)``: the next requests, in order (``None`` answers normally);
- ``on_text(marker, fault, times=None)``: any request with a text containing ``marker``
  (the first ``times`` such requests, or all of them);
- ``default_fault``: every other request.

A fault is :func:`status` (any HTTP status, optionally with ``Retry-After``), :func:`hang`
(answer only after ``seconds``: past a client's timeout), :data:`MALFORMED` (a truncated JSON
body), :data:`WRONG_COUNT` (one vector too few), :data:`WRONG_DIM` (vectors one longer) or
:data:`NON_NUMERIC` (a string among the numbers). With ``auth`` set, a request without that
exact header value gets 401 whatever else is scripted.

Everything is bounded in time: ``stop()`` wakes hanging answers and closes open connections.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self

import numpy as np

__all__ = [
    "MALFORMED",
    "NON_NUMERIC",
    "WRONG_COUNT",
    "WRONG_DIM",
    "FakeEnrichmentService",
    "Fault",
    "Recorded",
    "hang",
    "status",
]

FaultKind = Literal["status", "hang", "malformed", "wrong_count", "wrong_dim", "non_numeric"]


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    code: int = 200
    retry_after: str | None = None
    seconds: float = 0.0


def status(code: int, retry_after: str | None = None) -> Fault:
    """Answer ``code`` with a JSON error body (and a ``Retry-After`` header when given)."""
    return Fault("status", code=code, retry_after=retry_after)


def hang(seconds: float = 2.0) -> Fault:
    """Answer normally, but only after ``seconds`` (or never, if the service stops first)."""
    return Fault("hang", seconds=seconds)


MALFORMED = Fault("malformed")
WRONG_COUNT = Fault("wrong_count")
WRONG_DIM = Fault("wrong_dim")
NON_NUMERIC = Fault("non_numeric")


@dataclass
class Recorded:
    call: int
    path: str
    headers: dict[str, str]
    body: Any
    texts: list[str]
    fault: Fault | None


@dataclass
class _Marker:
    marker: str
    fault: Fault
    times: int | None


@dataclass
class FakeEnrichmentService:
    """See the module docstring. ``shape`` is ``"embeddings"`` (``{"embeddings": [[...]]}``)
    or ``"openai"`` (``{"data": [{"embedding": [...]}]}``); ``latency`` delays every answer
    (to observe concurrency); ``auth`` is a ``(header, value)`` pair every request must carry."""

    dim: int = 8
    shape: Literal["embeddings", "openai"] = "embeddings"
    input_field: str = "input"
    auth: tuple[str, str] | None = None
    latency: float = 0.0
    default_fault: Fault | None = None
    requests: list[Recorded] = field(default_factory=list)
    max_in_flight: int = 0
    _by_call: dict[int, Fault] = field(default_factory=dict)
    _markers: list[_Marker] = field(default_factory=list)
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _server: _Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The embedding endpoint."""
        if self._server is None:
            raise RuntimeError("the fake enrichment service is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/embed"

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def vector(self, text: str) -> np.ndarray:
        """The vector this service answers for ``text`` (as float32, like the provider)."""
        seed = int(hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest(), 16)
        return np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)

    def on_call(self, call: int, fault: Fault) -> None:
        with self._lock:
            self._by_call[call] = fault

    def script(self, *faults: Fault | None) -> None:
        with self._lock:
            first = len(self.requests) + 1
            for offset, fault in enumerate(faults):
                if fault is not None:
                    self._by_call[first + offset] = fault

    def on_text(self, marker: str, fault: Fault, times: int | None = None) -> None:
        with self._lock:
            self._markers.append(_Marker(marker, fault, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._by_call.clear()
            self._markers.clear()
            self.default_fault = None

    def start(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.service = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-enrichment-service",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _admit(self, record: Recorded) -> Recorded:
        """Number the request, pick its fault and record it."""
        with self._lock:
            record.call = len(self.requests) + 1
            record.fault = self._pick(record)
            self.requests.append(record)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        return record

    def _done(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _pick(self, record: Recorded) -> Fault | None:
        if self.auth is not None:
            header, value = self.auth
            if record.headers.get(header.lower()) != value:
                return status(401)
        if record.call in self._by_call:
            return self._by_call[record.call]
        for marker in self._markers:
            if marker.times != 0 and any(marker.marker in text for text in record.texts):
                if marker.times is not None:
                    marker.times -= 1
                return marker.fault
        return self.default_fault

    def _answer(self, record: Recorded) -> tuple[int, dict[str, str], bytes]:
        fault = record.fault
        if self.latency:
            self._stopping.wait(self.latency)
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            return fault.code, headers, json.dumps({"error": f"scripted {fault.code}"}).encode()
        if fault is not None and fault.kind == "hang" and self._stopping.wait(fault.seconds):
            return 503, {}, b"stopping"
        if fault is not None and fault.kind == "malformed":
            return 200, {}, b'{"embeddings": [[0.1, 0.2'
        vectors: list[list[Any]] = [self.vector(text).tolist() for text in record.texts]
        if fault is not None and fault.kind == "wrong_count":
            vectors = vectors[:-1]
        if fault is not None and fault.kind == "wrong_dim":
            vectors = [[*vector, 0.0] for vector in vectors]
        if fault is not None and fault.kind == "non_numeric" and vectors:
            vectors[0][0] = "0.5"
        if self.shape == "openai":
            data = [
                {"object": "embedding", "index": index, "embedding": vector}
                for index, vector in enumerate(vectors)
            ]
            answer: dict[str, Any] = {"object": "list", "data": data, "model": "fake"}
        else:
            answer = {"embeddings": vectors}
        return 200, {}, json.dumps(answer).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    service: FakeEnrichmentService

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads waiting on kept-alive connections (they then close them)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timed out) is expected here, not a test failure."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 10
    server: _Server

    def do_POST(self) -> None:
        service = self.server.service
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        texts = body.get(service.input_field) if isinstance(body, dict) else None
        well_formed = isinstance(texts, list) and all(isinstance(text, str) for text in texts)
        record = service._admit(
            Recorded(
                call=0,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                texts=list(texts) if well_formed and texts is not None else [],
                fault=None,
            )
        )
        try:
            if not well_formed and record.fault is None:
                message = f"{service.input_field} must be a list of strings"
                self._send(400, {}, json.dumps({"error": message}).encode())
            else:
                self._send(*service._answer(record))
        finally:
            service._done()

    def _send(self, code: int, headers: dict[str, str], payload: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the service records requests instead."""
