"""The one swap point of the enrichment layer: text (or entity content) in, vectors out.

A provider may be local (TF-IDF, MiniLM) or remote (an HTTP enrichment service that is slow and
costs money per call), so callers never call it directly for a catalogue: they go through the
embedding cache (:mod:`shoprec.embeddings.cache`), which sends only new or changed content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from shoprec.exceptions import EmbeddingError

__all__ = ["EmbeddingError", "EmbeddingProvider", "FakeProvider", "content_hash"]


@runtime_checkable
class EmbeddingProvider(Protocol):
    """Turns texts into vectors of one fixed size.

    ``name`` and ``version`` identify the vector space: two vectors may be compared only when
    both are equal, and the cache keys every vector by them and by the content's hash. A provider
    whose output would change for the same input (a refitted TF-IDF, another remote model) must
    report a new ``version``.
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A ``(len(texts), dim)`` float32 array, one row per text, in order.

        Raises :class:`EmbeddingError` when the batch as a whole fails.
        """
        ...


def content_hash(text: str) -> str:
    """The cache key of one entity's content (stable across processes and machines)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


class FakeProvider:
    """A deterministic provider for tests: each text's vector is drawn from a generator seeded
    by its hash, and every call is counted (``calls``, ``texts_seen``)."""

    def __init__(self, dim: int = 8, name: str = "fake", version: str = "1") -> None:
        self._dim = dim
        self._name = name
        self._version = version
        self.calls = 0
        self.texts_seen: list[str] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    def dim(self) -> int:
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_seen.extend(texts)
        rows = [
            np.random.default_rng(int(content_hash(text)[:16], 16)).standard_normal(self._dim)
            for text in texts
        ]
        return np.asarray(rows, np.float32).reshape(len(texts), self._dim)
