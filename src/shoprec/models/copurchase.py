"""Co-purchase: "bought together" — items that share baskets, counted in both directions."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from shoprec.data.dataset import Dataset
from shoprec.models.base import ItemToItemModel, ModelConfig

__all__ = ["CoPurchaseConfig", "CoPurchaseModel", "keep_top_per_row"]


class CoPurchaseConfig(ModelConfig):
    kind: Literal["copurchase"] = "copurchase"
    top_n: int = Field(default=50, ge=1, description="pairs kept per item")
    min_count: int = Field(default=1, ge=1, description="baskets a pair needs to count")
    max_basket_size: int = Field(
        default=200, ge=2, description="larger baskets (bulk orders) are left out"
    )


def keep_top_per_row(
    matrix: sp.csr_matrix, top_n: int, tie_rank: np.ndarray | None = None
) -> sp.csr_matrix:
    """Keep each row's ``top_n`` largest entries; ties go to the lower ``tie_rank`` (default:
    the lower column index)."""
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    rows, cols, values = [], [], []
    for row in range(matrix.shape[0]):
        start, end = matrix.indptr[row], matrix.indptr[row + 1]
        if start == end:
            continue
        row_cols = matrix.indices[start:end]
        row_values = matrix.data[start:end]
        ties = row_cols if tie_rank is None else tie_rank[row_cols]
        order = np.lexsort((ties, -row_values))[:top_n]
        rows.append(np.full(order.size, row))
        cols.append(row_cols[order])
        values.append(row_values[order])
    if not rows:
        return sp.csr_matrix(np.zeros(matrix.shape, np.float32))
    return sp.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=matrix.shape,
        dtype=np.float32,
    )


class CoPurchaseModel(ItemToItemModel[CoPurchaseConfig]):
    """Pairs of items bought in the same basket, counted once per basket in both directions.

    ``similar_items`` is the classic "bought together" list: the partners of an item by count,
    ties broken by item id, with titles attached; an item never bought with another has none. A
    user is recommended the summed partners of what they interacted with.
    """

    config_class = CoPurchaseConfig

    def _fit(self, dataset: Dataset) -> None:
        baskets = dataset.basket_matrix()
        sizes = np.asarray(baskets.sum(axis=1)).ravel()
        keep = (sizes >= 2) & (sizes <= self.config.max_basket_size)
        baskets = sp.csr_matrix(baskets[np.flatnonzero(keep)])
        counts = sp.csr_matrix(baskets.T @ baskets, dtype=np.float32)
        counts.setdiag(0)
        counts.eliminate_zeros()
        counts.data[counts.data < self.config.min_count] = 0
        counts.eliminate_zeros()
        self.pairs_ = keep_top_per_row(counts, self.config.top_n, self.tie_rank_)
        self.pairs_.sort_indices()

    reason = "often bought together with what you bought"
    anchored_reason = "bought together with {title}"

    def _item_item(self) -> sp.csr_matrix:
        return self.pairs_
