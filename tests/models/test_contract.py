"""The contract every model passes (STYLE 8), on a planted block structure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from shoprec.data.dataset import Dataset
from shoprec.data.schema import EVENTS_SCHEMA, conform
from shoprec.exceptions import ConfigError, DataError, ShoprecError
from shoprec.models import MODELS, Recommender, model_from_config

BLOCKS = 3
ITEMS_PER_BLOCK = 12
USERS_PER_BLOCK = 12

# Popularity is not personalised; in category mode it follows the user's categories.
CONFIGS: dict[str, dict[str, Any]] = {
    "popular": {"kind": "popular", "mode": "category"},
    "copurchase": {"kind": "copurchase"},
    "itemknn": {"kind": "itemknn"},
    "ease": {"kind": "ease", "l2": 10.0},
    "als": {"kind": "als", "factors": 4, "iterations": 20, "regularization": 0.1, "alpha": 1.0},
    "bpr": {"kind": "bpr", "factors": 8, "iterations": 200, "learning_rate": 0.05},
    "content": {"kind": "content"},
    "buy_again": {"kind": "buy_again"},
    "next_item": {"kind": "next_item"},
    "two_stage": {
        "kind": "two_stage",
        "generators": {"itemknn": {"kind": "itemknn"}, "popular": {"kind": "popular"}},
        "label_window_days": 2.0,
        "ranker": {
            "objective": "lambdarank",
            "n_estimators": 100,
            "min_child_samples": 5,
            "learning_rate": 0.1,
            "random_state": 0,
            "verbose": -1,
        },
    },
}


def block_of_item(item_id: str) -> int:
    return int(item_id.split("-")[0][1:])


def block_of_user(user_id: str) -> int:
    return int(user_id.split("-")[0][1:])


@pytest.fixture(scope="module")
def planted() -> tuple[Dataset, pl.DataFrame]:
    rng = np.random.default_rng(0)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for block in range(BLOCKS):
        for u in range(USERS_PER_BLOCK):
            user = f"b{block}-u{u}"
            chosen = rng.choice(ITEMS_PER_BLOCK, size=6, replace=False)
            for position, item in enumerate(chosen):
                ts = start + timedelta(days=2 * position, hours=block * 5 + u)
                basket = f"{user}-o{position // 3}"
                rows.append((user, f"b{block}-i{item}", "view", ts, None))
                rows.append((user, f"b{block}-i{item}", "purchase", ts, basket))
    events = pl.DataFrame(
        rows, schema=["user_id", "item_id", "event_type", "ts", "basket_id"], orient="row"
    )
    items = pl.DataFrame(
        {
            "item_id": [f"b{b}-i{i}" for b in range(BLOCKS) for i in range(ITEMS_PER_BLOCK)],
            "category": [f"block {b}" for b in range(BLOCKS) for _ in range(ITEMS_PER_BLOCK)],
            "title": [
                f"{['red', 'green', 'blue'][b]} thing {i}"
                for b in range(BLOCKS)
                for i in range(ITEMS_PER_BLOCK)
            ],
            "price": [10.0 * (b + 1) for b in range(BLOCKS) for _ in range(ITEMS_PER_BLOCK)],
        }
    )
    dataset = Dataset.from_events(conform(events, EVENTS_SCHEMA), items=items)
    return dataset, events


@pytest.fixture(params=sorted(CONFIGS), scope="module")
def fitted(
    request: pytest.FixtureRequest, planted: tuple[Dataset, pl.DataFrame]
) -> Recommender[Any]:
    dataset, _ = planted
    return model_from_config(CONFIGS[request.param]).fit(dataset)


def test_every_model_is_in_the_contract() -> None:
    assert set(CONFIGS) == set(MODELS)


def test_top_item_comes_from_the_users_block(fitted: Recommender[Any]) -> None:
    users = [f"b{b}-u{u}" for b in range(BLOCKS) for u in range(USERS_PER_BLOCK)]
    recs = fitted.recommend(users, k=1)
    assert recs.height == len(users)
    for user, item in recs.select("user_id", "item_id").iter_rows():
        assert block_of_item(item) == block_of_user(user), (user, item)


def test_exclude_seen_and_filter(
    fitted: Recommender[Any], planted: tuple[Dataset, pl.DataFrame]
) -> None:
    _, events = planted
    user = "b1-u3"
    seen = set(events.filter(pl.col("user_id") == user)["item_id"])
    recs = fitted.recommend([user], k=5, exclude_seen=True)
    assert recs.height == 5
    assert not seen & set(recs["item_id"])
    assert recs["rank"].to_list() == [1, 2, 3, 4, 5]
    assert recs["score"].is_sorted(descending=True)
    allowed = ["b2-i0", "b2-i1", "b0-i5"]
    filtered = fitted.recommend([user], k=10, filter=allowed)
    assert set(filtered["item_id"]) <= set(allowed)


def test_unknown_user_gets_a_full_list(fitted: Recommender[Any]) -> None:
    recs = fitted.recommend(["nobody"], k=4)
    assert recs.height == 4


def test_history_folds_in_a_new_user(fitted: Recommender[Any]) -> None:
    history = pl.DataFrame({"user_id": ["new"] * 3, "item_id": ["b2-i0", "b2-i1", "b2-i2"]})
    recs = fitted.recommend(["new"], k=1, history=history)
    assert block_of_item(recs["item_id"].item()) == 2


def test_bad_k_is_refused(fitted: Recommender[Any]) -> None:
    with pytest.raises(ShoprecError, match="k must be a positive number"):
        fitted.recommend(["b0-u0"], k=0)


def test_save_load_round_trip(fitted: Recommender[Any], tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    fitted.save(path)
    loaded = Recommender.load(path)
    users = ["b0-u0", "b1-u1", "b2-u2", "nobody"]
    assert loaded.recommend(users, k=5).equals(fitted.recommend(users, k=5))


def test_refit_gives_the_same_answers(
    fitted: Recommender[Any], planted: tuple[Dataset, pl.DataFrame]
) -> None:
    dataset, _ = planted
    again = model_from_config(fitted.config).fit(dataset)
    users = ["b0-u1", "b2-u5"]
    first = fitted.recommend(users, k=5)
    second = again.recommend(users, k=5)
    assert first["item_id"].to_list() == second["item_id"].to_list()
    np.testing.assert_allclose(first["score"].to_numpy(), second["score"].to_numpy(), rtol=1e-4)


def test_similar_items(fitted: Recommender[Any]) -> None:
    if not fitted.supports_similar_items:
        with pytest.raises(ShoprecError, match="does not compute similar items"):
            fitted.similar_items(["b0-i1"])
        return
    similar = fitted.similar_items(["b0-i1", "unknown"], k=3)
    assert set(similar["item_id"]) <= {"b0-i1"}
    assert "b0-i1" not in set(similar["similar_item_id"])
    assert similar.height <= 3
    assert similar.height > 0
    assert block_of_item(similar["similar_item_id"][0]) == 0


def test_empty_training_set_is_refused() -> None:
    empty = conform(
        pl.DataFrame({"user_id": ["u"], "item_id": ["i"], "event_type": ["x"]}), EVENTS_SCHEMA
    ).head(0)
    with pytest.raises(DataError, match="empty training set"):
        model_from_config("ease").fit(Dataset.from_events(empty))


def test_unknown_model_and_bad_parameter() -> None:
    with pytest.raises(ConfigError, match="unknown model 'deep'; known models: als"):
        model_from_config("deep")
    with pytest.raises(ConfigError, match="model ease: lambda: Extra inputs"):
        model_from_config({"kind": "ease", "lambda": 3})


def test_every_item_has_a_reason_and_new_users_are_cold_start(fitted: Recommender[Any]) -> None:
    known = fitted.recommend(["b1-u2"], k=3)
    assert known["reason"].null_count() == 0
    assert not known["reason"].str.starts_with("cold start").any()
    new = fitted.recommend(["somebody-new"], k=3)
    assert new.height == 3
    assert (new["reason"] == "cold start: popular right now").all()


@pytest.mark.parametrize("kind", ["copurchase", "itemknn", "content"])
def test_reasons_name_an_item_from_the_users_history(
    kind: str, planted: tuple[Dataset, pl.DataFrame]
) -> None:
    dataset, events = planted
    model = model_from_config(CONFIGS[kind]).fit(dataset)
    recs = model.recommend(["b2-u4"], k=3)
    seen_titles = set(
        dataset.items.filter(
            pl.col("item_id").is_in(
                events.filter(pl.col("user_id") == "b2-u4")["item_id"].implode()
            )
        )["title"]
    )
    named = [r for r in recs["reason"].to_list() if any(t in r for t in seen_titles)]
    assert named, recs["reason"].to_list()


def test_an_item_added_after_training_appears_in_content_similar_items(
    planted: tuple[Dataset, pl.DataFrame],
) -> None:
    dataset, _ = planted
    model: Any = model_from_config("content").fit(dataset)
    added = pl.DataFrame(
        {
            "item_id": ["b1-new"],
            "category": ["block 1"],
            "title": ["green thing 99"],
            "price": [20.0],
        }
    )
    assert model.add_items(added) == 1
    assert model.add_items(added) == 0  # already known
    similar = model.similar_items(["b1-i0"], k=20)
    assert "b1-new" in similar["similar_item_id"].to_list()
    own = model.similar_items(["b1-new"], k=3)
    assert all(block_of_item(i) == 1 for i in own["similar_item_id"])
    history = pl.DataFrame({"user_id": ["fan"] * 3, "item_id": ["b1-i0", "b1-i1", "b1-i2"]})
    assert model.recommend(["fan"], k=3, history=history).height == 3


def test_history_reaches_every_copy_of_a_repeated_user(fitted: Recommender[Any]) -> None:
    history = pl.DataFrame({"user_id": ["new"] * 3, "item_id": ["b2-i0", "b2-i1", "b2-i2"]})
    recs = fitted.recommend(["new", "other", "new"], k=3, history=history)
    first = recs.filter(pl.col("user_id") == "new")
    lists = [group["item_id"].to_list() for _, group in first.group_by("rank", maintain_order=True)]
    assert all(len(set(items)) == 1 for items in lists)  # both copies get the same list


def test_trained_query_vectors_are_the_query_vectors_of_the_training_rows(
    fitted: Recommender[Any],
) -> None:
    as_trained = getattr(fitted, "trained_query_vectors", None)
    if as_trained is None:
        assert not hasattr(fitted, "user_factors_")  # every factor model has them
        return
    rows = fitted.user_items_
    expected = fitted.query_vectors(rows, np.arange(rows.shape[0]))  # type: ignore[attr-defined]
    got = as_trained()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
