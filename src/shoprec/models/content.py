"""Content-based: item vectors from attributes and text; users as a blend of their items."""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import Field
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from shoprec.data.dataset import ITEM_INDEX, USER_INDEX, Dataset
from shoprec.models.base import ModelConfig, Recommender

__all__ = ["ContentConfig", "ContentModel", "item_vectors"]


class ContentConfig(ModelConfig):
    kind: Literal["content"] = "content"
    numeric_weight: float = Field(default=0.5, ge=0)
    categorical_weight: float = Field(default=1.0, ge=0)
    text_weight: float = Field(default=1.0, ge=0)
    text_dimensions: int = Field(default=64, ge=2, description="SVD size of the TF-IDF text")
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


def _standardise(values: np.ndarray) -> np.ndarray:
    """Columns to zero mean and unit spread; missing values become the column mean (0)."""
    values = values.astype(np.float64)
    present = ~np.isnan(values)
    counts = present.sum(axis=0)
    means = np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), 0.0)
    values = np.where(present, values, means)
    spread = values.std(axis=0)
    spread[spread == 0] = 1.0
    return np.asarray((values - values.mean(axis=0)) / spread, dtype=np.float64)


def item_vectors(items: pl.DataFrame, config: ContentConfig) -> np.ndarray:
    """One row per catalogue item: numeric, one-hot categorical and text blocks, each scaled to
    unit norm per item and weighted, then the whole vector normalised."""
    n = items.height
    blocks: list[np.ndarray] = []
    attributes = (
        items.get_column("attributes").str.json_decode(infer_schema_length=None)
        if "attributes" in items.columns and items.get_column("attributes").drop_nulls().len()
        else None
    )
    numeric: list[np.ndarray] = []
    categorical: list[pl.Series] = []
    if "price" in items.columns:
        numeric.append(np.log1p(items.get_column("price").cast(pl.Float64).to_numpy()))
    if "category" in items.columns:
        categorical.append(items.get_column("category").cast(pl.String))
    if attributes is not None and isinstance(attributes.dtype, pl.Struct):
        for field in attributes.struct.fields:
            column = attributes.struct.field(field)
            if column.dtype.is_numeric():
                numeric.append(column.cast(pl.Float64).to_numpy())
            elif column.dtype == pl.String and column.n_unique() <= config.max_categories:
                categorical.append(column.alias(field))
    if numeric and config.numeric_weight > 0:
        blocks.append(config.numeric_weight * _unit(_standardise(np.column_stack(numeric))))
    if categorical and config.categorical_weight > 0:
        onehots = [
            column.fill_null("").to_dummies().to_numpy().astype(np.float64)
            for column in categorical
        ]
        blocks.append(config.categorical_weight * _unit(np.hstack(onehots)))
    text = _item_text(items)
    if text is not None and config.text_weight > 0:
        blocks.append(config.text_weight * _unit(_text_block(text, config.text_dimensions)))
    if not blocks:
        return np.zeros((n, 1), dtype=np.float32)
    return _unit(np.hstack(blocks)).astype(np.float32)


def _item_text(items: pl.DataFrame) -> list[str] | None:
    parts = [c for c in ("title", "text", "category") if c in items.columns]
    if not parts:
        return None
    joined = items.select(
        pl.concat_str([pl.col(c).cast(pl.String) for c in parts], separator=" ", ignore_nulls=True)
    ).to_series()
    texts = joined.fill_null("").to_list()
    return texts if any(t.strip() for t in texts) else None


def _text_block(texts: list[str], dimensions: int) -> np.ndarray:
    tfidf = TfidfVectorizer(min_df=1, max_features=50_000, sublinear_tf=True)
    try:
        matrix = tfidf.fit_transform(texts)
    except ValueError:  # nothing but stop words and blanks
        return np.zeros((len(texts), 1))
    size = min(dimensions, matrix.shape[1] - 1, matrix.shape[0] - 1)
    if size < 2:
        return np.asarray(matrix.todense())
    return np.asarray(TruncatedSVD(n_components=size, random_state=0).fit_transform(matrix))


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0))


class ContentModel(Recommender[ContentConfig]):
    """Nearest items to the user's preference vector, by cosine or Euclidean distance.

    The preference vector is a time-ordered blend of the vectors of the items the user touched
    (``ema`` or ``decay``, see the config). Items nobody has touched yet are recommendable too:
    their vectors come from their attributes and text alone.
    """

    config_class = ContentConfig

    def _fit(self, dataset: Dataset) -> None:
        self.vectors_ = item_vectors(dataset.items, self.config)
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
        known = users >= 0
        trained = self.user_items_[np.where(known, users, 0)]
        unchanged = known & np.asarray(abs(trained - rows).sum(axis=1) == 0).ravel()
        preferences = np.zeros((rows.shape[0], self.vectors_.shape[1]), dtype=np.float32)
        preferences[unchanged] = self.preferences_[users[unchanged]]
        other = np.flatnonzero(~unchanged)
        if other.size:  # request-time history has no order: a weighted mean
            weights = sp.csr_matrix(rows[other], dtype=np.float32)
            totals = np.asarray(weights.sum(axis=1)).ravel()
            totals[totals == 0] = 1.0
            preferences[other] = np.asarray(weights @ self.vectors_) / totals[:, None]
        scores = self._nearest(preferences)
        if self.config.popularity_weight > 0:
            prior = self.popularity_ / (self.popularity_.max() or 1.0)
            has_query = np.any(scores != 0, axis=1)
            scores[has_query] += self.config.popularity_weight * prior
        return scores

    def _nearest(self, queries: np.ndarray) -> np.ndarray:
        has_query = np.linalg.norm(queries, axis=1) > 0
        if self.config.metric == "cosine":
            scores = _unit(queries) @ self.vectors_.T
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
            lambda history, item: self.vectors_[history] @ self.vectors_[item],
            "similar to {title}",
        )

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self._nearest(self.vectors_[items])
