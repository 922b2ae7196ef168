"""The engine's fast paths agree with the models' own: top-n of one row, vector indexes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoprec.config import Settings, load_settings
from shoprec.data.lake import Lake
from shoprec.index import EF_SEARCH, ExactIndex, FaissIndex, build_index
from shoprec.models.base import ItemToItemModel, top_k
from shoprec.pipeline.build import build, current_run
from shoprec.ranking.pipeline import top_row, top_sparse
from shoprec.serving.engine import Engine, _similar_sparse


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 0.0, 1.0, 2.0, 0.5, -1.0, -np.inf]), min_size=1, max_size=60),
    st.integers(min_value=1, max_value=70),
    st.randoms(use_true_random=False),
)
def test_top_row_picks_what_top_k_picks(values: list[float], n: int, random: object) -> None:
    scores = np.asarray(values, dtype=np.float32)
    tie_rank = np.arange(scores.size)
    random.shuffle(tie_rank)  # type: ignore[attr-defined]
    expected_items, expected_scores = top_k(scores[None, :], n, tie_rank)
    keep = expected_items[0] >= 0
    items, chosen = top_row(scores, n, tie_rank, np.argsort(tie_rank, kind="stable"))
    np.testing.assert_array_equal(items, expected_items[0][keep])
    np.testing.assert_array_equal(chosen, expected_scores[0][keep])


def test_indexes_find_the_best_inner_products() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    query = rng.normal(size=16).astype(np.float32)
    truth = np.argsort(-(vectors @ query))[:50]
    exact_items, exact_scores = ExactIndex(vectors).search(query, 50)
    np.testing.assert_array_equal(exact_items, truth)
    np.testing.assert_allclose(exact_scores, (vectors @ query)[truth], rtol=1e-5)
    approximate, scores = FaissIndex.build(vectors).search(query, 50)
    assert len(set(approximate.tolist()) & set(truth.tolist())) >= 45  # recall >= 0.9
    np.testing.assert_allclose(scores, vectors[approximate] @ query, rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(scores) <= 1e-6)
    assert isinstance(build_index(vectors, exact_below=5000), ExactIndex)


def test_faiss_index_is_cached_in_the_run(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(500, 8)).astype(np.float32)
    cache = tmp_path / "index.faiss"
    built = build_index(vectors, cache=cache, exact_below=100)
    assert isinstance(built, FaissIndex)
    assert cache.is_file()
    loaded = build_index(vectors, cache=cache, exact_below=100)
    query = vectors[7]
    np.testing.assert_array_equal(built.search(query, 10)[0], loaded.search(query, 10)[0])
    # the search breadth is the caller's, whether the graph was built or read from the cache
    assert isinstance(loaded, FaissIndex)
    assert loaded.index.hnsw.efSearch == built.index.hnsw.efSearch == EF_SEARCH
    wider = build_index(vectors, cache=cache, exact_below=100, ef_search=200)
    assert isinstance(wider, FaissIndex)
    assert wider.index.hnsw.efSearch == 200


@pytest.fixture(scope="module")
def engines(shop: Settings) -> tuple[Engine, Engine]:
    run_id, manifest = current_run(shop.workspace)
    exact = Engine(shop.workspace, run_id, manifest)
    indexed = Engine(shop.workspace, run_id, manifest, exact_below=1)
    return exact, indexed


def test_similar_items_from_the_sparse_row_are_the_dense_rows_top_k(
    engines: tuple[Engine, Engine],
) -> None:
    """Similar items of an item-item model from its matrix's stored row are the items, order
    and scores of the top-k of the dense row (ties included), items not available left out."""
    engine, _ = engines
    sources = {m: s for m, s in engine._sources.items() if isinstance(s, ItemToItemModel)}
    assert sources  # copurchase, at least
    compared = 0
    for method, model in sources.items():
        rows = engine._source_rows[method]
        available = engine.catalogue.available.copy()
        available[::5] = False  # some items sold out
        for index in range(0, model.item_ids_.external.size, 3):
            scores = np.asarray(model._similar(np.array([index])), dtype=np.float32)
            scores[0, index] = -np.inf
            scores[scores <= 0] = -np.inf
            usable = rows >= 0
            usable[usable] = available[rows[usable]]
            scores[0, ~usable] = -np.inf
            for k in (1, 10, 40):
                want_items, want_scores = top_k(scores, k, model.tie_rank_)
                items, values = _similar_sparse(model, index, rows, available, k)
                keep = want_items[0] >= 0
                np.testing.assert_array_equal(items[0][items[0] >= 0], want_items[0][keep])
                np.testing.assert_array_equal(values[0][items[0] >= 0], want_scores[0][keep])
                compared += int(keep.sum())
    assert compared > 100


def test_indexed_candidates_match_the_exact_ones(engines: tuple[Engine, Engine]) -> None:
    exact, indexed = engines
    assert not exact._indexes
    assert set(indexed._indexes) == {"als", "content"}
    users = exact.model.user_ids_.external[:60].tolist()
    overlap = []
    for user in users:
        a = [r.item_id for r in exact.recommend(user, 10).items]
        b = [r.item_id for r in indexed.recommend(user, 10).items]
        assert len(b) == 10
        overlap.append(len(set(a) & set(b)) / 10)
    assert np.mean(overlap) >= 0.9


def test_queries_kept_as_trained_are_the_generators_own(engines: tuple[Engine, Engine]) -> None:
    _, indexed = engines
    assert set(indexed._trained_queries) == {"als", "content"}
    for name, queries in indexed._trained_queries.items():
        generator = indexed.model.generators_[name]  # type: ignore[attr-defined]
        for user in (0, 5, 17):
            row = indexed._row(generator, user, [])
            assert row.nnz == generator.user_items_[user].nnz
            expected = generator.query_vectors(row, np.array([user]))[0]
            np.testing.assert_allclose(queries[user], expected, rtol=1e-6, atol=1e-7)
            # with live events the row changes, and folding it in as a new user's gives what
            # the user's own fold-in gives
            item = generator.item_ids_.external[user + 1]
            live = indexed._row(generator, user, [(item, "purchase")])
            assert indexed._changed(generator, user, live)
            assert not indexed._changed(generator, user, row)
            np.testing.assert_allclose(
                generator.query_vectors(live, np.array([-1]))[0],
                generator.query_vectors(live, np.array([user]))[0],
                rtol=1e-5,
                atol=1e-6,
            )


def test_factor_models_lend_their_factors_read_only(engines: tuple[Engine, Engine]) -> None:
    _, indexed = engines
    queries = indexed._trained_queries["als"]
    factors = indexed.model.generators_["als"].user_factors_  # type: ignore[attr-defined]
    assert np.shares_memory(queries, factors)  # no copy
    assert not queries.flags.writeable
    assert factors.flags.writeable  # the model's own array is left as it was
    with pytest.raises(ValueError, match="read-only"):
        queries[0, 0] = 1.0


def test_one_row_is_the_many_user_row(engines: tuple[Engine, Engine]) -> None:
    engine, _ = engines
    model = engine.model
    ids = model.item_ids_.external.tolist()
    cases = [
        (3, []),
        (3, [(ids[0], "view"), (ids[0], "purchase"), ("no-such-item", "view")]),
        (7, [(ids[5], "impression"), (ids[9], "add_to_cart")]),  # impression weighs nothing
        (-1, [(ids[2], "view"), (ids[2], "view")]),
        (-1, []),
    ]
    for user, history in cases:
        one = engine._rows(model, np.array([user]), [history])
        many = engine._rows(model, np.array([user, 0]), [history, []])[0]
        assert one.shape == many.shape
        assert one.dtype == many.dtype
        np.testing.assert_array_equal(one.toarray(), many.toarray())
        assert one.has_canonical_format


def test_engine_answers_as_the_batch_model(engines: tuple[Engine, Engine]) -> None:
    """The engine serves the lists the model's batch ``recommend`` gives (one pipeline), with
    the same reasons."""
    exact, _ = engines
    users = exact.model.user_ids_.external[:40].tolist()
    batch = exact.model.recommend(users, k=10)
    for user in users:
        served = [(r.item_id, r.reason) for r in exact.recommend(user, 10).items]
        mine = batch.filter(batch["user_id"] == user)
        assert served == list(zip(mine["item_id"], mine["reason"], strict=True))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([0.0, 0.0, 0.0, 1.0, 2.0, 0.5]), min_size=1, max_size=80),
    st.integers(min_value=1, max_value=90),
    st.randoms(use_true_random=False),
)
def test_top_sparse_picks_what_the_dense_row_picks(
    values: list[float], n: int, random: object
) -> None:
    scores = np.asarray(values, dtype=np.float32)
    tie_rank = np.arange(scores.size)
    random.shuffle(tie_rank)  # type: ignore[attr-defined]
    tie_order = np.argsort(tie_rank, kind="stable")
    nonzero = np.flatnonzero(scores)
    sparse = top_sparse(nonzero, scores[nonzero], n, tie_rank, tie_order)
    if nonzero.size == 0:
        assert sparse is None
        return
    assert sparse is not None
    dense = top_row(scores, n, tie_rank, tie_order)
    np.testing.assert_array_equal(sparse[0], dense[0])
    np.testing.assert_array_equal(sparse[1], dense[1])


def test_a_single_model_folds_in_live_history(shop: Settings, tmp_path: Path) -> None:
    """A run whose default model is not two-stage: live events reach the model's history."""
    lake = Lake(shop.workspace)
    light = load_settings(
        workspace=shop.workspace,
        models={"popular": {"kind": "popular"}, "content": {"kind": "content"}},
        default_model="popular",
    )
    built = build(lake.events(), light, items=lake.items(), publish_run=False)
    manifest = json.loads((built.run_dir / "manifest.json").read_text())
    engine = Engine(shop.workspace, built.run_id, manifest)
    before = [r.item_id for r in engine.recommend("brand-new", 5).items]
    bought = before[0]
    after = engine.recommend("brand-new", 5, history=[(bought, "purchase")])
    assert after.found
    assert not after.cold_start
    assert bought not in [r.item_id for r in after.items]  # seen, so excluded
    shutil.rmtree(built.run_dir)
