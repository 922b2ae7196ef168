"""Acceptance of ``shoprec enrich`` with the ``http`` provider against a fake enrichment service
that times out, answers 500 and 429 and returns malformed JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml
from typer.testing import CliRunner

from shoprec.cli import app
from shoprec.data.lake import Lake
from shoprec.embeddings import content_hash
from shoprec.embeddings.cache import EmbeddingCache, load_item_embeddings
from shoprec.embeddings.text import entity_texts
from tests.embeddings.fake_service import MALFORMED, FakeEnrichmentService, hang, status
from tests.embeddings.shop import ingest_instacart

runner = CliRunner()


def _config(path: Path, service: FakeEnrichmentService) -> Path:
    http = {
        "url": service.url,
        "batch_size": 50,
        "max_concurrency": 2,
        "timeout_seconds": 0.3,
        "max_retries": 2,
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "circuit_failures": 100,
        "dim": service.dim,
    }
    path.write_text(yaml.safe_dump({"embeddings": {"provider": "http", "http": http}}))
    return path


def _enrich(workspace: Path, config: Path) -> tuple[int, dict[str, Any], str]:
    result = runner.invoke(app, ["enrich", "-w", str(workspace), "-c", str(config), "--json"])
    report = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    return result.exit_code, report, result.output


def test_http_enrichment_survives_a_faulty_service(
    shared_data: Path, workspace: Path, tmp_path: Path, enrichment_service: FakeEnrichmentService
) -> None:
    items = ingest_instacart(shared_data, workspace, products=300)
    config = _config(tmp_path / "shoprec.yaml", enrichment_service)

    # A timeout, a 500, a 429 and a malformed answer, each once for one of four batches (of
    # 50 texts, in catalogue order): each of those batches is retried once.
    texts = entity_texts(items)
    for position, fault in ((0, hang(1.0)), (60, status(500)), (120, status(429, "0"))):
        enrichment_service.on_text(texts[position], fault, times=1)
    enrichment_service.on_text(texts[180], MALFORMED, times=1)
    code, first, output = _enrich(workspace, config)
    assert code == 0, output
    assert (first["embedded"], first["failed"], first["calls"]) == (300, 0, 6)
    assert enrichment_service.calls == 6 + 4  # six batches, four of them retried once
    loaded = load_item_embeddings(workspace, "http")
    assert loaded.found.all()
    expected = np.stack([enrichment_service.vector(t) for t in texts])
    np.testing.assert_allclose(loaded.vectors, expected, rtol=1e-6)

    # Ten changed titles the service refuses for good: reported per entity, exit code 2.
    changed = items.head(10).with_columns((pl.col("title") + " (new recipe)").alias("title"))
    Lake(workspace).append(items=changed)
    enrichment_service.on_text("(new recipe)", status(500))
    before = enrichment_service.calls
    result = runner.invoke(app, ["enrich", "-w", str(workspace), "-c", str(config)])
    assert result.exit_code == 2
    assert enrichment_service.calls - before == 3  # one batch: the first try and two retries
    assert "error: 10 of 300 entities remain unembedded by http" in result.output
    assert "1 of 1 call(s) failed" in result.output
    assert "500" in result.output
    for item_id in changed.get_column("item_id").to_list():
        assert item_id in result.output
    # Nothing already cached is lost: the 290 others are current, the old vectors still cached.
    loaded = load_item_embeddings(workspace, "http")
    assert loaded.found.sum() == 290
    cache = EmbeddingCache(workspace)
    assert cache.contains("http", loaded.version, [content_hash(t) for t in texts]).all()

    # The service recovers: a re-run sends only the ten.
    enrichment_service.clear_faults()
    before = enrichment_service.calls
    code, third, output = _enrich(workspace, config)
    assert code == 0, output
    assert (third["cached"], third["embedded"], third["texts_sent"]) == (290, 10, 10)
    assert enrichment_service.calls - before == 1
    assert load_item_embeddings(workspace, "http").found.all()
