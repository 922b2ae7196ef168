"""Item-kNN: cosine similarity between the items' columns of the interaction matrix."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from shoprec.data.dataset import Dataset
from shoprec.models.base import ModelConfig, Recommender, row_product
from shoprec.models.copurchase import keep_top_per_row

__all__ = ["ItemKNNConfig", "ItemKNNModel"]


class ItemKNNConfig(ModelConfig):
    kind: Literal["itemknn"] = "itemknn"
    neighbours: int = Field(default=100, ge=1, description="neighbours kept per item")
    shrink: float = Field(default=0.0, ge=0, description="added to the cosine's denominator")
    binary: bool = Field(default=True, description="use 1/0 interactions instead of weights")


class ItemKNNModel(Recommender[ItemKNNConfig]):
    """Items similar to what the user touched, by cosine over users (the classic item-kNN)."""

    config_class = ItemKNNConfig

    def _fit(self, dataset: Dataset) -> None:
        matrix = sp.csc_matrix(self.user_items_, dtype=np.float32)
        if self.config.binary:
            matrix.data = np.ones_like(matrix.data)
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel())
        dot = sp.csr_matrix(matrix.T @ matrix)
        dot.setdiag(0)
        dot.eliminate_zeros()
        coo = dot.tocoo()
        coo.data = (coo.data / (norms[coo.row] * norms[coo.col] + self.config.shrink)).astype(
            np.float32
        )
        self.similarity_ = keep_top_per_row(
            sp.csr_matrix(coo), self.config.neighbours, self.tie_rank_
        )

    def _score(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        return np.asarray(self._score_sparse(rows, users).todense(), dtype=np.float32)

    def _score_sparse(self, rows: sp.csr_matrix, users: np.ndarray) -> sp.csr_matrix:
        """The scores as a sparse matrix: items with no neighbour in the history score zero."""
        if self.config.binary:
            rows = rows.copy()
            rows.data = np.ones_like(rows.data)
        return sp.csr_matrix(rows @ self.similarity_)

    def _score_row(
        self, columns: np.ndarray, values: np.ndarray, user: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_score_sparse` of one user's row given by its entries, as ``(items,
        scores)`` (the serving path)."""
        weights = np.ones(columns.size, np.float32) if self.config.binary else values
        return row_product(self.similarity_, columns, weights)

    reason = "similar to items you interacted with"
    unsupported_reason = "popular with shoppers"  # nothing in the history leads here

    def _explain(self, rows: sp.csr_matrix, items: np.ndarray) -> list[list[str]]:
        return self._anchored(
            rows,
            items,
            lambda history, picks: self._dense_block(self.similarity_, history, picks),
            "similar to {title}",
        )

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.similarity_[items].todense(), dtype=np.float32)
