"""Enrichment: embed a catalogue through the cache, sending a provider only what is new.

:func:`enrich` hashes each entity's text (:func:`~shoprec.embeddings.text.entity_texts`), looks
the hashes up in the :class:`~shoprec.embeddings.cache.EmbeddingCache`, and sends the texts it
lacks to the provider in batches (``provider.batch_size``, else 256), up to
``provider.max_concurrency`` batches at a time. Each batch that succeeds is cached at once; a
batch that fails records a failure for each of its entities and the others go on. Every call is
logged: a JSON line in ``<workspace>/embeddings/calls.jsonl``, a line of this module's logger, and
the Prometheus metrics ``shoprec_embedding_calls_total{provider,outcome}`` and
``shoprec_embedding_call_seconds{provider}``.

:func:`open_provider` builds the configured provider; :func:`embed_items` is the one-call form
for a few items arriving at run time (the stream worker).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
from prometheus_client import Counter, Histogram

from shoprec.data.schema import ENTITY_TYPE, ITEM_ID
from shoprec.embeddings.cache import (
    EmbeddingCache,
    embedding_columns,
)
from shoprec.embeddings.protocol import EmbeddingError, EmbeddingProvider, content_hash
from shoprec.embeddings.text import entity_texts
from shoprec.embeddings.tfidf import TfidfProvider
from shoprec.exceptions import ConfigError, DataError, ShoprecError, describe_validation_error

if TYPE_CHECKING:
    from shoprec.config import Settings

__all__ = [
    "EmbeddedItems",
    "EnrichFailure",
    "EnrichReport",
    "attach_embeddings",
    "embed_items",
    "enrich",
    "enrich_catalogue",
    "open_provider",
]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 256
CALLS = Counter(
    "shoprec_embedding_calls",
    "Calls to an embedding provider, by outcome (ok or error).",
    ["provider", "outcome"],
)
CALL_SECONDS = Histogram(
    "shoprec_embedding_call_seconds",
    "Latency of one call to an embedding provider.",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


@dataclass(frozen=True)
class EnrichFailure:
    item_id: str
    reason: str


@dataclass
class EnrichReport:
    """What one enrichment did, counted in entities (items), plus the provider calls made.

    ``cached`` entities already had a vector for their content; ``embedded`` got one now;
    ``failed`` did not (their batch failed; see ``failures``); ``empty`` have no text at all and
    are not sent.
    """

    provider: str
    version: str
    dim: int
    total: int = 0
    cached: int = 0
    embedded: int = 0
    failed: int = 0
    empty: int = 0
    calls: int = 0
    failed_calls: int = 0
    texts_sent: int = 0
    seconds: float = 0.0
    failures: list[EnrichFailure] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Call:
    hashes: list[str]
    vectors: np.ndarray | None
    error: str | None
    seconds: float


def _embed_batch(provider: EmbeddingProvider, hashes: list[str], texts: list[str]) -> _Call:
    started = time.perf_counter()
    try:
        vectors = np.asarray(provider.embed(texts), np.float32)
        if vectors.shape != (len(texts), provider.dim):
            raise EmbeddingError(
                f"the provider returned vectors of shape {vectors.shape} for {len(texts)} "
                f"texts; expected ({len(texts)}, {provider.dim})"
            )
        if not np.isfinite(vectors).all():
            raise EmbeddingError("the provider returned vectors with NaN or infinite values")
    except EmbeddingError as exc:
        return _Call(hashes, None, str(exc), time.perf_counter() - started)
    except Exception as exc:  # a provider's bug must not lose the other batches
        logger.exception("embedding provider %s failed unexpectedly", provider.name)
        reason = f"unexpected {type(exc).__name__}: {exc}"
        return _Call(hashes, None, reason, time.perf_counter() - started)
    return _Call(hashes, vectors, None, time.perf_counter() - started)


def _record_call(
    cache: EmbeddingCache, provider: EmbeddingProvider, version: str, call: _Call
) -> None:
    outcome = "ok" if call.error is None else "error"
    CALLS.labels(provider.name, outcome).inc()
    CALL_SECONDS.labels(provider.name).observe(call.seconds)
    cache.log_call(
        {
            "ts": datetime.now(UTC).isoformat(),
            "provider": provider.name,
            "version": version,
            "texts": len(call.hashes),
            "seconds": round(call.seconds, 6),
            "outcome": outcome,
            "error": call.error,
        }
    )
    if call.error is None:
        logger.info(
            "embedding call: provider=%s texts=%d seconds=%.3f",
            provider.name,
            len(call.hashes),
            call.seconds,
        )
    else:
        logger.warning(
            "embedding call failed: provider=%s texts=%d seconds=%.3f error=%s",
            provider.name,
            len(call.hashes),
            call.seconds,
            call.error,
        )


def enrich(
    items: pl.DataFrame,
    provider: EmbeddingProvider,
    cache: EmbeddingCache,
    *,
    batch_size: int | None = None,
    max_concurrency: int | None = None,
    full_catalogue: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> EnrichReport:
    """Give every item of ``items`` a cached vector of ``provider``; see the module docstring.

    Parameters
    ----------
    batch_size, max_concurrency
        Override the provider's own (``batch_size``, ``max_concurrency`` attributes; 256, 1).
    full_catalogue
        ``items`` is the whole catalogue: the item map is replaced (items no longer in it are
        forgotten). False updates the map for these items only.
    on_progress
        Called with (texts done, texts to send) after each call.
    """
    started = time.perf_counter()
    if ITEM_ID not in items.columns:
        raise DataError("cannot enrich: the items have no item_id column")
    version = provider.version
    ids = items.get_column(ITEM_ID).cast(pl.String).to_list()
    types = (
        items.get_column(ENTITY_TYPE).cast(pl.String).to_list()
        if ENTITY_TYPE in items.columns
        else [None] * items.height
    )
    texts = entity_texts(items)
    hashes = [content_hash(text) for text in texts]
    empty = np.array([not text.strip() for text in texts], bool)
    cached = cache.contains(provider.name, version, hashes) & ~empty
    pending: dict[str, str] = {}
    for row in np.flatnonzero(~cached & ~empty).tolist():
        pending.setdefault(hashes[row], texts[row])
    size = batch_size or int(getattr(provider, "batch_size", DEFAULT_BATCH_SIZE))
    workers = max_concurrency or int(getattr(provider, "max_concurrency", 1))
    keys = list(pending)
    batches = [keys[i : i + size] for i in range(0, len(keys), size)]
    report = EnrichReport(provider.name, version, 0, total=items.height, texts_sent=len(keys))
    failed: dict[str, str] = {}
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="enrich") as pool:
        futures: list[Future[_Call]] = [
            pool.submit(_embed_batch, provider, batch, [pending[h] for h in batch])
            for batch in batches
        ]
        try:
            for future in as_completed(futures):
                call = future.result()
                report.calls += 1
                _record_call(cache, provider, version, call)
                if call.vectors is None:
                    report.failed_calls += 1
                    failed.update(dict.fromkeys(call.hashes, call.error or "failed"))
                else:
                    cache.store(provider.name, version, call.hashes, call.vectors)
                done += len(call.hashes)
                if on_progress is not None:
                    on_progress(done, len(keys))
        except BaseException:  # interrupted, or the cache cannot be written: stop sending
            for future in futures:
                future.cancel()
            raise
    for position, item_id in enumerate(ids):
        if empty[position]:
            report.empty += 1
        elif cached[position]:
            report.cached += 1
        elif hashes[position] in failed:
            report.failed += 1
            report.failures.append(EnrichFailure(item_id, failed[hashes[position]]))
        else:
            report.embedded += 1
    report.dim = _dim_or_zero(provider) or _recorded_dim(cache, provider.name, version)
    cache.record_items(
        provider.name, version, report.dim, ids, types, hashes, replace=full_catalogue
    )
    report.seconds = time.perf_counter() - started
    return report


def _recorded_dim(cache: EmbeddingCache, name: str, version: str) -> int:
    """The size recorded by an earlier enrichment with the same provider and version (a remote
    provider that learns its size from answers knows none when every entity was cached)."""
    recorded = cache.current().get("providers", {}).get(name, {})
    return int(recorded.get("dim") or 0) if recorded.get("version") == version else 0


def _dim_or_zero(provider: EmbeddingProvider) -> int:
    """A remote provider may learn its size from its first answer: zero until then."""
    try:
        return int(provider.dim)
    except ShoprecError:
        return 0


@dataclass(frozen=True)
class EmbeddedItems:
    """Vectors of some items in input order (zero where ``found`` is false) and the report."""

    vectors: np.ndarray
    found: np.ndarray
    report: EnrichReport


def embed_items(
    items: pl.DataFrame, provider: EmbeddingProvider, cache: EmbeddingCache
) -> EmbeddedItems:
    """Vectors of a few items, through the cache (a new item costs one provider call, a known
    one none), updating the item map for them only. For the stream worker and the server."""
    report = enrich(items, provider, cache, full_catalogue=False)
    hashes = [content_hash(text) for text in entity_texts(items)]
    vectors, found = cache.lookup(provider.name, report.version, hashes)
    if vectors.shape[1] == 0:
        vectors = np.zeros((items.height, report.dim), np.float32)
    return EmbeddedItems(vectors, found, report)


def attach_embeddings(
    items: pl.DataFrame, provider: EmbeddingProvider, cache: EmbeddingCache
) -> tuple[pl.DataFrame, EnrichReport]:
    """``items`` embedded through the cache (:func:`embed_items`) with their ``embedding`` and
    ``embedding_version`` columns (null where embedding failed): what a content model's
    vectoriser with embeddings as its text source needs to embed items added after a build."""
    embedded = embed_items(items, provider, cache)
    tag = f"{provider.name}/{embedded.report.version}"
    return embedding_columns(items, embedded.vectors, embedded.found, tag), embedded.report


# -- the configured provider ---------------------------------------------------------------------
def open_provider(
    settings: Settings,
    workspace: Path | str | None = None,
    items: pl.DataFrame | None = None,
    *,
    name: str | None = None,
    refit: bool = False,
) -> EmbeddingProvider:
    """The provider named by ``name`` (default ``settings.embeddings.provider``).

    ``tfidf`` is the fit saved in the workspace, when there is one with the configured sizes;
    otherwise (or with ``refit``) it is fitted on ``items``' texts and saved. ``minilm`` needs the
    ``text`` extra; ``http`` is configured by ``settings.embeddings.http``.
    """
    config = settings.embeddings
    chosen = name or config.provider
    cache = EmbeddingCache(workspace if workspace is not None else settings.workspace)
    if chosen == "tfidf":
        return _tfidf(cache, items, config.tfidf_dimensions, config.tfidf_max_features, refit)
    if chosen == "minilm":
        try:
            from shoprec.embeddings.minilm import MiniLMProvider
        except ImportError as exc:
            raise ShoprecError(
                f"the minilm provider needs the text extra: pip install 'shoprec[text]' ({exc})"
            ) from None
        provider: EmbeddingProvider = MiniLMProvider(batch_size=config.batch_size or 64)
        return provider
    if chosen == "http":
        from pydantic import ValidationError

        from shoprec.embeddings.http import HttpProvider, HttpProviderConfig

        try:
            http_config = HttpProviderConfig.model_validate(config.http)
        except ValidationError as exc:
            raise ConfigError(f"embeddings.http: {describe_validation_error(exc)}") from None
        return HttpProvider(http_config)
    raise ConfigError(f"unknown embedding provider {chosen!r}; known: tfidf, minilm, http")


def enrich_catalogue(
    items: pl.DataFrame,
    settings: Settings,
    *,
    provider: str | None = None,
    refit: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> EnrichReport:
    """Enrich a whole catalogue with the configured provider (or ``provider``) through the
    workspace cache: what ``shoprec enrich`` and ``shoprec build`` run."""
    chosen = open_provider(settings, settings.workspace, items, name=provider, refit=refit)
    try:
        return enrich(
            items,
            chosen,
            EmbeddingCache(settings.workspace),
            batch_size=settings.embeddings.batch_size,
            on_progress=on_progress,
        )
    finally:
        close = getattr(chosen, "close", None)
        if callable(close):
            close()


def _tfidf(
    cache: EmbeddingCache,
    items: pl.DataFrame | None,
    dimensions: int,
    max_features: int,
    refit: bool,
) -> TfidfProvider:
    path = cache.tfidf_path
    if path.is_file() and not refit:
        saved = TfidfProvider.load(path)
        if saved.dimensions == dimensions and saved.max_features == max_features:
            return saved
        logger.info("the saved TF-IDF fit has other sizes than the config: fitting again")
    if items is None or items.height == 0:
        raise DataError(
            f"{path}: no fitted TF-IDF provider and no catalogue to fit it on; "
            "ingest items and run 'shoprec enrich'"
        )
    provider = TfidfProvider(dimensions, max_features).fit(entity_texts(items))
    provider.save(path)
    return provider


def describe(report: EnrichReport) -> str:
    """One line: how many entities remain unembedded, and why at first."""
    if not report.failed:
        return (
            f"{report.total:,} entities: {report.cached:,} cached, {report.embedded:,} embedded "
            f"with {report.provider} in {report.calls:,} call(s)"
        )
    reason = report.failures[0].reason if report.failures else "unknown"
    return (
        f"{report.failed:,} of {report.total:,} entities remain unembedded by "
        f"{report.provider} ({report.failed_calls:,} of {report.calls:,} call(s) failed; first: "
        f"{reason}); the vectors already cached are kept and a re-run sends only these"
    )
