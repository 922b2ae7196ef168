"""EASE (Steck, 2019): a closed-form item-item linear model with a zero diagonal."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from scipy.linalg import lapack

from shoprec.data.dataset import Dataset
from shoprec.exceptions import DataError
from shoprec.models.base import ModelConfig, Recommender

__all__ = ["EASEConfig", "EASEModel"]


class EASEConfig(ModelConfig):
    kind: Literal["ease"] = "ease"
    l2: float = Field(default=500.0, gt=0, description="ridge penalty λ")
    binary: bool = Field(default=True, description="use 1/0 interactions instead of weights")
    max_items: int = Field(default=30_000, ge=1, description="refuse larger catalogues")


def _ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """``-P / diag(P)`` with a zero diagonal, ``P`` the inverse of the (symmetric, positive
    definite) regularised Gram matrix. The inverse comes from a Cholesky factorisation in
    LAPACK (``potrf`` + ``potri``, a third of the work of a general inverse, on every core
    BLAS is given), in single precision where that stays accurate: the ridge ``l2`` bounds the
    smallest eigenvalue from below and the largest row sum bounds the largest (Gershgorin), so
    their ratio bounds the condition number; the weights are stored as float32 anyway."""
    condition = float(np.abs(gram).sum(axis=1).max()) / l2
    single = condition < 1e4
    work = np.asarray(gram, dtype=np.float32 if single else np.float64, order="F")
    potrf: Any = lapack.get_lapack_funcs("potrf", (work,))
    potri: Any = lapack.get_lapack_funcs("potri", (work,))
    factor, info = potrf(work, lower=True, overwrite_a=True, clean=False)
    if info != 0:
        raise DataError(f"EASE: the regularised Gram matrix is not positive definite ({info})")
    precision, info = potri(factor, lower=True, overwrite_c=True)
    if info != 0:
        raise DataError(f"EASE: cannot invert the regularised Gram matrix ({info})")
    precision = np.tril(precision) + np.tril(precision, -1).T  # potri fills one triangle
    weights: np.ndarray = (precision / (-np.diag(precision))).astype(np.float32)
    weights[np.diag_indices(weights.shape[0])] = 0.0
    return weights


class EASEModel(Recommender[EASEConfig]):
    """``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹``; scores are ``X_u B``.

    The model is a dense items × items matrix, so the catalogue size is capped by ``max_items``
    (memory grows with its square).
    """

    config_class = EASEConfig

    def _fit(self, dataset: Dataset) -> None:
        n_items = dataset.n_items
        if n_items > self.config.max_items:
            raise DataError(
                f"EASE needs an items × items matrix; {n_items:,} items exceed max_items="
                f"{self.config.max_items:,}"
            )
        matrix = sp.csr_matrix(self.user_items_, dtype=np.float64)
        if self.config.binary:
            matrix.data = np.ones_like(matrix.data)
        gram = np.asarray((matrix.T @ matrix).todense(), dtype=np.float64)
        gram[np.diag_indices(n_items)] += self.config.l2
        self.weights_ = _ease_weights(gram, self.config.l2)

    def _score(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        if self.config.binary:
            rows = rows.copy()
            rows.data = np.ones_like(rows.data)
        return np.asarray(rows @ self.weights_, dtype=np.float32)

    reason = "chosen by shoppers with tastes like yours"

    def _explain(self, rows: sp.csr_matrix, items: np.ndarray) -> list[list[str]]:
        return self._anchored(
            rows,
            items,
            lambda history, picks: self.weights_[np.ix_(history, picks)],
            "shoppers who liked {title} also chose this",
        )

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.weights_[items], dtype=np.float32)
