"""One poisoned event in the lake (a zeroed date, written there without ingest, which refuses
it): the build says so, and the ranker's windows are not stretched by it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from shoprec.config import load_settings
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.schema import EVENTS_SCHEMA, conform
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.pipeline.build import BuildResult, build

TWO_STAGE = {
    "kind": "two_stage",
    "generators": {
        "itemknn": {"kind": "itemknn"},
        "popular": {"kind": "popular", "mode": "trending"},
    },
    "candidates_per_generator": 20,
    "ranker": {"objective": "lambdarank", "n_estimators": 30, "random_state": 0, "verbose": -1},
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("poisoned")
    made = generate_shop(ShopSpec(events=12_000, seed=3), folder / "source")
    ingest([made.events_path], "parquet", workspace=folder / "clean")
    return folder / "clean"


def _build(workspace: Path, events: pl.DataFrame) -> tuple[BuildResult, dict[str, Any]]:
    settings = load_settings(workspace=workspace, models={"two_stage": TWO_STAGE})
    result = build(events, settings)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    return result, manifest


def test_a_far_past_event_is_named_in_the_builds_warnings(shop: Path, tmp_path: Path) -> None:
    poison = conform(
        pl.DataFrame(
            {
                "event_id": ["poison"],
                "user_id": ["U0000001"],
                "item_id": ["I0000001"],
                "event_type": ["purchase"],
                "ts": [datetime(1, 1, 1, tzinfo=UTC)],
                "source": ["api"],
            }
        ),
        EVENTS_SCHEMA,
    )
    Lake(tmp_path).append(events=pl.concat([Lake(shop).events(), poison]))
    events = Lake(tmp_path).events()
    assert events["ts"].min() == datetime(1, 1, 1, tzinfo=UTC)

    clean, clean_manifest = _build(tmp_path / "clean-run", Lake(shop).events())
    result, manifest = _build(tmp_path, events)

    assert not any("far before" in w for w in clean.warnings)
    far = [w for w in result.warnings if "far before" in w]
    assert len(far) == 1
    assert "1 event(s)" in far[0]
    assert "0001-01-01" in far[0]
    assert manifest["warnings"] == list(result.warnings)
    # the span, and so the examples, are those of the clean data: the poisoned event does not
    # decide how the ranker is trained (it used to switch the scheme to last_per_user, silently)
    validation, clean_validation = manifest["validation"], clean_manifest["validation"]
    assert validation["examples"]["scheme"] == clean_validation["examples"]["scheme"]
    assert validation["examples"]["scheme"] == "time_window"
    # what serves, and why, is in the manifest; a ranker left out would be a warning
    assert validation["serves"] == clean_validation["serves"]
    assert validation["why"]
    ranker_warnings = [w for w in result.warnings if "ranker not used" in w]
    assert ranker_warnings == [w for w in clean.warnings if "ranker not used" in w]
