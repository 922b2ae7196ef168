"""Item-kNN: cosine similarity between the items' columns of the interaction matrix."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from shoprec.data.dataset import Dataset
from shoprec.models.base import ItemToItemModel, ModelConfig
from shoprec.models.copurchase import keep_top_per_row

__all__ = ["ItemKNNConfig", "ItemKNNModel"]


class ItemKNNConfig(ModelConfig):
    kind: Literal["itemknn"] = "itemknn"
    neighbours: int = Field(default=100, ge=1, description="neighbours kept per item")
    shrink: float = Field(default=0.0, ge=0, description="added to the cosine's denominator")
    binary: bool = Field(default=True, description="use 1/0 interactions instead of weights")


class ItemKNNModel(ItemToItemModel[ItemKNNConfig]):
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

    reason = "similar to items you interacted with"
    anchored_reason = "similar to {title}"

    def _item_item(self) -> sp.csr_matrix:
        return self.similarity_

    def _binary(self) -> bool:
        return self.config.binary
