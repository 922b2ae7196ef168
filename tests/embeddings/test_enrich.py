from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from prometheus_client import REGISTRY

from shoprec.config import EmbeddingSettings, load_settings
from shoprec.embeddings import EmbeddingError, FakeProvider, content_hash
from shoprec.embeddings.cache import EmbeddingCache, load_item_embeddings, with_item_embeddings
from shoprec.embeddings.enrich import embed_items, enrich, open_provider
from shoprec.embeddings.http import HttpProvider
from shoprec.embeddings.text import entity_texts
from shoprec.exceptions import ConfigError, LakeError, ShoprecError
from tests.embeddings.shop import ingest_instacart


class BatchedFake(FakeProvider):
    """A fake with a batch size that fails the calls named in ``failing`` (1-based)."""

    def __init__(self, batch_size: int = 100, failing: Sequence[int] = ()) -> None:
        super().__init__(dim=8)
        self.batch_size = batch_size
        self.failing = set(failing)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.calls + 1 in self.failing:
            self.calls += 1
            raise EmbeddingError(f"service said 503 on call {self.calls}")
        return super().embed(texts)


@pytest.fixture
def items(shared_data: Path, workspace: Path) -> pl.DataFrame:
    return ingest_instacart(shared_data, workspace, products=1_000)


def test_only_new_or_changed_entities_reach_the_provider(
    items: pl.DataFrame, workspace: Path
) -> None:
    cache = EmbeddingCache(workspace)
    provider = BatchedFake(batch_size=300)
    report = enrich(items, provider, cache)
    assert (report.total, report.cached, report.embedded, report.failed) == (1000, 0, 1000, 0)
    assert report.calls == provider.calls == 4
    assert report.dim == 8
    again = enrich(items, provider, EmbeddingCache(workspace))
    assert (again.cached, again.embedded, again.calls) == (1000, 0, 0)
    changed = items.with_columns(
        pl.when(pl.col("item_id") == "7")
        .then(pl.lit("A new title"))
        .otherwise("title")
        .alias("title")
    )
    third = enrich(changed, provider, cache)
    assert (third.cached, third.embedded, third.calls, third.texts_sent) == (999, 1, 1, 1)
    assert provider.texts_seen[-1].startswith("A new title")


def test_a_failed_batch_loses_nothing_and_a_rerun_sends_only_it(
    items: pl.DataFrame, workspace: Path
) -> None:
    provider = BatchedFake(batch_size=100, failing=[3])
    cache = EmbeddingCache(workspace)
    report = enrich(items, provider, cache)
    assert (report.calls, report.failed_calls, report.failed, report.embedded) == (10, 1, 100, 900)
    failed_ids = {f.item_id for f in report.failures}
    texts = entity_texts(items)
    third_batch = set(items.get_column("item_id").to_list()[200:300])
    assert failed_ids == third_batch  # texts are unique here: batches follow the items' order
    assert {f.reason for f in report.failures} == {"service said 503 on call 3"}
    hashes = [content_hash(t) for t in texts]
    stored = cache.contains("fake", "1", hashes)
    assert stored[:200].all()
    assert not stored[200:300].any()
    assert stored[300:].all()
    loaded = load_item_embeddings(workspace, "fake")
    assert loaded.found.sum() == 900
    retry = BatchedFake(batch_size=100)
    second = enrich(items, retry, EmbeddingCache(workspace))
    assert (second.calls, second.cached, second.embedded, second.failed) == (1, 900, 100, 0)
    assert {content_hash(t) for t in retry.texts_seen} == {
        content_hash(texts[i]) for i in range(200, 300)
    }
    assert load_item_embeddings(workspace, "fake").found.all()


def test_any_provider_exception_fails_only_its_batch(items: pl.DataFrame, workspace: Path) -> None:
    class Broken(BatchedFake):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            if self.calls == 0:
                self.calls += 1
                return np.zeros((len(texts) - 1, self.dim), np.float32)  # one row short
            if self.calls == 1:
                self.calls += 1
                raise RuntimeError("boom")
            return super().embed(texts)

    report = enrich(items.head(300), Broken(batch_size=100), EmbeddingCache(workspace))
    assert (report.failed, report.embedded) == (200, 100)
    reasons = sorted({f.reason for f in report.failures})
    assert reasons[0].startswith("the provider returned vectors of shape (99, 8) for 100 texts")
    assert reasons[1] == "unexpected RuntimeError: boom"


def test_every_call_is_logged(items: pl.DataFrame, workspace: Path) -> None:
    def sample(outcome: str) -> float:
        value = REGISTRY.get_sample_value(
            "shoprec_embedding_calls_total", {"provider": "fake", "outcome": outcome}
        )
        return value or 0.0

    ok_before, errors_before = sample("ok"), sample("error")
    enrich(items.head(250), BatchedFake(batch_size=100, failing=[2]), EmbeddingCache(workspace))
    log = (workspace / "embeddings" / "calls.jsonl").read_text().splitlines()
    lines = [json.loads(line) for line in log]
    assert [line["outcome"] for line in lines] == ["ok", "error", "ok"]
    assert [line["texts"] for line in lines] == [100, 100, 50]
    assert lines[1]["error"] == "service said 503 on call 2"
    assert all(line["provider"] == "fake" and line["seconds"] >= 0 for line in lines)
    assert sample("ok") - ok_before == 2
    assert sample("error") - errors_before == 1
    count = REGISTRY.get_sample_value("shoprec_embedding_call_seconds_count", {"provider": "fake"})
    assert count is not None
    assert count >= 3


def test_batches_run_concurrently_up_to_the_providers_limit(
    items: pl.DataFrame, workspace: Path
) -> None:
    class Slow(BatchedFake):
        max_concurrency = 3

        def __init__(self) -> None:
            super().__init__(batch_size=50)
            self.lock = threading.Lock()
            self.running = 0
            self.most = 0

        def embed(self, texts: Sequence[str]) -> np.ndarray:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            time.sleep(0.02)
            with self.lock:
                self.running -= 1
                return super().embed(texts)

    provider = Slow()
    report = enrich(items.head(500), provider, EmbeddingCache(workspace))
    assert report.calls == 10
    assert report.embedded == 500
    assert 1 < provider.most <= 3
    vectors = load_item_embeddings(workspace).vectors
    expected = FakeProvider(dim=8).embed(entity_texts(items.head(500)))
    np.testing.assert_allclose(vectors, expected)


def test_cache_parts_are_compacted_on_load(items: pl.DataFrame, workspace: Path) -> None:
    enrich(items, BatchedFake(batch_size=100), EmbeddingCache(workspace))
    folder = EmbeddingCache(workspace).vectors_dir("fake", "1")
    assert len(list(folder.glob("*-part-*.parquet"))) == 10
    cache = EmbeddingCache(workspace)
    vectors, found = cache.lookup("fake", "1", [content_hash(entity_texts(items)[0]), "nope"])
    assert found.tolist() == [True, False]
    assert not vectors[1].any()
    assert [p.name.split("-")[1] for p in folder.glob("*.parquet")] == ["compact"]
    cache.store("fake", "1", ["x"], np.ones((1, 8), np.float32))  # seen by the same object
    assert cache.contains("fake", "1", ["x"]).all()
    assert EmbeddingCache(workspace).contains("fake", "1", ["x"]).all()


def test_load_item_embeddings_and_the_content_columns(items: pl.DataFrame, workspace: Path) -> None:
    with pytest.raises(LakeError, match="no embeddings in this workspace; run 'shoprec enrich'"):
        load_item_embeddings(workspace)
    enrich(items, BatchedFake(), EmbeddingCache(workspace))
    loaded = load_item_embeddings(workspace, None, ["3", "missing", "1"])
    assert loaded.provider == "fake"
    assert loaded.version == "1"
    assert loaded.dim == 8
    assert loaded.found.tolist() == [True, False, True]
    assert not loaded.vectors[1].any()
    with pytest.raises(LakeError, match="no minilm embeddings"):
        load_item_embeddings(workspace, "minilm")
    edited = items.with_columns(
        pl.when(pl.col("item_id") == "2").then(pl.lit("Changed")).otherwise("title").alias("title")
    )
    frame = with_item_embeddings(edited, workspace)
    assert frame.schema["embedding"] == pl.Array(pl.Float32, 8)
    missing = frame.filter(pl.col("embedding").is_null()).get_column("item_id").to_list()
    assert missing == ["2"]  # its text changed since it was enriched: no stale vector
    assert frame.get_column("embedding_version").drop_nulls().unique().to_list() == ["fake/1"]


def test_embed_items_for_items_arriving_later(items: pl.DataFrame, workspace: Path) -> None:
    cache = EmbeddingCache(workspace)
    provider = BatchedFake()
    enrich(items.head(900), provider, cache)
    calls = provider.calls
    result = embed_items(items.slice(890, 20), provider, cache)
    assert provider.calls == calls + 1
    assert result.report.texts_sent == 10
    assert result.found.all()
    assert result.vectors.shape == (20, 8)
    np.testing.assert_allclose(
        result.vectors, FakeProvider(dim=8).embed(entity_texts(items.slice(890, 20)))
    )
    # The item map was updated, not replaced: all 910 items have a current vector.
    assert load_item_embeddings(workspace).found.sum() == 910


def test_entities_without_text_are_not_sent(workspace: Path) -> None:
    frame = pl.DataFrame({"item_id": ["a", "b"], "title": ["Milk", None]})
    provider = BatchedFake()
    report = enrich(frame, provider, EmbeddingCache(workspace))
    assert (report.embedded, report.empty, provider.texts_seen) == (1, 1, ["Milk"])


def test_an_unwritable_cache_stops_sending(
    items: pl.DataFrame, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = EmbeddingCache(workspace)
    store = cache.store
    stored: list[int] = []

    def store_once(provider: str, version: str, hashes: Sequence[str], vectors: np.ndarray) -> Path:
        if stored:
            raise OSError(28, "No space left on device")
        stored.append(len(hashes))
        return store(provider, version, hashes, vectors)

    class Slowish(BatchedFake):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            time.sleep(0.01)
            return super().embed(texts)

    monkeypatch.setattr(cache, "store", store_once)
    provider = Slowish(batch_size=50)
    with pytest.raises(OSError, match="No space left"):
        enrich(items, provider, cache)
    assert provider.calls < 20  # the batches not yet started were cancelled
    hashes = [content_hash(t) for t in entity_texts(items.head(50))]
    assert EmbeddingCache(workspace).contains("fake", "1", hashes).all()


def test_open_provider_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(workspace=tmp_path)
    monkeypatch.setitem(sys.modules, "shoprec.embeddings.minilm", None)  # the extra is missing
    with pytest.raises(ShoprecError, match=r"pip install 'shoprec\[text\]'"):
        open_provider(settings, name="minilm")
    with pytest.raises(ConfigError, match=r"embeddings\.http: url"):
        open_provider(settings, name="http")
    http = settings.model_copy(
        update={
            "embeddings": EmbeddingSettings(
                provider="http", http={"url": "http://127.0.0.1:9/embed", "batch_size": 7}
            )
        }
    )
    provider = open_provider(http)
    assert isinstance(provider, HttpProvider)
    assert provider.batch_size == 7
    provider.close()


class LearnsItsSize(FakeProvider):
    """Like a remote service without a configured dim: its size is known after an answer."""

    answered = False

    @property
    def dim(self) -> int:
        if not self.answered:
            raise EmbeddingError("size not known before the first answer")
        return super().dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.answered = True
        return super().embed(texts)


def test_a_warm_run_keeps_the_recorded_size(items: pl.DataFrame, workspace: Path) -> None:
    cache = EmbeddingCache(workspace)
    assert enrich(items, LearnsItsSize(), cache).dim == 8
    warm = enrich(items, LearnsItsSize(), EmbeddingCache(workspace))
    assert warm.calls == 0
    assert warm.dim == 8
    assert EmbeddingCache(workspace).current()["providers"]["fake"]["dim"] == 8
