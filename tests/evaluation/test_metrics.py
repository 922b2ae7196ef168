"""Metrics against hand-computed cases, against plain-loop references and by their properties."""

from __future__ import annotations

import doctest
import itertools
import math
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoprec.evaluation import metrics, pairs
from shoprec.evaluation.metrics import (
    MAP,
    METRIC_NAMES,
    MRR,
    NDCG,
    Coverage,
    EvaluationContext,
    Gini,
    HitRate,
    IntraListDiversity,
    Metric,
    MissedOffers,
    Novelty,
    Precision,
    PriceTierFit,
    Recall,
    auc,
    compute_metrics,
    log_loss,
    parse_metric,
)
from shoprec.features import encoding as features_encoding

RecRow = tuple[str, int, str]  # user, rank, item
TruthRow = tuple[str, str, float]  # user, item, relevance

ACCURACY: dict[str, Callable[[int], Metric]] = {
    "precision": Precision,
    "recall": Recall,
    "map": MAP,
    "ndcg": NDCG,
    "mrr": MRR,
    "hit_rate": HitRate,
    "missed_offers": MissedOffers,
}
FAST = settings(max_examples=40, deadline=None)


def make_recs(rows: list[RecRow]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"user_id": pl.String, "rank": pl.Int64, "item_id": pl.String},
        orient="row",
    )


def make_truth(rows: list[TruthRow]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={"user_id": pl.String, "item_id": pl.String, "relevance": pl.Float64},
        orient="row",
    )


# -- the independent reference: one plain loop per user -----------------------------------------
def reference(rec_rows: list[RecRow], truth_rows: list[TruthRow], k: int) -> dict[str, float]:
    """Every accuracy metric at ``k``, computed the slow and obvious way."""
    relevant: dict[str, dict[str, float]] = defaultdict(dict)
    for user, item, gain in truth_rows:
        relevant[user][item] = max(gain, relevant[user].get(item, gain))
    lists: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for user, rank, item in rec_rows:
        lists[user].append((rank, item))

    totals = dict.fromkeys(ACCURACY, 0.0)
    for user, gains in relevant.items():
        top = [(rank, item) for rank, item in sorted(lists[user]) if rank <= k]
        hit_ranks = [rank for rank, item in top if item in gains]
        n_relevant = len(gains)
        precision_sum = 0.0
        for position, rank in enumerate(hit_ranks, start=1):
            precision_sum += position / rank
        dcg = sum(gains[item] / math.log2(rank + 1) for rank, item in top if item in gains)
        ideal = sorted(gains.values(), reverse=True)[:k]
        idcg = sum(gain / math.log2(position + 2) for position, gain in enumerate(ideal))
        totals["precision"] += len(hit_ranks) / k
        totals["recall"] += len(hit_ranks) / n_relevant
        totals["map"] += precision_sum / min(k, n_relevant)
        totals["ndcg"] += dcg / idcg if idcg > 0 else 0.0
        totals["mrr"] += 1 / hit_ranks[0] if hit_ranks else 0.0
        totals["hit_rate"] += 1.0 if hit_ranks else 0.0
        totals["missed_offers"] += 1 - len(hit_ranks) / n_relevant
    return {name: total / len(relevant) for name, total in totals.items()}


USERS = ["u0", "u1", "u2", "u3"]
ITEMS = [f"i{n}" for n in range(8)]
GAINS = [0.5, 1.0, 2.0, 3.0]


@st.composite
def rankings(draw: st.DrawFn) -> tuple[list[RecRow], list[TruthRow]]:
    """Random lists (ranks with gaps, some users only in recs or only in truth) and truth
    (with duplicated pairs of different relevance)."""
    rec_rows: list[RecRow] = []
    for user in draw(st.lists(st.sampled_from(USERS), unique=True, max_size=len(USERS))):
        items = draw(st.lists(st.sampled_from(ITEMS), unique=True, max_size=len(ITEMS)))
        ranks = draw(
            st.lists(st.integers(1, 12), unique=True, min_size=len(items), max_size=len(items)).map(
                sorted
            )
        )
        rec_rows += [(user, rank, item) for rank, item in zip(ranks, items, strict=True)]
    truth_rows: list[TruthRow] = []
    for user in draw(st.lists(st.sampled_from(USERS), unique=True, min_size=1)):
        items = draw(st.lists(st.sampled_from(ITEMS), min_size=1, max_size=6))
        truth_rows += [(user, item, draw(st.sampled_from(GAINS))) for item in items]
    return rec_rows, truth_rows


def accuracy_at(k: int) -> list[Metric]:
    return [factory(k) for factory in ACCURACY.values()]


def by_prefix(results: dict[str, float], k: int) -> dict[str, float]:
    return {name: results[f"{name}@{k}"] for name in ACCURACY}


# -- doctests -----------------------------------------------------------------------------------
def test_doctests_hold() -> None:
    attempted = 0
    for module in (metrics, pairs, features_encoding):
        outcome = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert outcome.failed == 0
        attempted += outcome.attempted
    assert attempted >= 30


# -- hand-computed cases ------------------------------------------------------------------------
# u1: a b c d (ranks 1-4), relevant a, c, x (x duplicated).  u2: no hit in p q.
# u3: relevant, never recommended.  u4: recommended, not a test user (ignored).
HAND_RECS = make_recs(
    [
        ("u1", 1, "a"),
        ("u1", 2, "b"),
        ("u1", 3, "c"),
        ("u1", 4, "d"),
        ("u2", 1, "p"),
        ("u2", 2, "q"),
        ("u4", 1, "a"),
    ]
)
HAND_TRUTH = make_truth(
    [
        ("u1", "a", 1.0),
        ("u1", "c", 1.0),
        ("u1", "x", 1.0),
        ("u1", "x", 1.0),
        ("u2", "z", 1.0),
        ("u3", "a", 1.0),
    ]
)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        (Precision(2), (1 / 2) / 3),
        (Precision(3), (2 / 3) / 3),
        (Recall(3), (2 / 3) / 3),
        (Recall(1), (1 / 3) / 3),
        (MAP(3), ((1 + 2 / 3) / 3) / 3),
        (MAP(2), ((1 / 1) / 2) / 3),
        (NDCG(3), ((1 + 1 / 2) / (1 + 1 / math.log2(3) + 1 / 2)) / 3),
        (MRR(4), 1 / 3),
        (HitRate(4), 1 / 3),
        (MissedOffers(3), (1 / 3 + 1 + 1) / 3),
    ],
    ids=lambda value: value.name if hasattr(value, "name") else "",
)
def test_hand_computed(metric: Metric, expected: float) -> None:
    assert metric.compute(HAND_RECS, HAND_TRUTH) == pytest.approx(expected)


def test_map_normalises_by_the_smaller_of_k_and_relevant_count() -> None:
    recs = make_recs([("u", 1, "a"), ("u", 2, "b"), ("u", 3, "c")])
    truth = make_truth([("u", "a", 1.0)])
    assert MAP(3).compute(recs, truth) == 1.0  # one relevant item, found first
    truth = make_truth([("u", item, 1.0) for item in "abcdef"])
    assert MAP(3).compute(recs, truth) == 1.0  # six relevant, all three slots hit


def test_rank_gaps_count_as_positions() -> None:
    recs = make_recs([("u", 2, "a"), ("u", 5, "b")])
    truth = make_truth([("u", "b", 1.0)])
    assert MRR(10).compute(recs, truth) == pytest.approx(1 / 5)
    assert HitRate(4).compute(recs, truth) == 0.0


def test_ndcg_uses_graded_relevance_and_duplicates_keep_the_highest() -> None:
    recs = make_recs([("u", 1, "b"), ("u", 2, "a")])
    truth = make_truth([("u", "a", 1.0), ("u", "a", 2.0), ("u", "b", 1.0)])
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert NDCG(2).compute(recs, truth) == pytest.approx(expected)
    assert NDCG(2).compute(recs, truth.drop("relevance")) == pytest.approx(1.0)


def test_ndcg_is_zero_when_every_gain_is_zero() -> None:
    recs = make_recs([("u", 1, "a")])
    assert NDCG(1).compute(recs, make_truth([("u", "a", 0.0)])) == 0.0


def test_score_column_and_integer_ids_are_accepted() -> None:
    recs = pl.DataFrame({"user_id": [1, 1], "rank": [1, 2], "item_id": [7, 8], "score": [0.9, 0.1]})
    truth = pl.DataFrame({"user_id": ["1"], "item_id": ["8"]})
    assert MRR(2).compute(recs, truth) == 0.5


def test_no_recommendations_at_all_scores_zero() -> None:
    truth = make_truth([("u", "a", 1.0)])
    assert Recall(5).compute(make_recs([]), truth) == 0.0
    assert MissedOffers(5).compute(make_recs([]), truth) == 1.0


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, -3, 2.5, True, "10"])
@pytest.mark.parametrize("factory", [*ACCURACY.values(), Coverage, Gini, PriceTierFit])
def test_k_must_be_a_positive_integer(factory: Callable[[object], Metric], k: object) -> None:
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        factory(k)


def test_names() -> None:
    assert NDCG(10).name == "ndcg@10"
    assert HitRate(5).name == "hit_rate@5"
    assert PriceTierFit(3, tolerance=0.5).name == "price_tier_fit@3"
    assert IntraListDiversity(4).name == "intra_list_diversity@4"


@pytest.mark.parametrize(
    ("recs", "message"),
    [
        (pl.DataFrame({"user_id": ["u"], "item_id": ["a"]}), "recs lacks column.*rank"),
        (pl.DataFrame({"user_id": ["u"], "rank": [1.0], "item_id": ["a"]}), "integer"),
        (pl.DataFrame({"user_id": ["u"], "rank": [0], "item_id": ["a"]}), "starts at 1"),
        (pl.DataFrame({"user_id": [None], "rank": [1], "item_id": ["a"]}), "null"),
        (make_recs([("u", 1, "a"), ("u", 1, "b")]), "two items at rank 1"),
        (make_recs([("u", 1, "a"), ("u", 2, "a")]), "the same item twice: 'a'"),
    ],
)
def test_bad_recs_are_refused(recs: pl.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Precision(3).compute(recs, make_truth([("u", "a", 1.0)]))


@pytest.mark.parametrize(
    ("truth", "message"),
    [
        (pl.DataFrame({"user_id": ["u"]}), "truth lacks column.*item_id"),
        (make_truth([]), "truth is empty"),
        (make_truth([("u", "a", -1.0)]), "relevance must be a finite number"),
        (make_truth([("u", "a", math.nan)]), "relevance must be a finite number"),
        (pl.DataFrame({"user_id": ["u"], "item_id": ["a"], "relevance": ["hi"]}), "numeric"),
    ],
)
def test_bad_truth_is_refused(truth: pl.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NDCG(3).compute(make_recs([("u", 1, "a")]), truth)


# -- properties against the reference ------------------------------------------------------------
@FAST
@given(rankings(), st.integers(1, 6))
def test_accuracy_metrics_match_the_reference(
    case: tuple[list[RecRow], list[TruthRow]], k: int
) -> None:
    rec_rows, truth_rows = case
    results = compute_metrics(accuracy_at(k), make_recs(rec_rows), make_truth(truth_rows))
    expected = reference(rec_rows, truth_rows, k)
    assert by_prefix(results, k) == pytest.approx(expected, abs=1e-12)


@FAST
@given(rankings())
def test_values_are_bounded_and_recall_and_hit_rate_grow_with_k(
    case: tuple[list[RecRow], list[TruthRow]],
) -> None:
    recs, truth = make_recs(case[0]), make_truth(case[1])
    ks = range(1, 8)
    results = compute_metrics([m for k in ks for m in accuracy_at(k)], recs, truth)
    assert all(0.0 <= value <= 1.0 for value in results.values())
    for name in ("recall", "hit_rate"):
        values = [results[f"{name}@{k}"] for k in ks]
        # each k's mean is its own aggregation: equal values may differ in the last bit
        assert all(later >= earlier - 1e-12 for earlier, later in itertools.pairwise(values))
    single = Precision(3).compute(recs, truth)
    assert single == results["precision@3"]


@st.composite
def perfect_rankings(draw: st.DrawFn) -> tuple[list[RecRow], list[TruthRow]]:
    """Each test user's relevant items first, by falling relevance, then irrelevant ones."""
    rec_rows: list[RecRow] = []
    truth_rows: list[TruthRow] = []
    for user in draw(st.lists(st.sampled_from(USERS), unique=True, min_size=1)):
        relevant = draw(st.lists(st.sampled_from(ITEMS), unique=True, min_size=1))
        size = len(relevant)
        gains = draw(st.lists(st.sampled_from(GAINS), min_size=size, max_size=size).map(sorted))
        ordered = list(zip(reversed(gains), relevant, strict=True))
        extra = [item for item in ITEMS if item not in relevant][: draw(st.integers(0, 3))]
        ranked = [item for _, item in ordered] + extra
        rec_rows += [(user, rank, item) for rank, item in enumerate(ranked, start=1)]
        truth_rows += [(user, item, gain) for gain, item in ordered]
    return rec_rows, truth_rows


@FAST
@given(perfect_rankings(), st.integers(1, 10))
def test_a_perfect_ranking_scores_one(case: tuple[list[RecRow], list[TruthRow]], k: int) -> None:
    results = by_prefix(compute_metrics(accuracy_at(k), make_recs(case[0]), make_truth(case[1])), k)
    for name in ("ndcg", "map", "mrr", "hit_rate"):
        assert results[name] == pytest.approx(1.0), name
    most_relevant = max(sum(1 for row in case[1] if row[0] == user) for user in USERS)
    if k >= most_relevant:
        assert results["recall"] == pytest.approx(1.0)
        assert results["missed_offers"] == pytest.approx(0.0)


@FAST
@given(rankings(), st.integers(1, 6))
def test_only_irrelevant_items_score_zero(
    case: tuple[list[RecRow], list[TruthRow]], k: int
) -> None:
    truth_rows = case[1]
    relevant = {(user, item) for user, item, _ in truth_rows}
    misses = [row for row in case[0] if (row[0], row[2]) not in relevant]
    results = by_prefix(
        compute_metrics(accuracy_at(k), make_recs(misses), make_truth(truth_rows)), k
    )
    assert results.pop("missed_offers") == 1.0
    assert set(results.values()) == {0.0}


# -- catalogue metrics --------------------------------------------------------------------------
CATALOGUE = ["a", "b", "c", "d"]
NO_TRUTH = pl.DataFrame()


def test_coverage_counts_catalogue_items_in_anyones_top_k() -> None:
    recs = make_recs([("u", 1, "a"), ("u", 2, "b"), ("v", 1, "a"), ("v", 2, "zz")])
    context = EvaluationContext(catalogue=pl.Series([*CATALOGUE, "a"]))
    assert Coverage(1).compute(recs, NO_TRUTH, context) == 0.25
    assert Coverage(2).compute(recs, NO_TRUTH, context) == 0.5  # zz is outside the catalogue


def test_coverage_and_gini_need_a_context_with_a_catalogue() -> None:
    recs = make_recs([("u", 1, "a")])
    with pytest.raises(ValueError, match="needs an EvaluationContext"):
        Coverage(1).compute(recs, NO_TRUTH)
    with pytest.raises(ValueError, match="catalogue is empty"):
        Gini(1).compute(recs, NO_TRUTH, EvaluationContext(catalogue=[]))


def test_gini_of_equal_exposure_is_zero() -> None:
    recs = make_recs([(f"u{n}", 1, item) for n, item in enumerate(CATALOGUE * 3)])
    assert Gini(1).compute(recs, NO_TRUTH, EvaluationContext(CATALOGUE)) == pytest.approx(0.0)


@pytest.mark.parametrize("n", [1, 2, 5, 40])
def test_gini_of_all_exposure_on_one_item_is_n_minus_one_over_n(n: int) -> None:
    catalogue = [f"i{index}" for index in range(n)]
    recs = make_recs([(f"u{user}", 1, "i0") for user in range(7)])
    gini = Gini(3).compute(recs, NO_TRUTH, EvaluationContext(catalogue))
    assert gini == pytest.approx((n - 1) / n)


def test_gini_without_exposure_is_nan() -> None:
    assert math.isnan(Gini(3).compute(make_recs([]), NO_TRUTH, EvaluationContext(CATALOGUE)))


@FAST
@given(st.lists(st.sampled_from(ITEMS), max_size=30), st.integers(0, 4))
def test_gini_matches_the_mean_absolute_difference(shown: list[str], unseen: int) -> None:
    catalogue = ITEMS + [f"unseen{n}" for n in range(unseen)]
    recs = make_recs([(f"u{n}", 1, item) for n, item in enumerate(shown)])
    gini = Gini(1).compute(recs, NO_TRUTH, EvaluationContext(catalogue))
    counts = [shown.count(item) for item in catalogue]
    if not shown:
        assert math.isnan(gini)
        return
    differences = sum(abs(x - y) for x, y in itertools.product(counts, repeat=2))
    expected = differences / (2 * len(counts) * sum(counts))
    assert gini == pytest.approx(expected)
    assert 0.0 <= gini < 1.0


def test_novelty_in_bits_with_unknown_items_counted_once() -> None:
    recs = make_recs([("u", 1, "a"), ("u", 2, "b"), ("v", 1, "new"), ("v", 2, "a")])
    popularity = pl.DataFrame({"item_id": ["a", "b", "c"], "count": [4, 2, 0]})
    context = EvaluationContext(CATALOGUE, item_popularity=popularity)
    expected = (-math.log2(4 / 6) - math.log2(2 / 6) - math.log2(1 / 6) - math.log2(4 / 6)) / 4
    assert Novelty(2).compute(recs, NO_TRUTH, context) == pytest.approx(expected)
    assert Novelty(1).compute(recs, NO_TRUTH, context) == pytest.approx(
        (-math.log2(4 / 6) - math.log2(1 / 6)) / 2
    )
    assert math.isnan(Novelty(1).compute(make_recs([]), NO_TRUTH, context))


def test_novelty_needs_popularity() -> None:
    with pytest.raises(ValueError, match="item_popularity"):
        Novelty(1).compute(make_recs([("u", 1, "a")]), NO_TRUTH, EvaluationContext(CATALOGUE))


VECTORS = pl.DataFrame({"item_id": ["a", "b", "c", "o"], "x": [1.0, 0, 1, 0], "y": [0.0, 1, 1, 0]})


def test_diversity_from_vectors() -> None:
    recs = make_recs(
        [
            ("ab", 1, "a"),
            ("ab", 2, "b"),
            ("ac", 1, "a"),
            ("ac", 2, "c"),
            ("abc", 1, "a"),
            ("abc", 2, "b"),
            ("abc", 3, "c"),
            ("single", 1, "a"),  # one item: no pairs, left out
            ("unknown", 1, "a"),
            ("unknown", 2, "nofeatures"),  # one item left: left out
        ]
    )
    context = EvaluationContext(CATALOGUE, item_features=VECTORS)
    half = 1 / math.sqrt(2)
    expected = [1.0, 1 - half, 1 - (0 + half + half) / 3]
    diversity = IntraListDiversity(3).compute(recs, NO_TRUTH, context)
    assert diversity == pytest.approx(sum(expected) / 3)


def test_diversity_of_a_zero_vector_is_one_and_array_columns_work() -> None:
    recs = make_recs([("u", 1, "a"), ("u", 2, "o")])
    features = VECTORS.select("item_id", pl.concat_list("x", "y").list.to_array(2).alias("v"))
    for table in (VECTORS, features, features.with_columns(pl.col("v").arr.to_list())):
        context = EvaluationContext(CATALOGUE, item_features=table)
        assert IntraListDiversity(2).compute(recs, NO_TRUTH, context) == pytest.approx(1.0)


def test_diversity_from_categories() -> None:
    categories = pl.DataFrame(
        {"item_id": ["a", "b", "c", "d"], "category": ["x", "x", "y", None], "title": "t"}
    )
    context = EvaluationContext(CATALOGUE, item_features=categories)
    recs = make_recs(
        [("u", 1, "a"), ("u", 2, "b"), ("u", 3, "c"), ("u", 4, "d"), ("v", 1, "a"), ("v", 2, "b")]
    )
    assert IntraListDiversity(4).compute(recs, NO_TRUTH, context) == pytest.approx((2 / 3 + 0) / 2)
    assert math.isnan(IntraListDiversity(1).compute(recs, NO_TRUTH, context))  # no pairs


@FAST
@given(
    st.lists(
        st.lists(st.floats(-3, 3, allow_nan=False), min_size=3, max_size=3),
        min_size=len(ITEMS),
        max_size=len(ITEMS),
    ),
    rankings(),
)
def test_vector_diversity_matches_brute_force_pairs(
    vectors: list[list[float]], case: tuple[list[RecRow], list[TruthRow]]
) -> None:
    table = pl.DataFrame({"item_id": ITEMS, "vector": vectors})
    context = EvaluationContext(ITEMS, item_features=table)
    k = 5
    got = IntraListDiversity(k).compute(make_recs(case[0]), NO_TRUTH, context)

    unit = {}
    for item, vector in zip(ITEMS, vectors, strict=True):
        norm = math.sqrt(sum(value * value for value in vector))
        unit[item] = [value / norm for value in vector] if norm > 0 else [0.0, 0.0, 0.0]
    lists: dict[str, list[str]] = defaultdict(list)
    for user, rank, item in case[0]:
        if rank <= k:
            lists[user].append(item)
    per_list = []
    for items in lists.values():
        pairs = list(itertools.combinations(items, 2))
        if pairs:
            similarity = [
                sum(p * q for p, q in zip(unit[a], unit[b], strict=True)) for a, b in pairs
            ]
            per_list.append(sum(1 - s for s in similarity) / len(pairs))
    if not per_list:
        assert math.isnan(got)
    else:
        assert got == pytest.approx(sum(per_list) / len(per_list), abs=1e-9)
        assert 0.0 <= got <= 2.0


PRICES = pl.DataFrame({"item_id": ["a", "b", "c", "d"], "price": [10.0, 25.0, 100.0, None]})
RANGES = pl.DataFrame({"user_id": ["u", "v"], "low": [20.0, 5.0], "high": [40.0, 8.0]})


def test_price_tier_fit() -> None:
    context = EvaluationContext(CATALOGUE, item_prices=PRICES, user_price_ranges=RANGES)
    recs = make_recs(
        [
            ("u", 1, "a"),  # 10 < 20 * 0.75: out
            ("u", 2, "b"),  # in
            ("u", 3, "c"),  # 100 > 40 * 1.25: out
            ("u", 4, "d"),  # no price: left out
            ("v", 1, "a"),  # 10 = 8 * 1.25: in (bounds are inclusive)
            ("w", 1, "b"),  # no range: left out
        ]
    )
    assert PriceTierFit(4).compute(recs, NO_TRUTH, context) == pytest.approx(2 / 4)
    assert PriceTierFit(4, tolerance=0.0).compute(recs, NO_TRUTH, context) == pytest.approx(1 / 4)
    assert PriceTierFit(4, tolerance=2.0).compute(recs, NO_TRUTH, context) == 1.0
    assert math.isnan(PriceTierFit(4).compute(recs.filter(user_id="w"), NO_TRUTH, context))


@pytest.mark.parametrize("tolerance", [-0.1, math.inf, math.nan])
def test_price_tolerance_must_be_non_negative(tolerance: float) -> None:
    with pytest.raises(ValueError, match="tolerance"):
        PriceTierFit(5, tolerance=tolerance)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"item_popularity": pl.DataFrame({"item_id": ["a"]})}, "lacks column.*count"),
        ({"item_popularity": pl.DataFrame({"item_id": ["a"], "count": [-1]})}, "non-negative"),
        ({"item_prices": pl.DataFrame({"item_id": ["a", "a"], "price": [1, 2]})}, "'a' appears"),
        ({"item_prices": pl.DataFrame({"item_id": ["a"], "price": ["1"]})}, "numeric"),
        ({"item_features": pl.DataFrame({"item_id": ["a"], "title": ["t"]})}, "category"),
        ({"user_price_ranges": pl.DataFrame({"user_id": ["u"], "low": [5], "high": [1]})}, "low"),
        ({"catalogue": ["a", None]}, "null"),
    ],
)
def test_bad_context_tables_are_refused(fields: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"catalogue": CATALOGUE, **fields}
    with pytest.raises(ValueError, match=message):
        EvaluationContext(**arguments)  # type: ignore[arg-type]


# -- many at once, and by name ------------------------------------------------------------------
def test_compute_metrics_keys_by_name_in_order_and_refuses_duplicates() -> None:
    context = EvaluationContext(CATALOGUE)
    chosen: list[Metric] = [NDCG(3), Coverage(2), Recall(3)]
    results = compute_metrics(chosen, HAND_RECS, HAND_TRUTH, context)
    assert list(results) == ["ndcg@3", "coverage@2", "recall@3"]
    for metric in chosen:
        assert results[metric.name] == metric.compute(HAND_RECS, HAND_TRUTH, context)
    with pytest.raises(ValueError, match="two metrics are named 'recall@3'"):
        compute_metrics([Recall(3), Recall(3)], HAND_RECS, HAND_TRUTH)


@pytest.mark.parametrize("prefix", METRIC_NAMES)
def test_every_name_parses_back_to_its_metric(prefix: str) -> None:
    metric = parse_metric(f"{prefix}@7")
    assert metric.name == f"{prefix}@7"
    assert metric.k == 7
    assert parse_metric(metric.name) == metric


def test_parse_metric_forgives_case_blanks_and_hyphens() -> None:
    assert parse_metric(" NDCG @ 10 ") == NDCG(10)
    assert parse_metric("Hit-Rate@3") == HitRate(3)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ndgc@10", "unknown metric 'ndgc@10': did you mean 'ndcg'"),
        ("bleu@10", "unknown metric.*known metrics are coverage, gini"),
        ("ndcg", r"needs a cut-off, e.g. 'ndcg@10'"),
        ("ndcg@", "k must be an integer >= 1"),
        ("ndcg@0", "k must be an integer >= 1"),
        ("ndcg@-2", "k must be an integer >= 1"),
        ("ndcg@2.5", "k must be an integer >= 1"),
        ("ndcg@ten", "k must be an integer >= 1"),
        ("ndcg@²", "k must be an integer >= 1"),
    ],
)
def test_parse_metric_errors(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_metric(name)


# -- scored pairs -------------------------------------------------------------------------------
def test_auc_by_hand() -> None:
    assert auc(np.array([0.8, 0.4, 0.5, 0.1]), np.array([1, 1, 0, 0])) == 0.75
    assert auc([0.3, 0.3], [True, False]) == 0.5  # a tie counts one half
    assert auc([1.0, 2.0, 3.0], [0, 1, 1]) == 1.0
    assert auc([1.0, 2.0, 3.0], [1, 0, 0]) == 0.0


def test_log_loss_by_hand() -> None:
    assert log_loss([0.5, 0.5], [1, 0]) == pytest.approx(math.log(2))
    assert log_loss([1.0, 0.0], [1, 0]) == pytest.approx(0.0, abs=1e-12)
    assert log_loss([0.0], [1]) == pytest.approx(-math.log(1e-15))
    assert log_loss([0.0], [1], eps=1e-3) == pytest.approx(-math.log(1e-3))


@FAST
@given(
    st.lists(
        st.tuples(st.floats(0, 1, allow_nan=False), st.integers(0, 1)), min_size=2, max_size=40
    )
)
def test_pair_metrics_match_scikit_learn(pairs: list[tuple[float, int]]) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    scores = np.array([score for score, _ in pairs])
    labels = np.array([label for _, label in pairs])
    assert log_loss(scores, labels) == pytest.approx(
        sklearn_metrics.log_loss(labels, np.clip(scores, 1e-15, 1 - 1e-15), labels=[0, 1])
    )
    if 0 < labels.sum() < labels.size:
        assert auc(scores, labels) == pytest.approx(sklearn_metrics.roc_auc_score(labels, scores))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: auc([0.1, 0.2], [1]), "2 values but labels has 1"),
        (lambda: auc([0.1, 0.2], [1, 1]), "both classes.*all are positive"),
        (lambda: auc([0.1, 0.2], [0, 0]), "all are negative"),
        (lambda: auc([], []), "empty"),
        (lambda: auc([0.1, math.nan], [0, 1]), "finite"),
        (lambda: auc([0.1, 0.2], [0, 2]), "labels must be 0 or 1"),
        (lambda: auc([[0.1, 0.2]], [[0, 1]]), "one-dimensional"),
        (lambda: log_loss([0.1, 0.2, 0.3], [1, 0]), "3 values but labels has 2"),
        (lambda: log_loss([1.5], [1]), r"lie in \[0, 1\]"),
        (lambda: log_loss([0.5], [1], eps=0), "eps"),
    ],
)
def test_pair_metric_errors(call: Callable[[], float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
