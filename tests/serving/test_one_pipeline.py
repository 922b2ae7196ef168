"""The list the API serves is the list ``shoprec recommend`` gives: equal, item by item, in
order and with the same reasons, for every user, with business rules configured and with live
events applied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from shoprec.config import Settings, load_settings
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.pipeline.build import build, load_model
from shoprec.serving.app import create_app
from tests.serving.conftest import API_KEY

RULES = {
    "freshness_boost": 0.05,
    "freshness_days": 90.0,
    "price_guard": 1.5,
    "max_per_category": 2,
    "blocked": ["P000001"],
}


def _ruled_shop(workspace: Path, scorer: str) -> Settings:
    source = workspace / "source"
    generate_shop(ShopSpec(events=20_000, seed=11), source)
    for name, fmt in (("items.csv", "csv"), ("users.csv", "csv"), ("events.parquet", "parquet")):
        ingest([source / name], fmt, workspace=workspace)
    two_stage = {"kind": "two_stage", "scorer": scorer, "rules": RULES}
    settings = load_settings(
        workspace=workspace,
        api_keys=[API_KEY],
        models={"two_stage": two_stage, "ease": {"kind": "ease"}},
    )
    lake = Lake(workspace)
    build(lake.events(), settings, items=lake.items(), users=lake.users())
    return settings


@pytest.fixture(scope="module", params=["ranker", "auto"])
def ruled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, TestClient]]:
    settings = _ruled_shop(tmp_path_factory.mktemp(f"ruled-{request.param}"), request.param)
    with TestClient(create_app(settings, web=False)) as client:
        yield settings, client


def _served(client: TestClient, user: str, k: int = 10) -> list[tuple[str, float | None]]:
    answer = client.get(f"/users/{user}/recommendations", params={"k": k})
    assert answer.status_code == 200, answer.text
    return [(item["item_id"], item["score"], item["reason"]) for item in answer.json()["items"]]


def _batch(recs: pl.DataFrame, user: str) -> list[tuple[str, float | None]]:
    mine = recs.filter(pl.col("user_id") == user).sort("rank")
    columns = [mine[c].to_list() for c in ("item_id", "score", "reason")]
    return list(zip(*columns, strict=True))


def _assert_same(served: list[Any], batch: list[Any], user: str) -> None:
    assert [(item, why) for item, _, why in served] == [(i, w) for i, _, w in batch], user
    for (_, a, _), (_, b, _) in zip(served, batch, strict=True):
        assert (a is None) == (b is None), user
        if a is not None:
            assert a == pytest.approx(b, rel=1e-6, abs=1e-9), user


def test_every_user_gets_the_batch_list(ruled: tuple[Settings, TestClient]) -> None:
    settings, client = ruled
    model, name = load_model(settings.workspace)
    assert name == "two_stage"
    assert model.config.rules.max_per_category == 2  # type: ignore[attr-defined]
    users = sorted(Lake(settings.workspace).events()["user_id"].drop_nulls().unique().to_list())
    assert len(users) > 400
    recs = model.recommend(users, k=10)
    for user in users:
        _assert_same(_served(client, user), _batch(recs, user), user)
    # the rules hold in what both serve
    items = Lake(settings.workspace).items().select("item_id", "category")
    categories = recs.join(items, on="item_id").group_by("user_id", "category").len()
    assert categories["len"].max() <= 2
    assert "P000001" not in set(recs["item_id"])


def test_live_events_count_the_same_in_both(ruled: tuple[Settings, TestClient]) -> None:
    settings, client = ruled
    model, _ = load_model(settings.workspace)
    lake = Lake(settings.workspace)
    users = sorted(lake.events()["user_id"].drop_nulls().unique().to_list())[:25]
    catalogue = lake.items()["item_id"].to_list()
    rng = np.random.default_rng(0)
    posted = []
    for user in users:
        for item in rng.choice(catalogue, 3, replace=False).tolist():
            kind = str(rng.choice(["view", "add_to_cart"]))
            posted.append({"user_id": user, "item_id": item, "event_type": kind})
    answer = client.post("/events", json=posted, headers={"X-API-Key": API_KEY})
    assert answer.status_code == 202
    weights = settings.event_weights.weights
    history = pl.DataFrame(
        {
            "user_id": [e["user_id"] for e in posted],
            "item_id": [e["item_id"] for e in posted],
            "weight": [weights[e["event_type"]] for e in posted],
        }
    )
    recs = model.recommend(users, k=10, history=history)
    before = model.recommend(users, k=10)
    changed = 0
    for user in users:
        served = _served(client, user)
        _assert_same(served, _batch(recs, user), user)
        changed += served != _batch(before, user)
    assert changed > 0  # the events moved some lists
