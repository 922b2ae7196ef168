"""Matrix factorisation through the ``implicit`` library: ALS and BPR."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.bpr import BayesianPersonalizedRanking
from pydantic import Field
from threadpoolctl import threadpool_limits

from shoprec.data.dataset import Dataset
from shoprec.models.base import ModelConfig, Recommender

__all__ = ["ALSConfig", "ALSModel", "BPRConfig", "BPRModel"]


class _FactorConfig(ModelConfig):
    factors: int = Field(default=64, ge=1)
    regularization: float = Field(default=0.05, ge=0)
    iterations: int = Field(default=15, ge=1)
    random_state: int = 42
    num_threads: int = Field(default=0, ge=0, description="0 = all cores")


class ALSConfig(_FactorConfig):
    kind: Literal["als"] = "als"
    alpha: float = Field(default=10.0, gt=0, description="confidence = 1 + alpha * r")
    confidence: Literal["linear", "log"] = Field(
        default="log", description="scale r first: log uses log1p(r)"
    )


class BPRConfig(_FactorConfig):
    kind: Literal["bpr"] = "bpr"
    learning_rate: float = Field(default=0.05, gt=0)
    iterations: int = Field(default=100, ge=1)
    num_threads: int = Field(default=1, ge=0, description="1 keeps training deterministic")


class _FactorModel(Recommender[Any]):
    """Shared scoring: ``user_factors · item_factorsᵀ``, folding in users with new history."""

    def _prepare(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        return matrix

    def _train(self, model: Any, matrix: sp.csr_matrix) -> None:
        with threadpool_limits(1, "blas"):  # implicit's own threads do the work
            model.fit(matrix, show_progress=False)
        self.model_ = model
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _score(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.query_vectors(rows, users) @ self.item_factors_.T, np.float32)

    # A user's scores are an inner product of a query vector with each item's vector, so a
    # vector index can find the best items without scoring the whole catalogue.
    def item_vectors(self) -> np.ndarray:
        """Item vectors: a user's scores are ``query_vectors(...) @ item_vectors().T``."""
        return self.item_factors_

    def query_vectors(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """The users' factors: learned ones for training users whose rows are unchanged,
        folded in from their rows for the others (zero without history)."""
        factors = np.zeros((rows.shape[0], self.user_factors_.shape[1]), dtype=np.float32)
        # Training users whose row is exactly their training row keep their learned factors.
        unchanged = self.unchanged_rows(rows, users)
        factors[unchanged] = self.user_factors_[users[unchanged]]
        fold = np.flatnonzero(~unchanged & (rows.getnnz(axis=1) > 0))
        if fold.size:
            chosen = rows if fold.size == rows.shape[0] else rows[fold]  # (a request: all)
            factors[fold] = self._fold_in(self._prepare(sp.csr_matrix(chosen)))
        return factors

    def trained_query_vectors(self) -> np.ndarray:
        """Every training user's query vector as trained: their learned factors themselves
        (:meth:`query_vectors` of their training rows, without a copy)."""
        return self.user_factors_

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    reason = "matches your taste"

    def _explain(self, rows: sp.csr_matrix, items: np.ndarray) -> list[list[str]]:
        def unit(index: np.ndarray) -> np.ndarray:
            vectors = self.item_factors_[index]
            norms = np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            return np.asarray(vectors / norms)

        return self._anchored(
            rows,
            items,
            lambda history, picks: unit(history) @ unit(picks).T,
            "similar to {title}",
        )

    def _similar(self, items: np.ndarray) -> np.ndarray:
        vectors = self.item_factors_
        norms = np.linalg.norm(vectors, axis=1)
        norms[norms == 0] = 1.0
        unit = vectors / norms[:, None]
        return np.asarray(unit[items] @ unit.T, dtype=np.float32)


class ALSModel(_FactorModel):
    """Implicit-feedback ALS (Hu, Koren & Volinsky) with confidence scaling.

    Users not seen in training, or with history added at request time, are folded in by
    solving their least-squares problem against the fixed item factors (``recalculate_user``).
    """

    config_class = ALSConfig

    def _prepare(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        if self.config.confidence == "log":
            matrix.data = np.log1p(matrix.data)
        return matrix

    def _fit(self, dataset: Dataset) -> None:
        config = self.config
        with threadpool_limits(1, "blas"):  # implicit warns about threaded BLAS otherwise
            model = AlternatingLeastSquares(
                factors=config.factors,
                regularization=config.regularization,
                alpha=config.alpha,
                iterations=config.iterations,
                random_state=config.random_state,
                num_threads=config.num_threads,
            )
        self._train(model, self._prepare(self.user_items_))

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        if rows.shape[0] < 64:  # a request's few users: limiting the threads costs 4 ms, the
            # solve 0.1 ms, and BLAS runs such small products on one thread anyway
            factors = self.model_.recalculate_user(np.arange(rows.shape[0]), rows)
        else:
            with threadpool_limits(1, "blas"):
                factors = self.model_.recalculate_user(np.arange(rows.shape[0]), rows)
        return np.asarray(factors, dtype=np.float32)


class BPRModel(_FactorModel):
    """Bayesian Personalised Ranking; a new user is the weighted mean of their items' factors."""

    config_class = BPRConfig

    def _fit(self, dataset: Dataset) -> None:
        config = self.config
        with threadpool_limits(1, "blas"):
            model = BayesianPersonalizedRanking(
                factors=config.factors,
                learning_rate=config.learning_rate,
                regularization=config.regularization,
                iterations=config.iterations,
                random_state=config.random_state,
                num_threads=config.num_threads,
            )
        self._train(model, sp.csr_matrix(self.user_items_, dtype=np.float32))

    def _fold_in(self, rows: sp.csr_matrix) -> np.ndarray:
        weights = sp.csr_matrix(rows, dtype=np.float32)
        totals = np.asarray(weights.sum(axis=1)).ravel()
        totals[totals == 0] = 1.0
        mean = np.asarray(weights @ self.item_factors_) / totals[:, None]
        mean[:, -1] = 1.0  # BPR's last factor multiplies the item bias
        return mean.astype(np.float32)
