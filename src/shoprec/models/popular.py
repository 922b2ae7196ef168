"""Popularity: global, within the user's categories, or trending with time decay."""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import Field

from shoprec.data.dataset import ITEM_INDEX, Dataset
from shoprec.models.base import ModelConfig, Recommender

__all__ = ["PopularityConfig", "PopularityModel"]


class PopularityConfig(ModelConfig):
    kind: Literal["popular"] = "popular"
    mode: Literal["global", "category", "trending"] = "global"
    half_life_days: float = Field(default=14.0, gt=0, description="trending: weight halves")
    count: Literal["users", "weight"] = Field(
        default="users", description="count distinct users, or sum interaction weights"
    )


class PopularityModel(Recommender[PopularityConfig]):
    """The most popular items, the baseline every personalised model must beat.

    ``category`` mode ranks items by popularity within each category times the share of the
    user's own history in that category (global popularity breaks ties); ``trending`` weighs
    each interaction by ``0.5 ** (age / half_life)`` at the end of training.
    """

    config_class = PopularityConfig

    def _fit(self, dataset: Dataset) -> None:
        rows = dataset.interactions
        if self.config.mode == "trending":
            end = rows.get_column("ts").max()
            age_days = (pl.lit(end) - pl.col("ts")).dt.total_seconds() / 86_400.0
            rows = rows.with_columns(
                (pl.col("weight") * 0.5 ** (age_days / self.config.half_life_days)).alias("weight")
            )
            per_item = rows.group_by(ITEM_INDEX).agg(pl.col("weight").sum().alias("score"))
        elif self.config.count == "users":
            per_item = rows.group_by(ITEM_INDEX).agg(pl.col("user_index").n_unique().alias("score"))
        else:
            per_item = rows.group_by(ITEM_INDEX).agg(pl.col("weight").sum().alias("score"))
        scores = np.zeros(dataset.n_items, dtype=np.float32)
        scores[per_item.get_column(ITEM_INDEX).to_numpy()] = per_item.get_column("score").to_numpy()
        self.scores_ = scores / (scores.max() or 1.0)
        names = dataset.item_column("category").cast(pl.String)
        self.category_names_: list[str | None] = names.to_list()
        categories = names.fill_null("")
        codes = categories.cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
        n_categories = int(codes.max()) + 1 if codes.size else 0
        # items × categories membership, and popularity normalised within each category
        self.membership_ = sp.csr_matrix(
            (np.ones(codes.size, np.float32), (np.arange(codes.size), codes)),
            shape=(codes.size, n_categories),
        )
        best = np.zeros(n_categories, np.float32)
        np.maximum.at(best, codes, self.scores_)
        self.within_category_ = self.scores_ / np.where(best[codes] > 0, best[codes], 1.0)

    def _score(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        if self.config.mode != "category":
            return np.tile(self.scores_, (rows.shape[0], 1))
        shares = np.asarray((rows @ self.membership_).todense(), dtype=np.float32)
        totals = shares.sum(axis=1, keepdims=True)
        shares = np.divide(shares, totals, out=np.zeros_like(shares), where=totals > 0)
        per_item = np.asarray(shares @ self.membership_.T.toarray(), dtype=np.float32)
        return per_item * self.within_category_ + 1e-3 * self.scores_

    reason = "popular right now"

    def _explain(self, rows: sp.csr_matrix, items: np.ndarray) -> list[list[str]]:
        when = " this week" if self.config.mode == "trending" else ""
        reasons = []
        for row in items.tolist():
            line = []
            for item in row:
                category = self.category_names_[item] if item >= 0 else None
                line.append(f"popular in {category}{when}" if category else f"popular{when}")
            reasons.append(line)
        return reasons

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Popular items of the same category."""
        same = np.asarray((self.membership_[items] @ self.membership_.T).todense(), np.float32)
        return same * (self.within_category_ + 1e-6)
