"""The validation gate: scorers, the NDCG it judges by, and the choice it makes."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from shoprec.config import load_settings
from shoprec.data.dataset import Dataset
from shoprec.data.schema import EVENTS_SCHEMA, conform
from shoprec.exceptions import ConfigError
from shoprec.models import model_from_config
from shoprec.pipeline.build import build
from shoprec.ranking.gate import choose_scorer, ndcg_at, scorer_values


def test_ndcg_by_hand() -> None:
    recs = pl.DataFrame(
        {"user_id": ["a", "a", "a", "b", "b"], "rank": [1, 2, 3, 1, 2], "item_id": list("xyzxy")}
    )
    truth = pl.DataFrame({"user_id": ["a", "a", "b", "c"], "item_id": ["y", "z", "q", "x"]})
    ndcg, recall = ndcg_at(recs, truth, k=3)
    ideal = 1 + 1 / math.log2(3)
    expected_a = (1 / math.log2(3) + 1 / math.log2(4)) / ideal
    np.testing.assert_allclose(ndcg, [expected_a, 0.0, 0.0])  # users a, b, c (c has no list)
    np.testing.assert_allclose(recall, [1.0, 0.0, 0.0])


def test_a_generator_scorer_keeps_that_generators_order() -> None:
    ranks = np.array([[2.0, np.nan], [np.nan, 1.0], [1.0, 3.0], [np.nan, 2.0]])
    order = np.argsort(-scorer_values("first", ranks, ["first", "second"], None), kind="stable")
    assert order[:2].tolist() == [2, 0]  # the first generator's own ranks
    assert order[2:].tolist() == [1, 3]  # then the others, by fusion
    fused = scorer_values("fusion", ranks, ["first", "second"], None)
    np.testing.assert_allclose(fused[2], 1 / 61 + 1 / 63)
    with pytest.raises(ConfigError, match="needs a trained ranker"):
        scorer_values("ranker", ranks, ["first", "second"], None)


def _row(scorer: str, per_user: list[float]) -> dict[str, Any]:
    values = np.asarray(per_user)
    return {"scorer": scorer, "ndcg": float(values.mean()), "k": 10, "per_user": values}


def test_the_ranker_must_beat_the_best_other_scorer_by_a_standard_error() -> None:
    rng = np.random.default_rng(0)
    base = rng.random(400)
    clearly = [_row("ranker", list(base + 0.05)), _row("ease", list(base))]
    assert choose_scorer("auto", clearly, ["ease"], ranker_ok=True)[0] == "ranker"
    noise = rng.normal(0, 0.2, 400)
    barely = [_row("ranker", list(base + noise - noise.mean() + 0.001)), _row("ease", list(base))]
    chosen, why = choose_scorer("auto", barely, ["ease"], ranker_ok=True)
    assert chosen == "ease"
    assert "does not beat ease" in why
    # a ranker that learned nothing is never chosen, however it scored
    assert choose_scorer("auto", clearly, ["ease"], ranker_ok=False)[0] == "ease"


def test_a_configured_scorer_is_checked() -> None:
    assert choose_scorer("ease", [], ["ease"], ranker_ok=True) == ("ease", "configured")
    assert choose_scorer("ranker", [], ["ease"], ranker_ok=False)[0] == "fusion"
    with pytest.raises(ConfigError, match="scorer 'deep' is not one of auto, ranker, fusion"):
        choose_scorer("deep", [], ["ease"], ranker_ok=True)


def sequences_events() -> pl.DataFrame:
    """Order only: each user walks a chain of items one step at a time, a second apart."""
    rng = np.random.default_rng(1)
    start = datetime(2014, 1, 1, tzinfo=UTC)
    rows = []
    for u in range(300):
        first = int(rng.integers(0, 40))
        for step in range(int(rng.integers(4, 9))):
            item = (first + step) % 40
            rows.append((f"u{u}", f"i{item}", "review", start + timedelta(seconds=step)))
    events = pl.DataFrame(rows, schema=["user_id", "item_id", "event_type", "ts"], orient="row")
    return conform(events, EVENTS_SCHEMA)


SMALL = {
    "kind": "two_stage",
    "generators": {"itemknn": {"kind": "itemknn"}, "popular": {"kind": "popular"}},
    "ranker": {"objective": "lambdarank", "n_estimators": 40, "random_state": 0, "verbose": -1},
}


@pytest.fixture(scope="module")
def sequences() -> Dataset:
    return Dataset.from_events(sequences_events())


def test_sequences_are_learned_from_each_users_last_item(sequences: Dataset) -> None:
    model: Any = model_from_config(SMALL).fit(sequences)
    assert model.labels_.event_types == ["review"]
    assert model.scheme_.scheme == "last_per_user"
    scorers = [row["scorer"] for row in model.validation_]
    assert scorers == ["ranker", "fusion", "itemknn", "popular"]
    gate_users = model.validation_[0]["users"]
    assert 0.2 * 300 <= gate_users <= 0.3 * 300
    by_ndcg = sorted(model.validation_, key=lambda row: -row["ndcg"])
    best_other = next(row["scorer"] for row in by_ndcg if row["scorer"] != "ranker")
    # the ranker only when it is the best; otherwise the best of the others
    if model.scorer_choice == "ranker":
        assert by_ndcg[0]["scorer"] == "ranker"
    else:
        assert model.scorer_choice == best_other
    assert model.scorer_choice != "popular"  # the chain is learnable; popularity is not it


def test_the_score_matrix_orders_items_as_the_lists(sequences: Dataset) -> None:
    model: Any = model_from_config(SMALL).fit(sequences)
    users = np.arange(5)
    rows = sp.csr_matrix(model.user_items_[users])
    scores = model._score(rows, users)
    recs = model.recommend(
        model.user_ids_.to_external(users), k=5, exclude_seen=False, explain=False
    )
    for position, user in enumerate(model.user_ids_.to_external(users)):
        top = np.argsort(-scores[position], kind="stable")[:5]
        listed = recs.filter(pl.col("user_id") == user).sort("rank")["item_id"].to_list()
        assert model.item_ids_.to_external(top) == listed


def test_the_served_list_is_the_chosen_generators_list(sequences: Dataset) -> None:
    model: Any = model_from_config({**SMALL, "scorer": "itemknn"}).fit(sequences)
    assert model.scorer_choice == "itemknn"
    users = sequences.user_ids.external[:50].tolist()
    served = model.recommend(users, k=5, explain=False)
    alone = model.generators_["itemknn"].recommend(users, k=5, explain=False, exclude_seen=True)
    columns = ["user_id", "rank", "item_id"]
    assert served.select(columns).sort(columns[:2]).equals(alone.select(columns).sort(columns[:2]))


def test_a_ranker_that_learned_nothing_is_named_and_not_served(sequences: Dataset) -> None:
    # no tree can split: every candidate gets the same score
    flat = {**SMALL["ranker"], "min_child_samples": 10_000_000, "n_estimators": 5}
    model: Any = model_from_config({**SMALL, "ranker": flat}).fit(sequences)
    assert model.fallback_ == "the ranker predicts the same score for every candidate"
    assert model.warnings_ == [
        "ranker not used: the ranker predicts the same score for every candidate"
    ]
    assert model.scorer_choice != "ranker"
    assert "ranker" not in [row["scorer"] for row in model.validation_]


def test_a_generator_these_data_refuse_is_left_out_loudly(sequences: Dataset) -> None:
    generators = {**SMALL["generators"], "ease": {"kind": "ease", "max_items": 5}}
    model: Any = model_from_config({**SMALL, "generators": generators}).fit(sequences)
    assert set(model.generators_) == {"itemknn", "popular"}
    assert any(w.startswith("generator ease left out: EASE needs") for w in model.warnings_)
    assert "ease" not in [row["scorer"] for row in model.validation_]
    assert model.recommend(["u1"], k=3).height == 3


def test_a_build_leaves_out_a_model_the_data_refuse(tmp_path: Path) -> None:
    events = sequences_events()
    settings = load_settings(
        workspace=tmp_path,
        models={"two_stage": SMALL, "ease": {"kind": "ease", "max_items": 5}},
    )
    result = build(events, settings)
    assert set(result.fit_seconds) == {"two_stage"}
    assert result.warnings[0].startswith("ease: not built: EASE needs an items × items matrix")
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert set(manifest["models"]) == {"two_stage"}
    assert manifest["validation"]["serves"] in ("ranker", "fusion", "itemknn", "popular")
    assert manifest["validation"]["examples"]["scheme"] == "last_per_user"
