"""The default provider: TF-IDF over the catalogue's texts, reduced by truncated SVD.

It needs no download and fits in seconds, but it is *fitted*: its vectors mean something only
for the corpus it learned. Its ``version`` is therefore a hash of its parameters and of that
corpus, so the cache never mixes vectors of two fits, and the fitted provider is kept in the
workspace (:meth:`TfidfProvider.save`, ``<workspace>/embeddings/tfidf.pkl``) and reused: a later
enrichment of a changed catalogue embeds only the changed items with the same fit. Refitting
(``shoprec enrich --refit``) makes a new version, so every item is embedded again.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from shoprec.embeddings.protocol import EmbeddingError
from shoprec.exceptions import LakeError, NotFittedError

__all__ = ["TfidfProvider"]

_FORMAT = 1


class TfidfProvider:
    """TF-IDF (sublinear term frequency) of up to ``max_features`` words, projected to
    ``dimensions`` by truncated SVD.

    A corpus too small for the projection (fewer than three distinct words or texts) keeps the
    TF-IDF columns as they are. ``fit`` raises :class:`EmbeddingError` when the texts hold no
    word at all.
    """

    name = "tfidf"
    batch_size = 8192  # local and fast: few, large batches (and few cache part files)
    max_concurrency = 1

    def __init__(self, dimensions: int = 64, max_features: int = 50_000) -> None:
        self.dimensions = dimensions
        self.max_features = max_features

    def fit(self, texts: Sequence[str]) -> TfidfProvider:
        tfidf = TfidfVectorizer(min_df=1, max_features=self.max_features, sublinear_tf=True)
        try:
            matrix = tfidf.fit_transform(texts)
        except ValueError:  # nothing but blanks and one-letter words
            raise EmbeddingError(
                f"cannot fit TF-IDF on {len(texts):,} texts: they hold no words"
            ) from None
        self.tfidf_ = tfidf
        size = min(self.dimensions, matrix.shape[1] - 1, matrix.shape[0] - 1)
        self.svd_: TruncatedSVD | None = (
            TruncatedSVD(n_components=size, random_state=0).fit(matrix) if size >= 2 else None
        )
        self.dim_ = int(size if self.svd_ is not None else matrix.shape[1])
        corpus = hashlib.blake2b(digest_size=8)
        for text in texts:
            corpus.update(text.encode("utf-8"))
            corpus.update(b"\x1f")
        self.version_ = f"d{self.dim_}-f{self.max_features}-{corpus.hexdigest()}"
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "tfidf_"):
            raise NotFittedError("the TF-IDF provider is not fitted: call fit(texts) first")

    @property
    def version(self) -> str:
        self._check_fitted()
        return self.version_

    @property
    def dim(self) -> int:
        self._check_fitted()
        return self.dim_

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self._check_fitted()
        matrix = self.tfidf_.transform(texts)
        if self.svd_ is None:
            return np.asarray(sp.csr_matrix(matrix).toarray(), np.float32)
        return np.asarray(self.svd_.transform(matrix), np.float32)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: Path | str) -> None:
        """Write the fitted provider to one file, replaced atomically."""
        self._check_fitted()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with temporary.open("wb") as handle:
            pickle.dump({"format": _FORMAT, "provider": self}, handle, pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, target)

    @classmethod
    def load(cls, path: Path | str) -> TfidfProvider:
        """Read a provider written by :meth:`save` (only load files you wrote yourself)."""
        try:
            with Path(path).open("rb") as handle:
                stored = pickle.load(handle)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            raise LakeError(f"{path}: cannot read the fitted TF-IDF provider: {exc}") from None
        if (
            not isinstance(stored, dict)
            or stored.get("format") != _FORMAT
            or not isinstance(stored.get("provider"), cls)
        ):
            raise LakeError(f"{path}: not a fitted TF-IDF provider of this shoprec version")
        provider: TfidfProvider = stored["provider"]
        return provider
