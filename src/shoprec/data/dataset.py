"""Id maps and sparse interaction matrices: the only view of the data a model gets.

External ids are strings at the edge; a :class:`Dataset` turns them into dense integer indices
once, so models work on CSR matrices and arrays and never see an external id (STYLE 4).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp

from shoprec.config import EventWeights
from shoprec.data.lake import Lake
from shoprec.data.schema import BASKET_ID, EVENT_TYPE, ITEM_ID, PRICE, TS, USER_ID, VALUE

__all__ = ["Dataset", "IdMap"]

USER_INDEX = "user_index"
ITEM_INDEX = "item_index"
WEIGHT = "weight"
BASKET_INDEX = "basket_index"


@dataclass(frozen=True)
class IdMap:
    """A bijection between external string ids and indices ``0..n-1``."""

    external: np.ndarray  # dtype object, external[index] -> id

    @classmethod
    def from_ids(cls, ids: Iterable[str]) -> IdMap:
        """Unique ids in order of first appearance."""
        unique = pl.Series("id", list(ids), dtype=pl.String).unique(maintain_order=True)
        return cls(np.asarray(unique.to_list(), dtype=object))

    def __len__(self) -> int:
        return int(self.external.size)

    @property
    def _lookup(self) -> dict[str, int]:
        cached: dict[str, int] | None = self.__dict__.get("_lookup_cache")
        if cached is None:
            cached = {str(v): i for i, v in enumerate(self.external)}
            object.__setattr__(self, "_lookup_cache", cached)
        return cached

    def to_index(self, ids: Sequence[str], *, missing: int = -1) -> np.ndarray:
        """Indices of ``ids``; unknown ids get ``missing``."""
        lookup = self._lookup
        return np.fromiter((lookup.get(i, missing) for i in ids), dtype=np.int64, count=len(ids))

    def to_external(self, indices: Sequence[int] | np.ndarray) -> list[str]:
        return [str(x) for x in self.external[np.asarray(indices, dtype=np.int64)]]

    def index_frame(self, name: str, index_name: str) -> pl.DataFrame:
        return pl.DataFrame(
            {name: self.external.tolist(), index_name: np.arange(len(self), dtype=np.int64)},
            schema={name: pl.String, index_name: pl.Int64},
        )


@dataclass(frozen=True)
class Dataset:
    """Users, items and their weighted interactions, indexed for models.

    ``interactions`` holds one row per kept event: ``user_index``, ``item_index``, ``weight``,
    ``ts``, ``event_type`` and ``price``. Events without a user (guest baskets) or without an
    item, and event types whose weight is zero, are not interactions. ``baskets`` holds
    ``basket_index`` and ``item_index`` of every purchase with a basket, guests' included.
    ``items`` is the catalogue in index order (``item_index``, ``item_id`` and the canonical item
    columns, null where an item is known only from events).
    """

    user_ids: IdMap
    item_ids: IdMap
    interactions: pl.DataFrame
    weights: EventWeights
    items: pl.DataFrame
    baskets: pl.DataFrame
    events: pl.DataFrame | None = None  # the canonical events it was built from
    users: pl.DataFrame | None = None  # the user table, when known (coordinates, attributes)

    @classmethod
    def from_events(
        cls,
        events: pl.DataFrame | pl.LazyFrame,
        *,
        items: pl.DataFrame | None = None,
        users: pl.DataFrame | None = None,
        weights: EventWeights | None = None,
        basket_event_types: Sequence[str] = ("purchase",),
    ) -> Dataset:
        """Build id maps and weighted interactions from canonical events.

        Every catalogue item gets an index, even one nobody touched yet, so that content and
        cold-start models can recommend it.
        """
        weights = weights or EventWeights()
        if isinstance(events, pl.LazyFrame):
            events = events.collect()
        table = pl.DataFrame(
            {"__type": list(weights.weights), "__w": list(weights.weights.values())},
            schema={"__type": pl.String, "__w": pl.Float64},
        )
        value_weighted = pl.col(EVENT_TYPE).is_in(weights.value_weighted)
        lazy = events.lazy()
        kept = (
            lazy.filter(pl.col(USER_ID).is_not_null() & pl.col(ITEM_ID).is_not_null())
            .join(table.lazy(), left_on=EVENT_TYPE, right_on="__type", how="inner")
            .with_columns(
                (
                    pl.col("__w")
                    * pl.when(value_weighted).then(pl.col(VALUE).fill_null(1.0)).otherwise(1.0)
                ).alias(WEIGHT)
            )
            .filter(pl.col(WEIGHT) != 0)
            .select(USER_ID, ITEM_ID, WEIGHT, TS, EVENT_TYPE, PRICE)
            .sort(TS, maintain_order=True)
            .collect()
        )
        basket_rows = (
            lazy.filter(
                pl.col(BASKET_ID).is_not_null()
                & pl.col(ITEM_ID).is_not_null()
                & pl.col(EVENT_TYPE).is_in(list(basket_event_types))
            )
            .select(BASKET_ID, ITEM_ID)
            .unique(maintain_order=True)
            .collect()
        )
        user_ids = IdMap.from_ids(kept.get_column(USER_ID))
        catalogue = [] if items is None else items.get_column(ITEM_ID).to_list()
        item_ids = IdMap.from_ids(
            [
                *catalogue,
                *kept.get_column(ITEM_ID).to_list(),
                *basket_rows.get_column(ITEM_ID).to_list(),
            ]
        )
        item_index = item_ids.index_frame(ITEM_ID, ITEM_INDEX)
        interactions = (
            kept.join(user_ids.index_frame(USER_ID, USER_INDEX), on=USER_ID, how="left")
            .join(item_index, on=ITEM_ID, how="left")
            .select(USER_INDEX, ITEM_INDEX, WEIGHT, TS, EVENT_TYPE, PRICE)
        )
        baskets = basket_rows.join(item_index, on=ITEM_ID, how="left").select(
            pl.col(BASKET_ID).rank("dense").cast(pl.Int64).sub(1).alias(BASKET_INDEX),
            ITEM_INDEX,
        )
        catalogue_table = item_index
        if items is not None:
            attributes = items.unique(ITEM_ID, keep="last").drop(ITEM_INDEX, strict=False)
            catalogue_table = item_index.join(attributes, on=ITEM_ID, how="left")
        return cls(
            user_ids,
            item_ids,
            interactions,
            weights,
            catalogue_table.sort(ITEM_INDEX),
            baskets,
            events,
            users,
        )

    @classmethod
    def from_lake(cls, lake: Lake, *, weights: EventWeights | None = None) -> Dataset:
        """All events and the catalogue of a workspace lake."""
        users = lake.users()
        return cls.from_events(
            lake.scan_events(),
            items=lake.items(),
            users=users if users.height else None,
            weights=weights,
        )

    def item_column(self, name: str) -> pl.Series:
        """A catalogue column in item-index order (nulls where unknown)."""
        if name not in self.items.columns:
            return pl.Series(name, [None] * self.n_items, dtype=pl.String)
        return self.items.get_column(name)

    def popularity_counts(self) -> np.ndarray:
        """Distinct users who interacted with each item, in item-index order."""
        counts = self.interactions.group_by(ITEM_INDEX).agg(pl.col(USER_INDEX).n_unique())
        result = np.zeros(self.n_items, dtype=np.float64)
        result[counts.get_column(ITEM_INDEX).to_numpy()] = counts.get_column(USER_INDEX).to_numpy()
        return result

    def basket_matrix(self) -> sp.csr_matrix:
        """Baskets × items, 1 where the basket holds the item."""
        n_baskets = self.baskets.get_column(BASKET_INDEX).n_unique()
        return sp.csr_matrix(
            (
                np.ones(self.baskets.height, dtype=np.float32),
                (
                    self.baskets.get_column(BASKET_INDEX).to_numpy(),
                    self.baskets.get_column(ITEM_INDEX).to_numpy(),
                ),
            ),
            shape=(n_baskets, self.n_items),
        )

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def matrix(self, event_types: Sequence[str] | None = None) -> sp.csr_matrix:
        """The users × items matrix of summed weights (optionally of some event types only).

        Entries whose summed weight is not positive (a purchase cancelled by a negative-weight
        return, say) are left out.
        """
        rows = self.interactions
        if event_types is not None:
            rows = rows.filter(pl.col(EVENT_TYPE).is_in(list(event_types)))
        summed = rows.group_by(USER_INDEX, ITEM_INDEX).agg(pl.col(WEIGHT).sum())
        summed = summed.filter(pl.col(WEIGHT) > 0)
        matrix = sp.csr_matrix(
            (
                summed.get_column(WEIGHT).to_numpy(),
                (
                    summed.get_column(USER_INDEX).to_numpy(),
                    summed.get_column(ITEM_INDEX).to_numpy(),
                ),
            ),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        matrix.sort_indices()
        return matrix
