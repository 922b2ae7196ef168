"""The recommender API every model shares (STYLE 1–3).

The base class owns the public methods: it validates input, maps external ids to indices,
builds each user's interaction row (training history plus any history passed at request time),
masks seen or filtered items, takes the top k and returns external ids. A model fills in hooks:

* ``_fit(dataset)`` learns its state (attributes ending in ``_``);
* ``_score(rows, users)`` scores every item for a batch of users, given their interaction rows
  (CSR, users × items) and their training indices (-1 for a user not seen in training);
* ``_similar(items)`` scores every item against a batch of items (optional).

A user whose scores are all zero (no history the model can use) gets the training popularity
ranking instead, so no list is arbitrary.
"""

from __future__ import annotations

import pickle
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from shoprec.data.dataset import Dataset, IdMap
from shoprec.exceptions import DataError, NotFittedError, ShoprecError
from shoprec.files import replaced_atomically

__all__ = [
    "COLD_START_REASON",
    "ItemToItemModel",
    "ModelConfig",
    "Recommender",
    "row_product",
    "stored_entries",
    "top_k",
]

COLD_START_REASON = "cold start: popular right now"
_CONTEXT_KEYS = ("country", "platform", "device")
_MIN_CONTEXT_EVENTS = 20


def _context_popularity(dataset: Dataset) -> dict[tuple[str, str], np.ndarray]:
    """Distinct users per item among events of each context value (country, platform, ...)."""
    events = dataset.events
    if events is None or "context" not in events.columns or events.height == 0:
        return {}
    index = dataset.item_ids.index_frame("item_id", "__item")
    tables: dict[tuple[str, str], np.ndarray] = {}
    for key in _CONTEXT_KEYS:
        values = events.select(
            pl.col("context").str.json_path_match(f"$.{key}").alias("__value"),
            "item_id",
            "user_id",
        ).drop_nulls()
        if values.height == 0:
            continue
        counts = (
            values.join(index, on="item_id", how="inner")
            .group_by("__value", "__item")
            .agg(pl.col("user_id").n_unique().alias("__n"))
        )
        for (value,), group in counts.group_by("__value"):
            if group.get_column("__n").sum() < _MIN_CONTEXT_EVENTS:
                continue
            table = np.zeros(dataset.n_items, dtype=np.float32)
            table[group.get_column("__item").to_numpy()] = group.get_column("__n").to_numpy()
            tables[(key, str(value))] = table
    return tables


_BATCH = 1024


def stored_entries(matrix: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``matrix.indices``/``matrix.data`` of every stored entry of ``rows`` (row
    after row), and how many each row has."""
    starts = matrix.indptr[rows]
    lengths = matrix.indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, np.int64), lengths
    return np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total), lengths


def row_product(
    matrix: sp.csr_matrix, columns: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The sparse row ``values`` at ``columns`` times ``matrix``, as its non-zero ``(indices,
    data)`` sorted by index: one request's scores without scipy's per-call checks and its
    dense accumulator. Products and sums are in ``matrix``'s dtype and in scipy's order, so
    the result equals ``row @ matrix``."""
    entries, lengths = stored_entries(matrix, np.asarray(columns, np.int64))
    if entries.size == 0:
        return np.empty(0, np.int64), np.empty(0, matrix.dtype)
    targets = matrix.indices[entries]
    products = matrix.data[entries] * np.repeat(np.asarray(values, matrix.dtype), lengths)
    indices, inverse = np.unique(targets, return_inverse=True)
    sums = np.zeros(indices.size, matrix.dtype)
    np.add.at(sums, inverse, products)
    return indices.astype(np.int64), sums


class ModelConfig(BaseModel):
    """Hyperparameters of one model; ``kind`` names the model class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    exclude_seen: bool = True


C = TypeVar("C", bound=ModelConfig)


def top_k(
    scores: np.ndarray, k: int, tie_rank: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``k`` best finite scores of each row, best first.

    Ties are broken by ``tie_rank`` (lower first; default the item index), so results are
    deterministic. Rows with fewer than ``k`` finite scores are padded with index -1.
    """
    n_rows, n_items = scores.shape
    k = min(k, n_items)
    if k == 0:
        return np.empty((n_rows, 0), np.int64), np.empty((n_rows, 0), np.float32)
    # Sort by (-score, index): argpartition over the negated scores, then a stable sort.
    part = (
        np.argpartition(-scores, k - 1, axis=1)[:, :k]
        if k < n_items
        else np.tile(np.arange(n_items), (n_rows, 1))
    )
    part_scores = np.take_along_axis(scores, part, axis=1)
    ranks = np.arange(n_items) if tie_rank is None else tie_rank
    # Rows where items tied with the k-th score lie outside the partition need every tied
    # item considered; the others are ordered within the partition, all rows at once.
    kth = part_scores.min(axis=1, keepdims=True)
    crowded = (scores >= kth).sum(axis=1) > k
    order = np.lexsort((ranks[part], -part_scores), axis=1)
    chosen = np.take_along_axis(part, order, axis=1)
    for row in np.flatnonzero(crowded):
        # fewer than k items score above the k-th score: all of them, then the tied items
        # with the lowest tie ranks (a partition, not a sort of every tied item)
        line, cut = scores[row], kth[row, 0]
        above = np.flatnonzero(line > cut)
        above = above[np.lexsort((ranks[above], -line[above]))]
        need = k - above.size
        tied = np.flatnonzero(line == cut)
        if 0 < need < tied.size:
            tied = tied[np.argpartition(ranks[tied], need - 1)[:need]]
        tied = tied[np.argsort(ranks[tied], kind="stable")][:need]
        chosen[row] = np.concatenate([above, tied])
    values = np.take_along_axis(scores, chosen, axis=1).astype(np.float32)
    # Non-finite scores (excluded items) are padding: moved to the end as -1.
    finite = np.isfinite(values)
    position = np.argsort(~finite, axis=1, kind="stable")
    chosen = np.where(
        np.take_along_axis(finite, position, axis=1),
        np.take_along_axis(chosen, position, axis=1),
        -1,
    )
    values = np.where(chosen >= 0, np.take_along_axis(values, position, axis=1), -np.inf)
    return chosen.astype(np.int64), values.astype(np.float32)


# model -> the file it was loaded from (kept beside the model, not in its pickle)
_LOADED_FROM: weakref.WeakKeyDictionary[Any, Path] = weakref.WeakKeyDictionary()


class Recommender(ABC, Generic[C]):
    """Base class of every candidate generator.

    Parameters
    ----------
    config
        The model's pydantic config; keyword arguments build one instead.
    """

    config_class: ClassVar[type[ModelConfig]]
    supports_similar_items: ClassVar[bool] = True

    def __init__(self, config: C | None = None, **params: Any) -> None:
        if config is None:
            config = self.config_class(**params)  # type: ignore[assignment]
        elif params:
            config = config.model_copy(update=params)
        self.config: C = config  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    # -- training --------------------------------------------------------------------------------
    def fit(self, dataset: Dataset) -> Self:
        """Learn from ``dataset``; a second call replaces the first."""
        if dataset.interactions.height == 0 and dataset.baskets.height == 0:
            raise DataError("cannot fit on an empty training set (no interactions)")
        self._bind(dataset)
        self._fit(dataset)
        return self

    def _bind(self, dataset: Dataset) -> None:
        """What every model keeps of its training data: the id maps, the user × item matrix,
        popularity, titles and categories."""
        self.user_ids_: IdMap = dataset.user_ids
        self.item_ids_: IdMap = dataset.item_ids
        self.user_items_: sp.csr_matrix = dataset.matrix()
        counts = np.asarray((self.user_items_ > 0).sum(axis=0)).ravel().astype(np.float32)
        self.popularity_: np.ndarray = counts
        # Equal scores rank the more popular item first, then the lower item id.
        ids = np.asarray(self.item_ids_.external, dtype=str)
        order = np.lexsort((ids, -counts))
        self.tie_rank_: np.ndarray = np.empty(order.size, dtype=np.int64)
        self.tie_rank_[order] = np.arange(order.size)
        titles = dataset.item_column("title")
        self.titles_: list[str | None] = titles.cast(pl.String).to_list()
        self.context_popularity_ = _context_popularity(dataset)
        self.item_categories_: list[str | None] = (
            dataset.item_column("category").cast(pl.String).to_list()
        )

    @abstractmethod
    def _fit(self, dataset: Dataset) -> None: ...

    @abstractmethod
    def _score(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """Scores (users × items, float32) for a batch of users."""

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Scores (items × items, float32) of every item against each of ``items``."""
        raise NotImplementedError

    def _cold_start(self, context: Mapping[str, str] | None) -> tuple[np.ndarray, str]:
        """Scores (0..1) and reason for a visitor without history, from their context."""
        base = self.popularity_ / (self.popularity_.max() or 1.0)
        if not context:
            return base, COLD_START_REASON
        parts, where = [], []
        for key in _CONTEXT_KEYS:
            value = context.get(key)
            table = self.context_popularity_.get((key, str(value))) if value else None
            if table is not None:
                parts.append(table / (table.max() or 1.0))
                where.append(str(value))
        scores = np.mean(parts, axis=0) if parts else base.copy()
        browsed = context.get("category")
        if browsed:
            in_category = np.array([c == browsed for c in self.item_categories_])
            if in_category.any():
                scores = scores + in_category.astype(np.float32)  # the browsed category first
                where.insert(0, browsed)
        if not where:
            return base, COLD_START_REASON
        return np.asarray(scores, np.float32), f"cold start: popular in {', '.join(where)}"

    # -- explanations ----------------------------------------------------------------------------
    reason: ClassVar[str] = "recommended for you"
    # The reason of an item that no item of the user's history supports (see _anchored), where
    # the generic reason would claim a support there is not (the popularity a model falls back
    # on, or its padding); None: the generic reason.
    unsupported_reason: ClassVar[str | None] = None

    def _explain(self, rows: sp.csr_matrix, items: np.ndarray) -> list[list[str]]:
        """A short reason for each recommended item (rows × k); the model's generic one."""
        return [[self.reason] * items.shape[1] for _ in range(items.shape[0])]

    @staticmethod
    def _dense_block(matrix: sp.csr_matrix, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """``matrix[rows][:, columns]`` as a dense array, read straight from the CSR arrays
        (scipy's two fancy-indexing steps cost more than the answer when explaining one
        user's list). ``matrix`` must be canonical: no repeated column within a row."""
        entries, lengths = stored_entries(matrix, rows)
        block = np.zeros((rows.size, columns.size), dtype=np.float64)
        if entries.size == 0 or columns.size == 0:
            return block
        owner = np.repeat(np.arange(rows.size), lengths)
        # each entry's place among ``columns`` (unique) by a search, not a map as wide as the
        # matrix: a request touches only the memory of the entries it reads
        order = np.argsort(columns)
        ranked = columns[order]
        stored = matrix.indices[entries]
        at = np.minimum(np.searchsorted(ranked, stored), ranked.size - 1)
        hit = ranked[at] == stored
        block[owner[hit], order[at[hit]]] = matrix.data[entries[hit]]
        return block

    def _anchored(
        self,
        rows: sp.csr_matrix,
        items: np.ndarray,
        affinity: Callable[[np.ndarray, np.ndarray], np.ndarray],
        template: str,
    ) -> list[list[str]]:
        """Reasons naming the item of the user's history that most supports each pick:
        ``template`` gets ``{title}``; without such an item the model's ``unsupported_reason``
        (or, if it has none, the generic reason) is used.

        ``affinity(history, picks)`` gives a (len(history) × len(picks)) array of how much each
        history item supports each pick, for one user at a time.
        """
        reasons: list[list[str]] = []
        for row in range(items.shape[0]):
            history = rows.indices[rows.indptr[row] : rows.indptr[row + 1]]
            picks = items[row]
            line = [self.unsupported_reason or self.reason] * picks.size
            valid = np.flatnonzero(picks >= 0)
            if history.size and valid.size:
                strength = np.asarray(affinity(history, picks[valid]), dtype=np.float64)
                strength = strength.reshape(history.size, valid.size)
                strength[history[:, None] == picks[valid][None, :]] = -np.inf  # not itself
                best = np.argmax(strength, axis=0)
                for position, (column, anchor_row) in enumerate(
                    zip(valid.tolist(), best.tolist(), strict=True)
                ):
                    if strength[anchor_row, position] > 0:
                        anchor = int(history[anchor_row])
                        title = self.titles_[anchor] or self.item_ids_.to_external([anchor])[0]
                        line[column] = template.format(title=title)
            reasons.append(line)
        return reasons

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "item_ids_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    # -- recommending ----------------------------------------------------------------------------
    def user_rows(
        self, user_ids: Sequence[str], history: pl.DataFrame | None = None
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """Interaction rows of ``user_ids``: training history plus ``history``.

        ``history`` has ``user_id``, ``item_id`` and optionally ``weight`` (default 1); items
        unknown to the model are ignored.
        """
        users = self.user_ids_.to_index(list(user_ids))
        known = users >= 0
        if self.user_items_.shape[0]:
            base = self.user_items_[np.where(known, users, 0)]
            matrix = sp.csr_matrix(sp.diags(known.astype(np.float32)) @ base)
            matrix.eliminate_zeros()
        else:
            matrix = sp.csr_matrix(np.zeros((len(users), len(self.item_ids_)), np.float32))
        if history is not None and history.height:
            # Every row of a user gets their history, even when an id repeats in the batch.
            rows = pl.DataFrame(
                {"user_id": [str(u) for u in user_ids], "__row": np.arange(len(user_ids))},
                schema={"user_id": pl.String, "__row": pl.Int64},
            )
            weight = pl.col("weight") if "weight" in history.columns else pl.lit(1.0)
            placed = history.select(
                pl.col("user_id").cast(pl.String),
                pl.col("item_id").cast(pl.String),
                weight.cast(pl.Float32).alias("__weight"),
            ).join(rows, on="user_id", how="inner")
            row_index = placed.get_column("__row").to_numpy()
            item_index = self.item_ids_.to_index(placed.get_column("item_id").to_list())
            ok = item_index >= 0
            values = placed.get_column("__weight").to_numpy()
            extra = sp.csr_matrix((values[ok], (row_index[ok], item_index[ok])), shape=matrix.shape)
            matrix = sp.csr_matrix(matrix + extra)
        return matrix, users

    def unchanged_rows(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """Which rows are exactly their user's training row (nothing added at request time)."""
        known = users >= 0
        if rows.shape[0] == 1:  # one request: compare the arrays, no sparse arithmetic
            if not known[0]:
                return known
            trained = self.user_items_[int(users[0])]
            same = (
                trained.nnz == rows.nnz
                and np.array_equal(trained.indices, rows.indices)
                and np.array_equal(trained.data, rows.data)
            )
            canonical = (
                rows.has_sorted_indices
                and trained.has_sorted_indices
                and not (rows.data == 0).any()
                and not (trained.data == 0).any()
            )
            if same or canonical:
                return np.array([same])
            return np.array([bool(abs(trained - rows).sum() == 0)])
        trained = self.user_items_[np.where(known, users, 0)]
        return np.asarray(known & (np.asarray(abs(trained - rows).sum(axis=1)).ravel() == 0))

    def recommend(
        self,
        user_ids: Sequence[str],
        k: int = 10,
        *,
        exclude_seen: bool | None = None,
        filter: Sequence[str] | None = None,
        history: pl.DataFrame | None = None,
        context: Mapping[str, str] | None = None,
        explain: bool = True,
    ) -> pl.DataFrame:
        """Top-``k`` items per user: columns ``user_id, rank, item_id, score, title, reason``.

        Parameters
        ----------
        exclude_seen
            Leave out items the user already interacted with; ``None`` uses the model's config
            (true for most models, false for buy-again).
        filter
            Only these item ids may be recommended.
        history
            Extra interactions (``user_id, item_id[, weight]``) to fold in, for users seen in
            training or not.
        explain
            Give each item its reason (``False`` leaves ``reason`` null, for speed).
        context
            What is known of a visitor without history (``country``, ``platform``, ``device``,
            ``category`` being browsed): their cold-start list is what is popular there.
        """
        self._check_fitted()
        if k <= 0:
            raise ShoprecError(f"k must be a positive number of items, not {k}")
        user_ids = [str(u) for u in user_ids]
        exclude = self.config.exclude_seen if exclude_seen is None else exclude_seen
        allowed = None
        if filter is not None:
            allowed = np.zeros(len(self.item_ids_), dtype=bool)
            index = self.item_ids_.to_index([str(i) for i in filter])
            allowed[index[index >= 0]] = True
        frames = []
        for start in range(0, len(user_ids), _BATCH):
            batch = user_ids[start : start + _BATCH]
            rows, users = self.user_rows(batch, history)
            scores = np.asarray(self._score(rows, users), dtype=np.float32)
            empty = ~np.any(scores != 0, axis=1)
            cold = empty | ((users < 0) & (rows.getnnz(axis=1) == 0))
            fallback, cold_reason = self._cold_start(context)
            if empty.any():  # nothing to go on: fall back to (contextual) popularity
                scores[empty] = fallback * 1e-3
            if context and cold.any():
                scores[cold] = fallback * 1e-3
            if exclude:
                seen = rows.tocoo()
                scores[seen.row[seen.data > 0], seen.col[seen.data > 0]] = -np.inf
            if allowed is not None:
                scores[:, ~allowed] = -np.inf
            items, values = top_k(scores, k, self.tie_rank_)
            reasons = self._explain(rows, items) if explain else None
            if reasons is not None:
                # Users the model knows nothing about, or could not score, get popular items.
                for row in np.flatnonzero(cold):
                    reasons[row] = [cold_reason] * items.shape[1]
            frames.append(self._frame("user_id", batch, items, values, reasons=reasons))
        return pl.concat(frames) if frames else self._frame("user_id", [], np.empty((0, k)), None)

    def similar_items(self, item_ids: Sequence[str], k: int = 10) -> pl.DataFrame:
        """The ``k`` items most similar to each item: ``item_id, rank, similar_item_id, score,
        title``. An unknown item gets no rows."""
        self._check_fitted()
        if not self.supports_similar_items:
            raise ShoprecError(f"{type(self).__name__} does not compute similar items")
        if k <= 0:
            raise ShoprecError(f"k must be a positive number of items, not {k}")
        index = self.item_ids_.to_index([str(i) for i in item_ids])
        known = [str(i) for i, j in zip(item_ids, index, strict=True) if j >= 0]
        index = index[index >= 0]
        if index.size == 0:
            return self._frame("item_id", [], np.empty((0, k)), None, "similar_item_id")
        scores = np.asarray(self._similar(index), dtype=np.float32)
        scores[np.arange(index.size), index] = -np.inf  # an item is not similar to itself
        scores[scores <= 0] = -np.inf  # no evidence, no neighbour
        items, values = top_k(scores, k, self.tie_rank_)
        return self._frame("item_id", known, items, values, "similar_item_id")

    def _frame(
        self,
        key: str,
        keys: Sequence[str],
        items: np.ndarray,
        values: np.ndarray | None,
        item_column: str = "item_id",
        reasons: list[list[str]] | None = None,
    ) -> pl.DataFrame:
        n, k = items.shape
        flat = items.ravel()
        keep = flat >= 0
        ranks = np.tile(np.arange(1, k + 1), n)[keep]
        owners = np.repeat(np.asarray(keys, dtype=object), k)[keep] if n else np.array([])
        chosen = flat[keep]
        scores = values.ravel()[keep] if values is not None else np.array([], np.float32)
        return pl.DataFrame(
            {
                key: owners.tolist(),
                "rank": ranks.astype(np.int64),
                item_column: self.item_ids_.to_external(chosen) if chosen.size else [],
                "score": scores.astype(np.float64),
                "title": [self.titles_[i] for i in chosen.tolist()],
                "reason": (
                    [
                        r
                        for row, kept in zip(reasons, keep.reshape(n, k), strict=True)
                        for r, ok in zip(row, kept, strict=True)
                        if ok
                    ]
                    if reasons is not None
                    else [None] * int(keep.sum())
                ),
            },
            schema={
                key: pl.String,
                "rank": pl.Int64,
                item_column: pl.String,
                "score": pl.Float64,
                "title": pl.String,
                "reason": pl.String,
            },
        )

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Write the fitted model to one file (a pickle of shoprec's own objects)."""
        self._check_fitted()
        with replaced_atomically(Path(path)) as temporary, temporary.open("wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: Path | str) -> Recommender[Any]:
        """Read a model written by :meth:`save` (only load files you wrote yourself)."""
        with Path(path).open("rb") as handle:
            model = pickle.load(handle)
        if not isinstance(model, Recommender):
            raise ShoprecError(f"{path}: not a shoprec model")
        if cls is not Recommender and not isinstance(model, cls):
            raise ShoprecError(f"{path}: holds a {type(model).__name__}, not a {cls.__name__}")
        _LOADED_FROM[model] = Path(path)
        return model

    @property
    def loaded_from(self) -> Path | None:
        """The file this model was read from (None for a model fitted in this process)."""
        return _LOADED_FROM.get(self)


class ItemToItemModel(Recommender[C]):
    """A model that scores a user by summing the rows of an item × item matrix over the items
    they touched (co-purchase counts, item-kNN similarities): the batch, sparse and one-row
    (serving) scores, the reasons naming the history item behind a pick, and similar items."""

    # the reason of a pick, naming the item of the user's history that most supports it
    anchored_reason: ClassVar[str] = "because of {title}"
    unsupported_reason = "popular with shoppers"  # nothing in the history leads here

    @abstractmethod
    def _item_item(self) -> sp.csr_matrix:
        """The fitted items × items matrix, row = an item of the history."""

    def _binary(self) -> bool:
        """Whether a user's interactions count 1 each instead of their weights."""
        return True

    def _score(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        return np.asarray(self._score_sparse(rows, users).todense(), dtype=np.float32)

    def _score_sparse(self, rows: sp.csr_matrix, users: np.ndarray) -> sp.csr_matrix:
        """The scores as a sparse matrix: items no history item leads to score zero."""
        if self._binary():
            rows = rows.copy()
            rows.data = np.ones_like(rows.data)
        return sp.csr_matrix(rows @ self._item_item())

    def _score_row(
        self, columns: np.ndarray, values: np.ndarray, user: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_score_sparse` of one user's row given by its entries, as ``(items,
        scores)`` (the serving path)."""
        weights = np.ones(columns.size, np.float32) if self._binary() else values
        return row_product(self._item_item(), columns, weights)

    def _explain(self, rows: sp.csr_matrix, items: np.ndarray) -> list[list[str]]:
        matrix = self._item_item()
        return self._anchored(
            rows,
            items,
            lambda history, picks: self._dense_block(matrix, history, picks),
            self.anchored_reason,
        )

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self._item_item()[items].todense(), dtype=np.float32)
