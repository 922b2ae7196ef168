"""The ranker without the compiled extra: LightGBM's own predict serves it, with the same lists,
and the log says so once."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoprec.data.dataset import Dataset
from shoprec.data.ingest import ingest
from shoprec.data.lake import Lake
from shoprec.data.synthetic import ShopSpec, generate_shop
from shoprec.models import model_from_config
from shoprec.ranking import compiled
from shoprec.ranking.candidates import candidate_frame
from shoprec.ranking.scorer import CandidateScorer

RANKER = {
    "kind": "two_stage",
    "generators": {
        "buy_again": {"kind": "buy_again"},
        "itemknn": {"kind": "itemknn"},
        "popular": {"kind": "popular", "mode": "trending"},
    },
    "candidates_per_generator": 30,
    "scorer": "ranker",
    "ranker": {"objective": "lambdarank", "n_estimators": 40, "random_state": 0, "verbose": -1},
}


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    made = generate_shop(ShopSpec(events=20_000, seed=5), tmp_path / "source")
    ingest([made.items_path, made.users_path], "csv", workspace=tmp_path / "ws")
    ingest([made.events_path], "parquet", workspace=tmp_path / "ws")
    return Lake(tmp_path / "ws")


def _candidates(model: Any, user: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frame = candidate_frame(model.generators_, [user], 30)
    names = list(model.generators_)
    items = model.item_ids_.to_index(frame["item_id"].to_list())
    scores = frame.select([f"{n}_score" for n in names]).to_numpy().astype(float)
    ranks = frame.select([f"{n}_rank" for n in names]).to_numpy().astype(float)
    return items, scores, ranks


def test_the_ranker_serves_without_lleaves(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "lleaves", None)
    monkeypatch.setitem(sys.modules, "llvmlite", None)
    compiled._say_not_installed.cache_clear()
    with caplog.at_level(logging.WARNING, logger="shoprec.ranking.compiled"):
        model: Any = model_from_config(RANKER).fit(Dataset.from_lake(lake))
        users = model.user_ids_.external[:5].tolist()
        lists = model.recommend(users, k=5)
        plain = CandidateScorer(model)
    assert model.scorer_choice == "ranker"
    assert lists.height == 25
    assert plain.compiled is None
    said = [r.getMessage() for r in caplog.records if "compiled extra" in r.getMessage()]
    assert len(said) == 1, said
    assert "pip install 'shoprec[compiled]'" in said[0]

    monkeypatch.undo()  # lleaves back: the same lists from the compiled ranker
    fast = CandidateScorer(model)
    assert fast.compiled is not None
    for user in users:
        items, scores, ranks = _candidates(model, user)
        rows = plain.features(user, items, scores, ranks)
        np.testing.assert_allclose(plain.predict(rows), fast.predict(rows), rtol=1e-6, atol=1e-9)
        slow_list = plain.score(user, items, scores, ranks, k=5)
        fast_list = fast.score(user, items, scores, ranks, k=5)
        assert slow_list.items.tolist() == fast_list.items.tolist()
    compiled._say_not_installed.cache_clear()
