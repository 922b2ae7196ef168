"""Content-based: item vectors from attributes and text; users as a blend of their items."""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import Field

from shoprec.data.dataset import ITEM_INDEX, USER_INDEX, Dataset, IdMap
from shoprec.data.schema import EMBEDDING, EMBEDDING_VERSION
from shoprec.embeddings.attributes import AttributeEncoder, combine_blocks, unit_rows
from shoprec.embeddings.protocol import EmbeddingError
from shoprec.embeddings.text import entity_texts
from shoprec.embeddings.tfidf import TfidfProvider
from shoprec.exceptions import DataError
from shoprec.models.base import ModelConfig, Recommender

__all__ = ["ContentConfig", "ContentModel", "ItemVectoriser", "item_vectors"]


class ContentConfig(ModelConfig):
    kind: Literal["content"] = "content"
    numeric_weight: float = Field(default=0.5, ge=0)
    categorical_weight: float = Field(default=1.0, ge=0)
    text_weight: float = Field(default=1.0, ge=0)
    text_dimensions: int = Field(default=64, ge=2, description="SVD size of the TF-IDF text")
    text_source: Literal["auto", "tfidf", "embeddings"] = Field(
        default="auto",
        description="the text block: tfidf fitted on the training catalogue, the enrichment's "
        "item embeddings (the workspace's configured provider, through the cache), or auto: "
        "the embeddings when the build has them, else tfidf",
    )
    max_categories: int = Field(
        default=200,
        ge=2,
        description="string attributes with more distinct values are not one-hot encoded",
    )
    blend: Literal["ema", "decay"] = Field(
        default="decay",
        description="ema: new = (1 - a) * old + a * item, in time order; decay: mean weighted "
        "by event weight and 0.5 ** (age / half_life)",
    )
    alpha: float = Field(default=0.3, gt=0, le=1, description="the ema's a")
    half_life_days: float = Field(default=30.0, gt=0)
    metric: Literal["cosine", "euclidean"] = "cosine"
    popularity_weight: float = Field(
        default=0.5,
        ge=0,
        description="adds this times the training popularity (0..1) to a user's scores: "
        "similarity alone ignores demand",
    )


class ItemVectoriser:
    """Item vectors from numeric, one-hot categorical and text blocks.

    The attribute blocks come from an :class:`~shoprec.embeddings.attributes.AttributeEncoder`;
    the text block from a :class:`~shoprec.embeddings.tfidf.TfidfProvider` fitted on the
    catalogue, or from the enrichment's item embeddings (the items' ``embedding`` column), as
    ``text_source`` says. ``fit`` learns from the catalogue; ``transform`` embeds any items with
    what it learned, so an item added after training gets a vector in the same space (with
    embeddings as the text source, its ``embedding`` column must come from the same provider
    version, ``text_provider_``; an item without one gets no text block). Each block is scaled to
    unit norm per item and weighted, then the whole vector is normalised.
    """

    def __init__(self, config: ContentConfig) -> None:
        self.config = config

    def fit(self, items: pl.DataFrame) -> ItemVectoriser:
        config = self.config
        self.attributes_ = AttributeEncoder(
            config.numeric_weight, config.categorical_weight, config.max_categories
        ).fit(items)
        has_embeddings = EMBEDDING in items.columns and items.get_column(EMBEDDING).len() > (
            items.get_column(EMBEDDING).null_count()
        )
        self.text_source_: Literal["tfidf", "embeddings"] = (
            "embeddings"
            if config.text_source == "embeddings"
            or (config.text_source == "auto" and has_embeddings)
            else "tfidf"
        )
        self.tfidf_: TfidfProvider | None = None
        self.text_dim_ = 0
        self.text_provider_: str | None = None
        if self.text_source_ == "embeddings":
            if not has_embeddings:
                raise DataError(
                    "content model: text_source is 'embeddings' but the items carry no "
                    "embeddings; run 'shoprec enrich' (or build from the workspace lake)"
                )
            dtype = items.schema[EMBEDDING]
            self.text_dim_ = dtype.size if isinstance(dtype, pl.Array) else 0
            self.text_provider_ = _embedding_version(items)
        elif config.text_weight > 0:
            try:
                self.tfidf_ = TfidfProvider(config.text_dimensions).fit(entity_texts(items))
            except EmbeddingError:  # nothing but blanks: no text block
                self.tfidf_ = None
        return self

    def _text(self, items: pl.DataFrame) -> np.ndarray | None:
        if self.tfidf_ is not None:
            return self.tfidf_.embed(entity_texts(items))
        if self.text_source_ != "embeddings":
            return None
        if EMBEDDING not in items.columns:
            return np.zeros((items.height, self.text_dim_), np.float32)
        dtype = items.schema[EMBEDDING]
        if not isinstance(dtype, pl.Array) or dtype.size != self.text_dim_:
            raise DataError(
                f"content model: the items' embeddings are {dtype}, not the "
                f"{self.text_dim_}-dimensional vectors it was fitted with"
            )
        vectors = np.nan_to_num(items.get_column(EMBEDDING).to_numpy())
        if EMBEDDING_VERSION in items.columns and self.text_provider_ is not None:
            other = items.get_column(EMBEDDING_VERSION) != self.text_provider_
            vectors[other.fill_null(True).to_numpy()] = 0.0  # another vector space: no text
        return np.asarray(vectors, np.float32)

    def transform(self, items: pl.DataFrame) -> np.ndarray:
        blocks = self.attributes_.blocks(items)
        text = self._text(items)
        if text is not None:
            blocks.append((text, self.config.text_weight))
        return combine_blocks(blocks, items.height)


def _embedding_version(items: pl.DataFrame) -> str | None:
    if EMBEDDING_VERSION not in items.columns:
        return None
    versions = items.get_column(EMBEDDING_VERSION).drop_nulls().unique().to_list()
    if len(versions) > 1:
        raise DataError(
            f"content model: the items' embeddings come from {len(versions)} providers or "
            f"versions ({', '.join(sorted(versions)[:3])}); one vector space is needed"
        )
    return versions[0] if versions else None


def item_vectors(items: pl.DataFrame, config: ContentConfig) -> np.ndarray:
    """Vectors of a whole catalogue (see :class:`ItemVectoriser`)."""
    return ItemVectoriser(config).fit(items).transform(items)


class ContentModel(Recommender[ContentConfig]):
    """Nearest items to the user's preference vector, by cosine or Euclidean distance.

    The preference vector is a time-ordered blend of the vectors of the items the user touched
    (``ema`` or ``decay``, see the config). Items nobody has touched yet are recommendable too:
    their vectors come from their attributes and text alone.
    """

    config_class = ContentConfig

    def _fit(self, dataset: Dataset) -> None:
        self.vectoriser_ = ItemVectoriser(self.config).fit(dataset.items)
        self.vectors_ = self.vectoriser_.transform(dataset.items)
        self.preferences_ = self._blend(dataset)

    def _blend(self, dataset: Dataset) -> np.ndarray:
        rows = dataset.interactions.with_row_index("__order")
        if self.config.blend == "ema":
            a = self.config.alpha
            ranked = rows.with_columns(
                pl.col("__order").rank("ordinal").over(USER_INDEX).alias("__position"),
                pl.len().over(USER_INDEX).alias("__count"),
            )
            # new = (1 - a) * old + a * item, started from the first item, unrolled:
            weight = (
                pl.when(pl.col("__position") == 1)
                .then((1 - a) ** (pl.col("__count") - 1))
                .otherwise(a * (1 - a) ** (pl.col("__count") - pl.col("__position")))
            )
        else:
            end = rows.get_column("ts").max()
            age_days = (pl.lit(end) - pl.col("ts")).dt.total_seconds() / 86_400.0
            ranked = rows
            weight = pl.col("weight") * 0.5 ** (age_days / self.config.half_life_days)
        weights = ranked.select(USER_INDEX, ITEM_INDEX, weight.cast(pl.Float64).alias("w"))
        matrix = sp.csr_matrix(
            (
                weights.get_column("w").to_numpy(),
                (
                    weights.get_column(USER_INDEX).to_numpy(),
                    weights.get_column(ITEM_INDEX).to_numpy(),
                ),
            ),
            shape=(dataset.n_users, dataset.n_items),
        )
        if self.config.blend == "decay":
            totals = np.asarray(matrix.sum(axis=1)).ravel()
            totals[totals == 0] = 1.0
            matrix = sp.csr_matrix(sp.diags(1.0 / totals) @ matrix)
        return np.asarray(matrix @ self.vectors_, dtype=np.float32)

    def _score(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        scores = self._nearest(self._preferences(rows, users))
        if self.config.popularity_weight > 0:
            prior = self.popularity_ / (self.popularity_.max() or 1.0)
            has_query = np.any(scores != 0, axis=1)
            scores[has_query] += self.config.popularity_weight * prior
        return scores

    # With the cosine metric, a user's scores are an inner product: [unit preference, w] ·
    # [item vector, popularity prior], so a vector index can find the best items.
    def item_vectors(self) -> np.ndarray:
        """Item vectors with the popularity prior appended (cosine metric only)."""
        if self.config.metric != "cosine":
            raise NotImplementedError("euclidean content scores are not an inner product")
        prior = self.popularity_ / (self.popularity_.max() or 1.0)
        return np.hstack([self.vectors_, prior[:, None]]).astype(np.float32)

    def query_vectors(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """Unit preference vectors with the popularity weight appended (zero without one)."""
        preferences = self._preferences(rows, users)
        has_query = np.linalg.norm(preferences, axis=1) > 0
        weight = np.where(has_query, self.config.popularity_weight, 0.0)[:, None]
        return np.hstack([unit_rows(preferences), weight]).astype(np.float32)

    def _preferences(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        unchanged = self.unchanged_rows(rows, users)
        preferences = np.zeros((rows.shape[0], self.vectors_.shape[1]), dtype=np.float32)
        preferences[unchanged] = self.preferences_[users[unchanged]]
        other = np.flatnonzero(~unchanged)
        if other.size:  # request-time history has no order: a weighted mean
            chosen = rows if other.size == rows.shape[0] else rows[other]  # (a request: all)
            weights = sp.csr_matrix(chosen, dtype=np.float32)
            totals = np.asarray(weights.sum(axis=1)).ravel()
            totals[totals == 0] = 1.0
            preferences[other] = np.asarray(weights @ self.vectors_) / totals[:, None]
        return preferences

    def _nearest(self, queries: np.ndarray) -> np.ndarray:
        has_query = np.linalg.norm(queries, axis=1) > 0
        if self.config.metric == "cosine":
            scores = unit_rows(queries) @ self.vectors_.T
        else:  # larger is nearer; shifted to stay positive for users with a preference
            squared = (
                (queries**2).sum(axis=1, keepdims=True)
                - 2 * queries @ self.vectors_.T
                + (self.vectors_**2).sum(axis=1)[None, :]
            )
            scores = 4.0 - np.maximum(squared, 0.0)
        scores[~has_query] = 0.0
        return np.asarray(scores, dtype=np.float32)

    reason = "matches what you like"

    def _explain(self, rows: sp.csr_matrix, items: np.ndarray) -> list[list[str]]:
        return self._anchored(
            rows,
            items,
            lambda history, picks: self.vectors_[history] @ self.vectors_[picks].T,
            "similar to {title}",
        )

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self._nearest(self.vectors_[items])

    def add_items(self, items: pl.DataFrame) -> int:
        """Embed catalogue items added after training, so they can be recommended and found as
        similar items at once (nobody has touched them: their popularity is zero).

        Returns how many items were new; known ids are left as they are.
        """
        self._check_fitted()
        known = self.item_ids_.to_index(items.get_column("item_id").cast(pl.String).to_list())
        new = items.filter(pl.Series(known < 0)).unique("item_id", keep="last")
        if new.height == 0:
            return 0
        vectors = self.vectoriser_.transform(new)
        ids = new.get_column("item_id").cast(pl.String).to_list()
        self.item_ids_ = IdMap(np.concatenate((self.item_ids_.external, np.asarray(ids, object))))
        self.vectors_ = np.vstack((self.vectors_, vectors))
        self.popularity_ = np.concatenate((self.popularity_, np.zeros(len(ids), np.float32)))
        titles = new.get_column("title").to_list() if "title" in new.columns else [None] * len(ids)
        self.titles_ = [*self.titles_, *titles]
        self.tie_rank_ = np.concatenate((self.tie_rank_, np.arange(len(ids)) + self.tie_rank_.size))
        self.user_items_ = sp.csr_matrix(
            sp.hstack([self.user_items_, sp.csr_matrix((self.user_items_.shape[0], len(ids)))])
        )
        return len(ids)
