"""Next item: what shoppers go on to next from the items a user touched last.

The one generator that reads the order of a user's interactions. Fitted on every user's
sequence (events in time order, repeats of the same item in a row folded into one), it counts
how often item ``j`` follows item ``i`` within ``steps`` steps (a step further counts less) and
divides by how often ``i`` is followed at all, plus ``shrink``: an estimate of ``P(next = j |
now = i)``. A user's scores are those rows summed over their ``recent`` latest items, the
latest weighing most; items from live events (newer than anything trained) weigh as the latest.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import Field

from shoprec.data.dataset import ITEM_INDEX, USER_INDEX, Dataset
from shoprec.data.schema import TS
from shoprec.models.base import ItemToItemModel, ModelConfig, row_product
from shoprec.models.copurchase import keep_top_per_row

__all__ = ["NextItemConfig", "NextItemModel"]


class NextItemConfig(ModelConfig):
    kind: Literal["next_item"] = "next_item"
    steps: int = Field(default=3, ge=1, le=20, description="how far ahead a follower counts")
    recent: int = Field(default=5, ge=1, le=100, description="latest items a user is scored from")
    decay: float = Field(
        default=0.6, gt=0, le=1, description="weight of each older item relative to the next"
    )
    shrink: float = Field(default=5.0, ge=0, description="added to an item's follower count")
    neighbours: int = Field(default=200, ge=1, description="followers kept per item")


class NextItemModel(ItemToItemModel[NextItemConfig]):
    """Items that follow the user's latest ones in other shoppers' sequences."""

    config_class = NextItemConfig
    reason = "often chosen next"
    anchored_reason = "often chosen after {title}"

    def _fit(self, dataset: Dataset) -> None:
        config = self.config
        ordered = (
            dataset.interactions.select(USER_INDEX, ITEM_INDEX, TS)
            .sort(USER_INDEX, TS, ITEM_INDEX, maintain_order=True)
            .filter(  # an item touched several times in a row is one step
                (pl.col(ITEM_INDEX) != pl.col(ITEM_INDEX).shift(1).over(USER_INDEX))
                | pl.col(ITEM_INDEX).shift(1).over(USER_INDEX).is_null()
            )
        )
        pairs = pl.concat(
            [
                ordered.select(
                    pl.col(ITEM_INDEX).alias("now"),
                    pl.col(ITEM_INDEX).shift(-step).over(USER_INDEX).alias("next"),
                    pl.lit(1.0 / step).alias("w"),
                )
                for step in range(1, config.steps + 1)
            ]
        ).filter(pl.col("next").is_not_null() & (pl.col("now") != pl.col("next")))
        n = dataset.n_items
        counts = sp.csr_matrix(
            (
                pairs.get_column("w").to_numpy(),
                (pairs.get_column("now").to_numpy(), pairs.get_column("next").to_numpy()),
            ),
            shape=(n, n),
            dtype=np.float64,
        )
        counts.sum_duplicates()
        totals = np.asarray(counts.sum(axis=1)).ravel() + config.shrink
        scaled = sp.csr_matrix(
            sp.diags(np.divide(1.0, totals, out=np.zeros(n), where=totals > 0)) @ counts
        ).astype(np.float32)
        self.followers_ = keep_top_per_row(scaled, config.neighbours, self.tie_rank_)
        # Each user's latest distinct items, weighted by recency (latest 1, then decay, …).
        latest = (
            ordered.with_row_index("__order")
            .group_by(USER_INDEX, ITEM_INDEX)
            .agg(pl.col("__order").max())
            .with_columns(
                pl.col("__order").rank("ordinal", descending=True).over(USER_INDEX).alias("__age")
            )
            .filter(pl.col("__age") <= config.recent)
        )
        ages = latest.get_column("__age").to_numpy().astype(np.float64) - 1.0
        self.recent_ = sp.csr_matrix(
            (
                (config.decay**ages).astype(np.float32),
                (
                    latest.get_column(USER_INDEX).to_numpy(),
                    latest.get_column(ITEM_INDEX).to_numpy(),
                ),
            ),
            shape=(dataset.n_users, n),
        )
        self.recent_.sort_indices()

    def _item_item(self) -> sp.csr_matrix:
        return self.followers_

    def _query(
        self, columns: np.ndarray, values: np.ndarray, user: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The items a user is scored from and their weights: their trained latest items, and
        the row's items beyond their training row (live, so newest) at full weight. A user
        unknown to the model: every item of the row at full weight."""
        columns = np.asarray(columns, np.int64)
        if user < 0:
            return columns, np.ones(columns.size, np.float32)
        start, end = self.recent_.indptr[user], self.recent_.indptr[user + 1]
        items = self.recent_.indices[start:end].astype(np.int64)
        weights = self.recent_.data[start:end]
        t_start, t_end = self.user_items_.indptr[user], self.user_items_.indptr[user + 1]
        trained = dict(
            zip(
                self.user_items_.indices[t_start:t_end].tolist(),
                self.user_items_.data[t_start:t_end].tolist(),
                strict=True,
            )
        )
        added = np.array(
            [
                c
                for c, v in zip(columns.tolist(), np.asarray(values).tolist(), strict=True)
                if v > trained.get(c, 0.0)
            ],
            dtype=np.int64,
        )
        if added.size:
            weights = weights * self.config.decay  # the live items are newer still
            keep = ~np.isin(items, added)
            items = np.concatenate([added, items[keep]])
            weights = np.concatenate([np.ones(added.size, np.float32), weights[keep]])
        order = np.argsort(items)
        return items[order], weights[order].astype(np.float32)

    def _score_row(
        self, columns: np.ndarray, values: np.ndarray, user: int
    ) -> tuple[np.ndarray, np.ndarray]:
        items, weights = self._query(columns, values, user)
        return row_product(self.followers_, items, weights)

    def _score_sparse(self, rows: sp.csr_matrix, users: np.ndarray) -> sp.csr_matrix:
        rows = sp.csr_matrix(rows)
        queries = []
        for position, user in enumerate(users.tolist()):
            start, end = rows.indptr[position], rows.indptr[position + 1]
            items, weights = self._query(rows.indices[start:end], rows.data[start:end], user)
            queries.append((np.full(items.size, position), items, weights))
        row_index = np.concatenate([q[0] for q in queries]) if queries else np.empty(0)
        columns = np.concatenate([q[1] for q in queries]) if queries else np.empty(0)
        weights = np.concatenate([q[2] for q in queries]) if queries else np.empty(0)
        query = sp.csr_matrix(
            (weights.astype(np.float32), (row_index.astype(np.int64), columns.astype(np.int64))),
            shape=(rows.shape[0], rows.shape[1]),
        )
        return sp.csr_matrix(query @ self.followers_)
