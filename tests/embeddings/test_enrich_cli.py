"""Acceptance of ``shoprec enrich``: an unchanged catalogue costs no provider call, one changed
title costs exactly one."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import shoprec.embeddings.enrich as enrich_module
from shoprec.cli import app
from shoprec.embeddings import EmbeddingError, EmbeddingProvider, FakeProvider
from tests.embeddings.shop import change_title, ingest_instacart

runner = CliRunner()


def _enrich(workspace: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    result = runner.invoke(app, ["enrich", "-w", str(workspace), "--json", *extra])
    report = json.loads(result.stdout)
    return result.exit_code, report, result.output


def _calls_logged(workspace: Path) -> int:
    return len((workspace / "embeddings" / "calls.jsonl").read_text().splitlines())


def test_rerun_makes_no_call_and_one_changed_title_makes_one(
    shared_data: Path, workspace: Path
) -> None:
    ingest_instacart(shared_data, workspace, products=2_000)
    code, first, output = _enrich(workspace)
    assert code == 0, output
    assert (first["provider"], first["total"], first["embedded"]) == ("tfidf", 2000, 2000)
    assert first["calls"] == _calls_logged(workspace) >= 1
    code, second, _ = _enrich(workspace)
    assert code == 0
    assert (second["calls"], second["texts_sent"], second["cached"]) == (0, 0, 2000)
    assert second["version"] == first["version"]  # the saved fit, not a refit
    assert _calls_logged(workspace) == first["calls"]
    change_title(workspace, "17", "Rendered Duck Fat, extra smooth")
    code, third, _ = _enrich(workspace)
    assert code == 0
    assert (third["calls"], third["texts_sent"], third["embedded"], third["cached"]) == (
        1,
        1,
        1,
        1999,
    )
    assert _calls_logged(workspace) == first["calls"] + 1
    # --refit: a new fit on the changed catalogue, so every item is embedded again.
    code, refit, _ = _enrich(workspace, "--refit")
    assert code == 0
    assert refit["version"] != first["version"]
    assert refit["embedded"] == 2000


def test_with_a_counting_provider_one_entity_is_sent(
    shared_data: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_instacart(shared_data, workspace, products=600)
    fake = FakeProvider(dim=16)

    def fake_provider(*args: Any, **kwargs: Any) -> EmbeddingProvider:
        return fake

    monkeypatch.setattr(enrich_module, "open_provider", fake_provider)
    assert _enrich(workspace)[0] == 0
    assert fake.calls == 3
    assert len(fake.texts_seen) == 600
    assert _enrich(workspace)[0] == 0
    assert fake.calls == 3
    change_title(workspace, "5", "Green Chile Anytime Sauce, mild")
    assert _enrich(workspace)[0] == 0
    assert fake.calls == 4
    assert len(fake.texts_seen) == 601
    assert fake.texts_seen[-1].startswith("Green Chile Anytime Sauce, mild")


def test_summary_table_and_errors(shared_data: Path, workspace: Path) -> None:
    empty = runner.invoke(app, ["enrich", "-w", str(workspace)])
    assert empty.exit_code == 2
    assert "the lake holds no items; ingest a catalogue first" in empty.output
    ingest_instacart(shared_data, workspace, products=300)
    result = runner.invoke(app, ["enrich", "-w", str(workspace)])
    assert result.exit_code == 0, result.output
    for label in ("entities", "cached (no call)", "embedded now", "failed", "provider calls"):
        assert label in result.output
    assert "300 entities: 0 cached, 300 embedded with tfidf" in result.output
    bad = runner.invoke(app, ["enrich", "-w", str(workspace), "--provider", "word2vec"])
    assert bad.exit_code == 2
    assert "unknown embedding provider 'word2vec'; known: tfidf, minilm, http" in bad.output


class _FailingOnce(FakeProvider):
    """Fails the second call of its life."""

    batch_size = 100

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self.calls == 1:
            self.calls += 1
            raise EmbeddingError("enrichment service answered 500")
        return super().embed(texts)


def test_unembedded_entities_exit_non_zero_with_a_summary(
    shared_data: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = ingest_instacart(shared_data, workspace, products=300)
    provider = _FailingOnce()
    monkeypatch.setattr(enrich_module, "open_provider", lambda *a, **k: provider)
    result = runner.invoke(app, ["enrich", "-w", str(workspace)])
    assert result.exit_code == 2
    assert "error: 100 of 300 entities remain unembedded by fake" in result.output
    assert "1 of 3 call(s) failed; first: enrichment service answered 500" in result.output
    assert "first failures (of 100)" in result.output
    second_batch = items.get_column("item_id").to_list()[100:110]
    assert all(item_id in result.output for item_id in second_batch)
    code, report, _ = _enrich(workspace)
    assert code == 0
    assert (report["cached"], report["embedded"], report["calls"]) == (200, 100, 1)
