"""One ranking pipeline for every list of the two-stage model: batch ``recommend``, the
evaluation, the validation gate and the API all call :meth:`RankingPipeline.recommend`.

For one user's interaction row (their training history plus anything live) it runs

    candidates (each generator's best unseen items)
      → features (:class:`~shoprec.ranking.scorer.CandidateScorer`, from arrays)
      → scorer (the ranker, rank fusion or one generator: the validation gate's choice)
      → rules (availability, blocks, price guard, freshness, category cap, pins)
      → reasons (the generator that proposed an item best explains it)

in milliseconds, so the list a shopper is served is the list that was evaluated.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from shoprec.models.base import Recommender, top_k
from shoprec.ranking.scorer import CandidateScorer

if TYPE_CHECKING:
    from shoprec.index import VectorIndex
    from shoprec.ranking.fitted import ColdStartModel, FittedTwoStage

__all__ = [
    "COMPILED_RANKER",
    "Ranked",
    "RankingPipeline",
    "cold_start",
    "pipeline_for",
    "top_row",
    "top_sparse",
]

_FIXED_SPARE = 200  # items beyond its candidate count kept of a list that is the same for all
COMPILED_RANKER = "ranker-lleaves.o"  # in the run folder, shared by the API and batch lists


@dataclass(frozen=True)
class Ranked:
    """One user's list: item indices best first, their scores (NaN for pinned items) and
    reasons (None when not asked for)."""

    items: np.ndarray
    scores: np.ndarray
    reasons: list[str] | None


def top_row(
    scores: np.ndarray, n: int, tie_rank: np.ndarray, tie_order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best items of one row, ties broken by ``tie_rank`` (``tie_order`` is the items
    sorted by it): what :func:`~shoprec.models.base.top_k` picks, without sorting a long run of
    equal scores (a user with few non-zero scores)."""
    n = min(n, scores.size)
    if n <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    part = np.argpartition(-scores, n - 1)[:n]
    kth = scores[part].min()
    if kth == -np.inf:  # fewer than n finite scores: those are all
        part = part[np.isfinite(scores[part])]
        kth = scores[part].min() if part.size else -np.inf
    above = part[scores[part] > kth]
    above = above[np.lexsort((tie_rank[above], -scores[above]))]
    need = part.size - above.size
    if need == 0:
        chosen = above
    elif np.count_nonzero(scores == kth) == need:  # no tie beyond the partition
        tied = part[scores[part] == kth]
        chosen = np.concatenate([above, tied[np.argsort(tie_rank[tied], kind="stable")]])
    else:  # many items tie with the last one (often at zero): the lowest tie ranks win
        found: list[np.ndarray] = []
        start, step, count = 0, max(4 * need, 256), 0
        while count < need and start < tie_order.size:
            window = tie_order[start : start + step]
            window = window[scores[window] == kth]
            found.append(window)
            count += window.size
            start += step
            step *= 4
        chosen = np.concatenate([above, np.concatenate(found)[:need]])
    return chosen.astype(np.int64), scores[chosen].astype(np.float32)


def top_sparse(
    items: np.ndarray, values: np.ndarray, n: int, tie_rank: np.ndarray, tie_order: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`top_row` for a row given by its non-zero scores (all other items score zero):
    the same items, without a dense row. None when the row has no positive score (or has
    negative ones), which the dense path handles."""
    positive = values > 0
    if not positive.any() or (values < 0).any():
        return None
    items, values = items[positive], values[positive].astype(np.float32)
    if items.size >= n:
        kth = values[np.argpartition(-values, n - 1)[n - 1]]
        chosen = np.flatnonzero(values >= kth)  # every item tied with the n-th, then sorted
        chosen = chosen[np.lexsort((tie_rank[items[chosen]], -values[chosen]))][:n]
        return items[chosen].astype(np.int64), values[chosen]
    order = np.lexsort((tie_rank[items], -values))
    need = min(n, tie_order.size) - items.size
    zeros: list[np.ndarray] = []
    start, step, count = 0, max(4 * need, 256), 0
    while count < need and start < tie_order.size:  # the zero-scored items by tie rank
        window = tie_order[start : start + step]
        window = window[~np.isin(window, items)]
        zeros.append(window)
        count += window.size
        start += step
        step *= 4
    filler = np.concatenate(zeros)[:need] if zeros else np.empty(0, np.int64)
    return (
        np.concatenate([items[order], filler]).astype(np.int64),
        np.concatenate([values[order], np.zeros(filler.size, np.float32)]),
    )


def cold_start(
    model: ColdStartModel,
    k: int,
    allowed: np.ndarray,
    context: Mapping[str, str] | None = None,
    seen: sp.csr_matrix | None = None,
) -> Ranked:
    """The list of a shopper a model cannot place: what is popular in their context (see
    :meth:`~shoprec.models.base.Recommender._cold_start`), among the ``allowed`` items and
    without the items of ``seen`` (their row, when seen items are excluded)."""
    scores, reason = model._cold_start(context)
    scores = np.where(allowed, scores, -np.inf).astype(np.float32)
    if seen is not None and seen.nnz:
        scores[seen.indices[seen.data > 0]] = -np.inf
    items, values = top_k(scores[None, :], k, model.tie_rank_)
    listed = items[0] >= 0
    chosen = items[0][listed]
    return Ranked(chosen, values[0][listed].astype(np.float64), [reason] * chosen.size)


class RankingPipeline:
    """Candidates → features → scorer → rules → reasons for one fitted two-stage model.

    Parameters
    ----------
    model
        The fitted two-stage model.
    indexes
        Vector indexes of generators whose scores are inner products (the API's HNSW indexes
        over a large catalogue); without one a generator scores the whole catalogue.
    compiled_cache
        Where the compiled ranker is kept (see :mod:`shoprec.ranking.compiled`).
    """

    def __init__(
        self,
        model: FittedTwoStage,
        *,
        indexes: Mapping[str, VectorIndex] | None = None,
        compiled_cache: Path | None = None,
    ) -> None:
        self.model = model
        self.generators = model.generators_
        self.scorer = CandidateScorer(model, compiled_cache=compiled_cache)
        self.indexes = dict(indexes or {})
        self.counts = model._candidate_counts()
        self.names = list(model.generators_)
        self.tie_order = {
            name: np.argsort(generator.tie_rank_, kind="stable")
            for name, generator in model.generators_.items()
        }
        self.fixed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, generator in model.generators_.items():
            if generator.config.kind == "popular" and generator.config.mode != "category":
                nobody = sp.csr_matrix(np.zeros((1, len(generator.item_ids_)), np.float32))
                self.fixed[name] = self._best(
                    name, generator, nobody, np.array([-1]), self.counts[name] + _FIXED_SPARE
                )

    # -- candidates ------------------------------------------------------------------------------
    def candidates(
        self,
        row: sp.csr_matrix,
        user: int,
        *,
        exclude_seen: bool,
        vectors: Mapping[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The union of every generator's best items for the user (sorted item indices) and
        each generator's score and rank of them (NaN where it did not propose the item).
        ``vectors`` are the user's query vectors by generator name, where known."""
        users = np.array([user], dtype=np.int64)
        seen = row.indices[row.data > 0] if exclude_seen else None
        picked: list[np.ndarray] = []
        values: list[np.ndarray] = []
        for name, generator in self.model.generators_.items():
            query = None if vectors is None else vectors.get(name)
            items, top = self._proposed(name, generator, row, users, self.counts[name], query, seen)
            picked.append(items)
            values.append(top)
        union, inverse = np.unique(np.concatenate(picked), return_inverse=True)
        scores = np.full((union.size, len(self.names)), np.nan)
        ranks = np.full((union.size, len(self.names)), np.nan)
        start = 0
        for column, (items, top) in enumerate(zip(picked, values, strict=True)):
            where = inverse[start : start + items.size]
            scores[where, column] = top
            ranks[where, column] = np.arange(1, items.size + 1)
            start += items.size
        return union, scores, ranks

    def _proposed(
        self,
        name: str,
        generator: Recommender[Any],
        row: sp.csr_matrix,
        users: np.ndarray,
        n: int,
        query: np.ndarray | None,
        seen: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One generator's ``n`` best items for the user, leaving out the ``seen`` ones: its
        best ``n`` + as many as were seen, less those."""
        extra = 0 if seen is None else seen.size
        items, values = self._best(name, generator, row, users, n + extra, query)
        if seen is not None and extra:
            keep = ~np.isin(items, seen)
            items, values = items[keep][:n], values[keep][:n]
        return items, values

    def _best(
        self,
        name: str,
        generator: Recommender[Any],
        row: sp.csr_matrix,
        users: np.ndarray,
        n: int,
        query: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The generator's ``n`` best items as its own ``recommend`` picks them (an index search
        where it has one)."""
        fixed = self.fixed.get(name)
        if fixed is not None and fixed[0].size >= min(n, len(generator.item_ids_)):
            return fixed[0][:n], fixed[1][:n]  # the same list for everyone
        index = self.indexes.get(name)
        if index is not None:
            if query is None:
                query = generator.query_vectors(row, users)[0]  # type: ignore[attr-defined]
            if np.any(query):
                return index.search(query, n)
            scores = np.zeros(len(generator.item_ids_), np.float32)
        elif hasattr(generator, "_score_row"):  # sparse scores of one row
            items, values = generator._score_row(row.indices, row.data, int(users[0]))
            found = top_sparse(items, values, n, generator.tie_rank_, self.tie_order[name])
            if found is not None:
                return found
            scores = np.asarray(generator._score(row, users), dtype=np.float32)[0]
        elif query is not None:
            scores = np.asarray(generator.item_vectors() @ query, np.float32)  # type: ignore[attr-defined]
        else:
            scores = np.asarray(generator._score(row, users), dtype=np.float32)[0]
        if not np.any(scores):  # as in batch: nothing to go on, popularity
            scores = (generator.popularity_ / (generator.popularity_.max() or 1.0) * 1e-3).astype(
                np.float32
            )
        return top_row(scores, n, generator.tie_rank_, self.tie_order[name])

    # -- the list --------------------------------------------------------------------------------
    def recommend(
        self,
        user_id: str,
        user: int,
        row: sp.csr_matrix,
        k: int,
        *,
        allowed: np.ndarray,
        exclude_seen: bool,
        vectors: Mapping[str, np.ndarray] | None = None,
        explain: bool = True,
        memo: dict[Any, Any] | None = None,
    ) -> Ranked:
        """The user's ``k`` items: candidates, scored, after the rules. ``allowed`` marks the
        items a list may hold (availability and the request's filters); ``memo`` (the
        validation gate's) keeps the candidates of a user for scoring them again."""
        key = (user_id, exclude_seen, row.nnz, float(row.data.sum()))
        cached = None if memo is None else memo.get(key)
        if cached is None:
            cached = self.candidates(row, user, exclude_seen=exclude_seen, vectors=vectors)
            if memo is not None:
                memo[key] = cached
        union, scores, ranks = cached
        keep = allowed[union]
        union, scores, ranks = union[keep], scores[keep], ranks[keep]
        if union.size == 0:
            return Ranked(np.empty(0, np.int64), np.empty(0), [] if explain else None)
        ranked = self.scorer.score(user_id, union, scores, ranks, k, memo=memo)
        reasons = self._reasons(row, union, ranks, ranked.items) if explain else None
        return Ranked(ranked.items, ranked.scores, reasons)

    def cold_start(
        self,
        k: int,
        allowed: np.ndarray,
        context: Mapping[str, str] | None = None,
        seen: sp.csr_matrix | None = None,
    ) -> Ranked:
        """:func:`cold_start` of the model."""
        return cold_start(self.model, k, allowed, context, seen)

    def _reasons(
        self, row: sp.csr_matrix, union: np.ndarray, ranks: np.ndarray, chosen: np.ndarray
    ) -> list[str]:
        """Each item's reason is that of the generator that ranked it best ('featured' for a
        pinned item no generator proposed)."""
        at = np.minimum(np.searchsorted(union, chosen), union.size - 1)
        listed = union[at] == chosen
        sources = np.argmin(
            np.where(np.isnan(ranks[at[listed]]), np.inf, ranks[at[listed]]), axis=1
        )
        best = dict(zip(chosen[listed].tolist(), sources.tolist(), strict=True))
        reasons: dict[int, str] = {}
        for column, name in enumerate(self.names):
            mine = [item for item, source in best.items() if source == column]
            if mine:
                explained = self.model.generators_[name]._explain(row, np.array([mine], np.int64))
                reasons.update(zip(mine, explained[0], strict=True))
        return [reasons.get(int(item), "featured") for item in chosen.tolist()]


_PIPELINES: weakref.WeakKeyDictionary[Any, RankingPipeline] = weakref.WeakKeyDictionary()


def pipeline_for(model: FittedTwoStage) -> RankingPipeline:
    """The model's pipeline for batch use, built once per fitted model and kept beside it (not
    in its pickle). A model read from a run folder shares the API's compiled ranker there."""
    pipeline = _PIPELINES.get(model)
    if pipeline is None or pipeline.generators is not model.generators_:  # fitted again
        source = model.loaded_from
        cache = None if source is None else source.parent / COMPILED_RANKER
        pipeline = RankingPipeline(model, compiled_cache=cache)
        _PIPELINES[model] = pipeline
    return pipeline
