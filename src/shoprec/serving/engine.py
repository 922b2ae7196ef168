"""The recommender behind the API: one published run, loaded once, answering in milliseconds.

An :class:`Engine` holds a run's default model, the catalogue and users of the lake, and the
item embeddings, and answers the API's questions without touching disk. Routes stay thin; this
is the plain-Python object of DESIGN §5 (candidates → features → rank → rules).

For a two-stage model one request is served from arrays: each generator scores the whole
catalogue for the user (training history plus the request's live history), its top items become
candidates, :class:`~shoprec.ranking.scorer.CandidateScorer` ranks them and applies the rules,
and the generator that proposed an item best explains it. Other models answer through their own
``recommend``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from shoprec.config import Settings
from shoprec.data.lake import Lake
from shoprec.embeddings.attributes import unit_rows
from shoprec.embeddings.cache import EmbeddingCache, with_item_embeddings
from shoprec.embeddings.enrich import attach_embeddings, describe, open_provider
from shoprec.embeddings.protocol import EmbeddingProvider
from shoprec.exceptions import LakeError, ShoprecError
from shoprec.index import EXACT_BELOW, VectorIndex, build_index
from shoprec.models import Recommender
from shoprec.models.base import ItemToItemModel, top_k
from shoprec.models.content import ContentConfig, ItemVectoriser
from shoprec.ranking.pipeline import COMPILED_RANKER, Ranked, RankingPipeline, cold_start
from shoprec.ranking.two_stage import TwoStageModel
from shoprec.serving.catalogue import Catalogue, UserDirectory

__all__ = [
    "Engine",
    "PairScores",
    "Recommendation",
    "RecommendationList",
    "SimilarMethod",
]

SimilarMethod = Literal["auto", "copurchase", "content", "collaborative"]
_COLLABORATIVE_KINDS = ("als", "itemknn", "ease", "bpr")
_SIMILAR_REASONS = {
    "copurchase": "bought together with {title}",
    "content": "similar to {title}",
    "collaborative": "shoppers who chose {title} also chose this",
}


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float | None
    reason: str


@dataclass(frozen=True)
class RecommendationList:
    items: list[Recommendation]
    found: bool  # the user (or item) is known to the model or has live history
    cold_start: bool
    method: str | None = None  # for similar items: the method that answered
    live_events: int = 0  # live events of the user folded in


_NEW_USER = np.array([-1], np.int64)  # a row folded in from its entries alone

# Above this many training users the engine does not compute and keep a copy of every user's
# query vectors (about 100 MB per generator of 64 factors at this size); a generator whose
# trained vectors are its own factors (ALS, BPR) lends them at any size.
_TRAINED_QUERY_USERS = 400_000

# Embeddings of ``(entity_type, item_id)`` pairs in a vector space, None where unknown (the
# live state's ``item_vectors``).
LiveItemVectors = Callable[[str, Sequence[tuple[str, str]]], list[np.ndarray | None]]


@dataclass(frozen=True)
class PairScores:
    """Scores of every known left entity against every known right entity."""

    left: list[int]  # positions in the request's left list that were scored
    right: list[int]  # positions in the request's right list that were scored
    scores: np.ndarray  # len(left) × len(right)
    left_status: dict[int, str]  # position -> why it was not scored
    right_status: dict[int, str]


class Engine:
    """A published run, ready to answer requests.

    Parameters
    ----------
    workspace
        The workspace whose lake holds the catalogue and users.
    run_id, manifest
        The run to serve (``manifest.json`` of ``models/<run_id>/``).
    exact_below
        Generators over fewer items score the whole catalogue per request; above, their
        inner-product scores are searched in an HNSW index.
    """

    def __init__(
        self,
        workspace: Path,
        run_id: str,
        manifest: dict[str, Any],
        *,
        exact_below: int = EXACT_BELOW,
        settings: Settings | None = None,
    ) -> None:
        self.exact_below = exact_below
        self.settings = settings or Settings(workspace=workspace)
        self._provider: EmbeddingProvider | None = None
        # One cache object: it keeps the vector table it read until the files change, so
        # embedding a few streamed items does not read the whole table again.
        self._cache = EmbeddingCache(workspace)
        self.workspace = workspace
        self.run_id = run_id
        self.manifest = manifest
        self.run_dir = workspace / "models" / run_id
        self.model_name: str = manifest["default_model"]
        self.model = self._load(self.model_name)
        self.weights: dict[str, float] = dict(
            manifest.get("event_weights", {}).get("weights", {"view": 1.0})
        )
        lake = Lake(workspace)
        items = lake.items()
        if items.height == 0:  # a shop without a catalogue file: the ids the model knows
            items = pl.DataFrame(
                {"item_id": self.model.item_ids_.external.tolist(), "title": self.model.titles_}
            )
        self.catalogue = Catalogue(items)
        self.users = UserDirectory(lake.users())
        # Model item index -> catalogue row (-1: not in the catalogue).
        self._model_rows = self.catalogue.rows(self.model.item_ids_.external.tolist())
        self._available = self._allowed(None, None, None)  # the list without request filters
        self._indexes = self._vector_indexes()
        self._trained_queries = self._queries_as_trained()
        # Two-stage lists come from the one ranking pipeline, as batch lists do.
        self.pipeline = (
            RankingPipeline(
                self.model,
                indexes=self._indexes,
                compiled_cache=self.run_dir / COMPILED_RANKER,
            )
            if isinstance(self.model, TwoStageModel)
            else None
        )
        self._sources = self._similar_sources()
        self._unit_factors: dict[str, np.ndarray] = {}  # (see _similar_dense)
        self._source_rows = {
            method: self.catalogue.rows(model.item_ids_.external.tolist())
            for method, model in self._sources.items()
        }
        self._vectoriser: ItemVectoriser | None = None
        self.embeddings = self._embeddings()
        self._unit_embeddings = unit_rows(self.embeddings)
        # The vector space of the embeddings: vectors of items that arrive later (the worker
        # embeds them) are comparable only within it.
        self.embedding_space = f"content:{run_id}"

    # -- loading ---------------------------------------------------------------------------------
    def _load(self, name: str) -> Recommender[Any]:
        entry = self.manifest["models"].get(name)
        if entry is None:
            known = ", ".join(self.manifest["models"])
            raise ShoprecError(f"run {self.run_id} has no model {name!r}; it has {known}")
        return Recommender.load(self.run_dir / entry["file"])

    def _generators(self) -> dict[str, Recommender[Any]]:
        return dict(self.model.generators_) if isinstance(self.model, TwoStageModel) else {}

    def _vector_indexes(self) -> dict[str, VectorIndex]:
        """For generators whose scores are inner products (ALS, BPR, cosine content) over a
        large catalogue: an HNSW index, cached in the run folder, instead of scoring every
        item per request."""
        indexes: dict[str, VectorIndex] = {}
        for name, generator in self._generators().items():
            vectors_of = getattr(generator, "item_vectors", None)
            if vectors_of is None or len(generator.item_ids_) < self.exact_below:
                continue
            try:
                vectors = vectors_of()
            except NotImplementedError:
                continue
            indexes[name] = build_index(
                vectors,
                tie_rank=generator.tie_rank_,
                cache=self.run_dir / f"index-{name}.faiss",
                exact_below=self.exact_below,
                ef_search=self.settings.serving.ef_search,
            )
        return indexes

    def _queries_as_trained(self) -> dict[str, np.ndarray]:
        """The query vectors of every training user as trained, for the indexed generators:
        a request without live history reads its user's row here instead of checking that
        the row is unchanged and looking the vector up again."""
        queries: dict[str, np.ndarray] = {}
        for name, generator in self._generators().items():
            if name not in self._indexes:
                continue
            trained = generator.user_items_
            as_trained = getattr(generator, "trained_query_vectors", None)
            if as_trained is None and trained.shape[0] > _TRAINED_QUERY_USERS:
                continue  # memory: fold in per request instead of a copy this large
            try:
                vectors = (
                    as_trained()
                    if as_trained is not None
                    else generator.query_vectors(  # type: ignore[attr-defined]
                        trained, np.arange(trained.shape[0])
                    )
                )
            except NotImplementedError:
                continue
            # float32 factors are not copied: a read-only view, so no request can change them
            queries[name] = np.asarray(vectors, np.float32).view()
            queries[name].flags.writeable = False
        return queries

    def _models_of_kind(self, kinds: Sequence[str]) -> Recommender[Any] | None:
        """A fitted model of one of ``kinds``: the default model's own generator if it has one,
        else a model of the run."""
        if isinstance(self.model, TwoStageModel):
            for kind in kinds:
                for generator in self.model.generators_.values():
                    if generator.config.kind == kind:
                        return generator
        for kind in kinds:
            if self.model.config.kind == kind:
                return self.model
            for name, entry in self.manifest["models"].items():
                if entry["kind"] == kind:
                    return self._load(name)
        return None

    def _similar_sources(self) -> dict[str, Recommender[Any]]:
        sources: dict[str, Recommender[Any]] = {}
        for method, kinds in (
            ("copurchase", ("copurchase",)),
            ("collaborative", _COLLABORATIVE_KINDS),
            ("content", ("content",)),
        ):
            model = self._models_of_kind(kinds)
            if model is not None and model.supports_similar_items:
                sources[method] = model
        return sources

    def _embeddings(self) -> np.ndarray:
        """One vector per catalogue item, for pairwise scores and similar-by-content (DESIGN
        §8): the enrichment's text vector (TF-IDF fitted here when the run was built without
        one) and the attribute vector, weighted by the ``embeddings`` settings."""
        weights = self.settings.embeddings
        config = ContentConfig(
            text_weight=weights.text_weight,
            numeric_weight=weights.attributes_weight,
            categorical_weight=weights.attributes_weight,
        )
        items = self._enriched(self.catalogue.frame)
        vectoriser = self._vectoriser = ItemVectoriser(config).fit(items)
        return np.asarray(vectoriser.transform(items), np.float32)

    def _enriched(self, items: pl.DataFrame) -> pl.DataFrame:
        """``items`` with the text embeddings the run's vectoriser reads (the enrichment's
        cached vectors), when the run was built with them; no provider is called."""
        provider = (self.manifest.get("embeddings") or {}).get("provider")
        if provider is None:
            return items
        try:
            return with_item_embeddings(items, self.workspace, provider)
        except LakeError:  # the cache was removed since the build: no text block
            return items

    def embed_items(self, items: pl.DataFrame) -> np.ndarray:
        """Embeddings of items (lake rows) in :attr:`embedding_space`, e.g. items that arrived
        or changed after the build. With enrichment text vectors, the items' text goes through
        the workspace's embedding cache to the provider the run was built with (a call only for
        new content); :class:`ShoprecError` if it fails or that provider has changed since."""
        vectoriser = self._vectoriser
        if vectoriser is None:  # pragma: no cover - set by __init__
            raise ShoprecError(f"run {self.run_id}: the engine has no item vectoriser")
        if getattr(vectoriser, "text_source_", "tfidf") == "embeddings":
            name, _, version = (vectoriser.text_provider_ or "").partition("/")
            if self._provider is None:
                self._provider = open_provider(self.settings, self.workspace, name=name)
            if self._provider.version != version:
                raise ShoprecError(
                    f"the workspace's {name} provider is now version {self._provider.version}; "
                    f"run {self.run_id} was built with {version}: build again to embed new items"
                )
            items, report = attach_embeddings(items, self._provider, self._cache)
            if report.failed:
                raise ShoprecError(describe(report))
        return np.asarray(vectoriser.transform(items), np.float32)

    # -- live state ------------------------------------------------------------------------------
    def vector_name(self, generator: str) -> str:
        """The key of a generator's live user vector: tied to this run (a new run's factors
        mean something else)."""
        return f"{self.run_id}:{generator}"

    def _same_for_all(self, generator: str) -> bool:
        """Whether a generator's list is the same for every user (no vector to keep)."""
        return self.pipeline is not None and generator in self.pipeline.fixed

    def vector_names(self) -> list[str]:
        """Keys of the live vectors :meth:`live_vectors` computes for this run."""
        return [
            self.vector_name(name)
            for name, generator in self._generators().items()
            if hasattr(generator, "query_vectors") and not self._same_for_all(name)
        ]

    def live_vectors(
        self, user_id: str, history: Sequence[tuple[str, str]]
    ) -> dict[str, np.ndarray]:
        """Fresh query vectors of the user from their training and whole live history, for
        each generator that has them (collaborative factors folded in, content preference)."""
        return self.live_vectors_many({user_id: history}).get(user_id, {})

    def live_vectors_many(
        self, histories: Mapping[str, Sequence[tuple[str, str]]]
    ) -> dict[str, dict[str, np.ndarray]]:
        """:meth:`live_vectors` for many users at once (one fold-in per generator)."""
        result: dict[str, dict[str, np.ndarray]] = {user: {} for user in histories}
        if not histories:
            return result
        users = list(histories)
        for name, generator in self._generators().items():
            query_vectors = getattr(generator, "query_vectors", None)
            if query_vectors is None or self._same_for_all(name):
                continue
            index = generator.user_ids_.to_index(users)
            rows = self._rows(generator, index, [histories[user] for user in users])
            try:
                vectors = np.asarray(query_vectors(rows, index), np.float32)
            except NotImplementedError:
                continue
            for user, vector in zip(users, vectors, strict=True):
                result[user][self.vector_name(name)] = vector
        return result

    # -- user recommendations --------------------------------------------------------------------
    def _row(
        self, model: Recommender[Any], user: int, history: Sequence[tuple[str, str]]
    ) -> sp.csr_matrix:
        """The user's interaction row: training history plus live ``(item_id, event_type)``."""
        return self._rows(model, np.array([user], np.int64), [history])

    def _rows(
        self,
        model: Recommender[Any],
        users: np.ndarray,
        histories: Sequence[Sequence[tuple[str, str]]],
    ) -> sp.csr_matrix:
        """:meth:`_row` of many users at once (``users``: training indices, -1 for new)."""
        if users.size == 1:  # one request: straight from the CSR arrays
            return self._one_row(model, int(users[0]), histories[0])
        known = users >= 0
        base = sp.csr_matrix(model.user_items_[np.where(known, users, 0)])
        if not known.all():  # new users start from nothing
            base = sp.csr_matrix(sp.diags(known.astype(np.float32)) @ base)
        positions = [p for p, history in enumerate(histories) for _ in history]
        pairs = [pair for history in histories for pair in history]
        if not pairs:
            return base
        items = model.item_ids_.to_index([item for item, _ in pairs])
        weight = np.array([self.weights.get(kind, 0.0) for _, kind in pairs], np.float32)
        ok = (items >= 0) & (weight > 0)
        extra = sp.csr_matrix(
            (weight[ok], (np.asarray(positions, np.int64)[ok], items[ok])), shape=base.shape
        )
        return sp.csr_matrix(base + extra)

    @staticmethod
    def _changed(model: Recommender[Any], user: int, row: sp.csr_matrix) -> bool:
        """Whether a training user's request row differs from their training row (live
        events only add positive weights, so the count or the total tells)."""
        trained = model.user_items_
        start, end = trained.indptr[user], trained.indptr[user + 1]
        return bool(row.nnz != end - start or row.data.sum() != trained.data[start:end].sum())

    def _one_row(
        self, model: Recommender[Any], user: int, history: Sequence[tuple[str, str]]
    ) -> sp.csr_matrix:
        """:meth:`_rows` of one user without scipy's indexing and addition (a request's
        case): the trained entries, plus the live ones summed in."""
        trained = model.user_items_
        columns = np.empty(0, np.int32)
        values = np.empty(0, trained.dtype)
        if user >= 0:
            start, end = trained.indptr[user], trained.indptr[user + 1]
            columns, values = trained.indices[start:end], trained.data[start:end]
        if history:
            items = model.item_ids_.to_index([item for item, _ in history])
            weight = np.array([self.weights.get(kind, 0.0) for _, kind in history], trained.dtype)
            ok = (items >= 0) & (weight > 0)
            if ok.any():  # live events on items already in the row add to their entries
                columns, at = np.unique(np.concatenate([columns, items[ok]]), return_inverse=True)
                summed = np.zeros(columns.size, trained.dtype)
                np.add.at(summed, at, np.concatenate([values, weight[ok]]))
                columns, values = columns.astype(trained.indices.dtype), summed
        return sp.csr_matrix(
            (values, columns, [0, columns.size]),
            shape=(1, trained.shape[1]),
            copy=True,  # callers may change their row; never the model's matrix
        )

    def _allowed(
        self, category: str | None, min_price: float | None, max_price: float | None
    ) -> np.ndarray:
        """Model items a list may hold: available, in the catalogue, passing the filters."""
        if category is None and min_price is None and max_price is None:
            cached: np.ndarray | None = getattr(self, "_available", None)
            if cached is not None:
                return cached
        rows = self._model_rows
        in_catalogue = rows >= 0
        safe = np.where(in_catalogue, rows, 0)
        allowed = in_catalogue & self.catalogue.available[safe]
        mask = self.catalogue.mask(category=category, min_price=min_price, max_price=max_price)
        if mask is not None:
            allowed &= mask[safe]
        return np.asarray(allowed)

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        history: Sequence[tuple[str, str]] = (),
        vectors: Mapping[str, np.ndarray] | None = None,
        exclude_seen: bool | None = None,
        category: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        context: Mapping[str, str] | None = None,
    ) -> RecommendationList:
        """Top ``k`` items for one user; ``history`` is their live ``(item_id, event_type)``
        events not yet in the model, ``vectors`` their live vectors (:meth:`live_vectors`,
        computed by the worker) which spare folding the history in again."""
        model = self.model
        user = int(model.user_ids_.to_index([user_id])[0])
        row = self._row(model, user, history)
        allowed = self._allowed(category, min_price, max_price)
        found = user >= 0 or row.nnz > 0
        if not found:
            return self._cold_start(k, allowed, context)
        if isinstance(model, TwoStageModel):
            exclude = model.exclude_seen_ if exclude_seen is None else exclude_seen
            vectors = dict(vectors or {})
            if user >= 0:
                changed = self._changed(model, user, row)
                for name, queries in self._trained_queries.items():
                    key = self.vector_name(name)
                    if key in vectors:
                        continue
                    if not changed:  # as trained
                        vectors[key] = queries[user]
                    else:  # folded in from the whole row, as for a new user: no row check
                        generator = model.generators_[name]
                        fresh = generator.query_vectors(row, _NEW_USER)  # type: ignore[attr-defined]
                        vectors[key] = np.asarray(fresh, np.float32)[0]
            return self._two_stage(model, user_id, user, row, k, allowed, exclude, vectors, context)
        return self._single(model, user_id, history, k, allowed, exclude_seen, context)

    def _cold_start(
        self, k: int, allowed: np.ndarray, context: Mapping[str, str] | None
    ) -> RecommendationList:
        ranked = cold_start(self.model, k, allowed, context)
        return self._as_list(self.model, ranked, found=False, cold=True)

    @staticmethod
    def _as_list(
        model: Recommender[Any], ranked: Ranked, *, found: bool, cold: bool
    ) -> RecommendationList:
        ids = model.item_ids_.to_external(ranked.items)
        return RecommendationList(
            [
                Recommendation(item_id, None if np.isnan(score) else float(score), reason)
                for item_id, score, reason in zip(
                    ids, ranked.scores.tolist(), ranked.reasons or [], strict=True
                )
            ],
            found=found,
            cold_start=cold,
        )

    def _two_stage(
        self,
        model: TwoStageModel,
        user_id: str,
        user: int,
        row: sp.csr_matrix,
        k: int,
        allowed: np.ndarray,
        exclude_seen: bool,
        vectors: Mapping[str, np.ndarray],
        context: Mapping[str, str] | None,
    ) -> RecommendationList:
        assert self.pipeline is not None
        queries = {
            name: vectors[key]
            for name in model.generators_
            if (key := self.vector_name(name)) in vectors
        }
        ranked = self.pipeline.recommend(
            user_id, user, row, k, allowed=allowed, exclude_seen=exclude_seen, vectors=queries
        )
        cold = ranked.items.size == 0
        if cold:  # no candidate: what the batch list gives, the popular items
            ranked = self.pipeline.cold_start(k, allowed, context, row if exclude_seen else None)
        return self._as_list(model, ranked, found=True, cold=cold)

    def _single(
        self,
        model: Recommender[Any],
        user_id: str,
        history: Sequence[tuple[str, str]],
        k: int,
        allowed: np.ndarray,
        exclude_seen: bool | None,
        context: Mapping[str, str] | None,
    ) -> RecommendationList:
        weighted = [(item, self.weights.get(kind, 0.0)) for item, kind in history]
        weighted = [(item, weight) for item, weight in weighted if weight > 0]
        live = (
            pl.DataFrame(
                {
                    "user_id": [user_id] * len(weighted),
                    "item_id": [item for item, _ in weighted],
                    "weight": [weight for _, weight in weighted],
                }
            )
            if weighted
            else None
        )
        filter_ids = None if allowed.all() else model.item_ids_.to_external(np.flatnonzero(allowed))
        frame = model.recommend(
            [user_id],
            k,
            exclude_seen=exclude_seen,
            filter=filter_ids,
            history=live,
            context=context,
        )
        reasons = frame.get_column("reason").to_list()
        return RecommendationList(
            [
                Recommendation(i, s, r or model.reason)
                for i, s, r in zip(
                    frame.get_column("item_id").to_list(),
                    frame.get_column("score").to_list(),
                    reasons,
                    strict=True,
                )
            ],
            found=True,
            cold_start=any((r or "").startswith("cold start") for r in reasons),
        )

    # -- similar items ---------------------------------------------------------------------------
    @property
    def similar_methods(self) -> list[str]:
        return sorted(self._sources)

    def similar(
        self, item_id: str, k: int = 10, method: SimilarMethod = "auto"
    ) -> RecommendationList:
        """The ``k`` items most like ``item_id`` by ``method`` (``auto``: bought together if
        anything was, else collaborative, else content)."""
        if method != "auto" and method not in self._sources:
            raise ShoprecError(
                f"method {method!r} is not available in run {self.run_id}; "
                f"it has {', '.join(self.similar_methods) or 'none'}"
            )
        order = [method] if method != "auto" else ["copurchase", "collaborative", "content"]
        found = item_id in self.catalogue or bool(
            (self.model.item_ids_.to_index([item_id]) >= 0).any()
        )
        for name in order:
            if name not in self._sources:
                continue
            answer = (
                self._similar_content(item_id, k)
                if name == "content"
                else self._similar_model(self._sources[name], name, item_id, k)
            )
            if answer or method != "auto":
                return RecommendationList(answer, found=found, cold_start=False, method=name)
        return RecommendationList([], found=found, cold_start=False, method=None)

    def _similar_model(
        self, model: Recommender[Any], method: str, item_id: str, k: int
    ) -> list[Recommendation]:
        index = int(model.item_ids_.to_index([item_id])[0])
        if index < 0:
            return []
        rows = self._source_rows[method]
        if isinstance(model, ItemToItemModel):
            # only the row's stored neighbours can score above zero: a top-k of a few
            # hundred values, not of a dense row of the whole catalogue (same list)
            items, values = _similar_sparse(model, index, rows, self.catalogue.available, k)
        else:
            scores = self._similar_dense(model, method, index)
            scores[0, index] = -np.inf
            scores[scores <= 0] = -np.inf
            usable = rows >= 0
            usable[usable] = self.catalogue.available[rows[usable]]
            scores[0, ~usable] = -np.inf
            items, values = top_k(scores, k, model.tie_rank_)
        keep = items[0] >= 0
        title = self.catalogue.summary(item_id)["title"] or item_id
        reason = _SIMILAR_REASONS[method].format(title=title)
        return [
            Recommendation(i, float(v), reason)
            for i, v in zip(
                model.item_ids_.to_external(items[0][keep]), values[0][keep], strict=True
            )
        ]

    def _similar_dense(self, model: Recommender[Any], method: str, index: int) -> np.ndarray:
        """``model._similar`` of one item; a factor model's unit item vectors are computed
        once per engine (as ``_similar`` computes them: zero vectors stay zero), not for the
        whole catalogue on every request."""
        factors = getattr(model, "item_factors_", None)
        if not isinstance(factors, np.ndarray) or factors.ndim != 2:
            return np.asarray(model._similar(np.array([index])), dtype=np.float32)
        unit = self._unit_factors.get(method)
        if unit is None:
            norms = np.linalg.norm(factors, axis=1)
            norms[norms == 0] = 1.0
            unit = self._unit_factors[method] = factors / norms[:, None]
        return np.asarray(unit[[index]] @ unit.T, dtype=np.float32)

    def _similar_content(self, item_id: str, k: int) -> list[Recommendation]:
        """Nearest catalogue items of the same entity type by embedding (new items included)."""
        row = self.catalogue.row.get(item_id)
        if row is None:
            return []
        scores = self._unit_embeddings @ self._unit_embeddings[row]
        same_type = self.catalogue.mask(entity_type=self.catalogue.entity_types[row])
        assert same_type is not None
        usable = self.catalogue.available & same_type
        usable[row] = False
        scores = np.where(usable & (scores > 0), scores, -np.inf).astype(np.float32)
        items, values = top_k(scores[None, :], k)
        keep = items[0] >= 0
        reason = _SIMILAR_REASONS["content"].format(title=self.catalogue.titles[row] or item_id)
        return [
            Recommendation(self.catalogue.ids[i], float(v), reason)
            for i, v in zip(items[0][keep].tolist(), values[0][keep].tolist(), strict=True)
        ]

    # -- pairwise scores -------------------------------------------------------------------------
    def _resolve(
        self, ids: Sequence[str], entity_type: str, arrived: Mapping[int, np.ndarray]
    ) -> tuple[list[int], np.ndarray, dict[int, str]]:
        """Positions of ``ids`` that can be scored, their embeddings, and why the others
        cannot; ``arrived`` holds live vectors by position (they win over the run's)."""
        rows = self.catalogue.rows(ids)
        live = np.zeros(rows.size, dtype=bool)
        live[list(arrived)] = True
        found = rows >= 0
        wrong = np.zeros(rows.size, dtype=bool)
        wrong[found] = ~self.catalogue.type_matches(rows[found], entity_type)
        wrong &= ~live  # a live vector was embedded for this entity type
        missing = ~found & ~live
        status = {
            int(position): (
                "not_found"
                if missing[position]
                else f"wrong_type: is a {self.catalogue.entity_types[rows[position]]}"
            )
            for position in np.flatnonzero(wrong | missing)
        }
        usable = np.flatnonzero(~wrong & ~missing)
        matrix = self.embeddings[np.maximum(rows[usable], 0)]
        for at, position in enumerate(usable.tolist() if arrived else ()):
            if position in arrived:
                matrix[at] = arrived[position]
        return usable.tolist(), matrix, status

    def _arrived(
        self, live: LiveItemVectors | None, sides: Sequence[tuple[str, Sequence[str]]]
    ) -> list[dict[int, np.ndarray]]:
        """Live vectors (items that arrived or changed after the build, embedded by the
        worker) of each side's ids, by position, in one look-up."""
        if live is None:
            return [{} for _ in sides]
        keys = [(entity_type, item) for entity_type, ids in sides for item in ids]
        found = iter(live(self.embedding_space, keys))
        width = self.embeddings.shape[1]
        result = []
        for _, ids in sides:
            vectors = [next(found) for _ in ids]
            result.append(
                {p: v for p, v in enumerate(vectors) if v is not None and v.shape == (width,)}
            )
        return result

    def pair_scores(
        self,
        algo: Literal["cosine-sim", "euclidean"],
        left_type: str,
        right_type: str,
        left: Sequence[str],
        right: Sequence[str],
        live: LiveItemVectors | None = None,
    ) -> PairScores:
        """Every left entity against every right entity, in one matrix product: cosine
        similarity, or Euclidean distance (smaller is closer) between the embeddings.
        ``live`` finds vectors of items that arrived or changed after the build."""
        left_live, right_live = self._arrived(live, [(left_type, left), (right_type, right)])
        left_ok, a, left_status = self._resolve(left, left_type, left_live)
        right_ok, b, right_status = self._resolve(right, right_type, right_live)
        if algo == "cosine-sim":
            scores = unit_rows(a) @ unit_rows(b).T
        else:
            squared = (a**2).sum(axis=1)[:, None] - 2 * a @ b.T + (b**2).sum(axis=1)[None, :]
            scores = np.sqrt(np.maximum(squared, 0.0))
        return PairScores(left_ok, right_ok, np.asarray(scores), left_status, right_status)


def _similar_sparse(
    model: ItemToItemModel[Any], index: int, rows: np.ndarray, available: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` (one row, the model's item indices) of the items ``model``'s item-item
    matrix links ``index`` to with a positive score, except ``index`` itself and items not
    available in the catalogue (``rows``: each model item's catalogue row, -1 if none): the
    same items in the same order as the dense row ``model._similar`` would give."""
    row = model._item_item()[index]
    row.sum_duplicates()
    columns = row.indices.astype(np.int64)
    scores = row.data.astype(np.float32)
    keep = (scores > 0) & (columns != index)
    catalogue_rows = rows[columns]
    keep &= catalogue_rows >= 0
    keep[keep] = available[catalogue_rows[keep]]
    columns, scores = columns[keep], scores[keep]
    if columns.size == 0:
        return np.full((1, 0), -1, dtype=np.int64), np.empty((1, 0), dtype=np.float32)
    ranks = model.tie_rank_[columns]
    chosen, values = top_k(scores[None, :], k, ranks)
    return np.where(chosen >= 0, columns[chosen], -1), values
