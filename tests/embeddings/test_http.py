"""The ``http`` embedding provider against a fake enrichment service on localhost."""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from shoprec.embeddings.http import (
    CircuitOpenError,
    HttpEmbeddingError,
    HttpProvider,
    HttpProviderConfig,
    _retry_after,
)
from shoprec.embeddings.protocol import EmbeddingError, EmbeddingProvider
from shoprec.exceptions import ConfigError, ShoprecError
from tests.embeddings.fake_service import (
    MALFORMED,
    NON_NUMERIC,
    WRONG_COUNT,
    WRONG_DIM,
    FakeEnrichmentService,
    Fault,
    hang,
    status,
)

Make = Callable[..., HttpProvider]

FAST = {
    "timeout_seconds": 0.2,
    "max_retries": 2,
    "backoff_base_seconds": 0.01,
    "backoff_max_seconds": 0.05,
    "circuit_failures": 100,
    "circuit_cooldown_seconds": 0.3,
}


@pytest.fixture
def make(enrichment_service: FakeEnrichmentService) -> Iterator[Make]:
    """Providers for the fake service with tiny timeouts and backoff, closed at teardown."""
    providers: list[HttpProvider] = []

    def build(**settings: Any) -> HttpProvider:
        config = HttpProviderConfig(**{"url": enrichment_service.url, **FAST, **settings})
        providers.append(HttpProvider(config))
        return providers[-1]

    yield build
    for provider in providers:
        provider.close()


def expected(service: FakeEnrichmentService, texts: list[str]) -> np.ndarray:
    return np.vstack([service.vector(text) for text in texts])


# --- answers and mapping ---------------------------------------------------------------------


def test_embeds_texts_in_order(enrichment_service: FakeEnrichmentService, make: Make) -> None:
    provider = make()
    texts = ["red shoes", "blue shirt", "red shoes"]
    vectors = provider.embed(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, 8)
    np.testing.assert_array_equal(vectors, expected(enrichment_service, texts))
    assert isinstance(provider, EmbeddingProvider)
    assert provider.name == "http"
    assert provider.dim == 8
    assert enrichment_service.requests[0].body == {"input": texts}


def test_openai_shaped_answers_and_request_mapping(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    enrichment_service.shape = "openai"
    enrichment_service.input_field = "texts"
    provider = make(
        input_field="texts",
        body={"model": "embed-x", "dimensions": 8},
        vectors_path="data[].embedding",
    )
    vectors = provider.embed(["a", "b"])
    np.testing.assert_array_equal(vectors, expected(enrichment_service, ["a", "b"]))
    assert enrichment_service.requests[0].body == {
        "model": "embed-x",
        "dimensions": 8,
        "texts": ["a", "b"],
    }


def test_a_bare_list_and_a_nested_path_are_read() -> None:
    def answer(payload: Any) -> Callable[[httpx.Request], httpx.Response]:
        return lambda request: httpx.Response(200, json=payload)

    bare = HttpProvider(
        HttpProviderConfig(url="http://svc/embed", vectors_path=""),
        transport=httpx.MockTransport(answer([[1, 2], [3, 4]])),
    )
    nested = HttpProvider(
        HttpProviderConfig(url="http://svc/embed", vectors_path="result.items[].vec.values"),
        transport=httpx.MockTransport(
            answer(
                {"result": {"items": [{"vec": {"values": [1, 2]}}, {"vec": {"values": [3, 4]}}]}}
            )
        ),
    )
    with bare, nested:
        for provider in (bare, nested):
            np.testing.assert_array_equal(provider.embed(["x", "y"]), [[1, 2], [3, 4]])


def test_empty_input_makes_no_call(enrichment_service: FakeEnrichmentService, make: Make) -> None:
    provider = make(dim=8)
    assert provider.embed([]).shape == (0, 8)
    assert enrichment_service.calls == 0
    with pytest.raises(TypeError, match="not one string"):
        provider.embed("one text")


def test_dim_is_learned_from_the_first_answer(make: Make) -> None:
    provider = make()
    with pytest.raises(EmbeddingError, match="not known before its first answer"):
        _ = provider.dim
    provider.embed(["a"])
    assert provider.dim == 8


def test_a_dimension_other_than_configured_fails(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    provider = make(dim=16, max_retries=1)
    with pytest.raises(HttpEmbeddingError, match=r"dimension 8, expected 16 \(from config dim\)"):
        provider.embed(["a"])
    assert enrichment_service.calls == 2


def test_version_follows_url_mapping_and_model_version() -> None:
    def version(**settings: Any) -> str:
        config = HttpProviderConfig(**{"url": "http://svc/embed", **settings})
        with HttpProvider(config) as provider:
            return provider.version

    base = version()
    assert base == version(batch_size=7, max_concurrency=2, timeout_seconds=1, headers={"A": "b"})
    assert base.startswith("1+")
    changed = [
        version(url="http://svc/v2/embed"),
        version(input_field="texts"),
        version(body={"model": "x"}),
        version(body={"model": "y"}),
        version(vectors_path="data[].embedding"),
        version(model_version="2024-06"),
    ]
    assert len({base, *changed}) == len(changed) + 1
    assert changed[-1].startswith("2024-06+")


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"headers": {"Authorization": "Bearer s3cret"}}, "carries a credential"),
        ({"auth_header": "Authorization"}, "set both or neither"),
        ({"body": {"input": "x"}}, "must not set 'input'"),
        ({"vectors_path": "data[].items[].embedding"}, "more than one"),
        ({"vectors_path": "data..embedding"}, "neither a field name"),
        ({"url": "ftp://svc/embed"}, "http:// or https://"),
        ({"batch_size": 0}, "greater than or equal to 1"),
        ({"retries": 3}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_config_is_rejected(settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        HttpProviderConfig(**{"url": "http://svc/embed", **settings})


def test_every_config_field_is_described() -> None:
    missing = [
        name for name, info in HttpProviderConfig.model_fields.items() if not info.description
    ]
    assert missing == []


# --- auth ------------------------------------------------------------------------------------


def test_auth_header_comes_from_the_environment(
    enrichment_service: FakeEnrichmentService, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrichment_service.auth = ("Authorization", "Bearer s3cret")
    monkeypatch.setenv("TEST_ENRICH_KEY", "s3cret")
    provider = make(
        auth_header="Authorization",
        auth_env="TEST_ENRICH_KEY",
        auth_prefix="Bearer ",
        headers={"X-Client": "shoprec"},
    )
    provider.embed(["a"])
    headers = enrichment_service.requests[0].headers
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["x-client"] == "shoprec"
    assert "s3cret" not in repr(provider.config)


def test_a_wrong_secret_gets_401_and_is_not_retried(
    enrichment_service: FakeEnrichmentService, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    enrichment_service.auth = ("X-Key", "right")
    monkeypatch.setenv("TEST_ENRICH_KEY", "wrong")
    provider = make(auth_header="X-Key", auth_env="TEST_ENRICH_KEY")
    with pytest.raises(HttpEmbeddingError, match=r"HTTP 401 Unauthorized.*\(not retried\)"):
        provider.embed(["a"])
    assert enrichment_service.calls == 1


def test_an_unset_auth_variable_fails_at_construction(
    enrichment_service: FakeEnrichmentService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_ENRICH_KEY", raising=False)
    config = HttpProviderConfig(
        url=enrichment_service.url, auth_header="Authorization", auth_env="TEST_ENRICH_KEY"
    )
    with pytest.raises(ConfigError, match=r"environment variable TEST_ENRICH_KEY .* is not set"):
        HttpProvider(config)


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [status(500), status(502), status(503), status(429), hang(1.0), MALFORMED],
    ids=["500", "502", "503", "429", "timeout", "malformed"],
)
def test_transient_failures_are_retried(
    enrichment_service: FakeEnrichmentService, make: Make, fault: Fault
) -> None:
    provider = make(max_retries=2)
    enrichment_service.script(fault, fault)
    vectors = provider.embed(["a", "b"])
    np.testing.assert_array_equal(vectors, expected(enrichment_service, ["a", "b"]))
    assert enrichment_service.calls == 3
    assert (provider.calls, provider.retries, provider.failures) == (1, 2, 0)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (status(500), "HTTP 500 Internal Server Error"),
        (status(429), "HTTP 429 Too Many Requests"),
        (hang(1.0), r"no answer within 0.2 s \(ReadTimeout\)"),
        (MALFORMED, r"unusable answer: not JSON"),
        (WRONG_COUNT, "unusable answer: 1 vectors for 2 texts"),
        (WRONG_DIM, r"unusable answer: vectors of dimension 9, expected 8 \(from config dim\)"),
        (NON_NUMERIC, "unusable answer: vector 0 holds '0.5' at 0, not a number"),
    ],
    ids=["500", "429", "timeout", "malformed", "count", "dim", "non-numeric"],
)
def test_persistent_failure_names_url_reason_and_attempts(
    enrichment_service: FakeEnrichmentService, make: Make, fault: Fault, reason: str
) -> None:
    provider = make(max_retries=2, dim=8)
    enrichment_service.default_fault = fault
    with pytest.raises(HttpEmbeddingError, match=reason) as caught:
        provider.embed(["a", "b"])
    message = str(caught.value)
    assert f"POST {enrichment_service.url} failed for 2 texts after 3 attempts" in message
    assert caught.value.attempts == 3
    assert isinstance(caught.value, ShoprecError)
    assert enrichment_service.calls == 3
    assert (provider.calls, provider.retries, provider.failures) == (1, 2, 1)


def test_a_wrong_dimension_among_calls_is_caught_without_config_dim(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    provider = make(max_retries=0)
    provider.embed(["a"])
    enrichment_service.default_fault = WRONG_DIM
    with pytest.raises(HttpEmbeddingError, match=r"expected 8 \(from the first answer\)"):
        provider.embed(["b"])


@pytest.mark.parametrize("code", [400, 404, 422])
def test_client_errors_are_not_retried(
    enrichment_service: FakeEnrichmentService, make: Make, code: int
) -> None:
    provider = make(max_retries=3)
    enrichment_service.default_fault = status(code)
    with pytest.raises(HttpEmbeddingError, match=rf"after 1 attempt: HTTP {code} .*not retried"):
        provider.embed(["a"])
    assert enrichment_service.calls == 1
    assert provider.retries == 0


def test_a_bad_request_body_reports_the_services_message(make: Make) -> None:
    provider = make(input_field="texts")
    with pytest.raises(HttpEmbeddingError, match="input must be a list of strings"):
        provider.embed(["a"])


def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = HttpProviderConfig(url=f"http://127.0.0.1:{port}/embed", **FAST)
    with (
        HttpProvider(config) as provider,
        pytest.raises(
            HttpEmbeddingError, match=r"after 3 attempts: connection failed \(ConnectError"
        ),
    ):
        provider.embed(["a"])


def test_retry_after_is_honoured(enrichment_service: FakeEnrichmentService, make: Make) -> None:
    provider = make(max_retries=1)
    enrichment_service.script(status(429, retry_after="1"))
    started = time.monotonic()
    provider.embed(["a"])
    assert 1.0 <= time.monotonic() - started < 2.0
    enrichment_service.script(status(503, retry_after="0.3"))
    started = time.monotonic()
    provider.embed(["a"])
    assert 0.3 <= time.monotonic() - started < 1.0


def test_a_retry_after_beyond_the_limit_ends_the_call(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    provider = make(max_retries=3, max_retry_after_seconds=5)
    enrichment_service.script(status(429, retry_after="120"))
    started = time.monotonic()
    with pytest.raises(HttpEmbeddingError, match=r"Retry-After 120 s is longer than"):
        provider.embed(["a"])
    assert time.monotonic() - started < 0.5
    assert enrichment_service.calls == 1


def test_backoff_doubles_up_to_its_maximum(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    exact = make(backoff_base_seconds=0.05, backoff_max_seconds=0.15, backoff_jitter=0)
    assert [exact._backoff(attempt) for attempt in (1, 2, 3, 4)] == [0.05, 0.1, 0.15, 0.15]
    jittered = make(backoff_base_seconds=0.05, backoff_max_seconds=0.15, backoff_jitter=0.5)
    assert all(0.025 <= jittered._backoff(1) <= 0.05 for _ in range(100))
    enrichment_service.default_fault = status(500)
    started = time.monotonic()
    with pytest.raises(HttpEmbeddingError, match="after 3 attempts"):
        exact.embed(["a"])
    assert time.monotonic() - started >= 0.15


def test_retry_after_as_an_http_date() -> None:
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _retry_after("soon") is None
    assert _retry_after("2") == 2.0


# --- batching and concurrency ----------------------------------------------------------------


def test_batches_of_batch_size_reassembled_in_order(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    provider = make(batch_size=4, max_concurrency=3)
    texts = [f"item {i}" for i in range(10)]
    vectors = provider.embed(texts)
    np.testing.assert_array_equal(vectors, expected(enrichment_service, texts))
    sizes = sorted(len(request.texts) for request in enrichment_service.requests)
    assert sizes == [2, 4, 4]
    assert (provider.batch_size, provider.max_concurrency, provider.calls) == (4, 3, 3)


def test_concurrency_stays_within_the_limit_across_callers(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    enrichment_service.latency = 0.05
    provider = make(batch_size=2, max_concurrency=3)
    texts = [f"item {i}" for i in range(24)]
    results: list[np.ndarray] = []
    callers = [threading.Thread(target=lambda: results.append(provider.embed(texts))) for _ in "ab"]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=10)
    assert len(results) == 2
    assert enrichment_service.calls == 24
    assert 2 <= enrichment_service.max_in_flight <= 3


def test_a_failing_batch_fails_alone(enrichment_service: FakeEnrichmentService, make: Make) -> None:
    """The enrichment layer's way: one ``embed`` per batch from several threads."""
    provider = make(batch_size=2, max_concurrency=3, max_retries=1)
    enrichment_service.on_text("#broken", status(500))
    enrichment_service.on_text("#flaky", status(503), times=1)
    batches = [["a", "b"], ["c #broken", "d"], ["e #flaky", "f"], ["g", "h"]]
    outcomes: dict[int, np.ndarray | EmbeddingError] = {}

    def run(index: int) -> None:
        try:
            outcomes[index] = provider.embed(batches[index])
        except EmbeddingError as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert isinstance(outcomes[1], HttpEmbeddingError)
    assert "HTTP 500" in str(outcomes[1])
    for index in (0, 2, 3):
        result = outcomes[index]
        assert isinstance(result, np.ndarray)
        np.testing.assert_array_equal(result, expected(enrichment_service, batches[index]))
    assert (provider.calls, provider.failures) == (4, 1)


def test_one_embed_over_many_batches_names_the_failing_batch(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    provider = make(batch_size=2, max_concurrency=2, max_retries=0)
    enrichment_service.on_text("#broken", status(500))
    with pytest.raises(HttpEmbeddingError, match=r"failed for batch 2 of 3, 2 texts after 1"):
        provider.embed(["a", "b", "c #broken", "d", "e", "f"])


# --- circuit breaker -------------------------------------------------------------------------


def test_circuit_opens_fails_fast_half_opens_and_closes(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    provider = make(max_retries=1, circuit_failures=2, circuit_cooldown_seconds=0.3)
    enrichment_service.default_fault = status(503)
    for _ in range(2):
        with pytest.raises(HttpEmbeddingError, match="after 2 attempts"):
            provider.embed(["a"])
    assert enrichment_service.calls == 4

    started = time.monotonic()
    with pytest.raises(CircuitOpenError, match=r"circuit open for .* after 2 consecutive") as open_:
        provider.embed(["a"])
    assert time.monotonic() - started < 0.05
    assert re.search(r"until \d{4}-\d\d-\d\dT[\d:]+\+00:00 \(in 0\.\d s\)", str(open_.value))
    assert "HTTP 503" in str(open_.value)
    assert open_.value.until is not None
    assert enrichment_service.calls == 4

    enrichment_service.default_fault = None
    time.sleep(0.35)
    provider.embed(["a"])
    provider.embed(["b"])
    assert enrichment_service.calls == 6
    assert provider.failures == 3


def test_a_failed_trial_reopens_the_circuit(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    provider = make(max_retries=3, circuit_failures=1, circuit_cooldown_seconds=0.2)
    enrichment_service.default_fault = status(500)
    with pytest.raises(HttpEmbeddingError, match="after 4 attempts"):
        provider.embed(["a"])
    time.sleep(0.25)
    with pytest.raises(HttpEmbeddingError, match=r"trial call .* open again until"):
        provider.embed(["a"])
    assert enrichment_service.calls == 5
    with pytest.raises(CircuitOpenError):
        provider.embed(["a"])
    assert enrichment_service.calls == 5


def test_while_the_trial_is_in_flight_other_calls_fail_fast(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    provider = make(
        max_retries=0, circuit_failures=1, circuit_cooldown_seconds=0.1, timeout_seconds=2
    )
    enrichment_service.script(status(500))
    with pytest.raises(HttpEmbeddingError):
        provider.embed(["a"])
    time.sleep(0.15)
    enrichment_service.latency = 0.3
    trial = threading.Thread(target=provider.embed, args=(["trial"],))
    trial.start()
    deadline = time.monotonic() + 2
    while enrichment_service.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(CircuitOpenError, match="a trial call is in flight"):
        provider.embed(["b"])
    trial.join(timeout=5)
    provider.embed(["b"])
    assert [request.texts for request in enrichment_service.requests] == [["a"], ["trial"], ["b"]]


def test_client_errors_do_not_open_the_circuit(
    enrichment_service: FakeEnrichmentService, make: Make
) -> None:
    provider = make(circuit_failures=1)
    enrichment_service.default_fault = status(400)
    for _ in range(3):
        with pytest.raises(HttpEmbeddingError, match="HTTP 400"):
            provider.embed(["a"])
    assert enrichment_service.calls == 3


# --- housekeeping ----------------------------------------------------------------------------


def test_each_attempt_is_logged_with_its_latency(
    enrichment_service: FakeEnrichmentService, make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    provider = make()
    enrichment_service.script(status(500))
    with caplog.at_level(logging.DEBUG, logger="shoprec.embeddings"):
        provider.embed(["a", "b"])
    attempts = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(attempts) == 2
    assert "attempt 1/3, HTTP 500 Internal Server Error in" in attempts[0]
    assert "2 texts, attempt 2/3, ok in" in attempts[1]
    assert all(message.endswith(" ms") for message in attempts)


def test_a_closed_provider_refuses_to_embed(make: Make) -> None:
    provider = make()
    provider.close()
    with pytest.raises(EmbeddingError, match="is closed"):
        provider.embed(["a"])


def test_an_injected_client_is_left_open(enrichment_service: FakeEnrichmentService) -> None:
    with httpx.Client() as client:
        config = HttpProviderConfig(url=enrichment_service.url, **FAST)
        with HttpProvider(config, client) as provider:
            provider.embed(["a"])
        assert not client.is_closed
