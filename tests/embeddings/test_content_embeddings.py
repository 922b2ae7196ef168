"""The content model's text block from the enrichment's item embeddings, and the build's
embeddings step."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from shoprec.config import load_settings
from shoprec.data.dataset import Dataset
from shoprec.data.schema import EVENTS_SCHEMA, conform
from shoprec.embeddings import FakeProvider
from shoprec.embeddings.attributes import unit_rows
from shoprec.embeddings.cache import EmbeddingCache, with_item_embeddings
from shoprec.embeddings.enrich import attach_embeddings, enrich
from shoprec.embeddings.text import entity_texts
from shoprec.exceptions import DataError
from shoprec.models.content import ContentConfig, ContentModel, ItemVectoriser
from shoprec.pipeline.build import build, current_run, load_model
from tests.embeddings.shop import ingest_instacart

TEXT_ONLY = {"numeric_weight": 0.0, "categorical_weight": 0.0}


def _events(item_ids: list[str]) -> pl.DataFrame:
    rows = [
        (
            f"u{u}",
            item_ids[(7 * u + 3 * j) % len(item_ids)],
            "purchase",
            datetime(2024, 1, 1 + j, tzinfo=UTC),
        )
        for u in range(40)
        for j in range(6)
    ]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "event_type", "ts"], orient="row")
    return conform(frame, EVENTS_SCHEMA)


@pytest.fixture
def enriched(shared_data: Path, workspace: Path) -> pl.DataFrame:
    items = ingest_instacart(shared_data, workspace, products=500)
    enrich(items, FakeProvider(dim=12), EmbeddingCache(workspace))
    return with_item_embeddings(items, workspace)


def test_the_text_block_is_the_item_embedding(enriched: pl.DataFrame) -> None:
    vectoriser = ItemVectoriser(ContentConfig(**TEXT_ONLY)).fit(enriched)
    assert vectoriser.text_source_ == "embeddings"
    assert vectoriser.text_provider_ == "fake/1"
    expected = unit_rows(FakeProvider(dim=12).embed(entity_texts(enriched)).astype(np.float64))
    np.testing.assert_allclose(vectoriser.transform(enriched), expected, atol=1e-6)
    # tfidf on request, even with embeddings at hand
    tfidf = ItemVectoriser(ContentConfig(text_source="tfidf", **TEXT_ONLY)).fit(enriched)
    assert tfidf.text_source_ == "tfidf"
    assert tfidf.transform(enriched).shape[1] == 64


def test_items_without_a_usable_embedding_get_no_text_block(enriched: pl.DataFrame) -> None:
    vectoriser = ItemVectoriser(ContentConfig()).fit(enriched)
    plain = enriched.drop("embedding", "embedding_version").head(3)
    with_text = vectoriser.transform(enriched.head(3))
    without = vectoriser.transform(plain)
    assert with_text.shape == without.shape
    attributes = np.hstack([vectoriser.attributes_.transform(plain), np.zeros((3, 12))])
    np.testing.assert_allclose(without, attributes, atol=1e-6)
    other = enriched.head(3).with_columns(pl.lit("fake/2").alias("embedding_version"))
    np.testing.assert_allclose(vectoriser.transform(other), attributes, atol=1e-6)


def test_text_source_embeddings_needs_them(enriched: pl.DataFrame) -> None:
    plain = enriched.drop("embedding", "embedding_version")
    with pytest.raises(DataError, match="text_source is 'embeddings' but the items carry no"):
        ItemVectoriser(ContentConfig(text_source="embeddings")).fit(plain)
    assert ItemVectoriser(ContentConfig()).fit(plain).text_source_ == "tfidf"
    mixed = enriched.with_columns(
        pl.when(pl.col("item_id") == "1")
        .then(pl.lit("tfidf/x"))
        .otherwise("embedding_version")
        .alias("embedding_version")
    )
    with pytest.raises(DataError, match="come from 2 providers or versions"):
        ItemVectoriser(ContentConfig()).fit(mixed)


def test_content_model_recommends_from_embeddings(enriched: pl.DataFrame) -> None:
    ids = enriched.get_column("item_id").to_list()
    dataset = Dataset.from_events(_events(ids), items=enriched)
    model = ContentModel(ContentConfig(**TEXT_ONLY)).fit(dataset)
    assert model.vectoriser_.text_source_ == "embeddings"
    similar = model.similar_items([ids[0]], k=3)
    assert similar.height == 3
    vectors = FakeProvider(dim=12).embed(entity_texts(enriched))
    unit = unit_rows(vectors.astype(np.float64))
    nearest = np.argsort(-(unit @ unit[0]))[1:4]
    assert similar.get_column("similar_item_id").to_list() == [ids[i] for i in nearest]


def test_build_enriches_the_catalogue_first(shared_data: Path, workspace: Path) -> None:
    items = ingest_instacart(shared_data, workspace, products=500)
    settings = load_settings(workspace=workspace).model_copy(
        update={"models": {"content": {"kind": "content"}}, "default_model": "content"}
    )
    events = _events(items.get_column("item_id").to_list())
    build(events, settings, items=items)
    _, manifest = current_run(workspace)
    summary = manifest["embeddings"]
    assert (summary["provider"], summary["total"], summary["embedded"]) == ("tfidf", 500, 500)
    model, _ = load_model(workspace)
    assert isinstance(model, ContentModel)
    assert model.vectoriser_.text_source_ == "embeddings"
    build(events, settings, items=items)  # the second build: nothing to embed
    _, manifest = current_run(workspace)
    assert (manifest["embeddings"]["calls"], manifest["embeddings"]["cached"]) == (0, 500)
    off = settings.model_copy(
        update={"embeddings": settings.embeddings.model_copy(update={"build": False})}
    )
    build(events, off, items=items)
    _, manifest = current_run(workspace)
    assert manifest["embeddings"] is None
    model, _ = load_model(workspace)
    assert isinstance(model, ContentModel)
    assert model.vectoriser_.text_source_ == "tfidf"


def test_items_added_after_fitting_are_embedded_through_the_cache(
    enriched: pl.DataFrame, workspace: Path
) -> None:
    vectoriser = ItemVectoriser(ContentConfig(**TEXT_ONLY)).fit(enriched.head(400))
    provider = FakeProvider(dim=12)
    new = enriched.slice(400, 5).drop("embedding", "embedding_version")
    frame, report = attach_embeddings(new, provider, EmbeddingCache(workspace))
    assert provider.calls == 0
    assert report.cached == 5
    expected = unit_rows(provider.embed(entity_texts(new)).astype(np.float64))
    np.testing.assert_allclose(vectoriser.transform(frame), expected, atol=1e-6)
