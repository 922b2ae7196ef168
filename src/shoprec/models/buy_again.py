"""Buy-again: the user's own past items, ranked by how often and how recently."""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import Field

from shoprec.data.dataset import ITEM_INDEX, USER_INDEX, Dataset
from shoprec.models.base import ModelConfig, Recommender

__all__ = ["BuyAgainConfig", "BuyAgainModel"]


class BuyAgainConfig(ModelConfig):
    kind: Literal["buy_again"] = "buy_again"
    exclude_seen: bool = False  # the point of the model is to recommend seen items
    event_types: list[str] = Field(default_factory=lambda: ["purchase"])
    half_life_days: float = Field(default=60.0, gt=0, description="an old purchase counts less")


class BuyAgainModel(Recommender[BuyAgainConfig]):
    """``score(u, i) = Σ 0.5 ** (age / half_life)`` over u's past events of ``event_types`` on i.

    In grocery-like retail this is often the strongest single signal. Users with no such events
    fall back to their other interactions, then to popularity.
    """

    config_class = BuyAgainConfig
    supports_similar_items = False
    reason = "you bought this before"

    def _fit(self, dataset: Dataset) -> None:
        rows = dataset.interactions
        chosen = rows.filter(pl.col("event_type").is_in(self.config.event_types))
        end = rows.get_column("ts").max()
        age_days = (pl.lit(end) - pl.col("ts")).dt.total_seconds() / 86_400.0
        decayed = chosen.with_columns((0.5 ** (age_days / self.config.half_life_days)).alias("w"))
        summed = decayed.group_by(USER_INDEX, ITEM_INDEX).agg(pl.col("w").sum())
        self.history_ = sp.csr_matrix(
            (
                summed.get_column("w").to_numpy().astype(np.float32),
                (
                    summed.get_column(USER_INDEX).to_numpy(),
                    summed.get_column(ITEM_INDEX).to_numpy(),
                ),
            ),
            shape=(dataset.n_users, dataset.n_items),
        )

    def _score_sparse(self, rows: sp.csr_matrix, users: np.ndarray) -> sp.csr_matrix:
        """The purchase-history part of the scores, sparse (rows of users without purchases
        are empty: their scores come from :meth:`_score`)."""
        known = users >= 0
        picked = sp.csr_matrix(self.history_[np.where(known, users, 0)])
        if not known.all():
            picked = sp.csr_matrix(sp.diags(known.astype(np.float32)) @ picked)
        return picked

    def _score_row(
        self, columns: np.ndarray, values: np.ndarray, user: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_score` of one user's row given by its entries, as its non-zero ``(items,
        scores)`` (the serving path): their purchases, else what they touched, scaled far
        below any purchase."""
        if user >= 0:
            start, end = self.history_.indptr[user], self.history_.indptr[user + 1]
            if np.any(self.history_.data[start:end] > 0):
                return self.history_.indices[start:end], self.history_.data[start:end]
        touched = np.asarray(values, np.float32)
        peak = touched.max() if touched.size else 0.0
        if peak <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        scale = float(self.history_.data.min()) if self.history_.nnz else 1.0
        return np.asarray(columns), (touched / peak * scale * 1e-3).astype(np.float32)

    def _score(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        known = users >= 0
        scores = np.zeros(rows.shape, dtype=np.float32)
        if known.any():
            scores[known] = self.history_[users[known]].toarray()
        # Users without purchases of their own: rank what they touched, far below purchases.
        scale = float(self.history_.data.min()) if self.history_.nnz else 1.0
        no_history = ~np.any(scores > 0, axis=1)
        if no_history.any():
            touched = rows[np.flatnonzero(no_history)].toarray()
            peak = touched.max(axis=1, keepdims=True)
            touched = np.divide(touched, peak, out=np.zeros_like(touched), where=peak > 0)
            scores[no_history] = touched * scale * 1e-3
        return scores
