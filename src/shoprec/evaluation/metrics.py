"""Offline evaluation metrics: ranking accuracy, catalogue-level quality and scored pairs.

Each ranking metric is a small frozen dataclass with a cut-off ``k`` and a ``name`` such as
``"ndcg@10"``; :func:`compute_metrics` evaluates several at once and returns a dict keyed by
name, and :func:`parse_metric` turns a name from a config file or the CLI back into a metric.

Tables
------
recs
    ``user_id``, ``rank`` (integer, 1 = best), ``item_id``, optionally ``score`` (ignored). A
    list may be longer than ``k``: a metric at ``k`` reads the rows with ``rank <= k``. A user
    may not hold two items at one rank or one item twice.
truth
    ``user_id``, ``item_id``: the relevant test items (duplicates count once), optionally
    ``relevance`` (float >= 0, default 1.0; a duplicated pair keeps its highest relevance),
    which only :class:`NDCG` reads, as a linear gain.

Accuracy metrics (:class:`Precision`, :class:`Recall`, :class:`MAP`, :class:`NDCG`,
:class:`MRR`, :class:`HitRate`, :class:`MissedOffers`) average over the users in ``truth``:
a test user without recommendations scores 0, and users found only in ``recs`` are ignored.
Catalogue metrics (:class:`Coverage`, :class:`Gini`, :class:`Novelty`,
:class:`IntraListDiversity`, :class:`PriceTierFit`) read every user in ``recs``, ignore
``truth`` and take what else they need from an :class:`EvaluationContext`.

Ids of any dtype are compared as strings.
"""

from __future__ import annotations

import difflib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar, Protocol

import numpy as np
import polars as pl

from shoprec.data.schema import CATEGORY, ITEM_ID, PRICE, USER_ID
from shoprec.evaluation.diversity import category_diversity, cosine_diversity, vector_columns
from shoprec.evaluation.pairs import auc, log_loss

__all__ = [
    "COUNT",
    "HIGH",
    "LOW",
    "MAP",
    "METRIC_NAMES",
    "MRR",
    "NDCG",
    "RANK",
    "RELEVANCE",
    "SCORE",
    "Coverage",
    "EvaluationContext",
    "Gini",
    "HitRate",
    "IntraListDiversity",
    "Metric",
    "MissedOffers",
    "Novelty",
    "Precision",
    "PriceTierFit",
    "Recall",
    "auc",
    "compute_metrics",
    "log_loss",
    "parse_metric",
]

# -- column names of the evaluation tables ------------------------------------------------------
RANK = "rank"
SCORE = "score"
RELEVANCE = "relevance"
COUNT = "count"
LOW = "low"
HIGH = "high"

# internal per-user statistics
_N_RELEVANT = "_n_relevant"
_HITS = "_hits"
_AP_SUM = "_ap_sum"
_DCG = "_dcg"
_IDCG = "_idcg"
_RR = "_rr"
_IDEAL_RANK = "_ideal_rank"
_N = "_n"
_ROW = "_row"


# -- context ------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class EvaluationContext:
    """What catalogue-level metrics need besides the recommendations.

    Parameters
    ----------
    catalogue
        Every item id that could be recommended: the denominator of :class:`Coverage` and the
        support of :class:`Gini`. Duplicates count once.
    item_popularity
        ``item_id``, ``count``: interactions per item in training, for :class:`Novelty`.
    item_features
        ``item_id`` plus either numeric vector columns (scalar columns, or ``Array``/``List``
        columns of numbers, concatenated in column order) or a ``category`` column, for
        :class:`IntraListDiversity`. When both are present the vectors are used, so pass only
        the columns meant as features.
    item_prices
        ``item_id``, ``price``, for :class:`PriceTierFit`; a null price leaves the item out.
    user_price_ranges
        ``user_id``, ``low``, ``high``: the lowest and highest price each user paid in
        training, for :class:`PriceTierFit`; a user without a row (or with nulls) is left out.

    Raises
    ------
    ValueError
        When a table lacks a column, repeats or nulls a key, or holds impossible values.
    """

    catalogue: list[str] | pl.Series
    item_popularity: pl.DataFrame | None = None
    item_features: pl.DataFrame | None = None
    item_prices: pl.DataFrame | None = None
    user_price_ranges: pl.DataFrame | None = None

    def __post_init__(self) -> None:
        if self.catalogue_items().null_count():
            raise ValueError("catalogue: item ids must not be null")
        if self.item_popularity is not None:
            _check_table(self.item_popularity, ITEM_ID, [COUNT], "item_popularity")
            counts = self.item_popularity.get_column(COUNT)
            if counts.null_count() or bool((counts < 0).any()):
                raise ValueError("item_popularity: count must be a non-negative number, not null")
        if self.item_features is not None:
            _check_table(self.item_features, ITEM_ID, [], "item_features")
            if not vector_columns(self.item_features) and CATEGORY not in self.item_features:
                raise ValueError(
                    "item_features needs numeric vector columns or a 'category' column; it has "
                    + ", ".join(self.item_features.columns)
                )
        if self.item_prices is not None:
            _check_table(self.item_prices, ITEM_ID, [PRICE], "item_prices")
        if self.user_price_ranges is not None:
            ranges = self.user_price_ranges
            _check_table(ranges, USER_ID, [LOW, HIGH], "user_price_ranges")
            if bool(ranges.select((pl.col(LOW) > pl.col(HIGH)).any()).item()):
                raise ValueError("user_price_ranges: low must not exceed high")

    def catalogue_items(self) -> pl.Series:
        """The catalogue as a series of distinct string ids named ``item_id``."""
        items = pl.Series(ITEM_ID, self.catalogue)
        return items.cast(pl.String).alias(ITEM_ID).unique()


def _check_table(frame: pl.DataFrame, key: str, numeric: Sequence[str], what: str) -> None:
    _require_columns(frame, [key, *numeric], what)
    for column in numeric:
        if not frame.schema[column].is_numeric():
            raise ValueError(
                f"{what}: column {column!r} must be numeric, not {frame.schema[column]}"
            )
    ids = frame.get_column(key)
    if ids.null_count():
        raise ValueError(f"{what}: {key} must not be null")
    repeated = ids.filter(ids.is_duplicated())
    if repeated.len():
        raise ValueError(f"{what}: {key} {repeated[0]!r} appears more than once")


def _require_columns(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(frame.columns) or 'no columns'}"
        )


# -- validated inputs, shared by every metric of one evaluation ---------------------------------
def _checked_recs(recs: pl.DataFrame) -> pl.DataFrame:
    _require_columns(recs, [USER_ID, RANK, ITEM_ID], "recs")
    rank_dtype = recs.schema[RANK]
    if not (rank_dtype.is_integer() or rank_dtype == pl.Null):
        raise ValueError(f"recs: rank must be an integer column, not {rank_dtype}")
    checked = recs.select(
        pl.col(USER_ID).cast(pl.String),
        pl.col(RANK).cast(pl.Int64),
        pl.col(ITEM_ID).cast(pl.String),
    )
    _reject_nulls(checked, "recs")
    below = checked.filter(pl.col(RANK) < 1)
    if below.height:
        raise ValueError(f"recs: rank starts at 1 (the best item); found rank {below[RANK][0]}")
    repeats = checked.group_by(USER_ID).agg(
        (pl.col(key).n_unique() < pl.len()).alias(key) for key in (RANK, ITEM_ID)
    )
    for key, problem in ((RANK, "two items at rank"), (ITEM_ID, "the same item twice:")):
        offenders = repeats.filter(key).get_column(USER_ID)
        if offenders.len():
            user = offenders.sort()[0]
            repeated = checked.filter(pl.col(USER_ID) == user).get_column(key)
            value = repeated.filter(repeated.is_duplicated()).sort()[0]
            raise ValueError(f"recs: user {user!r} has {problem} {value!r}")
    return checked


def _checked_truth(truth: pl.DataFrame) -> pl.DataFrame:
    _require_columns(truth, [USER_ID, ITEM_ID], "truth")
    if RELEVANCE in truth.columns:
        if not truth.schema[RELEVANCE].is_numeric():
            raise ValueError(f"truth: relevance must be numeric, not {truth.schema[RELEVANCE]}")
        relevance = pl.col(RELEVANCE).cast(pl.Float64)
    else:
        relevance = pl.lit(1.0, dtype=pl.Float64).alias(RELEVANCE)
    checked = truth.select(
        pl.col(USER_ID).cast(pl.String), pl.col(ITEM_ID).cast(pl.String), relevance
    )
    _reject_nulls(checked, "truth")
    if checked.is_empty():
        raise ValueError("truth is empty: there are no test users to average over")
    gains = checked.get_column(RELEVANCE)
    if not bool((gains.is_finite() & (gains >= 0)).all()):
        raise ValueError("truth: relevance must be a finite number >= 0")
    return checked.group_by(USER_ID, ITEM_ID).agg(pl.col(RELEVANCE).max())


def _reject_nulls(frame: pl.DataFrame, what: str) -> None:
    for column, nulls in frame.null_count().row(0, named=True).items():
        if nulls:
            raise ValueError(f"{what}: column {column!r} has {nulls} null value(s)")


class _Inputs:
    """The tables of one evaluation, validated once and shared by the metrics computed on them."""

    def __init__(
        self, recs: pl.DataFrame, truth: pl.DataFrame, context: EvaluationContext | None
    ) -> None:
        self._recs = recs
        self._truth = truth
        self._context = context
        self._stats: dict[int, pl.DataFrame] = {}

    @cached_property
    def recs(self) -> pl.DataFrame:
        return _checked_recs(self._recs)

    @cached_property
    def truth(self) -> pl.DataFrame:
        """Deduplicated truth with each pair's place in its user's ideal ranking."""
        return _checked_truth(self._truth).with_columns(
            pl.col(RELEVANCE)
            .rank("ordinal", descending=True)
            .over(USER_ID)
            .cast(pl.Int64)
            .alias(_IDEAL_RANK)
        )

    @cached_property
    def hits(self) -> pl.DataFrame:
        """Recommendations that are relevant: ``user_id``, ``rank``, ``relevance``."""
        return self.recs.join(self.truth, on=[USER_ID, ITEM_ID], how="inner").select(
            USER_ID, RANK, RELEVANCE
        )

    def top(self, k: int) -> pl.DataFrame:
        return self.recs.filter(pl.col(RANK) <= k)

    def user_stats(self, k: int) -> pl.DataFrame:
        """One row per test user with everything the accuracy metrics at ``k`` are made of."""
        if k not in self._stats:
            found = (
                self.hits.filter(pl.col(RANK) <= k)
                .group_by(USER_ID)
                .agg(
                    pl.len().cast(pl.Int64).alias(_HITS),
                    (pl.int_range(1, pl.len() + 1) / pl.col(RANK).sort()).sum().alias(_AP_SUM),
                    (pl.col(RELEVANCE) / (pl.col(RANK) + 1).log(2)).sum().alias(_DCG),
                    (1.0 / pl.col(RANK).min()).alias(_RR),
                )
            )
            users = self.truth.group_by(USER_ID).agg(
                pl.len().cast(pl.Int64).alias(_N_RELEVANT),
                (pl.col(RELEVANCE) / (pl.col(_IDEAL_RANK) + 1).log(2))
                .filter(pl.col(_IDEAL_RANK) <= k)
                .sum()
                .alias(_IDCG),
            )
            self._stats[k] = users.join(found, on=USER_ID, how="left").fill_null(0)
        return self._stats[k]

    def context(self, metric: str) -> EvaluationContext:
        if self._context is None:
            raise ValueError(f"{metric} needs an EvaluationContext")
        return self._context


def _need(table: pl.DataFrame | None, field: str, metric: str) -> pl.DataFrame:
    if table is None:
        raise ValueError(f"{metric} needs EvaluationContext.{field}")
    return table


def _as_float(value: object) -> float:
    """A scalar from a one-cell result; ``None`` (the mean of nothing) becomes ``nan``."""
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


# -- the metric classes -------------------------------------------------------------------------
class Metric(Protocol):
    """Anything :func:`compute_metrics` can evaluate."""

    @property
    def k(self) -> int: ...

    @property
    def name(self) -> str: ...

    def compute(
        self,
        recs: pl.DataFrame,
        truth: pl.DataFrame,
        context: EvaluationContext | None = None,
    ) -> float: ...


@dataclass(frozen=True)
class _CutOff(ABC):
    """A metric over the top ``k`` recommendations of each user."""

    k: int
    prefix: ClassVar[str]

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"{type(self).__name__}: k must be an integer >= 1, got {self.k!r}")

    @property
    def name(self) -> str:
        """``prefix@k``, e.g. ``"ndcg@10"``: the key in :func:`compute_metrics`' result."""
        return f"{self.prefix}@{self.k}"

    def compute(
        self,
        recs: pl.DataFrame,
        truth: pl.DataFrame,
        context: EvaluationContext | None = None,
    ) -> float:
        """The metric's value for these recommendations (see the module docstring)."""
        return self._evaluate(_Inputs(recs, truth, context))

    @abstractmethod
    def _evaluate(self, inputs: _Inputs) -> float: ...


@dataclass(frozen=True)
class _AccuracyMetric(_CutOff):
    """Mean over test users of a per-user value built from :meth:`_Inputs.user_stats`."""

    def _evaluate(self, inputs: _Inputs) -> float:
        stats = inputs.user_stats(self.k)
        return _as_float(stats.select(self._per_user().mean()).item())

    @abstractmethod
    def _per_user(self) -> pl.Expr: ...


@dataclass(frozen=True)
class Precision(_AccuracyMetric):
    """Relevant items in a user's top ``k``, divided by ``k``.

    Examples
    --------
    Of the top two, ``a`` is relevant and ``b`` is not: 1 / 2.

    >>> recs = pl.DataFrame({"user_id": "u", "rank": [1, 2, 3], "item_id": ["a", "b", "c"]})
    >>> truth = pl.DataFrame({"user_id": "u", "item_id": ["a", "c", "d"]})
    >>> Precision(k=2).compute(recs, truth)
    0.5
    """

    prefix: ClassVar[str] = "precision"

    def _per_user(self) -> pl.Expr:
        return pl.col(_HITS) / self.k


@dataclass(frozen=True)
class Recall(_AccuracyMetric):
    """Relevant items in a user's top ``k``, divided by the user's number of relevant items.

    Examples
    --------
    ``a`` and ``c`` of the three relevant items are in the top three: 2 / 3.

    >>> recs = pl.DataFrame({"user_id": "u", "rank": [1, 2, 3], "item_id": ["a", "b", "c"]})
    >>> truth = pl.DataFrame({"user_id": "u", "item_id": ["a", "c", "d"]})
    >>> round(Recall(k=3).compute(recs, truth), 4)
    0.6667
    """

    prefix: ClassVar[str] = "recall"

    def _per_user(self) -> pl.Expr:
        return pl.col(_HITS) / pl.col(_N_RELEVANT)


@dataclass(frozen=True)
class MAP(_AccuracyMetric):
    """Mean average precision: precision at the rank of each hit, summed over the hits in the
    top ``k`` and divided by ``min(k, number of relevant items)``.

    Examples
    --------
    Hits at ranks 1 and 3 have precision 1/1 and 2/3 there; three items are relevant and
    ``k`` is 3, so AP = (1 + 2/3) / 3 = 5/9.

    >>> recs = pl.DataFrame({"user_id": "u", "rank": [1, 2, 3], "item_id": ["a", "b", "c"]})
    >>> truth = pl.DataFrame({"user_id": "u", "item_id": ["a", "c", "d"]})
    >>> round(MAP(k=3).compute(recs, truth), 4)
    0.5556
    """

    prefix: ClassVar[str] = "map"

    def _per_user(self) -> pl.Expr:
        return pl.col(_AP_SUM) / pl.min_horizontal(pl.col(_N_RELEVANT), pl.lit(self.k))


@dataclass(frozen=True)
class NDCG(_AccuracyMetric):
    """Normalised discounted cumulative gain with linear gain ``relevance``.

    DCG sums ``relevance / log2(rank + 1)`` over the hits in the top ``k``; it is divided by
    the DCG of the best possible top ``k`` (the user's relevant items by falling relevance).
    A user whose relevant items all have relevance 0 scores 0.

    Examples
    --------
    Relevances a=3, c=1, d=2; the top three is a, b, c. DCG = 3/log2(2) + 1/log2(4) = 3.5,
    the ideal a, d, c gives 3/log2(2) + 2/log2(3) + 1/log2(4) = 4.7619, and 3.5 / 4.7619:

    >>> recs = pl.DataFrame({"user_id": "u", "rank": [1, 2, 3], "item_id": ["a", "b", "c"]})
    >>> truth = pl.DataFrame(
    ...     {"user_id": "u", "item_id": ["a", "c", "d"], "relevance": [3.0, 1.0, 2.0]}
    ... )
    >>> round(NDCG(k=3).compute(recs, truth), 4)
    0.735
    """

    prefix: ClassVar[str] = "ndcg"

    def _per_user(self) -> pl.Expr:
        ratio = pl.when(pl.col(_IDCG) > 0).then(pl.col(_DCG) / pl.col(_IDCG)).otherwise(0.0)
        return ratio.clip(0.0, 1.0)


@dataclass(frozen=True)
class MRR(_AccuracyMetric):
    """Mean reciprocal rank of the first relevant item in the top ``k`` (0 without one).

    Examples
    --------
    ``u``'s first hit is at rank 2 (1/2); ``v`` has none in the top two (0): mean 1/4.

    >>> recs = pl.DataFrame(
    ...     {"user_id": ["u", "u", "v", "v"], "rank": [1, 2, 1, 2], "item_id": ["b", "a", "x", "y"]}
    ... )
    >>> truth = pl.DataFrame({"user_id": ["u", "v"], "item_id": ["a", "a"]})
    >>> MRR(k=2).compute(recs, truth)
    0.25
    """

    prefix: ClassVar[str] = "mrr"

    def _per_user(self) -> pl.Expr:
        return pl.col(_RR)


@dataclass(frozen=True)
class HitRate(_AccuracyMetric):
    """Share of test users with at least one relevant item in their top ``k``.

    Examples
    --------
    The only relevant item ``c`` sits at rank 3: a miss at ``k=2``, a hit at ``k=3``.

    >>> recs = pl.DataFrame({"user_id": "u", "rank": [1, 2, 3], "item_id": ["a", "b", "c"]})
    >>> truth = pl.DataFrame({"user_id": "u", "item_id": ["c"]})
    >>> HitRate(k=2).compute(recs, truth), HitRate(k=3).compute(recs, truth)
    (0.0, 1.0)
    """

    prefix: ClassVar[str] = "hit_rate"

    def _per_user(self) -> pl.Expr:
        return (pl.col(_HITS) > 0).cast(pl.Float64)


@dataclass(frozen=True)
class MissedOffers(_AccuracyMetric):
    """Share of a user's relevant items missing from the top ``k``: ``1 - Recall``.

    Examples
    --------
    Of the relevant a, c and d the top two finds only a; two of three are missed.

    >>> recs = pl.DataFrame({"user_id": "u", "rank": [1, 2, 3], "item_id": ["a", "b", "c"]})
    >>> truth = pl.DataFrame({"user_id": "u", "item_id": ["a", "c", "d"]})
    >>> round(MissedOffers(k=2).compute(recs, truth), 4)
    0.6667
    """

    prefix: ClassVar[str] = "missed_offers"

    def _per_user(self) -> pl.Expr:
        return 1.0 - pl.col(_HITS) / pl.col(_N_RELEVANT)


@dataclass(frozen=True)
class Coverage(_CutOff):
    """Distinct catalogue items in anyone's top ``k``, divided by the catalogue size.

    Recommended items outside the catalogue are not counted.

    Examples
    --------
    >>> recs = pl.DataFrame(
    ...     {"user_id": ["u", "u", "v", "v"], "rank": [1, 2, 1, 2], "item_id": ["a", "b", "a", "c"]}
    ... )
    >>> context = EvaluationContext(catalogue=["a", "b", "c", "d", "e", "f"])
    >>> no_truth = pl.DataFrame()  # catalogue metrics do not read it
    >>> [Coverage(k).compute(recs, no_truth, context) for k in (1, 2)]
    [0.16666666666666666, 0.5]
    """

    prefix: ClassVar[str] = "coverage"

    def _evaluate(self, inputs: _Inputs) -> float:
        catalogue = inputs.context(self.name).catalogue_items()
        if catalogue.is_empty():
            raise ValueError(f"{self.name}: the catalogue is empty")
        shown = inputs.top(self.k).select(ITEM_ID).unique()
        return shown.join(catalogue.to_frame(), on=ITEM_ID, how="semi").height / catalogue.len()


@dataclass(frozen=True)
class Gini(_CutOff):
    """Gini index of how often each catalogue item appears in the top ``k`` lists.

    Items never recommended count 0 and items outside the catalogue are ignored. 0 means
    every item is shown equally often; all exposure on one of ``n`` items gives
    ``(n - 1) / n``. ``nan`` when nothing from the catalogue is recommended.

    Examples
    --------
    Exposures (0, 0, 1, 1) sorted: sum((2i - n - 1) x_i) / (n sum x) = (1 + 3) / (4 * 2).

    >>> recs = pl.DataFrame({"user_id": ["u", "v"], "rank": [1, 1], "item_id": ["a", "b"]})
    >>> context = EvaluationContext(catalogue=["a", "b", "c", "d"])
    >>> Gini(k=1).compute(recs, pl.DataFrame(), context)
    0.5
    """

    prefix: ClassVar[str] = "gini"

    def _evaluate(self, inputs: _Inputs) -> float:
        catalogue = inputs.context(self.name).catalogue_items()
        if catalogue.is_empty():
            raise ValueError(f"{self.name}: the catalogue is empty")
        shown = inputs.top(self.k).group_by(ITEM_ID).agg(pl.len().alias(_N))
        exposure = np.sort(
            catalogue.to_frame()
            .join(shown, on=ITEM_ID, how="left")
            .get_column(_N)
            .fill_null(0)
            .to_numpy()
            .astype(np.float64)
        )
        total = exposure.sum()
        if total == 0:
            return math.nan
        n = exposure.size
        weights = 2.0 * np.arange(1, n + 1) - n - 1
        return float((weights * exposure).sum() / (n * total))


@dataclass(frozen=True)
class Novelty(_CutOff):
    """Mean self-information ``-log2(p)`` of the items in the top ``k`` lists, in bits.

    ``p`` is an item's training count over the total count of ``item_popularity``. An item
    missing from that table, or with count 0, is given count 1 (as rare as anything seen),
    so unseen items are maximally novel and the logarithm stays finite. The mean is over
    recommendation slots, so every shown item weighs the same. ``nan`` without any.

    Examples
    --------
    Counts a=3, b=1 (total 4): a gives -log2(3/4) = 0.415, b and the unseen z give 2 each.

    >>> recs = pl.DataFrame({"user_id": "u", "rank": [1, 2, 3], "item_id": ["a", "b", "z"]})
    >>> popularity = pl.DataFrame({"item_id": ["a", "b"], "count": [3, 1]})
    >>> context = EvaluationContext(catalogue=["a", "b", "z"], item_popularity=popularity)
    >>> round(Novelty(k=3).compute(recs, pl.DataFrame(), context), 4)
    1.4717
    """

    prefix: ClassVar[str] = "novelty"

    def _evaluate(self, inputs: _Inputs) -> float:
        table = _need(inputs.context(self.name).item_popularity, "item_popularity", self.name)
        total = float(table.get_column(COUNT).sum())
        if total <= 0:
            raise ValueError(f"{self.name}: item_popularity counts sum to {total}")
        popularity = table.select(pl.col(ITEM_ID).cast(pl.String), pl.col(COUNT).cast(pl.Float64))
        probability = pl.col(COUNT).fill_null(1.0).clip(lower_bound=1.0) / total
        value = (
            inputs.top(self.k)
            .join(popularity, on=ITEM_ID, how="left")
            .select((-probability.log(2)).mean())
            .item()
        )
        return _as_float(value)


@dataclass(frozen=True)
class IntraListDiversity(_CutOff):
    """Mean over users of the mean pairwise dissimilarity of the items in their top ``k``.

    With vectors, dissimilarity is ``1 - cosine similarity`` (in [0, 2]; in [0, 1] for
    non-negative features; a zero vector is dissimilar to everything, 1). Otherwise it is 1
    for two items in different categories and 0 for the same. Items without features (or
    with a null category) are left out, as are lists with fewer than two items left. ``nan``
    when no list is left.

    Examples
    --------
    Categories x, x, y: of the pairs ab, ac, bc two are in different categories.

    >>> recs = pl.DataFrame({"user_id": "u", "rank": [1, 2, 3], "item_id": ["a", "b", "c"]})
    >>> features = pl.DataFrame({"item_id": ["a", "b", "c"], "category": ["x", "x", "y"]})
    >>> context = EvaluationContext(catalogue=["a", "b", "c"], item_features=features)
    >>> round(IntraListDiversity(k=3).compute(recs, pl.DataFrame(), context), 4)
    0.6667
    """

    prefix: ClassVar[str] = "intra_list_diversity"

    def _evaluate(self, inputs: _Inputs) -> float:
        features = _need(inputs.context(self.name).item_features, "item_features", self.name)
        features = features.with_columns(pl.col(ITEM_ID).cast(pl.String))
        top = inputs.top(self.k)
        if vector_columns(features):
            return cosine_diversity(top, features)
        return category_diversity(top, features)


@dataclass(frozen=True)
class PriceTierFit(_CutOff):
    """Share of top-``k`` items priced within the user's usual range, widened by ``tolerance``.

    An item fits when ``low * (1 - tolerance) <= price <= high * (1 + tolerance)``, with
    ``low`` and ``high`` the cheapest and dearest price the user paid in training. Items
    without a price and users without a range are left out of the mean over the remaining
    (user, item) slots; ``nan`` when none remain. The tolerance is not part of :attr:`name`.
    """

    tolerance: float = 0.25
    prefix: ClassVar[str] = "price_tier_fit"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.tolerance, int | float) and 0 <= self.tolerance < math.inf):
            raise ValueError(f"PriceTierFit: tolerance must be >= 0, got {self.tolerance!r}")

    def _evaluate(self, inputs: _Inputs) -> float:
        context = inputs.context(self.name)
        prices = _need(context.item_prices, "item_prices", self.name).select(
            pl.col(ITEM_ID).cast(pl.String), pl.col(PRICE).cast(pl.Float64)
        )
        ranges = _need(context.user_price_ranges, "user_price_ranges", self.name).select(
            pl.col(USER_ID).cast(pl.String),
            pl.col(LOW).cast(pl.Float64),
            pl.col(HIGH).cast(pl.Float64),
        )
        fits = pl.col(PRICE).is_between(
            pl.col(LOW) * (1 - self.tolerance), pl.col(HIGH) * (1 + self.tolerance)
        )
        value = (
            inputs.top(self.k)
            .join(prices.filter(pl.col(PRICE).is_finite()), on=ITEM_ID, how="inner")
            .join(ranges.filter(pl.col(LOW).is_finite() & pl.col(HIGH).is_finite()), on=USER_ID)
            .select(fits.cast(pl.Float64).mean())
            .item()
        )
        return _as_float(value)


# -- evaluating many and naming them ------------------------------------------------------------
_REGISTRY: dict[str, Callable[[int], _CutOff]] = {
    metric.prefix: metric
    for metric in (
        Precision,
        Recall,
        MAP,
        NDCG,
        MRR,
        HitRate,
        MissedOffers,
        Coverage,
        Gini,
        Novelty,
        IntraListDiversity,
        PriceTierFit,
    )
}
METRIC_NAMES: tuple[str, ...] = tuple(sorted(_REGISTRY))
"""The names :func:`parse_metric` understands, each followed by ``@k``."""


def compute_metrics(
    metrics: Sequence[Metric],
    recs: pl.DataFrame,
    truth: pl.DataFrame,
    context: EvaluationContext | None = None,
) -> dict[str, float]:
    """Evaluate several metrics on one set of recommendations, validating the tables once.

    Parameters
    ----------
    metrics
        The metrics, e.g. ``[NDCG(10), Recall(10), Coverage(10)]``; their names must differ.
    recs, truth, context
        As for each metric's ``compute`` (see the module docstring).

    Returns
    -------
    dict[str, float]
        Each metric's value keyed by its ``name``, in the order given.

    Examples
    --------
    >>> recs = pl.DataFrame({"user_id": "u", "rank": [1, 2], "item_id": ["a", "b"]})
    >>> truth = pl.DataFrame({"user_id": "u", "item_id": ["b"]})
    >>> compute_metrics([HitRate(1), MRR(2)], recs, truth)
    {'hit_rate@1': 0.0, 'mrr@2': 0.5}
    """
    inputs = _Inputs(recs, truth, context)
    results: dict[str, float] = {}
    for metric in metrics:
        if metric.name in results:
            raise ValueError(f"two metrics are named {metric.name!r}; names must be unique")
        if isinstance(metric, _CutOff):
            results[metric.name] = metric._evaluate(inputs)
        else:
            results[metric.name] = metric.compute(recs, truth, context)
    return results


def parse_metric(name: str) -> Metric:
    """The metric named ``name``: ``"ndcg@10"`` gives ``NDCG(k=10)``.

    Case, surrounding blanks and ``-`` for ``_`` are forgiven. :class:`PriceTierFit` gets
    its default tolerance.

    Raises
    ------
    ValueError
        For an unknown metric or a missing or invalid ``@k``.

    Examples
    --------
    >>> parse_metric("NDCG@10")
    NDCG(k=10)
    >>> parse_metric("hit-rate@5").name
    'hit_rate@5'
    """
    prefix, at, cut_off = name.strip().lower().replace("-", "_").partition("@")
    prefix, cut_off = prefix.strip(), cut_off.strip()
    if prefix not in _REGISTRY:
        close = difflib.get_close_matches(prefix, METRIC_NAMES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown metric {name!r}: {hint}known metrics are {', '.join(METRIC_NAMES)}"
        )
    if not at:
        raise ValueError(f"metric {name!r} needs a cut-off, e.g. '{prefix}@10'")
    if not (cut_off.isascii() and cut_off.isdigit()) or int(cut_off) < 1:
        raise ValueError(f"metric {name!r}: k must be an integer >= 1, got {cut_off!r}")
    return _REGISTRY[prefix](int(cut_off))
