"""Content-based: item vectors from attributes and text; users as a blend of their items."""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import Field
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from shoprec.data.dataset import ITEM_INDEX, USER_INDEX, Dataset, IdMap
from shoprec.models.base import ModelConfig, Recommender

__all__ = ["ContentConfig", "ContentModel", "ItemVectoriser", "item_vectors"]


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


def _attributes(items: pl.DataFrame) -> pl.Series | None:
    if "attributes" not in items.columns or not items.get_column("attributes").drop_nulls().len():
        return None
    decoded = items.get_column("attributes").str.json_decode(infer_schema_length=None)
    return decoded if isinstance(decoded.dtype, pl.Struct) else None


def _item_text(items: pl.DataFrame) -> list[str]:
    parts = [c for c in ("title", "text", "category") if c in items.columns]
    if not parts:
        return [""] * items.height
    joined = items.select(
        pl.concat_str([pl.col(c).cast(pl.String) for c in parts], separator=" ", ignore_nulls=True)
    ).to_series()
    return [str(t) for t in joined.fill_null("").to_list()]


class ItemVectoriser:
    """Item vectors from numeric, one-hot categorical and TF-IDF/SVD text blocks.

    ``fit`` learns the columns, category values, means, spreads, vocabulary and projection from
    the catalogue; ``transform`` embeds any items with them, so an item added after training gets
    a vector in the same space. Each block is scaled to unit norm per item and weighted, then
    the whole vector is normalised.
    """

    def __init__(self, config: ContentConfig) -> None:
        self.config = config

    def _numeric(self, items: pl.DataFrame) -> np.ndarray:
        attributes = _attributes(items)
        columns = []
        for name in self.numeric_:
            if name == "price":
                raw = items.get_column("price") if "price" in items.columns else None
                columns.append(
                    np.log1p(raw.cast(pl.Float64).to_numpy())
                    if raw is not None
                    else np.full(items.height, np.nan)
                )
            elif attributes is not None and name in attributes.struct.fields:
                columns.append(attributes.struct.field(name).cast(pl.Float64).to_numpy())
            else:
                columns.append(np.full(items.height, np.nan))
        return np.column_stack(columns) if columns else np.zeros((items.height, 0))

    def _categorical(self, items: pl.DataFrame) -> list[pl.Series]:
        attributes = _attributes(items)
        columns = []
        for name in self.categories_:
            if name == "category" and "category" in items.columns:
                columns.append(items.get_column("category").cast(pl.String))
            elif attributes is not None and name in attributes.struct.fields:
                columns.append(attributes.struct.field(name).cast(pl.String))
            else:
                columns.append(pl.Series(name, [None] * items.height, dtype=pl.String))
        return columns

    def fit(self, items: pl.DataFrame) -> ItemVectoriser:
        config = self.config
        attributes = _attributes(items)
        self.numeric_: list[str] = ["price"] if "price" in items.columns else []
        self.categories_: dict[str, list[str]] = {}
        if "category" in items.columns:
            self.categories_["category"] = []
        if attributes is not None:
            for name in attributes.struct.fields:
                column = attributes.struct.field(name)
                if column.dtype.is_numeric():
                    self.numeric_.append(name)
                elif column.dtype == pl.String and column.n_unique() <= config.max_categories:
                    self.categories_[name] = []
        numeric = self._numeric(items)
        present = ~np.isnan(numeric)
        counts = present.sum(axis=0)
        self.means_ = np.where(counts > 0, np.nansum(numeric, axis=0) / np.maximum(counts, 1), 0)
        filled = np.where(present, numeric, self.means_)
        spread = filled.std(axis=0) if filled.size else np.zeros(0)
        self.spreads_ = np.where(spread > 0, spread, 1.0)
        for column in self._categorical(items):
            self.categories_[column.name] = sorted(column.drop_nulls().unique().to_list())
        texts = _item_text(items)
        self.tfidf_: TfidfVectorizer | None = None
        self.svd_: TruncatedSVD | None = None
        if config.text_weight > 0 and any(t.strip() for t in texts):
            tfidf = TfidfVectorizer(min_df=1, max_features=50_000, sublinear_tf=True)
            try:
                matrix = tfidf.fit_transform(texts)
            except ValueError:  # nothing but stop words and blanks
                matrix = None
            if matrix is not None:
                self.tfidf_ = tfidf
                size = min(config.text_dimensions, matrix.shape[1] - 1, matrix.shape[0] - 1)
                if size >= 2:
                    self.svd_ = TruncatedSVD(n_components=size, random_state=0).fit(matrix)
        return self

    def transform(self, items: pl.DataFrame) -> np.ndarray:
        config = self.config
        blocks: list[np.ndarray] = []
        if self.numeric_ and config.numeric_weight > 0:
            numeric = self._numeric(items)
            numeric = np.where(np.isnan(numeric), self.means_, numeric)
            blocks.append(config.numeric_weight * _unit((numeric - self.means_) / self.spreads_))
        if self.categories_ and config.categorical_weight > 0:
            onehots = []
            for column in self._categorical(items):
                values = self.categories_[column.name]
                position = {v: i for i, v in enumerate(values)}
                block = np.zeros((items.height, len(values)))
                for row, value in enumerate(column.to_list()):
                    if value in position:
                        block[row, position[value]] = 1.0
                onehots.append(block)
            blocks.append(config.categorical_weight * _unit(np.hstack(onehots)))
        if self.tfidf_ is not None:
            matrix = self.tfidf_.transform(_item_text(items))
            text = self.svd_.transform(matrix) if self.svd_ is not None else matrix.toarray()
            blocks.append(config.text_weight * _unit(np.asarray(text, dtype=np.float64)))
        if not blocks:
            return np.zeros((items.height, 1), dtype=np.float32)
        return _unit(np.hstack(blocks)).astype(np.float32)


def item_vectors(items: pl.DataFrame, config: ContentConfig) -> np.ndarray:
    """Vectors of a whole catalogue (see :class:`ItemVectoriser`)."""
    return ItemVectoriser(config).fit(items).transform(items)


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
        return np.hstack([_unit(preferences), weight]).astype(np.float32)

    def _preferences(self, rows: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        unchanged = self.unchanged_rows(rows, users)
        preferences = np.zeros((rows.shape[0], self.vectors_.shape[1]), dtype=np.float32)
        preferences[unchanged] = self.preferences_[users[unchanged]]
        other = np.flatnonzero(~unchanged)
        if other.size:  # request-time history has no order: a weighted mean
            weights = sp.csr_matrix(rows[other], dtype=np.float32)
            totals = np.asarray(weights.sum(axis=1)).ravel()
            totals[totals == 0] = 1.0
            preferences[other] = np.asarray(weights @ self.vectors_) / totals[:, None]
        return preferences

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
