"""Vector indexes: the items with the largest inner product with a query vector.

Behind one Protocol (DESIGN §3): :class:`ExactIndex` scores every item with NumPy (exact; the
choice for small catalogues), :class:`FaissIndex` searches a FAISS HNSW graph (approximate,
sub-millisecond on 100,000 items). :func:`build_index` picks one by catalogue size; a FAISS
index can be saved beside a model run and loaded by every API replica.

FAISS is the ``faiss`` extra. Without it :func:`build_index` answers every catalogue exactly
(the same items, slower per search on a large catalogue) and says so once in the log.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shoprec.compat import install_hint, is_installed, require
from shoprec.files import replaced_atomically

__all__ = [
    "EF_SEARCH",
    "EXACT_BELOW",
    "ExactIndex",
    "FaissIndex",
    "VectorIndex",
    "build_index",
    "load_index",
    "search_on_one_thread",
]

log = logging.getLogger(__name__)

EXACT_BELOW = 20_000  # items; above this an HNSW graph answers
# Candidates searched per query: the engine's default (``serving.ef_search``). On the serving
# benchmark's shop, 64 against 128 keeps 99.6 % of the final top-10 items (the ranker re-sorts
# the candidates) and costs about a third less per search; see benchmarks/README.md.
EF_SEARCH = 64


class VectorIndex(Protocol):
    """Top-n items by inner product with a query."""

    size: int

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Item indices and scores of the ``n`` best items, best first (fewer if the index
        holds fewer)."""
        ...


class ExactIndex:
    """Every item scored; ties broken by ``tie_rank`` (lower first), like the models do."""

    def __init__(self, vectors: np.ndarray, tie_rank: np.ndarray | None = None) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.size = self.vectors.shape[0]
        self.tie_rank = np.arange(self.size) if tie_rank is None else tie_rank

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self.vectors @ np.asarray(query, np.float32).ravel()
        n = min(n, self.size)
        if n <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        part = np.argpartition(-scores, n - 1)[:n]
        order = np.lexsort((self.tie_rank[part], -scores[part]))
        chosen = part[order]
        return chosen.astype(np.int64), scores[chosen].astype(np.float32)


class FaissIndex:
    """A FAISS HNSW graph over the vectors (inner-product metric)."""

    def __init__(self, index: Any, size: int, ef_search: int = EF_SEARCH) -> None:
        self.index = index
        self.size = size
        self.index.hnsw.efSearch = ef_search

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        *,
        links: int = 32,
        ef_construction: int = 80,
        ef_search: int = EF_SEARCH,
    ) -> FaissIndex:
        faiss = require("faiss", "faiss", needed_by="an HNSW vector index")
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        index = faiss.IndexHNSWFlat(data.shape[1], links, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.add(data)
        return cls(index, data.shape[0], ef_search)

    def search(self, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        n = min(n, self.size)
        if n <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        query = np.ascontiguousarray(np.asarray(query, np.float32).reshape(1, -1))
        scores, ids = self.index.search(query, n)
        keep = ids[0] >= 0
        return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)

    def save(self, path: Path) -> None:
        faiss = require("faiss", "faiss", needed_by="an HNSW vector index")

        with replaced_atomically(path) as temporary:
            faiss.write_index(self.index, str(temporary))


def load_index(path: Path, ef_search: int = EF_SEARCH) -> FaissIndex:
    faiss = require("faiss", "faiss", needed_by=f"the HNSW vector index {path}")
    index = faiss.read_index(str(path))
    return FaissIndex(index, int(index.ntotal), ef_search)


def build_index(
    vectors: np.ndarray,
    *,
    tie_rank: np.ndarray | None = None,
    cache: Path | None = None,
    exact_below: int = EXACT_BELOW,
    ef_search: int = EF_SEARCH,
) -> VectorIndex:
    """An exact index for fewer than ``exact_below`` items, else an HNSW graph searching
    ``ef_search`` candidates per query (read from ``cache`` when it holds one of the same
    size, else built and written there). Without FAISS installed every index is exact."""
    if vectors.shape[0] < exact_below:
        return ExactIndex(vectors, tie_rank)
    if not is_installed("faiss"):
        _say_not_installed()
        return ExactIndex(vectors, tie_rank)
    if cache is not None and cache.is_file():
        loaded = load_index(cache, ef_search)
        if loaded.size == vectors.shape[0]:
            return loaded
    built = FaissIndex.build(vectors, ef_search=ef_search)
    if cache is not None:
        with contextlib.suppress(OSError):  # a read-only run folder: rebuilt at the next load
            built.save(cache)
    return built


@functools.cache
def _say_not_installed() -> None:
    log.warning(
        "the faiss extra is not installed: large catalogues are searched exactly, slower per "
        "search (%s)",
        install_hint("faiss"),
    )


def search_on_one_thread() -> None:
    """FAISS searches on one thread, where it is installed: a request's search is small work,
    and more threads would only fight the other requests for the cores."""
    with contextlib.suppress(ImportError):
        import faiss

        faiss.omp_set_num_threads(1)
