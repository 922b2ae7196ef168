from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from shoprec.config import load_settings
from shoprec.data.schema import EVENTS_SCHEMA, conform
from shoprec.exceptions import DataError, LakeError
from shoprec.pipeline.build import build, current_run, load_model, publish


def _events() -> pl.DataFrame:
    rows = [
        (f"u{u}", f"i{(u + j) % 7}", "purchase", datetime(2024, 1, 1 + j, tzinfo=UTC))
        for u in range(20)
        for j in range(4)
    ]
    frame = pl.DataFrame(rows, schema=["user_id", "item_id", "event_type", "ts"], orient="row")
    return conform(frame, EVENTS_SCHEMA)


def test_build_publishes_a_run(tmp_path: Path) -> None:
    settings = load_settings(workspace=tmp_path)
    result = build(_events(), settings)
    run_id, manifest = current_run(tmp_path)
    assert run_id == result.run_id
    assert set(manifest["models"]) == set(settings.models)
    assert manifest["data"]["events"] == 80
    assert manifest["default_model"] == "two_stage"
    assert manifest["artefacts"]["two_stage.pkl"] > 0
    assert set(manifest["artefacts"]) == {f"{name}.pkl" for name in settings.models}
    model, name = load_model(tmp_path)
    assert name == "two_stage"
    assert model.recommend(["u1"], k=3).height == 3
    second = build(_events(), settings)
    assert current_run(tmp_path)[0] == second.run_id
    publish(tmp_path, result.run_id)  # roll back to the first run
    assert current_run(tmp_path)[0] == result.run_id


def test_build_errors(tmp_path: Path) -> None:
    settings = load_settings(workspace=tmp_path)
    with pytest.raises(DataError, match="training events are empty"):
        build(_events().head(0), settings)
    views = _events().with_columns(pl.lit("impression").alias("event_type"))
    with pytest.raises(DataError, match="no event has a user, an item and an event type"):
        build(views, settings)
    with pytest.raises(LakeError, match="no published model run"):
        current_run(tmp_path)
    with pytest.raises(LakeError, match="no such run"):
        publish(tmp_path, "nope")


def test_unknown_model_name_in_a_run(tmp_path: Path) -> None:
    build(_events(), load_settings(workspace=tmp_path))
    with pytest.raises(LakeError, match="has no model 'deep'"):
        load_model(tmp_path, "deep")
    manifest = json.loads(
        (tmp_path / "models" / current_run(tmp_path)[0] / "manifest.json").read_text()
    )
    assert manifest["models"]["als"]["kind"] == "als"


def test_two_stage_without_enough_history_fuses_ranks(tmp_path: Path) -> None:
    """Every shopper bought once: no one has history before a label, so the ranker cannot learn
    and falls back, clearly."""
    once = (
        _events()
        .unique("user_id", keep="first")
        .with_columns(pl.col("user_id") + "-" + pl.col("item_id"))
    )
    result = build(once, load_settings(workspace=tmp_path))
    model, _ = load_model(tmp_path)
    assert getattr(model, "fallback_", None) == (
        "no labelled users to train on: reciprocal-rank fusion"
    )
    assert model.recommend(["u1", "u2"], k=2).height == 4
    # the build says so, and the run's manifest keeps it
    assert result.warnings == (
        "two_stage: ranker not used: no labelled users to train on: reciprocal-rank fusion",
    )
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["warnings"] == list(result.warnings)
    assert manifest["validation"]["serves"] != "ranker"
