from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from shoprec.data.dataset import Dataset
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.models import Recommender, model_from_config
from shoprec.ranking.two_stage import _repeat_rate

SMALL = {
    "kind": "two_stage",
    "generators": {
        "buy_again": {"kind": "buy_again"},
        "itemknn": {"kind": "itemknn"},
        "popular": {"kind": "popular", "mode": "trending"},
    },
    "candidates_per_generator": 30,
    "ranker": {"objective": "lambdarank", "n_estimators": 60, "random_state": 0, "verbose": -1},
}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    folder = tmp_path_factory.mktemp("two-stage")
    made = generate_shop(ShopSpec(events=30_000, seed=4), folder / "source")
    ingest([made.items_path, made.users_path], "csv", workspace=folder / "ws")
    ingest([made.events_path], "parquet", workspace=folder / "ws")
    return Lake(folder / "ws")


@pytest.fixture(scope="module")
def model(lake: Lake) -> Recommender[Any]:
    return model_from_config(SMALL).fit(Dataset.from_lake(lake))


def test_ranker_learns_from_features(model: Any) -> None:
    importance = model.feature_importance_
    assert set(importance) >= {
        "buy_again_score",
        "itemknn_rank",
        "item_price",
        "distance_km",
        "item_geohash",
        "item_category",
    }
    assert sum(importance.values()) > 0
    users = model.user_ids_.external[:5].tolist()
    recs = model.recommend(users, k=5)
    assert recs.group_by("user_id").len()["len"].to_list() == [5] * 5
    assert recs["reason"].null_count() == 0


def test_seen_rule_follows_the_repeat_rate(model: Any) -> None:
    assert model.exclude_seen_ == (model.repeat_rate_ < model.config.repeat_rate_threshold)
    rows = [("u1", "milk"), ("u1", "milk"), ("u1", "bread"), ("u2", "milk")]
    grocery = pl.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "item_id": [i for _, i in rows],
            "event_type": "purchase",
            "ts": [datetime(2024, 1, d + 1, tzinfo=UTC) for d in range(4)],
        }
    )
    assert _repeat_rate(grocery, ["purchase"]) == pytest.approx(0.25)
    films = grocery.with_columns(pl.Series("item_id", ["a", "b", "c", "d"]))
    assert _repeat_rate(films, ["purchase"]) == 0.0


def test_rules_are_applied(lake: Lake) -> None:
    dataset = Dataset.from_lake(lake)
    plain = model_from_config(SMALL).fit(dataset)
    user = plain.user_ids_.external[0]
    top = plain.recommend([user], k=3)["item_id"].to_list()
    pinned = plain.item_ids_.external[-1]
    ruled = model_from_config(
        SMALL | {"rules": {"blocked": top[:2], "pinned": {pinned: 2}, "max_per_category": 1}}
    ).fit(dataset)
    recs = ruled.recommend([user], k=4)
    assert not set(recs["item_id"]) & set(top[:2])
    assert recs.filter(pl.col("rank") == 2)["item_id"].item() == pinned
    assert recs.filter(pl.col("rank") == 2)["reason"].item() == "featured"
    info = recs.join(lake.items().select("item_id", "category"), on="item_id")
    free = info.filter(pl.col("item_id") != pinned)
    assert free["category"].n_unique() == free.height  # at most one per category


def test_cold_start_and_request_filters(model: Any, lake: Lake) -> None:
    recs = model.recommend(["a-brand-new-visitor"], k=6)
    assert recs.height == 6
    assert (recs["reason"] == "cold start: popular right now").all()
    category = lake.items()["category"][0]
    filtered = model.recommend(model.user_ids_.external[:3].tolist(), k=4, category=category)
    cats = filtered.join(lake.items().select("item_id", "category"), on="item_id")["category"]
    assert (cats == category).all()


def test_save_and_load(model: Any, tmp_path: Path) -> None:
    model.save(tmp_path / "two_stage.pkl")
    loaded = Recommender.load(tmp_path / "two_stage.pkl")
    users = model.user_ids_.external[:3].tolist()
    assert loaded.recommend(users, k=4).equals(model.recommend(users, k=4))


def test_array_scorer_matches_the_batch_path(model: Any) -> None:
    import numpy as np

    from shoprec.ranking.candidates import candidate_frame
    from shoprec.ranking.scorer import CandidateScorer

    scorer = CandidateScorer(model)
    for user in model.user_ids_.external[:5].tolist():
        frame = model._with_features(
            candidate_frame(model.generators_, [user], 40), model.features_
        )
        batch = model.ranker_.predict(model._matrix(frame))
        items = model.item_ids_.to_index(frame["item_id"].to_list())
        names = list(model.generators_)
        scores = frame.select([f"{n}_score" for n in names]).to_numpy().astype(float)
        ranks = frame.select([f"{n}_rank" for n in names]).to_numpy().astype(float)
        assert scorer.compiled is not None  # serving's path: the ranker compiled by lleaves
        fast = scorer.predict(scorer.features(user, items, scores, ranks))
        np.testing.assert_allclose(fast, batch, rtol=1e-6, atol=1e-9)
        ranked = scorer.score(user, items, scores, ranks, k=5)
        assert ranked.items.size == 5
        assert list(ranked.scores) == sorted(ranked.scores, reverse=True)


def test_cold_start_follows_the_visitors_context(model: Any, lake: Lake) -> None:
    events = lake.events()
    country = events["context"].str.json_path_match("$.country").drop_nulls()[0]
    recs = model.recommend(["visitor"], k=5, context={"country": country})
    assert (recs["reason"] == f"cold start: popular in {country}").all()
    category = lake.items()["category"][3]
    browsing = model.recommend(["visitor"], k=5, context={"category": category})
    cats = browsing.join(lake.items().select("item_id", "category"), on="item_id")["category"]
    assert (cats == category).all()
    assert browsing["reason"][0].startswith(f"cold start: popular in {category}")
    # after the first clicks of a session the list follows them
    clicked = events.filter(pl.col("item_id").is_not_null())["item_id"].head(3).to_list()
    history = pl.DataFrame({"user_id": ["visitor"] * 3, "item_id": clicked})
    warm = model.recommend(["visitor"], k=5, history=history)
    assert not warm["reason"].str.starts_with("cold start").any()


def test_candidates_per_generator(model: Any) -> None:
    from shoprec.ranking.candidates import candidate_frame

    user = model.user_ids_.external[0]
    frame = candidate_frame(model.generators_, [user], {"buy_again": 2, "itemknn": 7, "popular": 3})
    assert frame["itemknn_rank"].max() == 7
    assert frame["popular_rank"].max() == 3
    assert frame.height <= 12


def test_request_history_reaches_a_known_user(model: Any) -> None:
    user = model.user_ids_.external[0]
    before = model.recommend([user], k=5)
    extra = model.item_ids_.external[-20:].tolist()
    history = pl.DataFrame({"user_id": [user] * len(extra), "item_id": extra})
    after = model.recommend([user], k=5, history=history)
    assert not before.select("item_id", "score").equals(after.select("item_id", "score"))


def test_the_compiled_ranker_predicts_as_lightgbm(model: Any, tmp_path: Path) -> None:
    import numpy as np

    from shoprec.ranking.compiled import compile_ranker

    booster = model.ranker_.booster_
    rows = np.random.default_rng(0).normal(size=(300, booster.num_feature()))
    rows[np.random.default_rng(1).random(rows.shape) < 0.2] = np.nan  # missing values too
    cache = tmp_path / "ranker.o"
    compiled = compile_ranker(booster, cache)
    assert compiled is not None
    kept = list(tmp_path.glob("ranker-*.o"))  # kept for the next process, by lleaves version
    assert len(kept) == 1
    np.testing.assert_allclose(compiled(rows), booster.predict(rows), rtol=0, atol=1e-12)
    again = compile_ranker(booster, cache)  # loaded from the cache
    assert again is not None
    np.testing.assert_array_equal(again(rows), compiled(rows))


def test_the_compiled_ranker_is_cached_per_processor(
    model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from shoprec.ranking import compiled as module

    booster = model.ranker_.booster_
    rows = np.random.default_rng(0).normal(size=(50, booster.num_feature()))
    cache = tmp_path / "ranker.o"
    here = module.host_processor()
    assert module.compile_ranker(booster, cache) is not None
    [kept] = tmp_path.glob("ranker-*.o")
    assert kept.name.endswith(f"-{here}.o")
    # a machine with another processor sharing the run folder compiles its own
    monkeypatch.setattr(module, "host_processor", lambda: "otherchip-00000000")
    other = module.compile_ranker(booster, cache)
    assert other is not None
    names = sorted(path.name for path in tmp_path.glob("ranker-*.o"))
    assert names == sorted([kept.name, kept.name.replace(here, "otherchip-00000000")])
    np.testing.assert_allclose(other(rows), booster.predict(rows), rtol=0, atol=1e-12)


def test_a_ranker_that_cannot_be_compiled_is_left_to_lightgbm() -> None:
    from shoprec.ranking.compiled import compile_ranker

    class Broken:
        def model_to_string(self) -> str:
            return "not a LightGBM model"

    assert compile_ranker(Broken()) is None


def test_the_array_scorer_takes_a_model_without_pair_features(model: Any) -> None:
    import copy
    import dataclasses

    import numpy as np

    from shoprec.ranking.scorer import CandidateScorer

    bare = copy.copy(model)
    bare.features_ = dataclasses.replace(model.features_, pairs=model.features_.pairs.head(0))
    scorer = CandidateScorer(bare)
    assert scorer.pair_names
    assert scorer.pairs == {}
    user = model.user_ids_.external[0]
    items = np.arange(5)
    generators = len(model.generators_)
    rows = scorer.features(user, items, np.ones((5, generators)), np.ones((5, generators)))
    assert rows.shape == (5, len(scorer.plan))
